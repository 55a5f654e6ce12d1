/*
 * bench_tokenizer.c - engine tokenizer throughput on one thread.
 *
 *   bench_tokenizer VOCAB TEXTS [REPEATS]
 *
 * TEXTS holds one text per line in COPY text escaping (as the parity
 * corpus). Each repeat tokenizes every text (word pieces, no truncation);
 * the median repeat is reported as one JSON line, so run_tokenizer_bench.sh
 * can put it beside Hugging Face's numbers from the same run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "copy_text.h"
#include "tokenizer.h"

static int
count_id(void *arg, int32_t id)
{
	(*(size_t *) arg)++;
	return 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int
main(int argc, char **argv)
{
	char		err[256];
	BtVocab    *v;
	BtTokenizer *tk;
	BtTokenizerOptions o = bt_tokenizer_default_options();
	FILE	   *f;
	char	   *buf = NULL;
	size_t		len = 0,
				cap = 0,
				got,
				n = 0,
				bytes = 0;
	char	  **text;
	size_t	   *tlen;
	int			repeats = argc > 3 ? atoi(argv[3]) : 5;
	double	   *secs;
	size_t		tokens = 0;

	if (argc < 3 || repeats < 1)
	{
		fprintf(stderr, "usage: bench_tokenizer VOCAB TEXTS [REPEATS]\n");
		return 2;
	}
	if (!(v = bt_vocab_load(argv[1], err, sizeof err)) ||
		!(tk = bt_tokenizer_create(v, &o, err, sizeof err)))
	{
		fprintf(stderr, "bench_tokenizer: %s\n", err);
		return 1;
	}
	if (!(f = fopen(argv[2], "rb")))
	{
		perror(argv[2]);
		return 1;
	}
	do
	{
		if (len + 65536 > cap)
			buf = realloc(buf, cap = (cap + 65536) * 2);
		len += got = fread(buf + len, 1, cap - len, f);
	} while (got > 0);
	fclose(f);

	for (size_t i = 0; i < len; i++)
		n += buf[i] == '\n';
	text = malloc(n * sizeof(char *));
	tlen = malloc(n * sizeof(size_t));
	for (size_t i = 0, start = 0, k = 0; i < len; i++)
	{
		if (buf[i] != '\n')
			continue;
		text[k] = buf + start;
		tlen[k] = copy_unescape(buf + start, i - start);
		bytes += tlen[k];
		k++;
		start = i + 1;
	}

	secs = malloc(repeats * sizeof(double));
	for (int r = 0; r < repeats; r++)
	{
		BtSink		sink;
		double		t0 = now();

		tokens = 0;
		memset(&sink, 0, sizeof sink);
		sink.emit = count_id;
		sink.arg = &tokens;
		for (size_t i = 0; i < n; i++)
			bt_tokenize(tk, text[i], tlen[i], &sink);
		secs[r] = now() - t0;
	}
	qsort(secs, repeats, sizeof(double), cmp_double);
	printf("{\"impl\": \"pgbert engine\", \"texts\": %zu, \"bytes\": %zu, \"tokens\": %zu, "
		   "\"seconds\": %.6f, \"tokens_per_s\": %.0f, \"mb_per_s\": %.2f}\n",
		   n, bytes, tokens, secs[repeats / 2], tokens / secs[repeats / 2],
		   bytes / secs[repeats / 2] / 1e6);
	bt_tokenizer_free(tk);
	return 0;
}
