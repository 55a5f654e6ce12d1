/*
 * bench_gpu.c - throughput and latency of the CUDA backend's forward pass.
 *
 *   bench_gpu MODEL [PRECISION [SECONDS_PER_SHAPE]]
 *
 * MODEL is a model directory, or "bert-base" / "minilm" for a randomly
 * initialized model of that shape (speed does not depend on the weights;
 * the peers in bench_hf.py use random weights too). PRECISION is bf16
 * (default) or fp32. Shapes, all through the engine's door to the GPU
 * (pgbert_gpu.so by dlopen, as pgbert_engine runs it):
 *   - batch 1, 8, 32, 128, 512 at 128 tokens, logits (the classify path);
 *   - "mixed512": 512 rows of lengths 1 + round(127 u^1.5), u = (i + 0.5) /
 *     512 (mean 51.8, max 128), packed (bench_hf.py pads them to 128);
 *   - batch 1 at 128 tokens with CUDA graphs off (the launch cost they save);
 *   - in bf16, batch 1, 32, 512 and mixed512 again with the attention forced
 *     onto cuBLAS length buckets ("impl": "pgbert buckets"; the default is the
 *     fused kernel where its self-test passed);
 *   - "train_b32_s128": fine-tuning steps (accumulate + AdamW step) of 32
 *     sequences of 128 tokens, dropout from the config, in the precision
 *     (TFLOP/s counts 3x the forward pass).
 * Each shape: 3 warm-up runs (the second captures its graph), then runs for
 * SECONDS_PER_SHAPE (default 2, at least 10 runs); the median run gives
 * sequences/s, ms per batch and TFLOP/s of useful work (dense layers and
 * attention over real tokens, 2 FLOPs per multiply-add). One JSON line per
 * shape, "impl": "pgbert".
 */
#include <math.h>

#include "gpu_backend.h"
#include "gpu_testing.h"
#include "gpu_train_backend.h"
#include "train.h"

static const char *const bert_base_config =
	"{\"hidden_size\": 768, \"num_hidden_layers\": 12, \"num_attention_heads\": 12, "
	"\"intermediate_size\": 3072, \"vocab_size\": 30522, \"max_position_embeddings\": 512, "
	"\"type_vocab_size\": 2, \"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-12, \"pad_token_id\": 0}";
static const char *const minilm_config =
	"{\"hidden_size\": 384, \"num_hidden_layers\": 6, \"num_attention_heads\": 12, "
	"\"intermediate_size\": 1536, \"vocab_size\": 30522, \"max_position_embeddings\": 512, "
	"\"type_vocab_size\": 2, \"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-12, \"pad_token_id\": 0}";

/* The "impl" of the JSON lines: "pgbert", or "pgbert buckets" with the attention forced to cuBLAS buckets. */
static const char *impl = "pgbert";

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

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Times forward passes of one batch; prints a JSON line. */
static void
run_shape(BtGpu *g, PgbertGpuModel *gm, const BtBertModel *m, const char *model, const char *precision,
		  const char *label, int n_seq, const int32_t *offsets, const int32_t *ids, double seconds)
{
	BtBatch		b = {n_seq, offsets, ids, NULL};
	float	   *out = malloc(sizeof(float) * n_seq * m->num_classes);
	double	   *times = malloc(sizeof(double) * 100000),
				start,
				med;
	int			runs = 0;
	char		err[512];

	for (int i = 0; i < 3; i++)
		if (bt_gpu_forward(g, gm, &b, PGBERT_GPU_WANT_LOGITS, out, err, sizeof err) != 0)
		{
			printf("{\"impl\": \"%s\", \"model\": \"%s\", \"shape\": \"%s\", \"error\": \"%s\"}\n", impl, model,
				   label, err);
			free(out);
			free(times);
			return;
		}
	start = now_seconds();
	while (runs < 100000 && (runs < 10 || now_seconds() - start < seconds))
	{
		double		t0 = now_seconds();

		bt_gpu_forward(g, gm, &b, PGBERT_GPU_WANT_LOGITS, out, err, sizeof err);
		times[runs++] = now_seconds() - t0;
	}
	qsort(times, runs, sizeof(double), cmp_double);
	med = times[runs / 2];
	printf("{\"impl\": \"%s\", \"model\": \"%s\", \"precision\": \"%s\", \"shape\": \"%s\", \"batch\": %d, "
		   "\"tokens\": %d, \"runs\": %d, \"ms\": %.4f, \"p90_ms\": %.4f, \"seq_per_s\": %.1f, "
		   "\"tflop_per_s\": %.1f}\n",
		   impl, model, precision, label, n_seq, offsets[n_seq], runs, med * 1e3, times[runs * 9 / 10] * 1e3,
		   n_seq / med, flops(&m->cfg, offsets, n_seq) / med / 1e12);
	fflush(stdout);
	free(out);
	free(times);
}

