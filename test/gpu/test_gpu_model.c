/*
 * test_gpu_model.c - the CUDA backend's forward pass against the CPU engine.
 *
 *   test_gpu_model FIXTURE_MODELS_DIR [MINILM_DIR VOCAB MAILS_TXT]
 *
 * Through the engine's own door (src/engine/gpu_backend.h, pgbert_gpu.so by
 * dlopen; PGBERT_GPU_LIBRARY names it outside an installation):
 *   - fp32 on every tiny fixture model: logits, pooler, mean and [CLS] rows of
 *     mixed-length batches (lengths 1 to max_position, several attention
 *     buckets) within encoder_tolerance of the CPU engine (below);
 *   - CUDA graph replays (second and third run of a shape) give the first
 *     run's result, and so does running with graphs off;
 *   - bad ids are refused, a batch past pgbert.gpu_memory's bound fails
 *     alone ("out of gpu memory") and the next batch runs;
 *   - the fused attention kernel's self-test (gpu_flash.cu) against a plain
 *     fp32 reference, through a graph replay too, on both head sizes;
 *   - with MiniLM: fp32 mean embeddings within encoder_tolerance of the CPU
 *     engine at 128 and 512 tokens, and bf16 logits (MiniLM plus a seeded
 *     2-class head) within 2e-2 of fp32 with >= 99.9% argmax agreement on
 *     every mail, with the default attention and each one forced
 *     (PGBERT_GPU_ATTENTION).
 * Tolerances: fp32 against the CPU, and graph replays against eager runs (cuBLAS
 * may pick other kernels, so other summation orders, under capture), are
 * test/engine/tolerance.h's encoder_tolerance: the model's depth, its longest
 * float32 sum (hidden, intermediate, or the batch's longest sequence in the
 * attention's P V), at the scale of the hidden state or the output, whichever
 * is larger. The bf16 bounds (2e-2) are not derived: see check_flash and
 * check_minilm.
 * Without a device it prints why and "no device, skipped", and exits 0.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>

#include "gpu_backend.h"
#include "gpu_testing.h"
#include "tolerance.h"
#include "train.h"

static uint64_t rng = 0x853c49e6748fea9bULL;

static int
rand_below(int n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (int) ((rng >> 33) % (uint64_t) n);
}

static double
max_abs_diff(const float *a, const float *b, size_t n)
{
	double		d = 0.0;

	for (size_t i = 0; i < n; i++)
	{
		double		e = fabs((double) a[i] - b[i]);

		if (!(e <= d))			/* NaN counts as the largest difference */
			d = isnan(e) ? INFINITY : e;
	}
	return d;
}

/*
 * How far a float32 GPU pass may be from the CPU engine's (or from another
 * GPU pass that sums in another order) on batch b, whose reference output
 * holds n values: encoder_tolerance for the model's layers and longest sum
 * (hidden, intermediate, the longest sequence: P V sums over its keys), at
 * the scale of the CPU's hidden state or of the output, whichever is larger
 * (the pooler, the head and mean pooling inherit the hidden state's errors).
 */
static double
parity_tolerance(const BtBertModel *m, const BtBatch *b, const float *ref, size_t n)
{
	BtForwardOut out;
	char		err[512];
	int			H = m->cfg.hidden_size,
				k = H > m->cfg.intermediate_size ? H : m->cfg.intermediate_size;
	size_t		ntok = (size_t) b->offsets[b->n_seq];
	double		scale = 0.0;

	memset(&out, 0, sizeof out);
	out.hidden = malloc(sizeof(float) * (ntok ? ntok : 1) * H);
	if (bt_model_forward(m, b, &out, err, sizeof err) != 0)
	{
		fprintf(stderr, "cpu forward: %s\n", err);
		exit(1);
	}
	for (size_t i = 0; i < ntok * H; i++)
		scale = fmax(scale, fabs(out.hidden[i]));
	free(out.hidden);
	for (size_t i = 0; i < n; i++)
		scale = fmax(scale, fabs(ref[i]));
	for (int s = 0; s < b->n_seq; s++)
		if (b->offsets[s + 1] - b->offsets[s] > k)
			k = b->offsets[s + 1] - b->offsets[s];
	return encoder_tolerance(m->cfg.num_layers, k, scale);
}

