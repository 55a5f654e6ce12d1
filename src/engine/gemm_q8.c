/*
 * gemm_q8.c - 8-bit dense layers (see gemm_q8.h).
 *
 * The AVX2 kernel computes 6 rows by one panel of 16 outputs in twelve
 * registers of eight 32-bit sums: per group of 4 k, two loads of the panel
 * (16 outputs x 4 bytes), a broadcast of 4 codes of each of the six rows, and
 * for each of the twelve sums a vpmaddubsw (bytes to pairwise 16-bit sums), a
 * vpmaddwd by ones (to 32-bit sums of 4) and a vpaddd. On Zen 3 that is about
 * 1.8 times the multiply-adds per cycle of float32 FMAs (build/mac_peak).
 * Blocking as in gemm.c: BT_Q8_KC k at a time (a 24 KiB panel slice in L1)
 * over MC rows of codes (up to 396 KiB of a block in L2). Each block's sums
 * are scaled back to floats and added to the output, so nothing 32-bit is
 * kept between blocks. Quantizing the inputs costs about as much per element
 * as a few dozen multiply-adds, so it is vectorized too.
 *
 * Where cpu.h says vnni, an AVX512-VNNI kernel takes 12 rows by two panels
 * instead: one vpdpbusd per 16 sums of 4 products replaces those three
 * instructions on 8 sums. It keeps the 7-bit weights, so both kernels and
 * the plain loops give the same bits on every CPU.
 */
#include "gemm_q8.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "gemm.h"
#include "ops.h"
#include "simd.h"

#define MR 6
#define MC 264					/* rows of input quantized at a time, a multiple of MR */

/* Blocks of BT_Q8_KC in K. */
static inline int
k_blocks(int K)
{
	return (K + BT_Q8_KC - 1) / BT_Q8_KC;
}

/* n rounded up to 64 bytes, so that arrays carved one after another from one allocation stay 64-byte aligned. */
static inline size_t
round64(size_t n)
{
	return (n + 63) / 64 * 64;
}

/* Where output o keeps its k-th weight byte. */
static inline size_t
q_index(int K, int o, int k)
{
	return (size_t) (o / 16) * 16 * K + (size_t) (k / 4) * 64 + (o % 16) * 4 + k % 4;
}

size_t
bt_q8_bytes(int O, int K)
{
	return round64((size_t) O * K) + round64((size_t) O * sizeof(float)) +
		round64((size_t) k_blocks(K) * O * sizeof(int32_t));
}

void
bt_q8_quantize(BtQ8Weight *qw, void *mem, const float *w, int O, int K, int panels16)
{
	char	   *p = mem;

	qw->source = w;
	qw->O = O;
	qw->K = K;
	qw->q = (int8_t *) p;
	p += round64((size_t) O * K);
	qw->scale = (float *) p;
	p += round64((size_t) O * sizeof(float));
	qw->colsum = (int32_t *) p;
	memset(qw->colsum, 0, (size_t) k_blocks(K) * O * sizeof(int32_t));
	for (int o = 0; o < O; o++)
	{
		/* output o's row: contiguous, or every 16th float of its panel */
		const float *row = panels16 ? w + (size_t) (o / 16) * 16 * K + o % 16 : w + (size_t) o * K;
		size_t		step = panels16 ? 16 : 1;
		float		maxabs = 0.0f,
					inv;

		for (int k = 0; k < K; k++)
			maxabs = fmaxf(maxabs, fabsf(row[k * step]));
		inv = maxabs > 0.0f ? 63.0f / maxabs : 0.0f;
		qw->scale[o] = maxabs / 63.0f;
		for (int k = 0; k < K; k++)
		{
			int			q = (int) nearbyintf(row[k * step] * inv);

			q = q > 63 ? 63 : q < -63 ? -63 : q;
			qw->q[q_index(K, o, k)] = (int8_t) q;
			qw->colsum[(size_t) (k / BT_Q8_KC) * O + o] += q;
		}
	}
}