/* Times fine-tuning steps of 32 x 128 tokens; prints a JSON line. */
static void
run_training(BtGpu *g, const BtBertModel *m, const char *model, const char *precision, const int32_t *ids,
			 double seconds)
{
	BtTrainOptions o = bt_train_default_options(&m->cfg);
	char		err[512];
	BtGpuTrainer *t = bt_gpu_trainer_create(g, m, &o, err, sizeof err);
	int32_t		offsets[33],
				labels[32];
	BtBatch		b = {32, offsets, ids, NULL};
	double	   *times = malloc(sizeof(double) * 100000),
				start,
				med;
	int			runs = 0;
	float		loss;

	for (int s = 0; s <= 32; s++)
		offsets[s] = s * 128;
	for (int s = 0; s < 32; s++)
		labels[s] = s % 2;
	for (int i = 0; t != NULL && i < 3; i++)
		if (bt_gpu_trainer_accumulate(t, &b, labels, 1.0f, &loss, err, sizeof err) != 0 ||
			bt_gpu_trainer_step(t, NULL, NULL, err, sizeof err) != 0)
		{
			bt_gpu_trainer_free(t);
			t = NULL;
		}
	if (t == NULL)
	{
		printf("{\"impl\": \"pgbert\", \"model\": \"%s\", \"shape\": \"train_b32_s128\", \"error\": \"%s\"}\n",
			   model, err);
		free(times);
		return;
	}
	start = now_seconds();
	while (runs < 100000 && (runs < 10 || now_seconds() - start < seconds))
	{
		double		t0 = now_seconds();

		bt_gpu_trainer_accumulate(t, &b, labels, 1.0f, &loss, err, sizeof err);
		bt_gpu_trainer_step(t, NULL, NULL, err, sizeof err);
		times[runs++] = now_seconds() - t0;
	}
	qsort(times, runs, sizeof(double), cmp_double);
	med = times[runs / 2];
	printf("{\"impl\": \"pgbert\", \"model\": \"%s\", \"precision\": \"%s\", \"shape\": \"train_b32_s128\", "
		   "\"batch\": 32, \"tokens\": 4096, \"runs\": %d, \"ms\": %.4f, \"seq_per_s\": %.1f, "
		   "\"tflop_per_s\": %.1f, \"loss\": %.4f}\n",
		   model, precision, runs, med * 1e3, 32 / med, 3 * flops(&m->cfg, offsets, 32) / med / 1e12, loss);
	fflush(stdout);
	bt_gpu_trainer_free(t);
	free(times);
}