/* CPU engine rows of want for batch b (the reference). */
static void
cpu_rows(const BtBertModel *m, const BtBatch *b, int want, float *rows)
{
	BtForwardOut out;
	char		err[512];
	int			H = m->cfg.hidden_size;
	float	   *hidden = NULL;

	memset(&out, 0, sizeof out);
	if (want == PGBERT_GPU_WANT_LOGITS)
		out.logits = rows;
	else if (want == PGBERT_GPU_WANT_MEAN)
		out.mean = rows;
	else if (want == PGBERT_GPU_WANT_POOLER)
		out.pooled = rows;
	else
		out.hidden = hidden = malloc(sizeof(float) * b->offsets[b->n_seq] * H);
	if (bt_model_forward(m, b, &out, err, sizeof err) != 0)
	{
		fprintf(stderr, "cpu forward: %s\n", err);
		exit(1);
	}
	if (hidden)
	{
		for (int s = 0; s < b->n_seq; s++)
			memcpy(rows + (size_t) s * H, hidden + (size_t) b->offsets[s] * H, sizeof(float) * H);
		free(hidden);
	}
}

static const char *const want_names[] = {"logits", "mean", "cls", "pooler"};

/* Every output of one fixture model on random mixed-length batches, fp32, against the CPU. */
static void
check_fixture(BtGpu *g, const char *dir)
{
	BtBertModel *m = load_model_dir(dir);
	char		err[512];
	PgbertGpuModel *gm = bt_gpu_upload(g, m, err, sizeof err);
	int			H = m->cfg.hidden_size,
				maxlen = m->cfg.max_position;

	check(gm != NULL, "%s: uploaded (%s)", dir, gm ? "ok" : err);
	if (gm == NULL)
	{
		bt_model_free(m);
		return;
	}
	for (int trial = 0; trial < 3; trial++)
	{
		int			n_seq = trial == 0 ? 1 : trial == 1 ? 7 : 40;
		int32_t    *offsets = malloc(sizeof(int32_t) * (n_seq + 1));
		int32_t    *ids;
		BtBatch		b;

		offsets[0] = 0;
		for (int s = 0; s < n_seq; s++)
		{
			/* lengths 1 and the maximum always, the rest spread over buckets */
			int			len = s == 0 ? maxlen : s == 1 ? 1 : 1 + rand_below(maxlen);

			offsets[s + 1] = offsets[s] + len;
		}
		ids = malloc(sizeof(int32_t) * offsets[n_seq]);
		for (int t = 0; t < offsets[n_seq]; t++)
			ids[t] = rand_below(m->cfg.vocab_size);
		b.n_seq = n_seq;
		b.offsets = offsets;
		b.ids = ids;
		b.type_ids = NULL;
		for (int want = 0; want < 4; want++)
		{
			int			cols = want == PGBERT_GPU_WANT_LOGITS ? m->num_classes : H;
			float	   *ref,
					   *got;
			int			rc;
			double		tol;

			if ((want == PGBERT_GPU_WANT_LOGITS && !m->has_classifier) ||
				(want == PGBERT_GPU_WANT_POOLER && !m->has_pooler))
				continue;
			ref = malloc(sizeof(float) * n_seq * cols);
			got = malloc(sizeof(float) * n_seq * cols);
			for (int i = 0; i < n_seq * cols; i++)
				got[i] = NAN;	/* poison: every element must be written */
			cpu_rows(m, &b, want, ref);
			tol = parity_tolerance(m, &b, ref, (size_t) n_seq * cols);
			rc = bt_gpu_forward(g, gm, &b, want, got, err, sizeof err);
			check(rc == 0 && max_abs_diff(ref, got, (size_t) n_seq * cols) <= tol,
				  "%s: fp32 %s of %d sequences (%d tokens) within %.2g of the cpu: %.3g%s%s", dir,
				  want_names[want], n_seq, offsets[n_seq], tol,
				  rc == 0 ? max_abs_diff(ref, got, (size_t) n_seq * cols) : -1.0, rc ? " " : "", rc ? err : "");
			free(ref);
			free(got);
		}
		free(offsets);
		free(ids);
	}
	bt_gpu_free_model(g, gm);
	bt_model_free(m);
}

