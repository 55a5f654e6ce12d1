/*
 * tokenizer.c - BERT normalizer, pre-tokenizer and WordPiece in one streaming pass.
 *
 * Text flows through the stages one code point at a time:
 *   raw text -> special-token split -> clean -> CJK padding
 *     -> [strip_accents: canonical decomposition, canonical ordering, drop Mn]
 *     -> lowercase -> whitespace/punctuation split -> WordPiece
 * which is the order of tokenizers' BertNormalizer (strip before lowercase)
 * and BertPreTokenizer. Only the current word (at most 100 code points) and
 * the current run of combining marks are buffered, so memory is bounded
 * whatever the input length.
 */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* 100 code points of at most 4 UTF-8 bytes each. */
#define WORD_BYTES (BT_MAX_WORD_CHARS * 4 + 4)

/* Combining marks buffered for canonical ordering before they spill. */
#define RUN_MAX 256

typedef struct EncodeState
{
	const BtTokenizer *tk;
	BtSink	   *sink;
	BtWordFn	word_fn;		/* set by bt_pretokenize: words instead of ids */
	void	   *word_arg;
	int			stopped;

	char		word[WORD_BYTES];	/* normalized bytes of the current word */
	size_t		word_len;
	int			word_chars;		/* code points, saturating past the limit */

	int32_t		run_cp[RUN_MAX];	/* non-starters awaiting canonical ordering */
	uint8_t		run_ccc[RUN_MAX];
	int			run_n;
} EncodeState;

