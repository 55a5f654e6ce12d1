/*
 * gpu_testing.h - what the GPU test and benchmark programs share: loading a
 * model directory into the CPU engine, the SpamAssassin mails tokenized into
 * a packed batch, and a wall clock. Header-only, for test programs.
 */
#ifndef PGBERT_TEST_GPU_TESTING_H
#define PGBERT_TEST_GPU_TESTING_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "copy_text.h"
#include "model.h"
#include "safetensors.h"
#include "testing.h"
#include "tokenizer.h"
#include "vocab.h"

static inline double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* config.json + model.safetensors of dir as a CPU model; exits with a message on failure. */
static inline BtBertModel *
load_model_dir(const char *dir)
{
	size_t		clen = 0,
				wlen = 0;
	uint8_t    *cjson = read_file(dir, "config.json", &clen),
			   *weights = read_file(dir, "model.safetensors", &wlen);
	char		err[512];
	BtSafetensors *st;
	BtBertConfig cfg;
	BtBertModel *m = NULL;

	if (cjson == NULL || weights == NULL)
	{
		fprintf(stderr, "%s: cannot read config.json or model.safetensors\n", dir);
		exit(2);
	}
	if ((st = bt_safetensors_parse(weights, wlen, err, sizeof err)) == NULL ||
		bt_config_parse((char *) cjson, clen, &cfg, err, sizeof err) != 0 ||
		(m = bt_model_load(&cfg, st, NULL, 0, err, sizeof err)) == NULL)
	{
		fprintf(stderr, "%s: %s\n", dir, err);
		exit(2);
	}
	bt_safetensors_free(st);
	free(weights);
	free(cjson);
	return m;
}

/* A packed batch that owns its arrays. */
typedef struct Packed
{
	int			n_seq;
	int32_t    *offsets;		/* n_seq + 1 */
	int32_t    *ids;
	int32_t    *labels;			/* per sequence, or NULL */
} Packed;

static inline void
packed_free(Packed *p)
{
	free(p->offsets);
	free(p->ids);
	free(p->labels);
	memset(p, 0, sizeof(*p));
}

/* A batch view of sequences [first, first + n) of p. */
static inline BtBatch
packed_slice(const Packed *p, int first, int n, int32_t *offsets_buf)
{
	BtBatch		b;

	for (int s = 0; s <= n; s++)
		offsets_buf[s] = p->offsets[first + s] - p->offsets[first];
	b.n_seq = n;
	b.offsets = offsets_buf;
	b.ids = p->ids + p->offsets[first];
	b.type_ids = NULL;
	return b;
}

/*
 * The first `limit` lines (all when < 0) of a file of texts in COPY escaping,
 * tokenized as [CLS] text [SEP] with the vocabulary's uncased tokenizer and
 * truncated to max_len tokens. Exits with a message on failure.
 */
static inline Packed
tokenize_lines(const char *path, const char *vocab_path, int max_len, int limit)
{
	char		err[512];
	BtVocab    *v = bt_vocab_load(vocab_path, err, sizeof err);
	BtTokenizerOptions o = bt_tokenizer_default_options();
	BtTokenizer *tk = v ? bt_tokenizer_create(v, &o, err, sizeof err) : NULL;
	size_t		len,
				cap = 1024,
				tok_cap = 65536;
	char	   *text,
			   *p;
	Packed		r;
	char		dir[1024];
	const char *slash = strrchr(path, '/');

	if (tk == NULL)
	{
		fprintf(stderr, "%s: %s\n", vocab_path, err);
		exit(2);
	}
	snprintf(dir, sizeof dir, "%.*s", slash ? (int) (slash - path) : 1, slash ? path : ".");
	text = (char *) read_file(dir, slash ? slash + 1 : path, &len);
	if (text == NULL)
	{
		fprintf(stderr, "cannot read %s\n", path);
		exit(2);
	}
	memset(&r, 0, sizeof r);
	r.offsets = malloc(cap * sizeof(int32_t));
	r.ids = malloc(tok_cap * sizeof(int32_t));
	r.offsets[0] = 0;
	p = text;
	while (*p && (limit < 0 || r.n_seq < limit))
	{
		char	   *nl = strchr(p, '\n');
		size_t		n = copy_unescape(p, nl ? (size_t) (nl - p) : strlen(p));
		Ids			ids = {NULL, 0, 0, max_len - 2, 0};
		BtSink		sink;
		int			base = r.offsets[r.n_seq],
					count;

		memset(&sink, 0, sizeof sink);
		sink.emit = ids_emit;
		sink.arg = &ids;
		bt_tokenize(tk, p, n, &sink);
		count = (int) ids.n + 2;
		if ((size_t) r.n_seq + 2 > cap)
			r.offsets = realloc(r.offsets, (cap *= 2) * sizeof(int32_t));
		while ((size_t) base + count > tok_cap)
			r.ids = realloc(r.ids, (tok_cap *= 2) * sizeof(int32_t));
		r.ids[base] = tk->cls_id;
		memcpy(r.ids + base + 1, ids.v, ids.n * sizeof(int32_t));
		r.ids[base + count - 1] = tk->sep_id;
		r.offsets[++r.n_seq] = base + count;
		free(ids.v);
		p = nl ? nl + 1 : p + strlen(p);
	}
	free(text);
	bt_tokenizer_free(tk);
	return r;
}

#endif
