/*
 * bench_rows.c - the bare engine on the rows the SQL benchmark classifies.
 *
 *   bench_rows MODEL_DIR TEXTS_TXT ROWS MAX_TOKENS BATCH
 *
 * Reads the first ROWS lines of TEXTS_TXT (COPY text escaping, one text per line),
 * tokenizes each with the model's vocab.txt (uncased) truncated to MAX_TOKENS with
 * [CLS]/[SEP], and classifies them twice: one forward pass per row (what
 * classify(body) does per call) and packed batches of BATCH rows (what
 * classify_batch does). Tokenizing is timed with the forward passes, as in SQL.
 * Prints one JSON line per mode with rows/s. Threads: OPENBLAS_NUM_THREADS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "copy_text.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;
	long		n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
	{
		perror(path);
		exit(1);
	}
	buf = malloc(n + 1);
	if (fread(buf, 1, n, f) != (size_t) n)
		exit(1);
	fclose(f);
	buf[n] = 0;
	*len = n;
	return buf;
}

typedef struct Collect
{
	int32_t    *dst;
	int			n;
	int			limit;
} Collect;

static int
collect(void *arg, int32_t id)
{
	Collect    *c = arg;

	c->dst[c->n++] = id;
	return c->n >= c->limit;
}

/* Append [CLS] pieces [SEP] of one text at ids + offsets[s]; sets offsets[s + 1]. */
static void
encode(const BtTokenizer *tk, const char *text, int max_tokens, int32_t *ids, int32_t *offsets, int s)
{
	Collect		c = {ids + offsets[s] + 1, 0, max_tokens - 2};
	BtSink		sink = {collect, NULL, &c, 0};

	ids[offsets[s]] = tk->cls_id;
	if (max_tokens > 2)
		bt_tokenize(tk, text, strlen(text), &sink);
	ids[offsets[s] + 1 + c.n] = tk->sep_id;
	offsets[s + 1] = offsets[s] + c.n + 2;
}

int
main(int argc, char **argv)
{
	char		err[512],
				path[4096];
	size_t		len;
	char	   *cfg_json,
			   *blob,
			   *texts_buf;
	BtBertConfig cfg;
	BtSafetensors *st;
	BtBertModel *m;
	BtVocab    *v;
	BtTokenizerOptions opts = bt_tokenizer_default_options();
	BtTokenizer *tk;
	char	  **texts;
	int			rows,
				max_tokens,
				batch,
				n = 0;
	int32_t    *ids,
			   *offsets;
	float	   *logits;
	double		t0,
				total_tokens = 0;

	if (argc != 6)
	{
		fprintf(stderr, "usage: bench_rows MODEL_DIR TEXTS_TXT ROWS MAX_TOKENS BATCH\n");
		return 2;
	}
	rows = atoi(argv[3]);
	max_tokens = atoi(argv[4]);
	batch = atoi(argv[5]);

	snprintf(path, sizeof path, "%s/config.json", argv[1]);
	cfg_json = slurp(path, &len);
	if (bt_config_parse(cfg_json, len, &cfg, err, sizeof err) != 0)
		return fprintf(stderr, "%s\n", err), 1;
	snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
	blob = slurp(path, &len);
	st = bt_safetensors_parse((const uint8_t *) blob, len, err, sizeof err);
	if (!st || !(m = bt_model_load(&cfg, st, NULL, 0, err, sizeof err)))
		return fprintf(stderr, "%s\n", err), 1;
	bt_safetensors_free(st);
	free(blob);
	snprintf(path, sizeof path, "%s/vocab.txt", argv[1]);
	if (!(v = bt_vocab_load(path, err, sizeof err)) || !(tk = bt_tokenizer_create(v, &opts, err, sizeof err)))
		return fprintf(stderr, "%s\n", err), 1;

	/* the texts, unescaped */
	texts_buf = slurp(argv[2], &len);
	texts = malloc(sizeof(char *) * rows);
	for (char *line = strtok(texts_buf, "\n"); line && n < rows; line = strtok(NULL, "\n"))
	{
		texts[n] = strdup(line);
		texts[n][copy_unescape(texts[n], strlen(texts[n]))] = '\0';
		n++;
	}
	rows = n;
	ids = malloc(sizeof(int32_t) * (size_t) batch * max_tokens);
	offsets = malloc(sizeof(int32_t) * (batch + 1));
	logits = malloc(sizeof(float) * batch * (m->num_classes > 0 ? m->num_classes : 1));

	/* warm-up */
	offsets[0] = 0;
	encode(tk, texts[0], max_tokens, ids, offsets, 0);
	{
		BtBatch		b = {1, offsets, ids, NULL};
		BtForwardOut o = {NULL, NULL, NULL, logits};

		if (bt_model_forward(m, &b, &o, err, sizeof err) != 0)
			return fprintf(stderr, "%s\n", err), 1;
	}

	for (int mode = 0; mode < 2; mode++)
	{
		int			bs = mode == 0 ? 1 : batch;

		total_tokens = 0;
		t0 = now();
		for (int r = 0; r < rows; r += bs)
		{
			int			k = rows - r < bs ? rows - r : bs;
			BtBatch		b = {k, offsets, ids, NULL};
			BtForwardOut o = {NULL, NULL, NULL, logits};

			offsets[0] = 0;
			for (int s = 0; s < k; s++)
				encode(tk, texts[r + s], max_tokens, ids, offsets, s);
			total_tokens += offsets[k];
			if (bt_model_forward(m, &b, &o, err, sizeof err) != 0)
				return fprintf(stderr, "%s\n", err), 1;
		}
		printf("{\"impl\": \"engine\", \"mode\": \"%s\", \"rows\": %d, \"tokens\": %.0f, \"seconds\": %.3f, \"rows_per_s\": %.2f}\n",
			   mode == 0 ? "per row" : "batched", rows, total_tokens, now() - t0, rows / (now() - t0));
		fflush(stdout);
	}
	return 0;
}