/*
 * Row x's quantization: x ~ sx (u - zp) with u in 0 .. 255, over the row's
 * range widened to hold 0 (so that zero is exact); inv = 1 / sx, 0 for a row
 * of zeros. Asymmetric, because the feed-forward's GELU outputs sit almost
 * all above -0.17: a symmetric scale would leave half the codes unused.
 */
static inline void
range_codes(float lo, float hi, float *sx, float *inv, int32_t *zp)
{
	*sx = (hi - lo) / 255.0f;
	*inv = hi > lo ? 255.0f / (hi - lo) : 0.0f;
	*zp = (int32_t) nearbyintf(-lo * *inv);
}

/* The same from the row itself. */
static inline void
row_range(const float *x, int K, float *sx, float *inv, int32_t *zp)
{
	float		lo = 0.0f,
				hi = 0.0f;

	for (int k = 0; k < K; k++)
	{
		lo = fminf(lo, x[k]);
		hi = fmaxf(hi, x[k]);
	}
	range_codes(lo, hi, sx, inv, zp);
}

/* x's code: nearest of x inv, moved to zp and held in 0 .. 255. */
static inline int32_t
code(float x, float inv, int32_t zp)
{
	int32_t		u = (int32_t) nearbyintf(x * inv) + zp;

	return u < 0 ? 0 : u > 255 ? 255 : u;
}

void
bt_gemm_q8_plain(float *out, int ldo, const float *in, int T, const BtQ8Weight *qw, const float *bias,
				 int p0, int p1, const BtActivation *gelu)
{
	int			K = qw->K;

	for (int t = 0; t < T; t++)
	{
		const float *x = in + (size_t) t * K;
		float		sx,
					inv;
		int32_t		zp;

		row_range(x, K, &sx, &inv, &zp);
		for (int o = p0 * 16; o < p1 * 16; o++)
		{
			float		acc = bias ? bias[o] : 0.0f;

			for (int k0 = 0; k0 < K; k0 += BT_Q8_KC)
			{
				int32_t		sum = 0;

				for (int k = k0; k < K && k < k0 + BT_Q8_KC; k++)
					sum += (code(x[k], inv, zp) - zp) * qw->q[q_index(K, o, k)];
				/* as the kernel: each block's sum scaled onto the bias (or 0), then onto the last */
				acc = fmaf((float) sum, sx * qw->scale[o], acc);
			}
			out[(size_t) t * ldo + o] = acc;
		}
		if (gelu && p1 > p0)
			bt_gelu_forward(out + (size_t) t * ldo + p0 * 16, out + (size_t) t * ldo + p0 * 16,
							(size_t) (p1 - p0) * 16, *gelu);
	}
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(BT_PORTABLE)

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

#include "amx.h"
#include "simd_math.h"
#include "gemm_tiles.h"

/* row_range with AVX2 (the same numbers: min and max are exact in any order). */
AVX2 static void
row_range_avx2(const float *x, int K, float *sx, float *inv, int32_t *zp)
{
	__m256		vlo = _mm256_setzero_ps(),
				vhi = _mm256_setzero_ps();
	float		l[8],
				h[8],
				lo = 0.0f,
				hi = 0.0f;
	int			k = 0;

	for (; k + 8 <= K; k += 8)
	{
		__m256		v = _mm256_loadu_ps(x + k);

		vlo = _mm256_min_ps(vlo, v);
		vhi = _mm256_max_ps(vhi, v);
	}
	_mm256_storeu_ps(l, vlo);
	_mm256_storeu_ps(h, vhi);
	for (int i = 0; i < 8; i++)
	{
		lo = fminf(lo, l[i]);
		hi = fmaxf(hi, h[i]);
	}
	for (; k < K; k++)
	{
		lo = fminf(lo, x[k]);
		hi = fmaxf(hi, x[k]);
	}
	range_codes(lo, hi, sx, inv, zp);
}

/*
 * Quantize rows (<= MC) of in into dst, row r's K codes at dst + r K; sx and
 * zp get each row's scale and zero point. Rows past `rows` up to a whole
 * tile are zeros with scale 0, for the kernel to read and drop.
 */
AVX2 static void
quantize_rows(uint8_t *dst, float *sx, int32_t *zp, const float *in, int K, int rows)
{
	const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);

	for (int r = 0; r < (rows + MR - 1) / MR * MR; r++, dst += K)
	{
		const float *x = in + (size_t) r * K;
		__m256		vinv;
		__m256i		vzp;
		float		inv;
		int			k = 0;

		if (r >= rows)
		{
			sx[r] = 0.0f;
			zp[r] = 0;
			memset(dst, 0, K);
			continue;
		}
		row_range_avx2(x, K, &sx[r], &inv, &zp[r]);
		vinv = _mm256_set1_ps(inv);
		vzp = _mm256_set1_epi32(zp[r]);
		for (; k + 32 <= K; k += 32)
		{
			/* packs and packus saturate to 0 .. 255 as code() clamps; they work per 128-bit lane */
			__m256i		q0 = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), vinv)), vzp),
						q1 = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8), vinv)), vzp),
						q2 = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 16), vinv)), vzp),
						q3 = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 24), vinv)), vzp),
						b8 = _mm256_packus_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));

			_mm256_storeu_si256((__m256i *) (dst + k), _mm256_permutevar8x32_epi32(b8, order));
		}
		for (; k < K; k++)
			dst[k] = (uint8_t) code(x[k], inv, zp[r]);
	}
}