/* Graph capture and replay give the eager result; errors leave the model usable. */
static void
check_graphs_and_errors(BtGpu *g, const char *dir)
{
	BtBertModel *m = load_model_dir(dir);
	char		err[512];
	PgbertGpuModel *gm = bt_gpu_upload(g, m, err, sizeof err);
	int32_t		offsets[4] = {0, 5, 17, 20};
	int32_t		ids[20];
	BtBatch		b = {3, offsets, ids, NULL};
	int			C = m->num_classes;
	float		first[3 * 64],
				again[3 * 64];
	int			ok = 1;
	double		tol;

	if (gm == NULL)
	{
		check(0, "%s: upload for the graph checks: %s", dir, err);
		bt_model_free(m);
		return;
	}
	for (int i = 0; i < 20; i++)
		ids[i] = rand_below(m->cfg.vocab_size);
	ok = bt_gpu_forward(g, gm, &b, PGBERT_GPU_WANT_LOGITS, first, err, sizeof err) == 0;
	/* the same kernels; cuBLAS may sum in another order under capture */
	tol = ok ? parity_tolerance(m, &b, first, 3 * C) : 0.0;
	for (int run = 0; run < 3 && ok; run++)
	{
		for (int i = 0; i < 3 * C; i++)
			again[i] = NAN;
		ok = bt_gpu_forward(g, gm, &b, PGBERT_GPU_WANT_LOGITS, again, err, sizeof err) == 0 &&
			max_abs_diff(first, again, 3 * C) <= tol;
	}
	check(ok, "a shape's captured graph (runs 2-4) replays the eager run's logits (within %.2g)%s%s", tol,
		  ok ? "" : ": ", ok ? "" : err);

	/* new ids, same shape: the graph reads the new batch */
	{
		float		eager[3 * 64];

		for (int i = 0; i < 20; i++)
			ids[i] = rand_below(m->cfg.vocab_size);
		ok = bt_gpu_forward(g, gm, &b, PGBERT_GPU_WANT_LOGITS, again, err, sizeof err) == 0;
		bt_gpu_use_graphs(g, gm, false);
		ok = ok && bt_gpu_forward(g, gm, &b, PGBERT_GPU_WANT_LOGITS, eager, err, sizeof err) == 0 &&
			max_abs_diff(eager, again, 3 * C) <= parity_tolerance(m, &b, eager, 3 * C) &&
			max_abs_diff(first, again, 3 * C) > 0;
		check(ok, "a replay with other ids equals the eager pass on them");
		bt_gpu_use_graphs(g, gm, true);
	}

	/* refused input, then business as usual */
	ids[3] = m->cfg.vocab_size;
	check(bt_gpu_forward(g, gm, &b, PGBERT_GPU_WANT_LOGITS, again, err, sizeof err) != 0 &&
		  strstr(err, "vocabulary") != NULL, "an id past the vocabulary is refused: %s", err);
	ids[3] = 1;
	check(bt_gpu_forward(g, gm, &b, PGBERT_GPU_WANT_LOGITS, again, err, sizeof err) == 0,
		  "the next batch runs");
	bt_gpu_free_model(g, gm);
	bt_model_free(m);
}

