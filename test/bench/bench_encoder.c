/*
 * bench_encoder.c - engine BERT forward throughput on fixed and real batch shapes.
 *
 *   bench_encoder MODEL_DIR VOCAB MAILS_TXT [SECONDS_PER_SHAPE]
 *
 * Shapes: batch 1, 8, 32 x length 16, 64, 128, 512 of random ids, and a real
 * variable-length batch: the first 32 SpamAssassin mails (MAILS_TXT, one per line
 * in COPY escaping) tokenized with [CLS]/[SEP] and truncated to 256 tokens.
 * Each shape runs until SECONDS_PER_SHAPE have passed (at least 2 runs after one
 * warm-up); the median is reported as one JSON line per shape with sequences/s and
 * GFLOP/s (2 x multiply-adds of the dense layers and attention). Threads: OpenBLAS's
 * (OPENBLAS_NUM_THREADS). The first line reports memory: peak RSS while loading (the
 * checkpoint blob and the float32 parameters are both resident then) and RSS once the
 * blob is freed. MAX_LEN in the environment skips longer fixed shapes; SHAPES
 * (labels, comma-separated) runs only those. OUTPUT=logits asks for the
 * classifier's logits alone, as classify() does (the model needs a head), instead
 * of the mean-pooled embeddings; GFLOP/s still counts the whole encoder's work.
 * The model is packed for inference (bt_model_pack) as the engine serves it,
 * unless PACKED=0; PRECISION=int8 also quantizes its encoder weights
 * (bt_model_quantize), and the results then go under "pgbert engine int8";
 * PRECISION=bf16 uses bf16 products (bt_model_to_bf16) where the CPU has
 * AVX512-BF16. Every name ends with the ISA path in brackets (cpu.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "copy_text.h"
#include "cpu.h"
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

/* The name the results go under: the engine, its precision when not float32, and the ISA path. */
static const char *
impl_name(const BtBertModel *m)
{
	static char name[160];
	char		path[128];

	bt_cpu_describe(path, sizeof path);
	if (strchr(path, ' '))
		*strchr(path, ' ') = '\0';	/* the path alone, e.g. avx512+bf16+vnni */
	snprintf(name, sizeof name, "pgbert engine%s [%s]", m->use_bf16 ? " bf16" : m->use_q8 ? " int8" : "", path);
	return name;
}

