/*
 * test/gpu/test_gpu_gemm.c
 *     Standalone check of kernels/gpu.h: pgbert_gpu_sgemm against a naive
 *     CPU reference.  Plain C, no PostgreSQL.  Prints one line per check and
 *     "N passed, N failed"; exits nonzero on failure.  Without a CUDA device
 *     it prints "gpu: no device, skipped" and exits 0.
 *
 *     Tolerance: each element within gamma32(k + 2) of the sum of its terms'
 *     magnitudes (test/engine/tolerance.h), the worst case of float32
 *     rounding (no TF32) for k products summed in any order, alpha's product
 *     and beta C's sum; a wrong element is off by a part of that sum itself.
 *
 * Build (from the repository root):
 *   nvcc -O3 -std=c++17 -Xcompiler -fPIC <gencodes> -I kernels -c kernels/X.cu -o kernels/X.o
 *   gcc -std=c11 -Wall -Wextra -I kernels test/gpu/test_gpu_gemm.c \
 *       kernels/gpu_device.o kernels/gpu_gemm.o \
 *       -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcublas -lcudart -lm \
 *       -o test_gpu_gemm
 */
#include "gpu.h"
#include "../engine/tolerance.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int	n_passed = 0;
static int	n_failed = 0;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

/* Records and prints the outcome of one check. */
static void
report(int ok, const char *what, const char *detail)
{
	printf("%s: %s%s%s\n", ok ? "ok" : "FAIL", what,
		   detail && *detail ? " -- " : "", detail ? detail : "");
	if (ok)
		n_passed++;
	else
		n_failed++;
}

/* Deterministic uniform float in [-1, 1). */
static float
rand_unit(void)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float) ((double) (rng_state >> 40) / (double) (1ULL << 24)) * 2.0f - 1.0f;
}

