/*
 * bench_gemm.c - the packed dense-layer kernel (src/engine/gemm.c) against
 * OpenBLAS sgemm on the encoder's GEMM shapes, one thread each.
 *
 *   bench_gemm [SECONDS_PER_SHAPE]
 *
 * For each shape (T rows of input, O outputs, K inputs: MiniLM-L6 and
 * bert-base layers at 256, 512 and 4096 tokens) prints the best GFLOP/s of
 * bt_gemm_packed and of cblas_sgemm computing the same out = in W^T + b (the
 * bias copied in first, as the unpacked engine does). Read against
 * build/fma_peak 1. Run with OPENBLAS_NUM_THREADS=1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas.h"
#include "gemm.h"

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

int
main(int argc, char **argv)
{
	static const int shapes[][3] = {
		{256, 1152, 384}, {256, 1536, 384}, {256, 384, 1536},
		{512, 1152, 384}, {512, 384, 384}, {512, 1536, 384}, {512, 384, 1536},
		{4096, 1536, 384}, {4096, 384, 1536},
		{512, 2304, 768}, {512, 768, 768}, {512, 3072, 768}, {512, 768, 3072},
	};
	double		seconds = argc > 1 ? atof(argv[1]) : 1.0;
	char		err[256];

	if (bt_blas_load(NULL, 1, err, sizeof(err)) != 0)
	{
		fprintf(stderr, "bench_gemm: %s\n", err);
		return 1;
	}
	printf("| T | O | K | packed GFLOP/s | OpenBLAS GFLOP/s | packed ÷ OpenBLAS |\n|---|---|---|---:|---:|---:|\n");
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
	{
		int			T = shapes[s][0],
					O = shapes[s][1],
					K = shapes[s][2];
		float	   *in = malloc((size_t) T * K * sizeof(float)),
				   *w = aligned_alloc(64, (size_t) O * K * sizeof(float)),
				   *wp = aligned_alloc(64, (size_t) O * K * sizeof(float)),
				   *scratch = malloc((size_t) O * K * sizeof(float)),
				   *b = malloc(O * sizeof(float)),
				   *out = malloc((size_t) T * O * sizeof(float));
		double		best[2] = {0, 0},
					flop = 2.0 * T * O * K;

		fill(in, (size_t) T * K, 1);
		fill(w, (size_t) O * K, 2);
		fill(b, O, 3);
		memcpy(wp, w, (size_t) O * K * sizeof(float));
		bt_gemm_pack(wp, O, K, scratch);
		for (int impl = 0; impl < 2; impl++)
		{
			double		start = now();

			while (now() - start < seconds)
			{
				double		t0 = now(),
							t;

				if (impl == 0)
					bt_gemm_packed(out, O, in, T, wp, b, O, K, 0, bt_gemm_panels(O), NULL);
				else
					blas_dense(out, in, w, b, T, O, K);
				t = now() - t0;
				if (flop / t / 1e9 > best[impl])
					best[impl] = flop / t / 1e9;
			}
		}
		printf("| %d | %d | %d | %.1f | %.1f | %.2f× |\n", T, O, K, best[0], best[1], best[0] / best[1]);
		free(in);
		free(w);
		free(wp);
		free(scratch);
		free(b);
		free(out);
	}
	return 0;
}
