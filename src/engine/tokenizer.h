/*
 * tokenizer.h - BERT WordPiece tokenization identical to Hugging Face's.
 *
 * The pipeline is the fast (Rust) tokenizer's: special tokens are split out
 * of the raw text, then BertNormalizer (clean text, pad CJK ideographs,
 * NFD + drop nonspacing marks, lowercase), BertPreTokenizer (split on
 * whitespace, isolate punctuation) and WordPiece (greedy longest match,
 * '##' continuations, a word over 100 code points or with no match is one
 * [UNK]). PostgreSQL-free.
 *
 * bt_tokenize allocates nothing and holds no resources while it runs, so its
 * callbacks may longjmp out (PostgreSQL's ereport) without leaking.
 */
#ifndef PGBERT_TOKENIZER_H
#define PGBERT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vocab.h"

/* Words longer than this many code points become [UNK], as in HF. */
#define BT_MAX_WORD_CHARS 100

typedef struct BtTokenizerOptions
{
	bool		lowercase;		/* do_lower_case */
	int			strip_accents;	/* 1, 0, or -1 = same as lowercase (HF's None) */
	bool		chinese_chars;	/* tokenize_chinese_chars */
} BtTokenizerOptions;

typedef struct BtTokenizer
{
	BtVocab    *vocab;			/* owned */
	bool		lowercase;
	bool		strip_accents;
	bool		chinese_chars;
	int32_t		unk_id;
	int32_t		cls_id;			/* -1 when the vocabulary lacks it */
	int32_t		sep_id;
	int32_t		pad_id;
	int32_t		mask_id;
	int			n_special;		/* special tokens split out of raw text */
	int32_t		special_id[8];
	const uint8_t *bmp_flags;	/* unicode.c's BMP property cache */
} BtTokenizer;

/* Outcome of bt_tokenize. */
typedef enum BtStatus
{
	BT_OK = 0,
	BT_STOPPED = 1,				/* a callback asked to stop */
	BT_INVALID_UTF8 = 2			/* input is not valid UTF-8 */
} BtStatus;

/* Receives each token id in order; returns nonzero to stop tokenizing. */
typedef int (*BtEmitFn) (void *arg, int32_t id);

/* Called every BT_PROGRESS_BYTES input bytes; returns nonzero to stop. */
typedef int (*BtProgressFn) (void *arg);

#define BT_PROGRESS_BYTES 65536

typedef struct BtSink
{
	BtEmitFn	emit;
	BtProgressFn progress;		/* may be NULL */
	void	   *arg;
	size_t		error_offset;	/* set on BT_INVALID_UTF8: byte offset of the bad sequence */
} BtSink;

/* Default options of an uncased BERT (do_lower_case, strip_accents None, CJK on). */
extern BtTokenizerOptions bt_tokenizer_default_options(void);

/*
 * Make a tokenizer that takes ownership of vocab (freed with the tokenizer,
 * or on failure). Fails when the vocabulary has no [UNK].
 */
extern BtTokenizer *bt_tokenizer_create(BtVocab *vocab, const BtTokenizerOptions *opts,
										char *err, size_t errlen);

extern void bt_tokenizer_free(BtTokenizer *tk);

/* Word pieces of text[0..len) (no [CLS]/[SEP]), streamed to sink->emit. */
extern BtStatus bt_tokenize(const BtTokenizer *tk, const char *text, size_t len,
							BtSink *sink);

/* Receives one normalized, pre-tokenized word (cut at 100 code points); nonzero stops. */
typedef int (*BtWordFn) (void *arg, const char *word, size_t len);

/*
 * Normalized words of text, before WordPiece (special tokens come through as
 * their own text): what tokenizers' normalizer + pre-tokenizer give. For tests.
 */
extern BtStatus bt_pretokenize(const BtTokenizer *tk, const char *text, size_t len,
							   BtWordFn fn, void *arg);

/*
 * Cut n word-piece ids to limit the "head_tail" way: the first limit / 4 and
 * the last limit - limit / 4, moved together in place (Sun et al., 2019, "How
 * to Fine-Tune BERT for Text Classification": the end of a long text often
 * says as much as its start). Returns the new count, min(n, limit).
 */
extern size_t bt_keep_head_tail(int32_t *ids, size_t n, size_t limit);

#endif
