/*
 * gemm.h - the dense layers of inference over weights packed once, in place.
 *
 * OpenBLAS repacks a weight matrix on every sgemm call, and with one chunk of
 * sequences per thread every thread repacks all of them: at batch 32 that
 * copying was 7-9% of a MiniLM forward pass. Packed here once when a model is
 * loaded for inference, the weights go straight into an AVX2+FMA kernel that
 * also starts from the bias (no pass to copy it in first).
 *
 * Layout: the O outputs of a (O, K) nn.Linear weight in panels of 16, panel p
 * holding outputs 16p .. 16p + w - 1 (w = 16, or what is left for the last)
 * as K rows of w floats: W[16p + c][k] at 16 p K + k w + c. A permutation of
 * the same O K floats, so the model's one allocation keeps its size; training,
 * the GPU upload and the optimizer need the Hugging Face layout and never see
 * a packed model. PostgreSQL-free.
 */
#ifndef PGBERT_GEMM_H
#define PGBERT_GEMM_H

#include <stdbool.h>
#include <string.h>

#include "config.h"

/* Outputs per panel. */
#define BT_GEMM_PANEL 16

/* Panels of a weight with O outputs. */
static inline int
bt_gemm_panels(int O)
{
	return (O + BT_GEMM_PANEL - 1) / BT_GEMM_PANEL;
}

/*
 * Copy rows x cols floats between row-major blocks of strides ldd and lds:
 * the kernels compute a tile of fewer rows than they hold in a buffer of
 * their own, and move it from and to the output with this.
 */
static inline void
bt_gemm_copy_rows(float *dst, int ldd, const float *src, int lds, int rows, int cols)
{
	for (int r = 0; r < rows; r++)
		memcpy(dst + (size_t) r * ldd, src + (size_t) r * lds, (size_t) cols * sizeof(float));
}

/* Pack w (O, K) in place, and back; scratch holds O K floats. */
extern void bt_gemm_pack(float *w, int O, int K, float *scratch);
extern void bt_gemm_unpack(float *w, int O, int K, float *scratch);

/*
 * Columns 16 p0 .. of out (T rows, row stride ldo) = in (T, K) @ W^T + bias,
 * for panels p0 .. p1 - 1 of the packed wp (O, K); bias (O) may be NULL.
 * gelu: NULL, or the GELU applied to each finished output (as
 * bt_gelu_forward would, bit for bit), while its tile is still in L1 rather
 * than in a pass of its own over the feed-forward activations.
 * AVX2+FMA when the CPU has it, else plain loops (also the tests' reference).
 * One thread; callers split panels among threads.
 */
extern void bt_gemm_packed(float *out, int ldo, const float *in, int T, const float *wp, const float *bias,
						   int O, int K, int p0, int p1, const BtActivation *gelu);

/* The same with plain loops only, for tests. */
extern void bt_gemm_packed_plain(float *out, int ldo, const float *in, int T, const float *wp, const float *bias,
								 int O, int K, int p0, int p1, const BtActivation *gelu);

#endif
