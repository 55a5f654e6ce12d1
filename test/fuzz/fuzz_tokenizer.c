/*
 * fuzz_tokenizer.c - libFuzzer target for the tokenizer and the vocabulary parser.
 *
 * The first input byte picks the mode: bit 7 set parses the rest as a
 * vocab.txt and tokenizes a fixed sentence with it; otherwise bits 0-2 pick
 * lowercase / strip_accents / CJK options and the rest is tokenized with the
 * bundled vocabulary (path in PGBERT_FUZZ_VOCAB, default
 * data/pgbert_vocab_uncased.txt), with an id limit of 1 + byte 1 half the time.
 * Every emitted id must be a valid vocabulary id.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static BtTokenizer *bundled[8];

typedef struct FuzzSink
{
	uint32_t	vocab_size;
	long		n;
	long		limit;
} FuzzSink;

static int
check_id(void *arg, int32_t id)
{
	FuzzSink   *s = arg;

	if (id < 0 || (uint32_t) id >= s->vocab_size)
		abort();
	s->n++;
	if (s->limit >= 0 && s->n > s->limit)
		abort();				/* emitted past a stop request */
	return s->limit >= 0 && s->n >= s->limit;
}

static BtTokenizer *
bundled_tokenizer(int mode)
{
	char		err[256];
	const char *path = getenv("PGBERT_FUZZ_VOCAB");
	BtTokenizerOptions o;
	BtVocab    *v;

	if (bundled[mode])
		return bundled[mode];
	v = bt_vocab_load(path ? path : "data/pgbert_vocab_uncased.txt", err, sizeof err);
	if (!v)
	{
		fprintf(stderr, "fuzz_tokenizer: %s\n", err);
		exit(1);
	}
	o.lowercase = mode & 1;
	o.strip_accents = (mode & 2) ? -1 : 0;
	o.chinese_chars = (mode & 4) != 0;
	bundled[mode] = bt_tokenizer_create(v, &o, err, sizeof err);
	if (!bundled[mode])
		exit(1);
	return bundled[mode];
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	BtSink		sink;
	FuzzSink	fs;

	if (size < 2)
		return 0;
	memset(&sink, 0, sizeof sink);
	sink.emit = check_id;
	sink.arg = &fs;
	fs.n = 0;
	if (data[0] & 0x80)
	{
		char		err[256];
		BtTokenizerOptions o = bt_tokenizer_default_options();
		BtVocab    *v = bt_vocab_parse((const char *) data + 1, size - 1, err, sizeof err);
		BtTokenizer *tk;
		static const char sentence[] = "[CLS] Hello, wörld! unaffable 中文 ##x [SEP]";

		if (!v)
			return 0;
		fs.vocab_size = v->size;
		fs.limit = -1;
		tk = bt_tokenizer_create(v, &o, err, sizeof err);
		if (!tk)
			return 0;
		bt_tokenize(tk, sentence, sizeof sentence - 1, &sink);
		bt_tokenizer_free(tk);
		return 0;
	}
	{
		BtTokenizer *tk = bundled_tokenizer(data[0] & 7);

		fs.vocab_size = tk->vocab->size;
		fs.limit = (data[0] & 8) ? data[1] + 1 : -1;	/* the SQL layer never asks for 0 */
		bt_tokenize(tk, (const char *) data + 2, size - 2, &sink);
	}
	return 0;
}
