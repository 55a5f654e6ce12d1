/*
 * attention512.c - one head of self-attention over a short sequence on AVX-512F.
 *
 * The AVX2 head (simd.c) spends more on moving data than on arithmetic at
 * 16 tokens: k^T is built one float at a time and the products run eight
 * lanes wide. Here k^T is built from 16 x 16 register transposes, the two
 * products run sixteen lanes wide with up to 16 accumulators, and each row's
 * softmax is one to four vectors. Same contract as bt_avx2_attention_head.
 */
#include "simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(BT_PORTABLE)

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define AVX2 __attribute__((target("avx2,fma")))	/* simd_math.h's eight-float helpers */
#include "simd_math.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

/* out[0 .. 15] = the rows of the transpose of src rows 0 .. live - 1 (stride ld; later rows zero), 16 floats each. */
AVX512 static inline __attribute__((always_inline)) void
transpose_16x16_regs(__m512 out[16], const float *src, size_t ld, int live)
{
	__m512		r[16],
				a[16],
				b[16];

	for (int i = 0; i < 16; i++)
		r[i] = i < live ? _mm512_loadu_ps(src + i * ld) : _mm512_setzero_ps();
	/* pairs of rows interleaved within each 128-bit lane */
	for (int i = 0; i < 16; i += 2)
	{
		a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
		a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
	}
	/* b[4g + m], lane l: column 4l + m of rows 4g .. 4g + 3 */
	for (int g = 0; g < 16; g += 4)
	{
		b[g] = _mm512_shuffle_ps(a[g], a[g + 2], 0x44);
		b[g + 1] = _mm512_shuffle_ps(a[g], a[g + 2], 0xee);
		b[g + 2] = _mm512_shuffle_ps(a[g + 1], a[g + 3], 0x44);
		b[g + 3] = _mm512_shuffle_ps(a[g + 1], a[g + 3], 0xee);
	}
	/* column 4l + m gathers lane l of b[m], b[4 + m], b[8 + m], b[12 + m] */
	for (int m = 0; m < 4; m++)
	{
		__m512		even0 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0x88),
					odd0 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0xdd),
					even1 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0x88),
					odd1 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0xdd);

		out[m] = _mm512_shuffle_f32x4(even0, even1, 0x88);
		out[4 + m] = _mm512_shuffle_f32x4(odd0, odd1, 0x88);
		out[8 + m] = _mm512_shuffle_f32x4(even0, even1, 0xdd);
		out[12 + m] = _mm512_shuffle_f32x4(odd0, odd1, 0xdd);
	}
}

/* dst rows 0 .. 15 (stride lds) = the transpose of src rows 0 .. live - 1 (stride ld; later rows zero), 16 floats each. */
AVX512 static void
transpose_16x16(float *dst, size_t lds, const float *src, size_t ld, int live)
{
	__m512		out[16];

	transpose_16x16_regs(out, src, ld, live);
	for (int i = 0; i < 16; i++)
		_mm512_storeu_ps(dst + i * lds, out[i]);
}

/*
 * c (rows <= R, stride ldc, 16 N columns) = scale * a (rows, n; stride lda)
 * @ b (n, 16 N; stride ldb). Rows past `rows` read row 0 and are not stored.
 * R and N are constants where inlined.
 */
