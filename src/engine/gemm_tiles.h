/*
 * gemm_tiles.h - the loading and storing of the AVX-512 register tiles that
 * gemm.c's float32 kernel and gemm_bf16.c's bf16 kernel share: up to 12 rows
 * by 2 vectors of 16 float sums. The multiply loops stay in each file (FMA
 * against vdpbf16ps). Always inlined with constant rows and vectors, so the
 * loops unroll and the sums stay in registers, as when they were written in
 * each kernel. Include after <immintrin.h>, on x86-64 only. PostgreSQL-free.
 */
#ifndef PGBERT_GEMM_TILES_H
#define PGBERT_GEMM_TILES_H

#include <stdbool.h>
#include <stddef.h>

/* acc (rows x P vectors) = first ? the P bias vectors, or 0 without bias : c's rows (stride ldc). */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
bt_tile512_start(__m512 acc[][2], const float *c, int ldc, const float *bias, bool first, const int rows,
				 const int P)
{
#pragma GCC unroll 12
	for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
		for (int p = 0; p < P; p++)
			acc[r][p] = !first ? _mm512_loadu_ps(c + (size_t) r * ldc + 16 * p) :
				bias ? _mm512_loadu_ps(bias + 16 * p) : _mm512_setzero_ps();
}

/* c's rows (stride ldc) = acc (rows x P vectors). */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
bt_tile512_store(float *c, int ldc, __m512 acc[][2], const int rows, const int P)
{
#pragma GCC unroll 12
	for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
		for (int p = 0; p < P; p++)
			_mm512_storeu_ps(c + (size_t) r * ldc + 16 * p, acc[r][p]);
}

#endif