/* Row r of a 6x16 tile: out = fma(float(sum - zp[r] colsum), sx[r] sw, prior). */
#define Q8_STORE(r, s0, s1) \
	do { \
		__m256i		z = _mm256_set1_epi32(zp[r]); \
		__m256		sr = _mm256_set1_ps(sx[r]), \
					p0 = first ? b0 : _mm256_loadu_ps(c + (r) * ldc), \
					p1 = first ? b1 : _mm256_loadu_ps(c + (r) * ldc + 8), \
					v0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s0, _mm256_mullo_epi32(z, k0))), _mm256_mul_ps(sr, w0), p0), \
					v1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s1, _mm256_mullo_epi32(z, k1))), _mm256_mul_ps(sr, w1), p1); \
		if (gelu) \
		{ \
			v0 = gelu256(v0); \
			v1 = gelu256(v1); \
		} \
		_mm256_storeu_ps(c + (r) * ldc, v0); \
		_mm256_storeu_ps(c + (r) * ldc + 8, v1); \
	} while (0)

/* Four codes as one 32-bit lane (memcpy: the bytes are not int32_t objects). */
static inline int32_t
four_codes(const uint8_t *p)
{
	int32_t		v;

	memcpy(&v, p, 4);
	return v;
}

/* One product step for row r: 4 k of its bytes against both halves of the panel. */
#define Q8_STEP(r, s0, s1) \
	do { \
		__m256i		x = _mm256_set1_epi32(four_codes(a + (r) * lda + 4 * g)); \
		s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(x, q0), ones)); \
		s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(x, q1), ones)); \
	} while (0)

/*
 * c (MR rows, stride ldc, 16 columns) = fma(sums over `groups` groups of 4
 * codes of MR rows of a (stride lda) and b (a panel's slice), scales,
 * first ? bias or 0 : c), then the exact GELU when gelu.
 */
