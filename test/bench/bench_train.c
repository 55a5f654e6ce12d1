/*
 * bench_train.c - engine fine-tuning throughput on all-MiniLM-L6-v2's shapes.
 *
 *   bench_train [THREADS [SECONDS [BATCH [LENGTH]]]]     defaults: 2, 20, 32, 128
 *
 * A randomly initialized BertForSequenceClassification with MiniLM-L6's sizes
 * (vocab 30522, hidden 384, 6 layers, 12 heads, intermediate 1536, 2 labels;
 * speed does not depend on the weights) trains on a fixed batch of BATCH
 * random sequences of LENGTH tokens: one bt_trainer_accumulate (forward with
 * dropout 0.1 and backward) plus one bt_trainer_step (clipping, AdamW) per
 * step. Modes: full fine-tuning, freeze_encoder (classifier only), and the
 * inference forward pass (bt_model_forward, logits) for comparison. Each mode
 * runs one warm-up step and then steps until SECONDS have passed (at least 3);
 * the median step time is reported as one JSON line per mode, with
 * sequences/s and peak RSS. OpenBLAS threads: THREADS. PRECISION=bf16
 * trains with bf16 products in the encoder's dense layers (refused without
 * AVX512-BF16); each line names the precision and the CPU path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "blas.h"
#include "config.h"
#include "cpu.h"
#include "model.h"
#include "train.h"

static const char *minilm_config =
"{\"vocab_size\": 30522, \"hidden_size\": 384, \"num_hidden_layers\": 6, \"num_attention_heads\": 12,"
" \"intermediate_size\": 1536, \"max_position_embeddings\": 512, \"type_vocab_size\": 2,"
" \"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-12, \"hidden_dropout_prob\": 0.1,"
" \"attention_probs_dropout_prob\": 0.1}";

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Peak resident set size so far, in MiB. */
static double
peak_rss_mib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss / 1024.0;
}

/* One step of a mode: 0 = full fine-tuning, 1 = classifier only, 2 = inference forward. */
static void
run_step(int mode, BtTrainer *t, BtBertModel *m, const BtBatch *b, const int32_t *labels, float *logits)
{
	char		err[256];
	float		loss;

	if (mode == 2)
	{
		BtForwardOut out;

		memset(&out, 0, sizeof out);
		out.logits = logits;
		if (bt_model_forward(m, b, &out, err, sizeof err) != 0)
		{
			fprintf(stderr, "bench_train: %s\n", err);
			exit(1);
		}
		return;
	}
	if (bt_trainer_accumulate(t, b, labels, 1.0f, &loss, err, sizeof err) != 0)
	{
		fprintf(stderr, "bench_train: %s\n", err);
		exit(1);
	}
	bt_trainer_step(t, NULL, NULL);
}

int
main(int argc, char **argv)
{
	int			threads = argc > 1 ? atoi(argv[1]) : 2;
	double		seconds = argc > 2 ? atof(argv[2]) : 20.0;
	int			batch = argc > 3 ? atoi(argv[3]) : 32,
				length = argc > 4 ? atoi(argv[4]) : 128;
	static const char *modes[] = {"finetune", "freeze_encoder", "inference_forward"};
	BtBertConfig cfg;
	BtBertModel *m;
	BtBatch		b;
	int32_t    *offsets,
			   *ids,
			   *labels;
	float	   *logits;
	char		err[256];
	unsigned	seed = 1;
	bool		bf16 = getenv("PRECISION") && strcmp(getenv("PRECISION"), "bf16") == 0;
	char		path[128];

	if (threads < 1 || batch < 1 || length < 1 || length > 512)
	{
		fprintf(stderr, "usage: bench_train [THREADS [SECONDS [BATCH [LENGTH]]]]\n");
		return 2;
	}
	if (bt_blas_load(NULL, threads, err, sizeof err) != 0 ||
		bt_config_parse(minilm_config, strlen(minilm_config), &cfg, err, sizeof err) != 0 ||
		(m = bt_model_init_random(&cfg, 2, 1, err, sizeof err)) == NULL)
	{
		fprintf(stderr, "bench_train: %s\n", err);
		return 1;
	}
	offsets = malloc((batch + 1) * sizeof(int32_t));
	ids = malloc((size_t) batch * length * sizeof(int32_t));
	labels = malloc(batch * sizeof(int32_t));
	logits = malloc(batch * 2 * sizeof(float));
	for (int s = 0; s <= batch; s++)
		offsets[s] = s * length;
	for (int i = 0; i < batch * length; i++)
	{
		seed = seed * 1103515245u + 12345u;
		ids[i] = i % length == 0 ? 101 : 1000 + (int) ((seed >> 8) % 29000);
	}
	for (int s = 0; s < batch; s++)
		labels[s] = s % 2;
	b.n_seq = batch;
	b.offsets = offsets;
	b.ids = ids;
	b.type_ids = NULL;

	bt_cpu_describe(path, sizeof path);
	for (int mode = 0; mode < 3; mode++)
	{
		BtTrainOptions o = bt_train_default_options(&m->cfg);
		BtTrainer  *t = NULL;
		double		times[10000],
					start,
					median;
		int			n = 0;

		o.learning_rate = 1e-5f;
		o.freeze_encoder = mode == 1;
		o.bf16 = bf16;
		if (mode < 2 && (t = bt_trainer_create(m, &o, err, sizeof err)) == NULL)
		{
			fprintf(stderr, "bench_train: %s\n", err);
			return 1;
		}
		run_step(mode, t, m, &b, labels, logits);	/* warm-up */
		start = now();
		while (n < 10000 && (n < 3 || now() - start < seconds))
		{
			double		t0 = now();

			run_step(mode, t, m, &b, labels, logits);
			times[n++] = now() - t0;
		}
		qsort(times, n, sizeof(double), cmp_double);
		median = times[n / 2];
		printf("{\"mode\": \"%s\", \"precision\": \"%s\", \"cpu_path\": \"%s\", \"threads\": %d, \"batch\": %d,"
			   " \"length\": %d, \"steps\": %d, \"median_step_s\": %.4f, \"seq_per_s\": %.2f, \"peak_rss_mib\": %.1f}\n",
			   modes[mode], bf16 && mode < 2 ? "bf16" : "fp32", path, threads, batch, length, n, median,
			   batch / median, peak_rss_mib());
		fflush(stdout);
		bt_trainer_free(t);
	}
	bt_model_free(m);
	free(offsets);
	free(ids);
	free(labels);
	free(logits);
	return 0;
}