/* Allocates rows x ld floats, filled with random values. */
static float *
rand_matrix(int rows, int ld)
{
	size_t		len = (size_t) rows * (size_t) ld;
	float	   *x = malloc((len ? len : 1) * sizeof(float));

	if (x == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	for (size_t i = 0; i < len; i++)
		x[i] = rand_unit();
	return x;
}

/*
 * Runs one GEMM on the GPU and compares with a double-precision triple loop.
 * Leading dimensions are the minimum plus pad; the C padding holds a
 * sentinel that must survive.  When beta == 0 the C payload starts as NaN,
 * which must not leak into the result.
 */
static void
check_gemm(PgbertGpuContext *ctx, int ta, int tb, int m, int n, int k,
		   float alpha, float beta, int pad)
{
	const float sentinel = 12345.0f;
	int			a_rows = ta ? k : m,
				a_cols = ta ? m : k;
	int			b_rows = tb ? n : k,
				b_cols = tb ? k : n;
	int			lda = (a_cols > 1 ? a_cols : 1) + pad;
	int			ldb = (b_cols > 1 ? b_cols : 1) + pad;
	int			ldc = (n > 1 ? n : 1) + pad;
	float	   *a = rand_matrix(a_rows, lda);
	float	   *b = rand_matrix(b_rows, ldb);
	float	   *c = rand_matrix(m, ldc);
	float	   *c0 = rand_matrix(m, ldc);
	char		errbuf[256] = "";
	char		what[160];
	char		detail[320] = "";
	double		worst = 0.0;
	int			ok = 1;

	/*
	 * Each term of an element passes through at most k + 2 roundings: its
	 * product (none with FMA), k - 1 additions in the longest chain of any
	 * blocking, alpha's product and beta C's addition. Relative to the sum
	 * of the magnitudes (mag below), the worst case gamma32(k + 2): 9.2e-5
	 * at k = 1536, the shapes the encoder uses.
	 */
	double		rel_tol = gamma32(k + 2);

	for (int i = 0; i < m; i++)
		for (int j = 0; j < ldc; j++)
		{
			float	   *x = &c[(size_t) i * ldc + j];

			if (j >= n)
				*x = sentinel;
			else if (beta == 0.0f)
				*x = NAN;
		}
	memcpy(c0, c, (size_t) m * ldc * sizeof(float));

	snprintf(what, sizeof(what),
			 "sgemm ta=%d tb=%d m=%d n=%d k=%d alpha=%g beta=%g pad=%d",
			 ta, tb, m, n, k, alpha, beta, pad);

	if (pgbert_gpu_sgemm(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb,
						 beta, c, ldc, errbuf, sizeof(errbuf)) != 0)
	{
		report(0, what, errbuf);
		goto out;
	}

	for (int i = 0; i < m && ok; i++)
	{
		for (int j = 0; j < ldc; j++)
		{
			double		got = c[(size_t) i * ldc + j];
			double		sum = 0.0,
						mag = 0.0,
						ref,
						err;

			if (j >= n)
			{
				if (got != sentinel)
				{
					snprintf(detail, sizeof(detail),
							 "padding c[%d][%d] overwritten", i, j);
					ok = 0;
					break;
				}
				continue;
			}
			for (int p = 0; p < k; p++)
			{
				double		av = ta ? a[(size_t) p * lda + i] : a[(size_t) i * lda + p];
				double		bv = tb ? b[(size_t) j * ldb + p] : b[(size_t) p * ldb + j];

				sum += av * bv;
				mag += fabs(av * bv);
			}
			ref = (double) alpha * sum;
			mag *= fabs((double) alpha);
			if (beta != 0.0f)
			{
				double		cv = c0[(size_t) i * ldc + j];

				ref += (double) beta * cv;
				mag += fabs((double) beta * cv);
			}
			err = fabs(got - ref);
			if (!(err <= rel_tol * (mag > 1e-30 ? mag : 1e-30)))
			{
				snprintf(detail, sizeof(detail),
						 "c[%d][%d] = %.9g, expected %.9g (scale %.3g)",
						 i, j, got, ref, mag);
				ok = 0;
				break;
			}
			if (mag > 0.0 && err / mag > worst)
				worst = err / mag;
		}
	}
	if (ok)
		snprintf(detail, sizeof(detail), "max rel err %.2e (bound %.2e)", worst, rel_tol);
	report(ok, what, detail);

out:
	free(a);
	free(b);
	free(c);
	free(c0);
}

/* Expects a call to fail with -1 and a non-empty message. */
static void
expect_fail(const char *what, int rc, const char *errbuf)
{
	char		detail[300];

	snprintf(detail, sizeof(detail), "rc=%d msg=\"%s\"", rc, errbuf);
	report(rc == -1 && errbuf[0] != '\0', what, detail);
}

static void
check_invalid(PgbertGpuContext *ctx)
{
	float		a[64],
				b[64],
				c[64];
	char		errbuf[256];
	int			rc;

	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	memset(c, 0, sizeof(c));

#define TRY(desc, call) \
	do { errbuf[0] = '\0'; rc = (call); expect_fail(desc, rc, errbuf); } while (0)

	TRY("invalid: null context",
		pgbert_gpu_sgemm(NULL, 0, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2, errbuf, sizeof(errbuf)));
	TRY("invalid: m < 0",
		pgbert_gpu_sgemm(ctx, 0, 0, -1, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2, errbuf, sizeof(errbuf)));
	TRY("invalid: n < 0",
		pgbert_gpu_sgemm(ctx, 0, 0, 2, -1, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2, errbuf, sizeof(errbuf)));
	TRY("invalid: k < 0",
		pgbert_gpu_sgemm(ctx, 0, 0, 2, 2, -1, 1.0f, a, 2, b, 2, 0.0f, c, 2, errbuf, sizeof(errbuf)));
	/* A is m x k = 3 x 4 row-major: lda must be >= 4 */
	TRY("invalid: lda < k (no trans)",
		pgbert_gpu_sgemm(ctx, 0, 0, 3, 5, 4, 1.0f, a, 3, b, 5, 0.0f, c, 5, errbuf, sizeof(errbuf)));
	/* A^T stored k x m = 4 x 3: lda must be >= 3 */
	TRY("invalid: lda < m (trans a)",
		pgbert_gpu_sgemm(ctx, 1, 0, 3, 5, 4, 1.0f, a, 2, b, 5, 0.0f, c, 5, errbuf, sizeof(errbuf)));
	/* B is k x n = 4 x 5: ldb must be >= 5 */
	TRY("invalid: ldb < n (no trans)",
		pgbert_gpu_sgemm(ctx, 0, 0, 3, 5, 4, 1.0f, a, 4, b, 4, 0.0f, c, 5, errbuf, sizeof(errbuf)));
	/* B^T stored n x k = 5 x 4: ldb must be >= 4 */
	TRY("invalid: ldb < k (trans b)",
		pgbert_gpu_sgemm(ctx, 0, 1, 3, 5, 4, 1.0f, a, 4, b, 3, 0.0f, c, 5, errbuf, sizeof(errbuf)));
	TRY("invalid: ldc < n",
		pgbert_gpu_sgemm(ctx, 0, 0, 3, 5, 4, 1.0f, a, 4, b, 5, 0.0f, c, 4, errbuf, sizeof(errbuf)));
	TRY("invalid: lda = 0 with k = 0",
		pgbert_gpu_sgemm(ctx, 0, 0, 3, 5, 0, 1.0f, a, 0, b, 5, 0.0f, c, 5, errbuf, sizeof(errbuf)));
	TRY("invalid: null a",
		pgbert_gpu_sgemm(ctx, 0, 0, 3, 5, 4, 1.0f, NULL, 4, b, 5, 0.0f, c, 5, errbuf, sizeof(errbuf)));
	TRY("invalid: null c",
		pgbert_gpu_sgemm(ctx, 0, 0, 3, 5, 4, 1.0f, a, 4, b, 5, 0.0f, NULL, 5, errbuf, sizeof(errbuf)));
#undef TRY
}

/* k == 0: A and B are not read and C becomes beta * C. */
static void
check_k_zero(PgbertGpuContext *ctx)
{
	float		c[6] = {1, 2, 3, 4, 5, 6};
	char		errbuf[256] = "";
	int			rc,
				ok;

	rc = pgbert_gpu_sgemm(ctx, 0, 0, 2, 3, 0, 1.0f, NULL, 1, NULL, 3,
						  2.0f, c, 3, errbuf, sizeof(errbuf));
	ok = (rc == 0);
	for (int i = 0; i < 6 && ok; i++)
		ok = (c[i] == 2.0f * (float) (i + 1));
	report(ok, "sgemm k=0 scales c by beta", errbuf);
}

int
main(void)
{
	int			count = 0;
	char		errbuf[256] = "";
	PgbertGpuDevice dev;
	PgbertGpuContext *ctx;
	static const int shapes[][3] = {{37, 53, 29}, {512, 384, 1536}};

	/* line-buffered so every finished check is visible even after a crash */
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (pgbert_gpu_device_count(&count, errbuf, sizeof(errbuf)) != 0)
	{
		printf("FAIL: pgbert_gpu_device_count -- %s\n", errbuf);
		printf("0 passed, 1 failed\n");
		return 1;
	}
	if (count == 0)
	{
		printf("gpu: no device, skipped\n");
		return 0;
	}
	report(1, "pgbert_gpu_device_count", NULL);

	if (pgbert_gpu_device_info(0, &dev, errbuf, sizeof(errbuf)) == 0)
	{
		char		detail[400];

		snprintf(detail, sizeof(detail),
				 "%s, cc %d.%d, %zu MiB, %d SMs", dev.name, dev.cc_major,
				 dev.cc_minor, dev.total_mem >> 20, dev.multiprocessors);
		report(1, "pgbert_gpu_device_info(0)", detail);
	}
	else
		report(0, "pgbert_gpu_device_info(0)", errbuf);

	errbuf[0] = '\0';
	report(pgbert_gpu_device_info(count, &dev, errbuf, sizeof(errbuf)) == -1 &&
		   errbuf[0] != '\0', "device_info rejects bad ordinal", errbuf);
	errbuf[0] = '\0';
	ctx = pgbert_gpu_open(count, errbuf, sizeof(errbuf));
	report(ctx == NULL && errbuf[0] != '\0', "open rejects bad ordinal", errbuf);
	if (ctx != NULL)
		pgbert_gpu_close(ctx);

	errbuf[0] = '\0';
	ctx = pgbert_gpu_open(0, errbuf, sizeof(errbuf));
	if (ctx == NULL)
	{
		report(0, "pgbert_gpu_open(0)", errbuf);
		printf("%d passed, %d failed\n", n_passed, n_failed);
		return 1;
	}
	report(1, "pgbert_gpu_open(0)", NULL);

	/* all transpose combinations, beta = 0 (C must not be read) */
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++)
				check_gemm(ctx, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2],
						   1.0f, 0.0f, 0);

	/* beta != 0, padded leading dimensions, all transpose combinations */
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++)
			check_gemm(ctx, ta, tb, 37, 53, 29, 0.75f, -1.5f, 3);
	check_gemm(ctx, 1, 0, 512, 384, 1536, 1.25f, 0.5f, 7);
	/* degenerate shapes */
	check_gemm(ctx, 0, 0, 1, 1, 1, 1.0f, 0.0f, 0);
	check_gemm(ctx, 0, 1, 1, 17, 300, 1.0f, 1.0f, 0);
	check_gemm(ctx, 1, 1, 19, 1, 7, -2.0f, 0.0f, 2);
	check_k_zero(ctx);

	check_invalid(ctx);

	pgbert_gpu_close(ctx);
	pgbert_gpu_close(NULL);
	report(1, "pgbert_gpu_close", NULL);

	printf("%d passed, %d failed\n", n_passed, n_failed);
	return n_failed == 0 ? 0 : 1;
}