AVX2 static void
tile_q8(float *c, int ldc, const uint8_t *a, size_t lda, const int8_t *b, int groups, const float *sx, const int32_t *zp,
		const float *sw, const int32_t *colsum, const float *bias, bool first, bool gelu)
{
	const __m256i ones = _mm256_set1_epi16(1);
	__m256i		s00 = _mm256_setzero_si256(),
				s01 = s00,
				s10 = s00,
				s11 = s00,
				s20 = s00,
				s21 = s00,
				s30 = s00,
				s31 = s00,
				s40 = s00,
				s41 = s00,
				s50 = s00,
				s51 = s00;

	for (int g = 0; g < groups; g++, b += 64)
	{
		__m256i		q0 = _mm256_loadu_si256((const __m256i *) b),
					q1 = _mm256_loadu_si256((const __m256i *) (b + 32));

		_mm_prefetch((const char *) (b + 1024), _MM_HINT_T0);
		Q8_STEP(0, s00, s01);
		Q8_STEP(1, s10, s11);
		Q8_STEP(2, s20, s21);
		Q8_STEP(3, s30, s31);
		Q8_STEP(4, s40, s41);
		Q8_STEP(5, s50, s51);
	}
	{
		__m256		w0 = _mm256_loadu_ps(sw),
					w1 = _mm256_loadu_ps(sw + 8),
					b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps(),
					b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
		__m256i		k0 = _mm256_loadu_si256((const __m256i *) colsum),
					k1 = _mm256_loadu_si256((const __m256i *) (colsum + 8));

		Q8_STORE(0, s00, s01);
		Q8_STORE(1, s10, s11);
		Q8_STORE(2, s20, s21);
		Q8_STORE(3, s30, s31);
		Q8_STORE(4, s40, s41);
		Q8_STORE(5, s50, s51);
	}
}

/* ---- AVX512-VNNI: 12 rows by 2 panels ---- */

#define VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")))

/*
 * acc += the sums of 4 products of x's unsigned codes by w's signed weights.
 * Written as one instruction because GCC 12 copies the accumulator of
 * _mm512_dpbusd_epi32 to a fresh register (and spills) around every use:
 * 66 moves per 24 products in the 12 x 2 tile, which then ran at about half
 * the instruction's rate on Zen 4 (200 against 430 GOP/s in bench_gemm).
 */
VNNI static inline __attribute__((always_inline)) void
dpbusd(__m512i *acc, __m512i x, __m512i w)
{
	__asm__("vpdpbusd %2, %1, %0" : "+v"(*acc) : "v"(x), "v"(w));
}

/*
 * tile_q8 on 512-bit registers for ROWS rows (up to 12) and P panels
 * (constants where inlined): vpdpbusd multiplies four unsigned codes by four
 * signed weights and adds the four products to a 32-bit lane in one
 * instruction, and the weights' groups of 4 k by 16 outputs are already its
 * operand layout. The
 * integer sums are exact either way, and the scaling below repeats tile_q8's
 * operations lane for lane, so both kernels give the same sums; the GELU
 * (when gelu) is gelu512, which is bt_gelu_forward's on this path.
 */