AVX512 static inline __attribute__((always_inline)) void
block512(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int n, float scale, int rows,
		 const int R, const int N)
{
	__m512		acc[8][4];
	const float *ar[8];

#pragma GCC unroll 8
	for (int r = 0; r < R; r++)
	{
		ar[r] = a + (size_t) (r < rows ? r : 0) * lda;
		for (int q = 0; q < N; q++)
			acc[r][q] = _mm512_setzero_ps();
	}
	for (int t = 0; t < n; t++, b += ldb)
	{
		__m512		bv[4];

#pragma GCC unroll 4
		for (int q = 0; q < N; q++)
			bv[q] = _mm512_loadu_ps(b + 16 * q);
#pragma GCC unroll 8
		for (int r = 0; r < R; r++)
		{
			__m512		x = _mm512_set1_ps(ar[r][t]);

#pragma GCC unroll 4
			for (int q = 0; q < N; q++)
				acc[r][q] = _mm512_fmadd_ps(x, bv[q], acc[r][q]);
		}
	}
#pragma GCC unroll 8
	for (int r = 0; r < R && r < rows; r++)
#pragma GCC unroll 4
		for (int q = 0; q < N; q++)
			_mm512_storeu_ps(c + (size_t) r * ldc + 16 * q, _mm512_mul_ps(acc[r][q], _mm512_set1_ps(scale)));
}

/* c (m, 16 N) = scale * a (m, n) @ b (n, 16 N), N of 1 .. 4: eight rows at a time up to 32 columns, else four. */
AVX512 static void
product512(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int m, int n, float scale, int N)
{
	int			R = N <= 2 ? 8 : 4;

	for (int r0 = 0; r0 < m; r0 += R)
	{
		float	   *cr = c + (size_t) r0 * ldc;
		const float *ar = a + (size_t) r0 * lda;
		int			rows = m - r0;

		switch (N)
		{
			case 1:
				block512(cr, ldc, ar, lda, b, ldb, n, scale, rows, 8, 1);
				break;
			case 2:
				block512(cr, ldc, ar, lda, b, ldb, n, scale, rows, 8, 2);
				break;
			case 3:
				block512(cr, ldc, ar, lda, b, ldb, n, scale, rows, 4, 3);
				break;
			default:
				block512(cr, ldc, ar, lda, b, ldb, n, scale, rows, 4, 4);
				break;
		}
	}
}

/* Softmax over the first S of each of S rows (stride sp, a multiple of 16); columns S .. sp - 1 become 0. */
AVX512 static void
softmax512(float *p, int S, int sp)
{
	int			nv = sp / 16;
	__mmask16	last = (__mmask16) (0xffffu >> (sp - S));	/* live lanes of the last vector */

	for (int r = 0; r < S; r++)
	{
		float	   *row = p + (size_t) r * sp;
		__m512		x[BT_SMALL_ATTN_S512 / 16],
					vmax = _mm512_set1_ps(-INFINITY),
					vsum = _mm512_setzero_ps(),
					vinv;

		for (int q = 0; q < nv; q++)
		{
			x[q] = q < nv - 1 ? _mm512_loadu_ps(row + 16 * q) :
				_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), last, row + 16 * q);
			vmax = _mm512_max_ps(vmax, x[q]);
		}
		vmax = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
		for (int q = 0; q < nv; q++)
		{
			x[q] = exp512(_mm512_sub_ps(x[q], vmax));
			if (q == nv - 1)
				x[q] = _mm512_maskz_mov_ps(last, x[q]);	/* exp512 clamps: -inf gives a tiny number */
			vsum = _mm512_add_ps(vsum, x[q]);
		}
		vinv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
		for (int q = 0; q < nv; q++)
			_mm512_storeu_ps(row + 16 * q, _mm512_mul_ps(x[q], vinv));
	}
}

void
bt_avx512_attention_head(float *ctx, int ldc, const float *q, const float *k, const float *v, int ld, int S, int d,
						 float scale)
{
	int			sp = (S + 15) & ~15;	/* key columns padded to whole 16s */
	float		kt[BT_SMALL_ATTN_D * BT_SMALL_ATTN_S512],	/* k^T (d, sp), zero past S */
				p[BT_SMALL_ATTN_S512 * BT_SMALL_ATTN_S512];	/* scores, then probabilities (S, sp) */

	for (int j0 = 0; j0 < sp; j0 += 16)
		for (int i0 = 0; i0 < d; i0 += 16)
			transpose_16x16(kt + (size_t) i0 * sp + j0, sp, k + (size_t) j0 * ld + i0, ld, S - j0);
	for (int j0 = 0; j0 < sp; j0 += 64)
		product512(p + j0, sp, q, ld, kt + j0, sp, S, d, scale, sp - j0 < 64 ? (sp - j0) / 16 : 4);
	softmax512(p, S, sp);
	for (int c0 = 0; c0 < d; c0 += 64)
		product512(ctx + c0, ldc, p, sp, v + c0, ld, S, S, 1.0f, d - c0 < 64 ? (d - c0) / 16 : 4);
}