static uint8_t *
slurp(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf;
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

/* Resident set size now, in MiB (from /proc/self/statm). */
static double
rss_mib(void)
{
	long		pages = 0,
				resident = 0;
	FILE	   *f = fopen("/proc/self/statm", "r");

	if (f)
	{
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (double) sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/*
 * Peak resident set (VmHWM) of this process in MiB. Not getrusage's ru_maxrss:
 * Linux carries that across exec, so under a large parent (the peers script
 * runs this binary in its rounds) it reports the parent's peak.
 */
static double
peak_rss_mib(void)
{
	char		line[256];
	long		kib = 0;
	FILE	   *f = fopen("/proc/self/status", "r");

	if (f)
	{
		while (fgets(line, sizeof line, f))
			if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
				break;
		fclose(f);
	}
	return kib / 1024.0;
}

/* Forward FLOPs of a batch: dense layers per token plus attention per sequence. */
static double
flops(const BtBertConfig *c, const int32_t *offsets, int n_seq)
{
	double		H = c->hidden_size,
				I = c->intermediate_size,
				f = 0;

	for (int s = 0; s < n_seq; s++)
	{
		double		S = offsets[s + 1] - offsets[s];

		f += c->num_layers * (2 * S * (3 * H * H + H * H + 2 * H * I) + 4 * S * S * H);
	}
	return f;
}

/* Token ids of one mail, at most 254 of them (room for [CLS] and [SEP] in 256). */
typedef struct Collect
{
	int32_t    *dst;
	int			n;
} Collect;

static int
collect(void *arg, int32_t id)
{
	Collect    *c = arg;

	c->dst[c->n++] = id;
	return c->n >= 254;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Whether SHAPES (a comma-separated list of labels, unset for all) names this shape. */
static int
shape_wanted(const char *label)
{
	const char *want = getenv("SHAPES");
	size_t		n = strlen(label);

	for (const char *p = want; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p))
		if (strncmp(p, label, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return 1;
	return want == NULL || *want == '\0';
}

/* Time forward passes over one batch; prints a JSON line. */
static void
run_shape(const BtBertModel *m, const char *label, int n_seq, const int32_t *offsets,
		  const int32_t *ids, double seconds)
{
	BtBatch		b = {n_seq, offsets, ids, NULL};
	int			width = m->cfg.hidden_size > m->num_classes ? m->cfg.hidden_size : m->num_classes;
	float	   *mean = malloc((size_t) n_seq * width * sizeof(float));
	BtForwardOut out = {NULL, NULL, mean, NULL};
	const char *output = getenv("OUTPUT");

	if (output && strcmp(output, "logits") == 0)
	{
		/* what classify() asks for: the classifier's logits and nothing else */
		out.mean = NULL;
		out.logits = mean;
	}
	double		times[1000],
				start;
	int			runs = 0;
	char		err[256];

	if (bt_model_forward(m, &b, &out, err, sizeof err) != 0)	/* warm-up */
	{
		fprintf(stderr, "bench_encoder: %s\n", err);
		exit(1);
	}
	start = now();
	while (runs < 1000 && (runs < 2 || now() - start < seconds))
	{
		double		t0 = now();

		bt_model_forward(m, &b, &out, err, sizeof err);
		times[runs++] = now() - t0;
	}
	qsort(times, runs, sizeof(double), cmp_double);
	printf("{\"impl\": \"%s\", \"shape\": \"%s\", \"batch\": %d, \"tokens\": %d, "
		   "\"runs\": %d, \"seconds\": %.6f, \"seq_per_s\": %.2f, \"gflop_per_s\": %.2f}\n",
		   impl_name(m), label, n_seq, offsets[n_seq], runs, times[runs / 2], n_seq / times[runs / 2],
		   flops(&m->cfg, offsets, n_seq) / times[runs / 2] / 1e9);
	fflush(stdout);
	free(mean);
}

int
main(int argc, char **argv)
{
	char		path[1024],
				err[512];
	size_t		clen,
				wlen,
				mlen;
	uint8_t    *cjson,
			   *weights,
			   *mails;
	BtSafetensors *st;
	BtBertConfig cfg;
	BtBertModel *m;
	double		seconds = argc > 4 ? atof(argv[4]) : 3.0;
	static const int batches[] = {1, 8, 32};
	static const int lengths[] = {16, 64, 128, 512};

	if (argc < 4)
	{
		fprintf(stderr, "usage: bench_encoder MODEL_DIR VOCAB MAILS_TXT [SECONDS_PER_SHAPE]\n");
		return 2;
	}
	snprintf(path, sizeof path, "%s/config.json", argv[1]);
	cjson = slurp(path, &clen);
	snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
	weights = slurp(path, &wlen);
	if (!(st = bt_safetensors_parse(weights, wlen, err, sizeof err)) ||
		bt_config_parse((char *) cjson, clen, &cfg, err, sizeof err) != 0 ||
		!(m = bt_model_load(&cfg, st, NULL, 0, err, sizeof err)))
	{
		fprintf(stderr, "bench_encoder: %s\n", err);
		return 1;
	}
	bt_safetensors_free(st);
	free(weights);				/* the model holds its own float32 copy */
	if ((getenv("PACKED") == NULL || strcmp(getenv("PACKED"), "0") != 0) && bt_model_pack(m, err, sizeof err) != 0)
	{
		fprintf(stderr, "bench_encoder: %s\n", err);
		return 1;
	}
	if (getenv("PRECISION") && strcmp(getenv("PRECISION"), "bf16") == 0 && bt_model_to_bf16(m, err, sizeof err) != 0)
	{
		fprintf(stderr, "bench_encoder: %s\n", err);
		return 1;
	}
	if (getenv("PRECISION") && strcmp(getenv("PRECISION"), "int8") == 0)
	{
		if (bt_model_quantize(m, err, sizeof err) != 0)
		{
			fprintf(stderr, "bench_encoder: %s\n", err);
			return 1;
		}
		if (m->n_q8 == 0)
		{
			fprintf(stderr, "bench_encoder: PRECISION=int8 needs AVX2 and weights in whole panels\n");
			return 1;
		}
	}
	printf("{\"impl\": \"%s\", \"memory\": true, \"checkpoint_mib\": %.1f, "
		   "\"params_mib\": %.1f, \"peak_rss_mib\": %.1f, \"rss_after_load_mib\": %.1f}\n",
		   impl_name(m), wlen / 1048576.0, m->num_params * 4 / 1048576.0, peak_rss_mib(), rss_mib());

	srand(42);
	for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++)
		for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
		{
			int			B = batches[bi],
						S = lengths[li];
			int32_t    *ids = malloc((size_t) B * S * sizeof(int32_t));
			int32_t    *offsets = malloc((B + 1) * sizeof(int32_t));
			char		label[32];

			if (S > m->cfg.max_position || (getenv("MAX_LEN") && S > atoi(getenv("MAX_LEN"))))
				continue;
			for (int i = 0; i < B * S; i++)
				ids[i] = 1000 + rand() % (m->cfg.vocab_size - 1000);
			for (int s = 0; s <= B; s++)
				offsets[s] = s * S;
			snprintf(label, sizeof label, "b%d_s%d", B, S);
			if (shape_wanted(label))
				run_shape(m, label, B, offsets, ids, seconds);
			free(ids);
			free(offsets);
		}

	/* the real batch: 32 mails, tokenized and truncated to 256 */
	{
		BtVocab    *v = bt_vocab_load(argv[2], err, sizeof err);
		BtTokenizerOptions o = bt_tokenizer_default_options();
		BtTokenizer *tk = v ? bt_tokenizer_create(v, &o, err, sizeof err) : NULL;
		int32_t    *ids = malloc(32 * 256 * sizeof(int32_t));
		int32_t		offsets[33] = {0};
		char	   *p;
		int			n = 0;

		if (!tk)
		{
			fprintf(stderr, "bench_encoder: %s\n", err);
			return 1;
		}
		mails = slurp(argv[3], &mlen);
		p = (char *) mails;
		while (n < 32 && *p)
		{
			char	   *nl = strchr(p, '\n');
			size_t		len = copy_unescape(p, nl ? (size_t) (nl - p) : strlen(p));
			int			base = offsets[n];
			int			count = 1;
			Collect		c = {ids + base + 1, 0};
			BtSink		sink;

			ids[base] = tk->cls_id;
			memset(&sink, 0, sizeof sink);
			sink.emit = collect;
			sink.arg = &c;
			bt_tokenize(tk, p, len, &sink);
			count += c.n;
			ids[base + count++] = tk->sep_id;
			offsets[n + 1] = base + count;
			n++;
			p = nl ? nl + 1 : p + strlen(p);
		}
		if (shape_wanted("mails32_max256"))
			run_shape(m, "mails32_max256", n, offsets, ids, seconds);
		bt_tokenizer_free(tk);
		free(ids);
		free(mails);
	}
	bt_model_free(m);
	free(cjson);
	return 0;
}