VNNI static inline __attribute__((always_inline)) void
tile_q8_vnni(float *c, int ldc, const uint8_t *a, size_t lda, const int8_t *b, size_t b_next, int groups,
			 const float *sx, const int32_t *zp, const float *sw, const int32_t *colsum, const float *bias,
			 bool first, bool fetch, bool gelu, const int ROWS, const int P)
{
	__m512i		acc[2 * MR][2];

#pragma GCC unroll 12
	for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 2
		for (int p = 0; p < P; p++)
			acc[r][p] = _mm512_setzero_si512();
	if (fetch)
		bt_tile512_prefetch(c, ldc, ROWS, P);	/* read back (or first written) after the loop */
	for (int g = 0; g < groups; g++)
	{
		__m512i		q0 = _mm512_loadu_si512(b + 64 * g),
					q1 = P == 2 ? _mm512_loadu_si512(b + b_next + 64 * g) : q0;

		_mm_prefetch((const char *) (b + 64 * g + 1024), _MM_HINT_T0);
		if (P == 2)
			_mm_prefetch((const char *) (b + b_next + 64 * g + 1024), _MM_HINT_T0);
#pragma GCC unroll 12
		for (int r = 0; r < ROWS; r++)
		{
			__m512i		x = _mm512_set1_epi32(four_codes(a + r * lda + 4 * g));

			dpbusd(&acc[r][0], x, q0);
			if (P == 2)
				dpbusd(&acc[r][1], x, q1);
		}
	}
#pragma GCC unroll 2
	for (int p = 0; p < P; p++)
	{
		__m512		w = _mm512_loadu_ps(sw + 16 * p),
					b0 = bias ? _mm512_loadu_ps(bias + 16 * p) : _mm512_setzero_ps();
		__m512i		k = _mm512_loadu_si512(colsum + 16 * p);

#pragma GCC unroll 12
		for (int r = 0; r < ROWS; r++)
		{
			__m512		prior = first ? b0 : _mm512_loadu_ps(c + r * ldc + 16 * p),
						sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][p],
															   _mm512_mullo_epi32(_mm512_set1_epi32(zp[r]), k))),
						v = _mm512_fmadd_ps(sum, _mm512_mul_ps(_mm512_set1_ps(sx[r]), w), prior);

			_mm512_storeu_ps(c + r * ldc + 16 * p, gelu ? gelu512(v) : v);
		}
	}
}

/* tile_q8_vnni for `rows` rows and P panels, each shape inlined on its own. */
VNNI static void
tile_q8_vnni_dispatch(float *c, int ldc, const uint8_t *a, size_t lda, const int8_t *b, size_t b_next, int groups,
					  const float *sx, const int32_t *zp, const float *sw, const int32_t *colsum, const float *bias,
					  bool first, bool fetch, bool gelu, int rows, int P)
{
	BT_TILE_SHAPES(rows, P, tile_q8_vnni, c, ldc, a, lda, b, b_next, groups, sx, zp, sw, colsum, bias, first, fetch,
				   gelu);
}

/* One K block of bt_gemm_q8 on the VNNI kernel: panels in pairs, rows in tiles of 12. */
static void
block_q8_vnni(float *out, int ldo, const uint8_t *codes, int K, const BtQ8Weight *qw, const float *bias,
			  const float *sx, const int32_t *zp, int m0, int mc, int k0, int kc, int p0, int p1,
			  const BtActivation *gelu)
{
	bool		first = k0 == 0,
				last = k0 + kc == K,
				in_tile = last && bt_tile_gelu(gelu),
				after = last && gelu && !in_tile,
				fetch = bt_tile_fetch(mc, (p1 - p0) * 16);

	for (int p = p0; p < p1; p += 2)
	{
		int			P = p + 1 < p1 ? 2 : 1;
		const int8_t *panel = qw->q + (size_t) p * 16 * K + (size_t) (k0 / 4) * 64;
		const int32_t *cs = qw->colsum + (size_t) (k0 / BT_Q8_KC) * qw->O + p * 16;
		const float *pb = bias ? bias + p * 16 : NULL;

		for (int r0 = 0; r0 < mc; r0 += 2 * MR)
		{
			const uint8_t *a = codes + (size_t) r0 * K + k0;
			float	   *c = out + (size_t) (m0 + r0) * ldo + p * 16;
			int			rows = mc - r0 < 2 * MR ? mc - r0 : 2 * MR;

			tile_q8_vnni_dispatch(c, ldo, a, K, panel, (size_t) 16 * K, kc / 4, sx + r0, zp + r0,
								  qw->scale + p * 16, cs, pb, first, fetch, in_tile, rows, P);
			if (after)
				for (int r = 0; r < rows; r++)
					bt_gelu_forward(c + (size_t) r * ldo, c + (size_t) r * ldo, 16 * P, *gelu);
		}
	}
}

/* ---- AMX-INT8: 32 rows by 2 panels in four 16x16 tiles ---- */