/* ---- the same with bf16 products (AVX512-BF16), for pgbert.cpu_precision = bf16 ---- */

#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))

/* dst (rows, n pairs; stride ldd words) = the rows of src (rows, 2 n; stride ld) as words of consecutive bf16 pairs. */
AVX512BF16 static void
row_words(uint32_t *dst, int ldd, const float *src, int ld, int rows, int n)
{
	for (int r = 0; r < rows; r++)
		for (int j = 0; j < n; j += 8)
			_mm256_storeu_si256((__m256i *) (dst + (size_t) r * ldd + j),
								(__m256i) _mm512_cvtneps_pbh(_mm512_loadu_ps(src + (size_t) r * ld + 2 * j)));
}

/*
 * dst (8 rows of pairs, stride lds words) = the transpose of src rows 0 ..
 * live - 1 (stride ld; later rows zero), 16 floats each, as bf16 pairs: word
 * (i, j) holds src[j][2i] and src[j][2i + 1].
 */
AVX512BF16 static void
transpose_16x16_pairs(uint32_t *dst, size_t lds, const float *src, size_t ld, int live)
{
	__m512		t[16];

	transpose_16x16_regs(t, src, ld, live);
	for (int i = 0; i < 8; i++)
		_mm512_storeu_si512(dst + i * lds, bf16_pair_words(t[2 * i], t[2 * i + 1]));
}

/*
 * block512 with bf16 pairs: c (rows <= R, 16 N columns) = scale * a (rows, n
 * pairs; stride lda words) @ b (n pairs, 16 N; stride ldb words), vdpbf16ps
 * summing in float32.
 */
AVX512BF16 static inline __attribute__((always_inline)) void
block_bf16(float *c, int ldc, const uint32_t *a, int lda, const uint32_t *b, int ldb, int n, float scale, int rows,
		   const int R, const int N)
{
	__m512		acc[8][4];
	const uint32_t *ar[8];

#pragma GCC unroll 8
	for (int r = 0; r < R; r++)
	{
		ar[r] = a + (size_t) (r < rows ? r : 0) * lda;
#pragma GCC unroll 4
		for (int q = 0; q < N; q++)
			acc[r][q] = _mm512_setzero_ps();
	}
	for (int t = 0; t < n; t++, b += ldb)
	{
		__m512bh	bv[4];

#pragma GCC unroll 4
		for (int q = 0; q < N; q++)
			bv[q] = (__m512bh) _mm512_loadu_si512(b + 16 * q);
#pragma GCC unroll 8
		for (int r = 0; r < R; r++)
		{
			__m512bh	x = (__m512bh) _mm512_set1_epi32((int) ar[r][t]);

#pragma GCC unroll 4
			for (int q = 0; q < N; q++)
				acc[r][q] = _mm512_dpbf16_ps(acc[r][q], x, bv[q]);
		}
	}
#pragma GCC unroll 8
	for (int r = 0; r < R && r < rows; r++)
#pragma GCC unroll 4
		for (int q = 0; q < N; q++)
			_mm512_storeu_ps(c + (size_t) r * ldc + 16 * q, _mm512_mul_ps(acc[r][q], _mm512_set1_ps(scale)));
}