static const char *const special_names[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

BtTokenizerOptions
bt_tokenizer_default_options(void)
{
	BtTokenizerOptions o;

	o.lowercase = true;
	o.strip_accents = -1;
	o.chinese_chars = true;
	return o;
}

BtTokenizer *
bt_tokenizer_create(BtVocab *vocab, const BtTokenizerOptions *opts, char *err, size_t errlen)
{
	BtTokenizer *tk = calloc(1, sizeof(BtTokenizer));
	int32_t		ids[5];

	if (tk == NULL)
	{
		bt_vocab_free(vocab);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	tk->vocab = vocab;
	tk->lowercase = opts->lowercase;
	tk->strip_accents = opts->strip_accents < 0 ? opts->lowercase : opts->strip_accents != 0;
	tk->chinese_chars = opts->chinese_chars;
	for (int i = 0; i < 5; i++)
	{
		ids[i] = bt_vocab_find(vocab, special_names[i], strlen(special_names[i]));
		if (ids[i] >= 0)
			tk->special_id[tk->n_special++] = ids[i];
	}
	tk->pad_id = ids[0];
	tk->unk_id = ids[1];
	tk->cls_id = ids[2];
	tk->sep_id = ids[3];
	tk->mask_id = ids[4];
	if (tk->unk_id < 0)
	{
		snprintf(err, errlen, "vocabulary has no [UNK] token");
		bt_tokenizer_free(tk);
		return NULL;
	}
	tk->bmp_flags = bt_uc_bmp_flags();
	return tk;
}

void
bt_tokenizer_free(BtTokenizer *tk)
{
	if (tk == NULL)
		return;
	bt_vocab_free(tk->vocab);
	free(tk);
}

/* A code point's flags: the BMP from the precomputed table, the rest computed (rare). */
static inline uint8_t
flags_of(const EncodeState *st, int32_t cp)
{
	return cp < 0x10000 ? st->tk->bmp_flags[cp] : bt_uc_flags(cp);
}

/* Send one token id on: to the sink, or as its text to word_fn; stops for good once either says stop. */
static inline void
emit(EncodeState *st, int32_t id)
{
	if (st->word_fn)
	{
		size_t		len;
		const char *tok = bt_vocab_token(st->tk->vocab, id, &len);

		if (!st->stopped && st->word_fn(st->word_arg, tok, len))
			st->stopped = 1;
	}
	else if (!st->stopped && st->sink->emit(st->sink->arg, id))
		st->stopped = 1;
}

/* Greedy longest-match-first WordPiece over the current word; whole word [UNK] on failure. */
static void
wordpiece(EncodeState *st)
{
	const BtVocab *v = st->tk->vocab;
	const unsigned char *w = (const unsigned char *) st->word;
	size_t		len = st->word_len;
	int32_t		pieces[BT_MAX_WORD_CHARS];
	int			n = 0;
	size_t		start = 0;

	/* Common case: the whole word is a piece. */
	int32_t		whole = bt_vocab_find(v, st->word, len);

	if (whole >= 0)
	{
		emit(st, whole);
		return;
	}
	while (start < len)
	{
		size_t		max = start == 0 ? v->initial.max_len : v->continuation.max_len;
		size_t		end = len - start > max ? start + max : len;
		int32_t		id = -1;

		/* candidates end on character boundaries only */
		while (end > start && end < len && (w[end] & 0xC0) == 0x80)
			end--;
		while (end > start)
		{
			id = start == 0
				? bt_vocab_find(v, st->word, end)
				: bt_vocab_find_continuation(v, st->word + start, end - start);
			if (id >= 0)
				break;
			do
				end--;
			while (end > start && (w[end] & 0xC0) == 0x80);
		}
		if (id < 0)
		{
			emit(st, st->tk->unk_id);
			return;
		}
		pieces[n++] = id;
		start = end;
	}
	for (int i = 0; i < n; i++)
		emit(st, pieces[i]);
}

/* The current word is complete: hand it to word_fn, or split it into WordPieces ([UNK] when too long). */
static inline void
word_end(EncodeState *st)
{
	if (st->word_chars == 0)
		return;
	if (st->word_fn)
	{
		if (!st->stopped && st->word_fn(st->word_arg, st->word, st->word_len))
			st->stopped = 1;
	}
	else if (st->word_chars > BT_MAX_WORD_CHARS)
		emit(st, st->tk->unk_id);
	else
		wordpiece(st);
	st->word_len = 0;
	st->word_chars = 0;
}

/* Append one normalized code point to the current word. */
static inline void
word_push(EncodeState *st, int32_t cp)
{
	char	   *o;

	if (st->word_chars >= BT_MAX_WORD_CHARS)
	{
		st->word_chars = BT_MAX_WORD_CHARS + 1;	/* over the limit: stop storing */
		return;
	}
	st->word_chars++;
	o = st->word + st->word_len;
	if (cp < 0x80)
	{
		o[0] = (char) cp;
		st->word_len += 1;
	}
	else if (cp < 0x800)
	{
		o[0] = (char) (0xC0 | (cp >> 6));
		o[1] = (char) (0x80 | (cp & 0x3F));
		st->word_len += 2;
	}
	else if (cp < 0x10000)
	{
		o[0] = (char) (0xE0 | (cp >> 12));
		o[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char) (0x80 | (cp & 0x3F));
		st->word_len += 3;
	}
	else
	{
		o[0] = (char) (0xF0 | (cp >> 18));
		o[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
		o[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
		o[3] = (char) (0x80 | (cp & 0x3F));
		st->word_len += 4;
	}
}

/* Pre-tokenizer: whitespace ends a word, punctuation is a word of its own. */
static inline void
pretokenize(EncodeState *st, int32_t cp)
{
	uint8_t		f = flags_of(st, cp);

	if (f & BT_UC_SPACE)
		word_end(st);
	else if (f & BT_UC_PUNCT)
	{
		word_end(st);
		word_push(st, cp);
		word_end(st);
	}
	else
		word_push(st, cp);
}

/* Lowercasing (after accent stripping, as in tokenizers). */
static inline void
lower_stage(EncodeState *st, int32_t cp)
{
	if (st->tk->lowercase && (flags_of(st, cp) & BT_UC_LOWER))
	{
		int32_t		out[BT_UC_MAX_LOWER];
		int			n = bt_uc_lower(cp, out);

		for (int i = 0; i < n; i++)
			pretokenize(st, out[i]);
	}
	else
		pretokenize(st, cp);
}

/* After canonical ordering: drop nonspacing marks. */
static inline void
strip_stage(EncodeState *st, int32_t cp)
{
	if (!(flags_of(st, cp) & BT_UC_MARK))
		lower_stage(st, cp);
}

/* Emit the pending marks in canonical order (stable by combining class). */
static void
run_flush(EncodeState *st)
{
	int			n = st->run_n;

	for (int i = 1; i < n; i++)
	{
		int32_t		cp = st->run_cp[i];
		uint8_t		ccc = st->run_ccc[i];
		int			j = i;

		while (j > 0 && st->run_ccc[j - 1] > ccc)
		{
			st->run_cp[j] = st->run_cp[j - 1];
			st->run_ccc[j] = st->run_ccc[j - 1];
			j--;
		}
		st->run_cp[j] = cp;
		st->run_ccc[j] = ccc;
	}
	st->run_n = 0;
	for (int i = 0; i < n; i++)
		strip_stage(st, st->run_cp[i]);
}

/*
 * The run is full. Marks that strip_accents drops can go now (removing them
 * does not change the order of the rest). If it is still full, every one of
 * its marks lands in the current word, which is then over 100 code points
 * and becomes [UNK] whatever their order: pass them on unsorted.
 */
static void
run_overflow(EncodeState *st)
{
	int			keep = 0;

	for (int i = 0; i < st->run_n; i++)
	{
		if (flags_of(st, st->run_cp[i]) & BT_UC_MARK)
			continue;
		st->run_cp[keep] = st->run_cp[i];
		st->run_ccc[keep] = st->run_ccc[i];
		keep++;
	}
	st->run_n = keep;
	if (keep == RUN_MAX)
	{
		st->run_n = 0;
		for (int i = 0; i < keep; i++)
			strip_stage(st, st->run_cp[i]);
	}
}

/* One code point of the decomposed stream. */
static inline void
nfd_push(EncodeState *st, int32_t cp)
{
	if (!(flags_of(st, cp) & BT_UC_NONSTARTER))
	{
		if (st->run_n)
			run_flush(st);
		strip_stage(st, cp);
		return;
	}
	if (st->run_n == RUN_MAX)
		run_overflow(st);
	st->run_cp[st->run_n] = cp;
	st->run_ccc[st->run_n] = (uint8_t) bt_uc_ccc(cp);
	st->run_n++;
}

/* Accent stripping (NFD) when enabled, else straight to lowercasing. */
static inline void
accent_stage(EncodeState *st, int32_t cp)
{
	if (!st->tk->strip_accents)
		lower_stage(st, cp);
	else if (flags_of(st, cp) & BT_UC_DECOMP)
	{
		int32_t		out[BT_UC_MAX_DECOMP];
		int			n = bt_uc_decompose(cp, out);

		for (int i = 0; i < n; i++)
			nfd_push(st, out[i]);
	}
	else
		nfd_push(st, cp);
}

/* Normalizer entry for one raw code point: clean text, then CJK padding. */
static void
normalize_char(EncodeState *st, int32_t cp)
{
	uint8_t		f = flags_of(st, cp);

	if (f & BT_UC_CONTROL)
		return;
	if (f & BT_UC_SPACE)
		cp = ' ';
	if ((f & BT_UC_CJK) && st->tk->chinese_chars)
	{
		accent_stage(st, ' ');
		accent_stage(st, cp);
		accent_stage(st, ' ');
	}
	else
		accent_stage(st, cp);
}

/* End of a segment (special token or end of text): nothing carries across. */
static void
segment_end(EncodeState *st)
{
	if (st->run_n)
		run_flush(st);
	word_end(st);
}

/* Id of the special token spelled at p (exact case), or -1; *len gets its length. */
static int32_t
match_special(const BtTokenizer *tk, const char *p, size_t avail, size_t *len)
{
	for (int i = 0; i < tk->n_special; i++)
	{
		size_t		tl;
		const char *t = bt_vocab_token(tk->vocab, tk->special_id[i], &tl);

		if (tl <= avail && memcmp(p, t, tl) == 0)
		{
			*len = tl;
			return tk->special_id[i];
		}
	}
	return -1;
}

/* Strict UTF-8 decode of one code point; returns its length, or 0 if invalid. */
static inline int
decode_utf8(const unsigned char *p, size_t avail, int32_t *cp)
{
	unsigned char c = p[0];

	if (c < 0xC2)
		return 0;				/* continuation byte or overlong 2-byte lead */
	if (c < 0xE0)
	{
		if (avail < 2 || (p[1] & 0xC0) != 0x80)
			return 0;
		*cp = ((c & 0x1F) << 6) | (p[1] & 0x3F);
		return 2;
	}
	if (c < 0xF0)
	{
		if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
			return 0;
		*cp = ((c & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
		if (*cp < 0x800 || (*cp >= 0xD800 && *cp <= 0xDFFF))
			return 0;
		return 3;
	}
	if (c < 0xF5)
	{
		if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
			(p[3] & 0xC0) != 0x80)
			return 0;
		*cp = ((c & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) |
			(p[3] & 0x3F);
		if (*cp < 0x10000 || *cp > 0x10FFFF)
			return 0;
		return 4;
	}
	return 0;
}

/* Decode text and drive each code point through the normalizer, pretokenizer and WordPiece into sink (or word_fn). */
static BtStatus
run_pipeline(const BtTokenizer *tk, const char *text, size_t len, BtSink *sink,
			 BtWordFn word_fn, void *word_arg)
{
	EncodeState st;
	const unsigned char *p = (const unsigned char *) text;
	const unsigned char *end = p + len;
	const unsigned char *next_progress = p + BT_PROGRESS_BYTES;
	const uint8_t *ascii = tk->bmp_flags;

	st.tk = tk;
	st.sink = sink;
	st.word_fn = word_fn;
	st.word_arg = word_arg;
	st.stopped = 0;
	st.word_len = 0;
	st.word_chars = 0;
	st.run_n = 0;

	while (p < end && !st.stopped)
	{
		unsigned char c = *p;

		if (p >= next_progress)
		{
			next_progress = p + BT_PROGRESS_BYTES;
			if (sink && sink->progress && sink->progress(sink->arg))
				return BT_STOPPED;
		}
		if (c < 0x80)
		{
			uint8_t		f = ascii[c];
			size_t		special_len;
			int32_t		special;

			if (c == '[' &&
				(special = match_special(tk, (const char *) p, (size_t) (end - p), &special_len)) >= 0)
			{
				segment_end(&st);
				emit(&st, special);
				p += special_len;
				continue;
			}
			p++;
			if (f & BT_UC_CONTROL)
				continue;
			if (st.run_n)
				run_flush(&st);
			if (f & BT_UC_SPACE)
				word_end(&st);
			else if (f & BT_UC_PUNCT)
			{
				word_end(&st);
				word_push(&st, c);
				word_end(&st);
			}
			else
				word_push(&st, (tk->lowercase && c >= 'A' && c <= 'Z') ? c + 32 : c);
		}
		else
		{
			int32_t		cp;
			int			n = decode_utf8(p, (size_t) (end - p), &cp);

			if (n == 0)
			{
				if (sink)
					sink->error_offset = (size_t) (p - (const unsigned char *) text);
				return BT_INVALID_UTF8;
			}
			p += n;
			normalize_char(&st, cp);
		}
	}
	if (!st.stopped)
		segment_end(&st);
	return st.stopped ? BT_STOPPED : BT_OK;
}

BtStatus
bt_tokenize(const BtTokenizer *tk, const char *text, size_t len, BtSink *sink)
{
	return run_pipeline(tk, text, len, sink, NULL, NULL);
}

BtStatus
bt_pretokenize(const BtTokenizer *tk, const char *text, size_t len, BtWordFn fn, void *arg)
{
	return run_pipeline(tk, text, len, NULL, fn, arg);
}

size_t
bt_keep_head_tail(int32_t *ids, size_t n, size_t limit)
{
	size_t		head = limit / 4;

	if (n <= limit)
		return n;
	memmove(ids + head, ids + n - (limit - head), sizeof(int32_t) * (limit - head));
	return limit;
}