/* A batch past the memory bound fails alone; the bound lifted, it runs. */
static void
check_memory_limit(const char *library, const char *dir)
{
	char		err[512];
	BtGpu	   *g = bt_gpu_open(library, "fp32", 0, err, sizeof err);
	BtBertModel *m = load_model_dir(dir);
	PgbertGpuModel *gm = g ? bt_gpu_upload(g, m, err, sizeof err) : NULL;
	int			n = 512,
				len = m->cfg.max_position;
	int32_t    *offsets = malloc(sizeof(int32_t) * (n + 1)),
			   *ids = malloc(sizeof(int32_t) * n * len);
	float	   *out = malloc(sizeof(float) * n * m->num_classes);
	BtBatch		b = {n, offsets, ids, NULL};
	int			rc;

	if (gm == NULL)
	{
		check(0, "memory limit: setup failed: %s", err);
		return;
	}
	for (int s = 0; s <= n; s++)
		offsets[s] = s * len;
	for (int t = 0; t < n * len; t++)
		ids[t] = rand_below(m->cfg.vocab_size);
	/* the bound: what is in use now plus one MiB */
	bt_gpu_set_memory_limit(g, bt_gpu_memory_used(g) + (1 << 20));
	rc = bt_gpu_forward(g, gm, &b, PGBERT_GPU_WANT_LOGITS, out, err, sizeof err);
	check(rc != 0 && bt_gpu_out_of_memory(err), "a batch past the memory bound fails: %s", rc ? err : "it ran");
	bt_gpu_set_memory_limit(g, 0);
	rc = bt_gpu_forward(g, gm, &b, PGBERT_GPU_WANT_LOGITS, out, err, sizeof err);
	check(rc == 0, "the bound lifted, the same batch runs%s%s", rc ? ": " : "", rc ? err : "");
	free(offsets);
	free(ids);
	free(out);
	bt_gpu_free_model(g, gm);
	bt_model_free(m);
	bt_gpu_close(g);
}

/* gpu_flash.cu's own device self-test (exported for this program): the fused kernel against a plain reference. */
static void
check_flash(const char *library)
{
	int			(*selftest) (int, const int *, int, int, unsigned, double *, char *, size_t);
	void	   *h = library ? dlopen(library, RTLD_NOW | RTLD_LOCAL) : NULL;
	static const int fixed[] = {1, 7, 64, 65, 128, 129, 300, 512};
	static const int mixed[] = {0, 3, 1, 0, 130, 64, 63, 2, 200, 17, 512, 1};
	int			many[256];
	static const int shapes[][2] = {{384, 12}, {768, 12}};

	if (h == NULL || (*(void **) (&selftest) = dlsym(h, "pgbert_gpu_flash_selftest")) == NULL)
	{
		check(0, "fused attention self-test: cannot find it in %s", library ? library : "(no library)");
		return;
	}
	for (int i = 0; i < 256; i++)
		many[i] = 1 + rand_below(128);
	for (int sh = 0; sh < 2; sh++)
		for (int c = 0; c < 3; c++)
		{
			const int  *lens = c == 0 ? fixed : c == 1 ? mixed : many;
			int			n = c == 0 ? 8 : c == 1 ? 12 : 256;
			double		e = INFINITY;
			char		err[512] = "";
			int			rc = selftest(n, lens, shapes[sh][0], shapes[sh][1], 7 + c, &e, err, sizeof err);

			/* 1: no device for it; only the host-emulated library says so with a device present */
			if (rc == 1)
			{
				printf("skip fused attention self-test: %s\n", err);
				dlclose(h);
				return;
			}

			/*
			 * Not derived: the self-test's q, k, v are bf16 in [-1.25, 1.25]
			 * against an fp32 reference on the same bf16 values. Rounding P
			 * and V (as the kernel's bf16 mma inputs) and the output costs at
			 * most 3 BF16_U 1.25 = 0.015; the bias-added q and k's rounding
			 * moves each score by up to 2 BF16_U sum|q k| / sqrt(d), 0.07 at d
			 * = 32, and the output by twice that times max|v|: a worst case
			 * of 0.19, loose enough to pass a wrong softmax scale. 2e-2 is
			 * kept (measured 2.6e-3 to 4.7e-3 under host emulation); a
			 * derived bound needs per-element errors the self-test does not
			 * return. Its graph replay is compared bit for bit.
			 */
			check(rc == 0 && e <= 2e-2, "fused attention, hidden %d, %d heads, %s: max error %.3g vs fp32 (<= 2e-2)%s%s",
				  shapes[sh][0], shapes[sh][1], c == 0 ? "lengths 1..512" : c == 1 ? "mixed lengths with empty ones" :
				  "256 sequences of 1..128", e, err[0] ? ": " : "", err);
		}
	dlclose(h);
}