/* product512 with bf16 pairs: c (m, 16 N) = scale * a (m, n pairs) @ b (n pairs, 16 N), N of 1 .. 4. */
AVX512BF16 static void
product_bf16(float *c, int ldc, const uint32_t *a, int lda, const uint32_t *b, int ldb, int m, int n, float scale,
			 int N)
{
	int			R = N <= 2 ? 8 : 4;

	for (int r0 = 0; r0 < m; r0 += R)
	{
		float	   *cr = c + (size_t) r0 * ldc;
		const uint32_t *ar = a + (size_t) r0 * lda;
		int			rows = m - r0;

		switch (N)
		{
			case 1:
				block_bf16(cr, ldc, ar, lda, b, ldb, n, scale, rows, 8, 1);
				break;
			case 2:
				block_bf16(cr, ldc, ar, lda, b, ldb, n, scale, rows, 8, 2);
				break;
			case 3:
				block_bf16(cr, ldc, ar, lda, b, ldb, n, scale, rows, 4, 3);
				break;
			default:
				block_bf16(cr, ldc, ar, lda, b, ldb, n, scale, rows, 4, 4);
				break;
		}
	}
}

AVX512BF16 void
bt_avx512_bf16_attention_head(float *ctx, int ldc, const float *q, const float *k, const float *v, int ld, int S,
							  int d, float scale)
{
	enum
	{
		MAX_S = BT_SMALL_ATTN_S512, MAX_D = BT_SMALL_ATTN_D
	};
	int			sp = (S + 15) & ~15;	/* key columns padded to whole 16s */
	uint32_t	qw[MAX_S * MAX_D / 2],	/* q (S, d / 2 pairs) */
				kw[MAX_D / 2 * MAX_S],	/* k^T (d / 2 pairs, sp), zero past S */
				pw[MAX_S * MAX_S / 2],	/* probabilities (S, sp / 2 pairs) */
				vw[MAX_S / 2 * MAX_D];	/* v (sp / 2 pairs, d), zero past S */
	float		p[MAX_S * MAX_S];	/* scores, then probabilities (S, sp) */

	row_words(qw, d / 2, q, ld, S, d / 2);
	for (int j0 = 0; j0 < sp; j0 += 16)
		for (int i0 = 0; i0 < d; i0 += 16)
			transpose_16x16_pairs(kw + (size_t) (i0 / 2) * sp + j0, sp, k + (size_t) j0 * ld + i0, ld, S - j0);
	for (int j0 = 0; j0 < sp; j0 += 64)
		product_bf16(p + j0, sp, qw, d / 2, kw + j0, sp, S, d / 2, scale, sp - j0 < 64 ? (sp - j0) / 16 : 4);
	softmax512(p, S, sp);
	row_words(pw, sp / 2, p, sp, S, sp / 2);
	/* pairs of value rows: word (j, c) holds v[2j][c] and v[2j + 1][c] */
	for (int j = 0; j < sp / 2; j++)
		for (int c = 0; c < d; c += 16)
			_mm512_storeu_si512(vw + (size_t) j * d + c,
								bf16_pair_words(2 * j < S ? _mm512_loadu_ps(v + (size_t) 2 * j * ld + c) :
												_mm512_setzero_ps(),
												2 * j + 1 < S ? _mm512_loadu_ps(v + (size_t) (2 * j + 1) * ld + c) :
												_mm512_setzero_ps()));
	for (int c0 = 0; c0 < d; c0 += 64)
		product_bf16(ctx + c0, ldc, pw, sp / 2, vw + c0, d, S, (S + 1) / 2, 1.0f, d - c0 < 64 ? (d - c0) / 16 : 4);
}

#else							/* not x86-64: the plain loops of ops.c run instead */

void
bt_avx512_attention_head(float *ctx, int ldc, const float *q, const float *k, const float *v, int ld, int S, int d,
						 float scale)
{
}

void
bt_avx512_bf16_attention_head(float *ctx, int ldc, const float *q, const float *k, const float *v, int ld, int S,
							  int d, float scale)
{
}

#endif
