/*
 * fma_peak.c - the CPU's float32 FMA ceiling, for reading GFLOP/s figures.
 *
 *   fma_peak [THREADS]
 *
 * Each thread runs twelve independent chains of 8-wide fused multiply-adds
 * (enough to cover the FMA latency on two pipes) for about a second and
 * reports GFLOP/s, counting a multiply-add as two operations; the total is
 * what no GEMM on these cores can exceed. AVX2+FMA only.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 12
#define ROUNDS 100000000L

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Run the chains; returns GFLOP/s of this thread in *arg. */
__attribute__((target("avx2,fma")))
static void *
spin(void *arg)
{
	__m256		acc[CHAINS],
				a = _mm256_set1_ps(0.999999f),
				b = _mm256_set1_ps(1e-7f);
	float		sink = 0.0f;
	double		t0 = now(),
				t;

	for (int i = 0; i < CHAINS; i++)
		acc[i] = _mm256_set1_ps((float) i);
	for (long r = 0; r < ROUNDS; r++)
		for (int i = 0; i < CHAINS; i++)
			acc[i] = _mm256_fmadd_ps(acc[i], a, b);
	t = now() - t0;
	for (int i = 0; i < CHAINS; i++)
		sink += acc[i][0];
	*(double *) arg = ROUNDS * CHAINS * 16.0 / t / 1e9 + (sink == 12345.0f);	/* keep the chains */
	return NULL;
}

int
main(int argc, char **argv)
{
	int			n = argc > 1 ? atoi(argv[1]) : 1;
	pthread_t  *tid = calloc(n, sizeof(pthread_t));
	double	   *gflops = calloc(n, sizeof(double)),
				total = 0.0;

	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
	{
		fprintf(stderr, "fma_peak: this CPU has no AVX2+FMA\n");
		return 1;
	}
	for (int i = 0; i < n; i++)
		pthread_create(&tid[i], NULL, spin, &gflops[i]);
	for (int i = 0; i < n; i++)
	{
		pthread_join(tid[i], NULL);
		total += gflops[i];
	}
	printf("{\"fma_peak_threads\": %d, \"gflop_per_s\": %.1f, \"per_thread\": %.1f}\n", n, total, total / n);
	return 0;
}