/* MiniLM: fp32 against the CPU engine; bf16 against fp32 on every mail. */
static void
check_minilm(const char *library, const char *dir, const char *vocab, const char *mails)
{
	char		err[512];
	BtBertModel *m = load_model_dir(dir);
	BtGpu	   *g32 = bt_gpu_open(library, "fp32", 0, err, sizeof err),
			   *g16 = bt_gpu_open(library, "bf16", 0, err, sizeof err);
	PgbertGpuModel *m32,
			   *m16;
	int			H = m->cfg.hidden_size;
	Packed		p128 = tokenize_lines(mails, vocab, 128, -1),
				p512 = tokenize_lines(mails, vocab, 512, 16);
	int32_t    *offs = malloc(sizeof(int32_t) * (p128.n_seq + 1));
	int			C;

	/* a seeded 2-class head on the real encoder: the classifier the bf16 check compares */
	if (g32 == NULL || g16 == NULL || bt_model_reset_head(&m, 2, 42, err, sizeof err) != 0)
	{
		check(0, "minilm setup: %s", err);
		return;
	}
	C = m->num_classes;
	m32 = bt_gpu_upload(g32, m, err, sizeof err);
	m16 = m32 ? bt_gpu_upload(g16, m, err, sizeof err) : NULL;
	check(m32 && m16, "minilm uploaded in fp32 and bf16%s%s", m16 ? "" : ": ", m16 ? "" : err);
	if (m16 == NULL)
		return;

	/* fp32 mean embeddings: 64 mails at <= 128 tokens, 16 at <= 512 */
	for (int which = 0; which < 2; which++)
	{
		Packed	   *p = which == 0 ? &p128 : &p512;
		int			n = which == 0 ? 64 : p->n_seq;
		BtBatch		b = packed_slice(p, 0, n, offs);
		float	   *ref = malloc(sizeof(float) * n * H),
				   *got = malloc(sizeof(float) * n * H);
		int			rc;
		double		tol;

		cpu_rows(m, &b, PGBERT_GPU_WANT_MEAN, ref);
		tol = parity_tolerance(m, &b, ref, (size_t) n * H);
		rc = bt_gpu_forward(g32, m32, &b, PGBERT_GPU_WANT_MEAN, got, err, sizeof err);
		check(rc == 0 && max_abs_diff(ref, got, (size_t) n * H) <= tol,
			  "minilm fp32 mean embeddings of %d mails (<= %d tokens, %d in all) within %.2g of the cpu: %.3g",
			  n, which == 0 ? 128 : 512, b.offsets[n], tol, rc == 0 ? max_abs_diff(ref, got, (size_t) n * H) : -1.0);
		cpu_rows(m, &b, PGBERT_GPU_WANT_LOGITS, ref);
		tol = parity_tolerance(m, &b, ref, (size_t) n * C);
		rc = bt_gpu_forward(g32, m32, &b, PGBERT_GPU_WANT_LOGITS, got, err, sizeof err);
		check(rc == 0 && max_abs_diff(ref, got, (size_t) n * C) <= tol,
			  "minilm fp32 logits of the same mails within %.2g of the cpu: %.3g", tol,
			  rc == 0 ? max_abs_diff(ref, got, (size_t) n * C) : -1.0);
		free(ref);
		free(got);
	}

	/* bf16 against fp32 logits on every mail, in batches of 256: default, then each attention forced */
	for (int variant = 0; variant < 3; variant++)
	{
		static const char *const names[] = {"default attention", "cuBLAS buckets", "fused kernel"};
		PgbertGpuModel *mv = m16;
		int			agree = 0;
		double		worst = 0.0;

		if (variant > 0)
		{
			setenv("PGBERT_GPU_ATTENTION", variant == 1 ? "buckets" : "fused", 1);
			mv = bt_gpu_upload(g16, m, err, sizeof err);
			unsetenv("PGBERT_GPU_ATTENTION");
			if (mv == NULL)
			{
				check(0, "minilm bf16 upload with %s: %s", names[variant], err);
				continue;
			}
		}
		for (int first = 0; first < p128.n_seq; first += 256)
		{
			int			n = p128.n_seq - first < 256 ? p128.n_seq - first : 256;
			BtBatch		b = packed_slice(&p128, first, n, offs);
			float		ref[256 * 2],
						got[256 * 2];

			if (bt_gpu_forward(g32, m32, &b, PGBERT_GPU_WANT_LOGITS, ref, err, sizeof err) != 0 ||
				bt_gpu_forward(g16, mv, &b, PGBERT_GPU_WANT_LOGITS, got, err, sizeof err) != 0)
			{
				check(0, "minilm bf16 (%s) batch at mail %d: %s", names[variant], first, err);
				worst = INFINITY;
				break;
			}
			for (int s = 0; s < n; s++)
			{
				int			a32 = ref[s * C + 1] > ref[s * C],
							a16 = got[s * C + 1] > got[s * C];

				agree += a32 == a16;
			}
			if (max_abs_diff(ref, got, (size_t) n * C) > worst)
				worst = max_abs_diff(ref, got, (size_t) n * C);
		}
		/*
		 * Not derived: bf16 GEMM inputs round by BF16_U = 2^-8 each, and a
		 * worst-case or probabilistic bound over six layers comes to tenths
		 * of the logits' scale, more than the check would be worth; 2e-2
		 * stays an observed bound, and the argmax agreement is the check.
		 */
		check(worst <= 2e-2, "minilm bf16 (%s) logits within 2e-2 of fp32 on %d mails: %.3g", names[variant],
			  p128.n_seq, worst);
		check(agree * 1000 >= p128.n_seq * 999,
			  "minilm bf16 (%s) argmax agrees with fp32 on %d of %d mails (>= 99.9%%)", names[variant], agree,
			  p128.n_seq);
		if (variant > 0)
			bt_gpu_free_model(g16, mv);
	}
	free(offs);
	packed_free(&p128);
	packed_free(&p512);
	bt_gpu_free_model(g32, m32);
	bt_gpu_free_model(g16, m16);
	bt_gpu_close(g32);
	bt_gpu_close(g16);
	bt_model_free(m);
}