#define AMXI8 __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

/*
 * The 32-bit sums (32 rows, stride 32) of rows a (stride lda bytes) by
 * panels b0, b1 over kc codes (a multiple of 64): tdpbusd multiplies 16 rows
 * of 64 unsigned codes by 16 groups of 4 k x 16 outputs of signed weights,
 * which is this file's weight layout, so each panel's slice loads as it is.
 */
AMXI8 static void
amx_sums(int32_t *c, const uint8_t *a, size_t lda, const int8_t *b0, const int8_t *b1, int kc, bool two)
{
	bt_amx_zero_sums();
	for (int k = 0; k < kc; k += 64)
	{
		_tile_loadd(4, a + k, lda);
		_tile_loadd(5, a + 16 * lda + k, lda);
		_tile_loadd(6, b0 + (size_t) k * 16, 64);
		_tile_dpbusd(0, 4, 6);
		_tile_dpbusd(2, 5, 6);
		if (two)
		{
			_tile_loadd(7, b1 + (size_t) k * 16, 64);
			_tile_dpbusd(1, 4, 7);
			_tile_dpbusd(3, 5, 7);
		}
	}
	bt_amx_store_sums(c, two);
}

/*
 * One K block of bt_gemm_q8 on AMX tiles (codes padded with zero rows to a
 * multiple of 32): the sums are exact, and each row is scaled as tile_q8
 * scales it, lane for lane, so the same bits come out; the GELU after.
 */
AMXI8 static void
block_q8_amx(float *out, int ldo, const uint8_t *codes, int K, const BtQ8Weight *qw, const float *bias,
			 const float *sx, const int32_t *zp, int m0, int mc, int k0, int kc, int p0, int p1,
			 const BtActivation *gelu)
{
	bool		first = k0 == 0,
				last = k0 + kc == K;
	int32_t		sums[32 * 32] __attribute__((aligned(64)));

	for (int p = p0; p < p1; p += 2)
	{
		bool		two = p + 1 < p1;
		const int8_t *b0 = qw->q + (size_t) p * 16 * K + (size_t) (k0 / 4) * 64,
				   *b1 = two ? b0 + (size_t) 16 * K : b0;
		const int32_t *cs = qw->colsum + (size_t) (k0 / BT_Q8_KC) * qw->O + p * 16;

		for (int r0 = 0; r0 < mc; r0 += 32)
		{
			int			rows = mc - r0 < 32 ? mc - r0 : 32;

			amx_sums(sums, codes + (size_t) r0 * K + k0, K, b0, b1, kc, two);
			for (int r = 0; r < rows; r++)
			{
				float	   *o = out + (size_t) (m0 + r0 + r) * ldo + p * 16;

				for (int q = 0; q < (two ? 2 : 1); q++)
				{
					__m512		w = _mm512_loadu_ps(qw->scale + (p + q) * 16),
								prior = !first ? _mm512_loadu_ps(o + 16 * q) :
						bias ? _mm512_loadu_ps(bias + (p + q) * 16) : _mm512_setzero_ps(),
								sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_loadu_si512(sums + r * 32 + 16 * q),
																	   _mm512_mullo_epi32(_mm512_set1_epi32(zp[r0 + r]),
																						  _mm512_loadu_si512(cs + 16 * q))));

					_mm512_storeu_ps(o + 16 * q, _mm512_fmadd_ps(sum, _mm512_mul_ps(_mm512_set1_ps(sx[r0 + r]), w), prior));
				}
				if (last && gelu)
					bt_gelu_forward(o, o, two ? 32 : 16, *gelu);
			}
		}
	}
}

