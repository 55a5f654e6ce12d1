/*
 * bench_gemm.c - the packed dense-layer kernel (src/engine/gemm.c) against
 * OpenBLAS sgemm on the encoder's GEMM shapes.
 *
 *   [SHAPES="T,O,K ..."] bench_gemm [SECONDS_PER_SHAPE [THREADS]]
 *
 * For each shape (T rows of input, O outputs, K inputs: MiniLM-L6 and
 * bert-base layers at 256, 512 and 4096 tokens) prints the best GFLOP/s of
 * bt_gemm_packed and of cblas_sgemm computing the same out = in W^T + b (the
 * bias copied in first, as the unpacked engine does). With THREADS > 1 every
 * thread computes the shape on rows of its own over the same weights, started
 * together, as the engine's chunk threads do at batch 32 (each chunk of 16
 * sequences of 16 tokens is 256 rows); a round lasts until the slowest is
 * done and counts THREADS times the work. Read against build/fma_peak THREADS.
 * Where the CPU has AVX512-BF16, a third column times bt_gemm_bf16 on the same
 * shape (bf16 products, float32 sums; its GFLOP/s count the same work). The
 * first line names the ISA path (cpu.h; PGBERT_CPU_PATH caps it). A last
 * column times bt_gemm_q8 (8-bit weights and inputs, pgbert.cpu_precision =
 * int8) on the same shape, its quantizing of the inputs included.
 * Run with OPENBLAS_NUM_THREADS=1.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas.h"
#include "cpu.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "gemm_q8.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
fill(float *x, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
	{
		seed = seed * 1103515245u + 12345u;
		x[i] = ((seed >> 9) & 0xffff) / 65536.0f - 0.5f;
	}
}

/* out = in W^T + b through OpenBLAS, w unpacked */
static void
blas_dense(float *out, const float *in, const float *w, const float *b, int T, int O, int K)
{
	for (int t = 0; t < T; t++)
		memcpy(out + (size_t) t * O, b, O * sizeof(float));
	bt_sgemm(BT_ROW_MAJOR, BT_NO_TRANS, BT_TRANS, T, O, K, 1.0f, in, K, w, K, 1.0f, out, O);
}

/* One shape: the weights every thread shares, and each thread's rows. */
typedef struct Shape
{
	int			T,
				O,
				K,
				impl;			/* 0: packed kernel, 1: OpenBLAS, 2: bf16 kernel, 3: int8 kernel */
	const float *w,				/* (O, K) as Hugging Face stores it */
			   *wp,				/* the same, packed */
			   *b;
	const BtBf16Weight *wb;		/* the same in bf16, or NULL */
	const BtQ8Weight *wq;		/* the same in 8 bits */
	pthread_barrier_t start,
				end;
	volatile bool stop;
} Shape;

/* A thread's own input and output rows. */
typedef struct Rows
{
	Shape	   *shape;
	float	   *in,
			   *out;
} Rows;

/* Compute the shape once on these rows with the current implementation. */
static void
run_once(const Rows *r)
{
	const Shape *s = r->shape;

	if (s->impl == 0)
		bt_gemm_packed(r->out, s->O, r->in, s->T, s->wp, s->b, s->O, s->K, 0, bt_gemm_panels(s->O), NULL);
	else if (s->impl == 2)
		bt_gemm_bf16(r->out, s->O, r->in, s->T, s->wb, s->b, 0, s->O / 16, NULL);
	else if (s->impl == 3)
		bt_gemm_q8(r->out, s->O, r->in, s->T, s->wq, s->b, 0, s->O / 16, NULL);
	else
		blas_dense(r->out, r->in, s->w, s->b, s->T, s->O, s->K);
}

/* Whether SHAPES (T,O,K triples separated by spaces, e.g. "512,2304,768 256,768,3072") names this shape; all when unset. */
static bool
wanted(int T, int O, int K)
{
	const char *list = getenv("SHAPES");
	char		name[48];
	size_t		n;

	if (list == NULL || *list == '\0')
		return true;
	n = (size_t) snprintf(name, sizeof(name), "%d,%d,%d", T, O, K);
	for (const char *at = strstr(list, name); at; at = strstr(at + 1, name))
		if ((at == list || at[-1] == ' ') && (at[n] == '\0' || at[n] == ' '))
			return true;
	return false;
}

/* A helper thread: one computation per round until told to stop. */
static void *
helper(void *arg)
{
	Rows	   *r = arg;

	for (;;)
	{
		pthread_barrier_wait(&r->shape->start);
		if (r->shape->stop)
			return NULL;
		run_once(r);
		pthread_barrier_wait(&r->shape->end);
	}
}