int
main(int argc, char **argv)
{
	char		err[512];
	const char *library = getenv("PGBERT_GPU_LIBRARY");
	BtGpu	   *g;
	DIR		   *d;
	struct dirent *e;
	char		sample[4096] = "";

	if (argc != 2 && argc != 5)
	{
		fprintf(stderr, "usage: test_gpu_model FIXTURE_MODELS_DIR [MINILM_DIR VOCAB MAILS_TXT]\n");
		return 2;
	}
	g = bt_gpu_open(library, "fp32", 0, err, sizeof err);
	if (g == NULL)
	{
		/* a library that is there but does not load is a build error, device or not */
		if (library != NULL && strstr(err, "no cuda device") == NULL)
		{
			printf("FAIL %s\n0 passed, 1 failed\n", err);
			return 1;
		}
		printf("gpu: %s\nno device, skipped\n", err);
		return 0;
	}
	printf("gpu: %s\n", bt_gpu_describe(g));
	d = opendir(argv[1]);
	if (d == NULL)
	{
		perror(argv[1]);
		return 2;
	}
	while ((e = readdir(d)) != NULL)
	{
		char		path[4096];
		FILE	   *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s/model.safetensors", argv[1], e->d_name);
		if ((f = fopen(path, "rb")) == NULL)
			continue;
		fclose(f);
		snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
		check_fixture(g, path);
		if (strstr(e->d_name, "cls") && sample[0] == '\0')
			snprintf(sample, sizeof sample, "%s", path);
	}
	closedir(d);
	if (sample[0])
	{
		check_graphs_and_errors(g, sample);
		check_memory_limit(library, sample);
	}
	bt_gpu_close(g);
	check_flash(library);
	if (argc == 5)
		check_minilm(library, argv[2], argv[3], argv[4]);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
