/*
 * gemm_bf16.h - dense layers of inference with bfloat16 products, an option
 * beside gemm.h's float32 kernel (which stays the reference).
 *
 * Weights are rounded to bf16 once, when a model is switched to bf16; inputs
 * on every call (round to nearest even both). AVX512-BF16's vdpbf16ps
 * multiplies pairs of bf16 exactly and adds both products to a float32
 * accumulator, so a dense layer does half the instructions of float32 and
 * reads half the weight bytes; only the rounding of the operands to 8
 * significant bits is lost (the accuracy against float32 is in
 * docs/benchmarks.md).
 *
 * Layout of the weights: the O outputs in panels of 16; within panel p, k in
 * pairs, each pair 16 outputs x 2 bf16 (output-major, the even k first):
 * w[16p + c][2j + i] at 16 p K + 32 j + 2 c + i (in bf16 units). Needs
 * O % 16 == 0 and K % 2 == 0 (every BERT size). PostgreSQL-free.
 */
#ifndef PGBERT_GEMM_BF16_H
#define PGBERT_GEMM_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* One (O, K) weight in bf16, its memory owned by whoever converted it. */
typedef struct BtBf16Weight
{
	const float *source;		/* the float32 weight it stands for (to find it by) */
	int			O,
				K;
	uint16_t   *w;				/* O K bf16, in the layout above */
} BtBf16Weight;

/* Whether an (O, K) weight can be held in bf16. */
static inline int
bt_bf16_fits(int O, int K)
{
	return O > 0 && K > 0 && O % 16 == 0 && K % 2 == 0;
}

/* Bytes bt_bf16_convert needs for an (O, K) weight, a multiple of 64. */
extern size_t bt_bf16_bytes(int O, int K);

/* x rounded to bf16, to nearest even (the bits; NaN stays NaN). */
extern uint16_t bt_bf16_round(float x);

/*
 * Convert w into bw, its array carved from mem (bt_bf16_bytes(O, K) bytes,
 * 64-byte aligned). w is (O, K) as Hugging Face stores it, or, when
 * panels16, in gemm.h's packed layout.
 */
extern void bt_bf16_convert(BtBf16Weight *bw, void *mem, const float *w, int O, int K, int panels16);

/*
 * Columns 16 p0 .. 16 p1 - 1 of out (T rows, row stride ldo) = bf16(in) (T, K)
 * @ bf16(W)^T + bias (bias may be NULL), then gelu (NULL or the activation,
 * as bt_gelu_forward applies it). The AVX512-BF16 kernel where cpu.h says
 * bf16, else the plain loops below. One thread; callers split panels.
 */
extern void bt_gemm_bf16(float *out, int ldo, const float *in, int T, const BtBf16Weight *bw, const float *bias,
						 int p0, int p1, const BtActivation *gelu);

/*
 * The same with plain loops, for tests: each pair of products added to the
 * float32 sum as vdpbf16ps adds them (the odd k first).
 */
extern void bt_gemm_bf16_plain(float *out, int ldo, const float *in, int T, const BtBf16Weight *bw,
							   const float *bias, int p0, int p1, const BtActivation *gelu);

/* A float matrix read through strides: element (i, k) at p[i rs + k cs], k < K. */
typedef struct BtStrided
{
	const float *p;
	size_t		rs,
				cs;
	int			K;
} BtStrided;

/*
 * Panels p0 .. p1 - 1 of bw (whose O, K and w the caller set: N and b's K
 * rounded up to 16 and 2) = rows n of b, (N, K) read through strides,
 * rounded to bf16; outputs past N and k past b->K are zero. For weights that
 * change (training), converted on every use.
 */
extern void bt_bf16_convert_strided(BtBf16Weight *bw, const BtStrided *b, int N, int p0, int p1);

/*
 * bt_gemm_bf16 reading the input through strides (its K may be bw->K - 1),
 * starting from out's values when accumulate (bias then NULL), without the
 * GELU.
 */
extern void bt_gemm_bf16_strided(float *out, int ldo, const BtStrided *a, int T, const BtBf16Weight *bw,
								 const float *bias, int p0, int p1, bool accumulate);

#endif
