/*
 * gemm_q8.h - dense layers of inference in 8-bit integers, an option beside
 * gemm.h's float32 kernel (which stays the reference).
 *
 * Weights: each output's row scaled to 7-bit integers qw in -63 .. 63 (scale
 * sw = max |w| / 63), once, when a model is quantized. Inputs: on every call,
 * each row x mapped onto codes u in 0 .. 255 over its range widened to hold
 * 0 (lo <= 0 <= hi): sx = (hi - lo) / 255, zero point zp = round(-lo / sx),
 * u = clamp(round(x / sx) + zp). AVX2's vpmaddubsw multiplies such unsigned
 * bytes by signed ones, and its pairwise 16-bit sums of two products cannot
 * saturate because the weights have 7 bits (2 x 255 x 63 = 32130). The zero
 * point comes back out through each output's column sum:
 *
 *   out[t][o] = sx[t] sw[o] (sum_k u[t][k] qw[o][k] - zp[t] sum_k qw[o][k]) + b[o]
 *
 * summed per block of BT_Q8_KC k, each block's term added in float.
 * Layout of the weights: the O outputs in panels of 16; within panel p, k in
 * groups of 4, each group 16 outputs x 4 bytes (output-major):
 * qw[16p + c][4g + j] at 16 p K + 64 g + 4 c + j. Needs O % 16 == 0 and
 * K % 4 == 0 (every BERT size). PostgreSQL-free.
 */
#ifndef PGBERT_GEMM_Q8_H
#define PGBERT_GEMM_Q8_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* k per block: a panel's slice of 16 x 1536 bytes stays in L1. */
#define BT_Q8_KC 1536

/* One (O, K) weight in 8 bits, its memory owned by whoever quantized it. */
typedef struct BtQ8Weight
{
	const float *source;		/* the float32 weight it stands for (to find it by) */
	int			O,
				K;
	int8_t	   *q;				/* O K bytes, in the layout above */
	float	   *scale;			/* (O): sw */
	int32_t    *colsum;			/* (K blocks of BT_Q8_KC, O): sum of a block's q of each output */
} BtQ8Weight;

/* Whether an (O, K) weight can be quantized. */
static inline int
bt_q8_fits(int O, int K)
{
	return O > 0 && K > 0 && O % 16 == 0 && K % 4 == 0;
}

/* Bytes bt_q8_quantize needs for an (O, K) weight, a multiple of 64. */
extern size_t bt_q8_bytes(int O, int K);

/*
 * Quantize w into qw, its arrays carved from mem (bt_q8_bytes(O, K) bytes,
 * 64-byte aligned). w is (O, K) as Hugging Face stores it, or, when
 * panels16, in gemm.h's packed layout.
 */
extern void bt_q8_quantize(BtQ8Weight *qw, void *mem, const float *w, int O, int K, int panels16);

/*
 * Columns 16 p0 .. 16 p1 - 1 of out (T rows, row stride ldo) = in (T, K) @ W^T
 * + bias, W the quantized weight; bias (O) may be NULL; gelu: NULL or the
 * activation to apply to each finished output. AVX2 when the CPU has it,
 * else plain loops computing the same numbers (also when out of memory for
 * the quantized inputs). One thread; callers split panels among threads.
 */
extern void bt_gemm_q8(float *out, int ldo, const float *in, int T, const BtQ8Weight *qw, const float *bias,
					   int p0, int p1, const BtActivation *gelu);

/* The same with plain loops only, for tests. */
extern void bt_gemm_q8_plain(float *out, int ldo, const float *in, int T, const BtQ8Weight *qw,
							 const float *bias, int p0, int p1, const BtActivation *gelu);

#endif