int
main(int argc, char **argv)
{
	static const int shapes[][3] = {
		{256, 1152, 384}, {256, 384, 384}, {256, 1536, 384}, {256, 384, 1536},
		{512, 1152, 384}, {512, 384, 384}, {512, 1536, 384}, {512, 384, 1536},
		{4096, 1536, 384}, {4096, 384, 1536},
		{256, 2304, 768}, {256, 768, 768}, {256, 3072, 768}, {256, 768, 3072},
		{512, 2304, 768}, {512, 768, 768}, {512, 3072, 768}, {512, 768, 3072},
	};
	double		seconds = argc > 1 ? atof(argv[1]) : 1.0;
	int			threads = argc > 2 ? atoi(argv[2]) : 1;
	char		err[256];

	if (threads < 1 || threads > 64)
	{
		fprintf(stderr, "bench_gemm: THREADS must be 1 to 64\n");
		return 1;
	}
	if (bt_blas_load(NULL, 1, err, sizeof(err)) != 0)
	{
		fprintf(stderr, "bench_gemm: %s\n", err);
		return 1;
	}
	bt_cpu_describe(err, sizeof(err));
	printf("%d thread(s), path %s\n\n", threads, err);
	printf("| T | O | K | packed GFLOP/s | OpenBLAS GFLOP/s | packed ÷ OpenBLAS | bf16 GFLOP/s | bf16 ÷ OpenBLAS |"
		   " int8 GOP/s | int8 ÷ OpenBLAS |\n"
		   "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
	{
		Shape		s = {.T = shapes[i][0], .O = shapes[i][1], .K = shapes[i][2]};

		if (!wanted(s.T, s.O, s.K))
			continue;
		int			T = s.T,
					O = s.O,
					K = s.K;
		float	   *w = aligned_alloc(64, (size_t) O * K * sizeof(float)),
				   *wp = aligned_alloc(64, (size_t) O * K * sizeof(float)),
				   *scratch = malloc((size_t) O * K * sizeof(float)),
				   *b = malloc(O * sizeof(float));
		Rows		rows[64];
		pthread_t	tid[64];
		double		best[4] = {0, 0, 0, 0},
					flop = 2.0 * T * O * K * threads;

		fill(w, (size_t) O * K, 2);
		fill(b, O, 3);
		memcpy(wp, w, (size_t) O * K * sizeof(float));
		bt_gemm_pack(wp, O, K, scratch);
		BtBf16Weight wb;
		void	   *wb_mem = aligned_alloc(64, bt_bf16_bytes(O, K));

		bt_bf16_convert(&wb, wb_mem, wp, O, K, 1);
		s.wb = &wb;
		BtQ8Weight	wq;
		void	   *wq_mem = aligned_alloc(64, bt_q8_bytes(O, K));

		bt_q8_quantize(&wq, wq_mem, w, O, K, 0);
		s.wq = &wq;
		s.w = w;
		s.wp = wp;
		s.b = b;
		pthread_barrier_init(&s.start, NULL, threads);
		pthread_barrier_init(&s.end, NULL, threads);
		for (int t = 0; t < threads; t++)
		{
			rows[t].shape = &s;
			rows[t].in = malloc((size_t) T * K * sizeof(float));
			rows[t].out = malloc((size_t) T * O * sizeof(float));
			fill(rows[t].in, (size_t) T * K, 1 + t);
			if (t > 0)
				pthread_create(&tid[t], NULL, helper, &rows[t]);
		}
		for (s.impl = 0; s.impl < 4; s.impl++)
		{
			if (s.impl == 2 && !bt_cpu_bf16())
				continue;
			double		start = now();

			while (now() - start < seconds)
			{
				double		t0 = now(),
							t;

				if (threads > 1)
					pthread_barrier_wait(&s.start);
				run_once(&rows[0]);
				if (threads > 1)
					pthread_barrier_wait(&s.end);
				t = now() - t0;
				if (flop / t / 1e9 > best[s.impl])
					best[s.impl] = flop / t / 1e9;
			}
		}
		s.stop = true;
		if (threads > 1)
			pthread_barrier_wait(&s.start);
		for (int t = 0; t < threads; t++)
		{
			if (t > 0)
				pthread_join(tid[t], NULL);
			free(rows[t].in);
			free(rows[t].out);
		}
		pthread_barrier_destroy(&s.start);
		pthread_barrier_destroy(&s.end);
		printf("| %d | %d | %d | %.1f | %.1f | %.2f× | ", T, O, K, best[0], best[1], best[0] / best[1]);
		if (best[2] > 0)
			printf("%.1f | %.2f× | ", best[2], best[2] / best[1]);
		else
			printf("– | – | ");
		printf("%.1f | %.2f× |\n", best[3], best[3] / best[1]);
		free(wq_mem);
		free(wb_mem);
		free(w);
		free(wp);
		free(scratch);
		free(b);
	}
	return 0;
}