int
main(int argc, char **argv)
{
	const char *model = argc > 1 ? argv[1] : "minilm";
	const char *precision = argc > 2 ? argv[2] : "bf16";
	double		seconds = argc > 3 ? atof(argv[3]) : 2.0;
	char		err[512];
	BtGpu	   *g;
	BtBertModel *m;
	PgbertGpuModel *gm;
	static const int batches[] = {1, 8, 32, 128, 512};
	int32_t    *offsets = malloc(sizeof(int32_t) * 513),
			   *ids = malloc(sizeof(int32_t) * 512 * 128);
	char		label[64];

	if (argc < 2)
	{
		fprintf(stderr, "usage: bench_gpu MODEL_DIR|bert-base|minilm [bf16|fp32 [SECONDS_PER_SHAPE]]\n");
		return 2;
	}
	g = bt_gpu_open(NULL, precision, 0, err, sizeof err);
	if (g == NULL)
	{
		printf("{\"impl\": \"pgbert\", \"skipped\": \"%s\"}\n", err);
		return 0;
	}
	if (strcmp(model, "bert-base") == 0 || strcmp(model, "minilm") == 0)
	{
		const char *json = strcmp(model, "bert-base") == 0 ? bert_base_config : minilm_config;
		BtBertConfig cfg;

		if (bt_config_parse(json, strlen(json), &cfg, err, sizeof err) != 0 ||
			(m = bt_model_init_random(&cfg, 2, 42, err, sizeof err)) == NULL)
		{
			fprintf(stderr, "bench_gpu: %s\n", err);
			return 1;
		}
	}
	else
	{
		m = load_model_dir(model);
		if (!m->has_classifier && bt_model_reset_head(&m, 2, 42, err, sizeof err) != 0)
		{
			fprintf(stderr, "bench_gpu: %s\n", err);
			return 1;
		}
	}
	gm = bt_gpu_upload(g, m, err, sizeof err);
	if (gm == NULL)
	{
		fprintf(stderr, "bench_gpu: %s\n", err);
		return 1;
	}
	fprintf(stderr, "bench_gpu: %s, %s\n", bt_gpu_describe(g), model);
	srand(42);
	for (int i = 0; i < 512 * 128; i++)
		ids[i] = 1000 + rand() % (m->cfg.vocab_size - 1000);

	for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++)
	{
		for (int s = 0; s <= batches[bi]; s++)
			offsets[s] = s * 128;
		snprintf(label, sizeof label, "b%d_s128", batches[bi]);
		run_shape(g, gm, m, model, precision, label, batches[bi], offsets, ids, seconds);
	}
	offsets[0] = 0;
	for (int i = 0; i < 512; i++)
		offsets[i + 1] = offsets[i] + 1 + (int) lround(127.0 * pow((i + 0.5) / 512.0, 1.5));
	run_shape(g, gm, m, model, precision, "mixed512", 512, offsets, ids, seconds);

	bt_gpu_use_graphs(g, gm, false);
	offsets[0] = 0;
	offsets[1] = 128;
	run_shape(g, gm, m, model, precision, "b1_s128_nographs", 1, offsets, ids, seconds);
	bt_gpu_free_model(g, gm);

	/* the same pass with attention on cuBLAS length buckets (the bf16 default is the fused kernel) */
	if (strcmp(precision, "bf16") == 0)
	{
		setenv("PGBERT_GPU_ATTENTION", "buckets", 1);
		gm = bt_gpu_upload(g, m, err, sizeof err);
		unsetenv("PGBERT_GPU_ATTENTION");
		impl = "pgbert buckets";
		if (gm == NULL)
			printf("{\"impl\": \"%s\", \"model\": \"%s\", \"error\": \"%s\"}\n", impl, model, err);
		for (int bi = 0; gm != NULL && bi < 3; bi++)
		{
			int			B = bi == 0 ? 1 : bi == 1 ? 32 : 512;

			for (int s = 0; s <= B; s++)
				offsets[s] = s * 128;
			snprintf(label, sizeof label, "b%d_s128", B);
			run_shape(g, gm, m, model, precision, label, B, offsets, ids, seconds);
		}
		offsets[0] = 0;
		for (int i = 0; gm != NULL && i < 512; i++)
			offsets[i + 1] = offsets[i] + 1 + (int) lround(127.0 * pow((i + 0.5) / 512.0, 1.5));
		if (gm != NULL)
			run_shape(g, gm, m, model, precision, "mixed512", 512, offsets, ids, seconds);
		bt_gpu_free_model(g, gm);
		impl = "pgbert";
	}

	run_training(g, m, model, precision, ids, seconds);
	bt_model_free(m);
	bt_gpu_close(g);
	free(offsets);
	free(ids);
	return 0;
}
