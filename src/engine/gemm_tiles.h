/*
 * gemm_tiles.h - what the AVX-512 register-tile kernels of gemm.c (float32),
 * gemm_bf16.c (bf16) and gemm_q8.c (8-bit VNNI) share: the choice of their
 * shapes (1 to 12 rows by 1 or 2 panels) as constants, the fetching of
 * their rows of output ahead of their stores, and, for the float32
 * and bf16 kernels, the loading and storing of their up to 12 rows by 2
 * vectors of 16 float sums. The multiply loops stay in each file (FMA,
 * vdpbf16ps, vpdpbusd). Always inlined with constant rows and vectors, so the
 * loops unroll and the sums stay in registers, as when they were written in
 * each kernel. Include after <immintrin.h> and simd_math.h (for gelu512), on
 * x86-64 only. PostgreSQL-free.
 */
#ifndef PGBERT_GEMM_TILES_H
#define PGBERT_GEMM_TILES_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * Outputs of one block of rows, in bytes, above which its tiles fetch their
 * rows of c ahead (bt_tile512_prefetch). Below it (batch 1, say) they are
 * most likely in L2 still, and the fetches would only take issue slots.
 */
#define BT_TILE_FETCH_BYTES ((size_t) 512 << 10)

/* Whether tiles over rows x outputs of c fetch their rows ahead. */
static inline bool
bt_tile_fetch(int rows, int outputs)
{
	return (size_t) rows * outputs * sizeof(float) > BT_TILE_FETCH_BYTES;
}

/*
 * Start bringing a tile's rows of c (stride ldc) into L1 while its multiply
 * loop runs, so that the stores at its end (or the loads of earlier sums)
 * find them there instead of waiting on L3 or memory: a layer's outputs
 * (T x O floats) have long left L2 when their tiles come. On Zen 4, one
 * thread, batch 32: bert-base 5% faster in int8, MiniLM 1-9% in every
 * precision (docs/benchmarks.md).
 */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
bt_tile512_prefetch(const float *c, int ldc, const int rows, const int P)
{
#pragma GCC unroll 12
	for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
		for (int p = 0; p < P; p++)
			_mm_prefetch((const char *) (c + (size_t) r * ldc + 16 * p), _MM_HINT_T0);
}

/*
 * acc (rows x P vectors) = first ? the P bias vectors, or 0 without bias :
 * c's rows (stride ldc); when first and fetch, c's rows start on their way
 * to L1 for bt_tile512_store.
 */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
bt_tile512_start(__m512 acc[][2], const float *c, int ldc, const float *bias, bool first, bool fetch,
				 const int rows, const int P)
{
	if (first && fetch)
		bt_tile512_prefetch(c, ldc, rows, P);
#pragma GCC unroll 12
	for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
		for (int p = 0; p < P; p++)
			acc[r][p] = !first ? _mm512_loadu_ps(c + (size_t) r * ldc + 16 * p) :
				bias ? _mm512_loadu_ps(bias + 16 * p) : _mm512_setzero_ps();
}

/*
 * c's rows (stride ldc) = acc (rows x P vectors), through the exact GELU when
 * gelu: on the sums still in registers, so the tile is not read back.
 */
__attribute__((target("avx512f,avx2,fma"))) static inline __attribute__((always_inline)) void
bt_tile512_store(float *c, int ldc, __m512 acc[][2], bool gelu, const int rows, const int P)
{
#pragma GCC unroll 12
	for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
		for (int p = 0; p < P; p++)
			_mm512_storeu_ps(c + (size_t) r * ldc + 16 * p, gelu ? gelu512(acc[r][p]) : acc[r][p]);
}

/* Whether a kernel applies act in its tiles' stores (the exact GELU) rather than in a pass after them. */
static inline bool
bt_tile_gelu(const BtActivation *act)
{
	return act != NULL && *act == BT_ACT_GELU;
}

/*
 * kernel(..., ROWS, P) with ROWS rows (1 to 12) and P panels (1 or 2) passed
 * as constants: each shape is its own inlined copy of the kernel, so a last
 * tile of fewer than 12 rows computes only its rows.
 */
#define BT_TILE_ROWS(rows, P, kernel, ...) \
	do { \
		switch (rows) \
		{ \
			case 1: kernel(__VA_ARGS__, 1, P); break; \
			case 2: kernel(__VA_ARGS__, 2, P); break; \
			case 3: kernel(__VA_ARGS__, 3, P); break; \
			case 4: kernel(__VA_ARGS__, 4, P); break; \
			case 5: kernel(__VA_ARGS__, 5, P); break; \
			case 6: kernel(__VA_ARGS__, 6, P); break; \
			case 7: kernel(__VA_ARGS__, 7, P); break; \
			case 8: kernel(__VA_ARGS__, 8, P); break; \
			case 9: kernel(__VA_ARGS__, 9, P); break; \
			case 10: kernel(__VA_ARGS__, 10, P); break; \
			case 11: kernel(__VA_ARGS__, 11, P); break; \
			default: kernel(__VA_ARGS__, 12, P); break; \
		} \
	} while (0)

#define BT_TILE_SHAPES(rows, P, kernel, ...) \
	do { \
		if ((P) == 2) \
			BT_TILE_ROWS(rows, 2, kernel, __VA_ARGS__); \
		else \
			BT_TILE_ROWS(rows, 1, kernel, __VA_ARGS__); \
	} while (0)

#endif