void
bt_gemm_q8(float *out, int ldo, const float *in, int T, const BtQ8Weight *qw, const float *bias,
		   int p0, int p1, const BtActivation *gelu)
{
	int			K = qw->K,
				O = qw->O,
				rows_max = T < MC ? (T + MR - 1) / MR * MR : MC;
	bool		in_tile = bt_tile_gelu(gelu),
				after = gelu && !in_tile;
	uint8_t    *codes;
	float		sx[MC];
	int32_t		zp[MC];
	float		edge[MR * 16];	/* a tile of fewer than MR rows is computed here */
	bool		amx = bt_cpu_amx_int8() && K % 64 == 0;

	if (amx)
		rows_max = (rows_max + 31) / 32 * 32;	/* AMX reads whole pairs of 16-row tiles */
	if (!bt_simd_avx2() || T <= 0 || p1 <= p0 ||
		(codes = aligned_alloc(64, round64((size_t) rows_max * K))) == NULL)
	{
		bt_gemm_q8_plain(out, ldo, in, T, qw, bias, p0, p1, gelu);
		return;
	}
	if (amx)
		bt_amx_configure();
	for (int m0 = 0; m0 < T; m0 += MC)
	{
		int			mc = T - m0 < MC ? T - m0 : MC,
					quantized = (mc + MR - 1) / MR * MR,	/* quantize_rows zeroes up to here */
					tiled = (mc + 31) / 32 * 32;

		quantize_rows(codes, sx, zp, in + (size_t) m0 * K, K, mc);
		if (amx && tiled > quantized)
			memset(codes + (size_t) quantized * K, 0, (size_t) (tiled - quantized) * K);
		for (int k0 = 0; k0 < K; k0 += BT_Q8_KC)
		{
			int			kc = K - k0 < BT_Q8_KC ? K - k0 : BT_Q8_KC;
			bool		first = k0 == 0,
						last = k0 + kc == K;

			if (amx)
			{
				block_q8_amx(out, ldo, codes, K, qw, bias, sx, zp, m0, mc, k0, kc, p0, p1, gelu);
				continue;
			}
			if (bt_cpu_vnni())
			{
				block_q8_vnni(out, ldo, codes, K, qw, bias, sx, zp, m0, mc, k0, kc, p0, p1, gelu);
				continue;
			}

			for (int p = p0; p < p1; p++)
			{
				const int8_t *panel = qw->q + (size_t) p * 16 * K + (size_t) (k0 / 4) * 64;
				const int32_t *cs = qw->colsum + (size_t) (k0 / BT_Q8_KC) * O + p * 16;
				const float *pb = bias ? bias + p * 16 : NULL;

				for (int r0 = 0; r0 < mc; r0 += MR)
				{
					const uint8_t *a = codes + (size_t) r0 * K + k0;
					float	   *c = out + (size_t) (m0 + r0) * ldo + p * 16;
					int			rows = mc - r0 < MR ? mc - r0 : MR;

					if (rows == MR)
						tile_q8(c, ldo, a, K, panel, kc / 4, sx + r0, zp + r0, qw->scale + p * 16, cs, pb, first,
								last && in_tile);
					else
					{
						if (!first)
							bt_gemm_copy_rows(edge, 16, c, ldo, rows, 16);
						tile_q8(edge, 16, a, K, panel, kc / 4, sx + r0, zp + r0, qw->scale + p * 16, cs, pb, first,
								last && in_tile);
						bt_gemm_copy_rows(c, ldo, edge, 16, rows, 16);
					}
					if (last && after)
						for (int r = 0; r < rows; r++)
							bt_gelu_forward(c + (size_t) r * ldo, c + (size_t) r * ldo, 16, *gelu);
				}
			}
		}
	}
	if (amx)
		bt_amx_release();
	free(codes);
}

#else							/* not x86-64: plain loops */

void
bt_gemm_q8(float *out, int ldo, const float *in, int T, const BtQ8Weight *qw, const float *bias,
		   int p0, int p1, const BtActivation *gelu)
{
	bt_gemm_q8_plain(out, ldo, in, T, qw, bias, p0, p1, gelu);
}

#endif
