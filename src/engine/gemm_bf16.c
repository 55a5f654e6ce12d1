/*
 * gemm_bf16.c - dense layers with bf16 products (see gemm_bf16.h).
 *
 * The AVX512-BF16 kernel computes 12 rows by two panels (32 outputs) in 24
 * zmm accumulators: per pair of k, two loads of the panels and twelve
 * broadcast pairs of the input feed 24 vdpbf16ps. Inputs are rounded to bf16
 * and repacked once per block of rows, as tiles of 6 rows holding, per pair
 * of k, one 32-bit word (two bf16) per row. Blocking: KC = 768 k (two panels'
 * slices, 48 KiB, from L2), MC = 264 rows.
 */
#include "gemm_bf16.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "gemm.h"
#include "ops.h"

#define MR 6
/*
 * Even. 768 rather than 512 (which kept two panels' slices in Zen 4's 32 KiB
 * L1): bert-base's 768 inputs are then one block, and every further block
 * reloads and rewrites outputs that wide layers have pushed out of L2 by
 * then; 6-8% more bert-base passes a second at batch 32 on Zen 4, 0-4% more
 * MiniLM ones.
 */
#define KC 768
#define MC 264					/* a multiple of 2 MR */

/* n rounded up to a multiple of 64. */
static inline size_t
round64(size_t n)
{
	return (n + 63) / 64 * 64;
}

/* Where output o's k-th weight sits, in bf16 units. */
static inline size_t
bf16_index(int K, int o, int k)
{
	return (size_t) (o / 16) * 16 * K + (size_t) (k / 2) * 32 + (o % 16) * 2 + k % 2;
}

/* The float a bf16 stands for. */
static inline float
bf16_value(uint16_t h)
{
	uint32_t	u = (uint32_t) h << 16;
	float		f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

size_t
bt_bf16_bytes(int O, int K)
{
	return round64((size_t) O * K * sizeof(uint16_t));
}

uint16_t
bt_bf16_round(float x)
{
	uint32_t	u;

	memcpy(&u, &x, sizeof(u));
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t) ((u >> 16) | 0x40);	/* a quiet NaN */
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t) (u >> 16);
}

void
bt_bf16_convert(BtBf16Weight *bw, void *mem, const float *w, int O, int K, int panels16)
{
	bw->source = w;
	bw->O = O;
	bw->K = K;
	bw->w = mem;
	for (int o = 0; o < O; o++)
	{
		/* output o's row: contiguous, or every 16th float of its panel */
		const float *row = panels16 ? w + (size_t) (o / 16) * 16 * K + o % 16 : w + (size_t) o * K;
		size_t		step = panels16 ? 16 : 1;

		for (int k = 0; k < K; k++)
			bw->w[bf16_index(K, o, k)] = bt_bf16_round(row[k * step]);
	}
}

/* Element (i, k) of a strided matrix, 0 past its K columns. */
static inline float
strided_at(const BtStrided *a, int i, int k)
{
	return k < a->K ? a->p[(size_t) i * a->rs + (size_t) k * a->cs] : 0.0f;
}

/*
 * Columns of panels p0 .. p1 - 1 of out = (accumulate ? out : bias or 0) +
 * bf16(a) @ bf16(W)^T with plain loops: each pair of products added to the
 * float32 sum as vdpbf16ps adds them (the odd k first).
 */
static void
plain_rows(float *out, int ldo, const BtStrided *a, int T, const BtBf16Weight *bw, const float *bias, int p0,
		   int p1, bool accumulate)
{
	int			K = bw->K;

	for (int t = 0; t < T; t++)
		for (int o = p0 * 16; o < p1 * 16; o++)
		{
			float	   *c = out + (size_t) t * ldo + o;
			float		acc = accumulate ? *c : bias ? bias[o] : 0.0f;

			/* bf16 products are exact in float: each pair adds two rounded sums, the odd k first */
			for (int k = 0; k < K; k += 2)
			{
				acc += bf16_value(bt_bf16_round(strided_at(a, t, k + 1))) *
					bf16_value(bw->w[bf16_index(K, o, k + 1)]);
				acc += bf16_value(bt_bf16_round(strided_at(a, t, k))) * bf16_value(bw->w[bf16_index(K, o, k)]);
			}
			*c = acc;
		}
}

void
bt_gemm_bf16_plain(float *out, int ldo, const float *in, int T, const BtBf16Weight *bw, const float *bias,
				   int p0, int p1, const BtActivation *gelu)
{
	BtStrided	a = {in, (size_t) bw->K, 1, bw->K};

	plain_rows(out, ldo, &a, T, bw, bias, p0, p1, false);
	if (gelu && p1 > p0)
		for (int t = 0; t < T; t++)
			bt_gelu_forward(out + (size_t) t * ldo + p0 * 16, out + (size_t) t * ldo + p0 * 16,
							(size_t) (p1 - p0) * 16, *gelu);
}

/* Panels p0 .. p1 - 1 of bw from the strided b with plain loops (any strides). */
static void
convert_strided_plain(BtBf16Weight *bw, const BtStrided *b, int N, int p0, int p1)
{
	for (int n = p0 * 16; n < p1 * 16; n++)
		for (int k = 0; k < bw->K; k++)
			bw->w[bf16_index(bw->K, n, k)] = n < N ? bt_bf16_round(strided_at(b, n, k)) : 0;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(BT_PORTABLE)

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

#include "amx.h"
#include "simd_math.h"
#include "gemm_tiles.h"

#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))

/* Word o of a tile's 16 pairs (MR words each) is pair o / MR: the pair each output lane takes. */
static const int32_t tile_pair_of[MR * 16] = {
	0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
	4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7,
	8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11,
	12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15};

/* Lanes i of 0 .. 15 with i = s (mod MR): the lanes of one row in a vector of tile words. */
static const uint16_t tile_lanes_mod[MR] = {0x1041, 0x2082, 0x4104, 0x8208, 0x0410, 0x0820};

/*
 * dst (MR * 16 words) = MR rows' words for 16 pairs in tile order (pair j's
 * MR words together): a transpose of words[r] (row r's 16 pair words) done
 * with one masked permute per row and output vector instead of 96 stores.
 */
AVX512BF16 static inline __attribute__((always_inline)) void
store_tile_words(uint32_t *dst, const __m512i words[MR])
{
#pragma GCC unroll 6
	for (int v = 0; v < MR; v++)
	{
		__m512i		pair = _mm512_loadu_si512(tile_pair_of + 16 * v),
					part[MR];

		/* output lane i is row (16 v + i) mod MR; 16 v mod MR is 4 v mod 6 (independent permutes, then ORs) */
#pragma GCC unroll 6
		for (int r = 0; r < MR; r++)
			part[r] = _mm512_maskz_permutexvar_epi32(tile_lanes_mod[(r + 2 * v) % MR], pair, words[r]);
		_mm512_storeu_si512(dst + 16 * v,
							_mm512_or_si512(_mm512_or_si512(_mm512_or_si512(part[0], part[1]), part[2]),
											_mm512_or_si512(_mm512_or_si512(part[3], part[4]), part[5])));
	}
}

/*
 * dst = rows m0 .. m0 + rows - 1 (rows <= MC) of a, k0 .. k0 + kc - 1 (kc
 * even), rounded to bf16, as tiles of MR rows: per pair of k, MR 32-bit words
 * (rows past `rows`, and k past a->K, zero).
 */
AVX512BF16 static void
pack_rows_bf16(uint32_t *dst, const BtStrided *a, int m0, int rows, int k0, int kc)
{
	int			pairs = kc / 2,
				tiles = (rows + MR - 1) / MR,
				kend = a->K - k0 < kc ? a->K - k0 : kc;	/* columns that exist */

	if (a->cs != 1)
	{
		/*
		 * k strided, rows contiguous (a transposed operand, as dW = dout^T in
		 * takes dout): per pair of k, 48 rows (eight tiles) as three vectors of
		 * pair words, then each tile's six words picked out of two of them and
		 * stored at once. Rows past `rows` and k past a->K load as zeros.
		 */
		__m512i		pick[8];

#pragma GCC unroll 8
		for (int t = 0; t < 8; t++)
			pick[t] = _mm512_add_epi32(_mm512_set1_epi32(MR * t % 16),
									   _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
		for (int r0 = 0; r0 < rows; r0 += 8 * MR)
		{
			int			live = rows - r0 < 8 * MR ? rows - r0 : 8 * MR,
						group_tiles = (live + MR - 1) / MR;
			uint32_t   *group = dst + (size_t) (r0 / MR) * MR * pairs;
			__mmask16	m[3];

			for (int v = 0; v < 3; v++)
				m[v] = live >= 16 * (v + 1) ? 0xffff : live <= 16 * v ? 0 : (__mmask16) ((1u << (live - 16 * v)) - 1);
			for (int j = 0; j < pairs; j++)
			{
				const float *x0 = a->p + (size_t) (k0 + 2 * j) * a->cs + m0 + r0;
				bool		has_even = 2 * j < kend,
							has_odd = 2 * j + 1 < kend;
				__m512i		w[3];

#pragma GCC unroll 3
				for (int v = 0; v < 3; v++)
					w[v] = bf16_pair_words(has_even ? _mm512_maskz_loadu_ps(m[v], x0 + 16 * v) : _mm512_setzero_ps(),
										   has_odd ? _mm512_maskz_loadu_ps(m[v], x0 + a->cs + 16 * v) :
										   _mm512_setzero_ps());
#pragma GCC unroll 8
				for (int t = 0; t < 8; t++)
					if (t < group_tiles)
						_mm512_mask_storeu_epi32(group + (size_t) t * MR * pairs + (size_t) j * MR, 0x3f,
												 _mm512_permutex2var_epi32(w[MR * t / 16], pick[t],
																		   w[MR * t / 16 < 2 ? MR * t / 16 + 1 : 2]));
			}
		}
		return;
	}
	for (int t = 0; t < tiles; t++)
	{
		int			live = rows - t * MR < MR ? rows - t * MR : MR;
		const float *x = a->p + (size_t) (m0 + t * MR) * a->rs + k0;
		uint32_t   *tile = dst + (size_t) t * MR * pairs;
		int			k = 0;

		for (; k + 32 <= kend; k += 32)
		{
			__m512i		words[MR];

			/* 32 floats of a row become 32 bf16 in order: 16 words of (even k, odd k) */
#pragma GCC unroll 6
			for (int r = 0; r < MR; r++)
				words[r] = r < live ? (__m512i) _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + r * a->rs + k + 16),
																	_mm512_loadu_ps(x + r * a->rs + k)) :
					_mm512_setzero_si512();
			store_tile_words(tile + (size_t) (k / 2) * MR, words);
		}
		for (; k < kc; k += 2)
			for (int r = 0; r < MR; r++)
				tile[(size_t) (k / 2) * MR + r] =
					r >= live || k >= kend ? 0 :
					bt_bf16_round(x[r * a->rs + k]) |
					(uint32_t) (k + 1 < kend ? bt_bf16_round(x[r * a->rs + k + 1]) : 0) << 16;
	}
}

/*
 * c (ROWS rows, up to 12, stride ldc, 16 P columns) = (first ? bias or 0 :
 * c) + a @ b over `pairs` pairs of k: a holds tiles of MR rows, a_next words
 * apart (only ROWS rows are read); b the P panels' slices, b_next bf16 apart;
 * through the exact GELU when gelu. ROWS and P are constants where inlined.
 */
AVX512BF16 static inline __attribute__((always_inline)) void
tile_bf16(float *c, int ldc, const uint32_t *a, size_t a_next, const uint16_t *b, size_t b_next, int pairs,
		  const float *bias, bool first, bool fetch, bool gelu, const int ROWS, const int P)
{
	__m512		acc[2 * MR][2];

	bt_tile512_start(acc, c, ldc, bias, first, fetch, ROWS, P);
	for (int j = 0; j < pairs; j++)
	{
		__m512bh	b0 = (__m512bh) _mm512_loadu_si512(b + 32 * j),
					b1 = P == 2 ? (__m512bh) _mm512_loadu_si512(b + b_next + 32 * j) : b0;

		_mm_prefetch((const char *) (b + 32 * j + 512), _MM_HINT_T0);
		if (P == 2)
			_mm_prefetch((const char *) (b + b_next + 32 * j + 512), _MM_HINT_T0);
#pragma GCC unroll 12
		for (int r = 0; r < ROWS; r++)
		{
			__m512bh	x = (__m512bh) _mm512_set1_epi32((int) a[(r / MR) * a_next + (size_t) j * MR + r % MR]);

			acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
			if (P == 2)
				acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
		}
	}
	bt_tile512_store(c, ldc, acc, gelu, ROWS, P);
}

/* tile_bf16 for `rows` rows and P panels, each shape inlined on its own. */
AVX512BF16 static void
tile_bf16_dispatch(float *c, int ldc, const uint32_t *a, size_t a_next, const uint16_t *b, size_t b_next,
				   int pairs, const float *bias, bool first, bool fetch, bool gelu, int rows, int P)
{
	BT_TILE_SHAPES(rows, P, tile_bf16, c, ldc, a, a_next, b, b_next, pairs, bias, first, fetch, gelu);
}

/* ---- AMX: 32 rows by 2 panels in four 16x16 tiles ---- */

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))
#define AMX_MC 128				/* rows converted to bf16 at a time (a multiple of 32) */

/*
 * c (32 rows, stride 32) = a (32 rows of K bf16, stride lda bf16) @ panels
 * b0, b1 (b1 may be b0 when there is one panel; its tiles are then unused).
 */
AMX static void
amx_block(float *c, const uint16_t *a, size_t lda, const uint16_t *b0, const uint16_t *b1, int K, bool two)
{
	bt_amx_zero_sums();
	for (int k = 0; k < K; k += 32)
	{
		_tile_loadd(4, a + k, lda * 2);
		_tile_loadd(5, a + 16 * lda + k, lda * 2);
		_tile_loadd(6, b0 + (size_t) k * 16, 64);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(2, 5, 6);
		if (two)
		{
			_tile_loadd(7, b1 + (size_t) k * 16, 64);
			_tile_dpbf16ps(1, 4, 7);
			_tile_dpbf16ps(3, 5, 7);
		}
	}
	bt_amx_store_sums(c, two);
}

/* bt_gemm_bf16 on AMX tiles; K % 32 == 0. The bias is added as each block's sums are stored. */
AMX static bool
gemm_amx(float *out, int ldo, const float *in, int T, const BtBf16Weight *bw, const float *bias,
		 int p0, int p1, const BtActivation *gelu)
{
	int			K = bw->K;
	uint16_t   *a = aligned_alloc(64, (size_t) AMX_MC * K * sizeof(uint16_t));
	float		c[32 * 32] __attribute__((aligned(64)));

	if (a == NULL)
		return false;
	bt_amx_configure();
	for (int m0 = 0; m0 < T; m0 += AMX_MC)
	{
		int			mc = T - m0 < AMX_MC ? T - m0 : AMX_MC,
					padded = (mc + 31) / 32 * 32;

		/* rows to bf16, row-major; rows past mc, to a whole pair of tiles, are zero */
		for (int r = 0; r < mc; r++)
		{
			const float *x = in + (size_t) (m0 + r) * K;
			uint16_t   *dst = a + (size_t) r * K;

			for (int k = 0; k < K; k += 32)
				_mm512_storeu_si512(dst + k, (__m512i) _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16),
																		   _mm512_loadu_ps(x + k)));
		}
		memset(a + (size_t) mc * K, 0, (size_t) (padded - mc) * K * sizeof(uint16_t));
		for (int p = p0; p < p1; p += 2)
		{
			bool		two = p + 1 < p1;
			const uint16_t *b0 = bw->w + (size_t) p * 16 * K,
					   *b1 = two ? b0 + (size_t) 16 * K : b0;

			for (int r0 = 0; r0 < mc; r0 += 32)
			{
				int			rows = mc - r0 < 32 ? mc - r0 : 32;

				amx_block(c, a + (size_t) r0 * K, K, b0, b1, K, two);
				for (int r = 0; r < rows; r++)
				{
					float	   *o = out + (size_t) (m0 + r0 + r) * ldo + p * 16;

					for (int q = 0; q < (two ? 2 : 1); q++)
					{
						__m512		v = _mm512_loadu_ps(c + r * 32 + 16 * q);

						if (bias)
							v = _mm512_add_ps(v, _mm512_loadu_ps(bias + (p + q) * 16));
						_mm512_storeu_ps(o + 16 * q, v);
					}
					if (gelu)
						bt_gelu_forward(o, o, two ? 32 : 16, *gelu);
				}
			}
		}
	}
	bt_amx_release();
	free(a);
	return true;
}

/*
 * The AVX512-BF16 kernel over panels p0 .. p1 - 1 for T rows of a (see
 * bt_gemm_bf16_strided; gelu as in bt_gemm_bf16). False when it could not
 * get memory, before writing anything.
 */
AVX512BF16 static bool
gemm_rows_avx512(float *out, int ldo, const BtStrided *in, int T, const BtBf16Weight *bw, const float *bias,
				 int p0, int p1, const BtActivation *gelu, bool accumulate)
{
	int			K = bw->K,
				rows_max = T < MC ? (T + MR - 1) / MR * MR : MC;
	uint32_t   *tiles = aligned_alloc(64, round64((size_t) rows_max * (K < KC ? K : KC) / 2 * sizeof(uint32_t)));

	if (tiles == NULL)
		return false;
	for (int k0 = 0; k0 < K; k0 += KC)
	{
		int			kc = K - k0 < KC ? K - k0 : KC,
					pairs = kc / 2;
		bool		first = k0 == 0 && !accumulate,
					last = k0 + kc == K,
					in_tile = last && bt_tile_gelu(gelu),
					after = last && gelu && !in_tile;

		for (int m0 = 0; m0 < T; m0 += MC)
		{
			int			mc = T - m0 < MC ? T - m0 : MC;
			bool		fetch = bt_tile_fetch(mc, (p1 - p0) * 16);

			pack_rows_bf16(tiles, in, m0, mc, k0, kc);
			for (int p = p0; p < p1; p += 2)
			{
				int			P = p + 1 < p1 ? 2 : 1;
				const uint16_t *panel = bw->w + (size_t) p * 16 * K + (size_t) k0 * 16;
				const float *pb = bias ? bias + p * 16 : NULL;

				for (int r0 = 0; r0 < mc; r0 += 2 * MR)
				{
					const uint32_t *a = tiles + (size_t) r0 * pairs;
					float	   *c = out + (size_t) (m0 + r0) * ldo + p * 16;
					int			rows = mc - r0 < 2 * MR ? mc - r0 : 2 * MR;

					tile_bf16_dispatch(c, ldo, a, (size_t) MR * pairs, panel, (size_t) 16 * K, pairs, pb, first,
									   fetch, in_tile, rows, P);
					if (after)
						for (int r = 0; r < rows; r++)
							bt_gelu_forward(c + (size_t) r * ldo, c + (size_t) r * ldo, 16 * P, *gelu);
				}
			}
		}
	}
	free(tiles);
	return true;
}

void
bt_gemm_bf16(float *out, int ldo, const float *in, int T, const BtBf16Weight *bw, const float *bias,
			 int p0, int p1, const BtActivation *gelu)
{
	BtStrided	a = {in, (size_t) bw->K, 1, bw->K};

	if (T <= 0 || p1 <= p0)
		return;
	if (bt_cpu_amx() && bw->K % 32 == 0 && gemm_amx(out, ldo, in, T, bw, bias, p0, p1, gelu))
		return;
	if (!bt_cpu_bf16() || !gemm_rows_avx512(out, ldo, &a, T, bw, bias, p0, p1, gelu, false))
		bt_gemm_bf16_plain(out, ldo, in, T, bw, bias, p0, p1, gelu);
}

void
bt_gemm_bf16_strided(float *out, int ldo, const BtStrided *a, int T, const BtBf16Weight *bw, const float *bias,
					 int p0, int p1, bool accumulate)
{
	if (T <= 0 || p1 <= p0)
		return;
	/* AMX reads whole rows of bf16: a contiguous input of whole tiles' width, nothing to add to */
	if (bt_cpu_amx() && a->cs == 1 && a->rs == (size_t) bw->K && a->K == bw->K && bw->K % 32 == 0 && !accumulate &&
		gemm_amx(out, ldo, a->p, T, bw, bias, p0, p1, NULL))
		return;
	if (!bt_cpu_bf16() || !gemm_rows_avx512(out, ldo, a, T, bw, bias, p0, p1, NULL, accumulate))
		plain_rows(out, ldo, a, T, bw, bias, p0, p1, accumulate);
}

/* bt_bf16_convert_strided with AVX512-BF16 where one of b's strides is 1. */
AVX512BF16 static void
convert_strided_avx512(BtBf16Weight *bw, const BtStrided *b, int N, int p0, int p1)
{
	int			K = bw->K;
	uint32_t   *w32 = (uint32_t *) bw->w;	/* word p 8 K + 16 j + c: pair j of output 16 p + c */

	if (b->cs == 1)
	{
		/* each output's k contiguous: 32 k become 16 pair words, one per 16-output row of the panel */
		for (int n = p0 * 16; n < p1 * 16; n++)
		{
			uint32_t   *dst = w32 + (size_t) (n / 16) * 8 * K + n % 16;
			const float *row = b->p + (size_t) n * b->rs;
			uint32_t	words[16];
			int			k = 0;

			if (n >= N)
			{
				for (int j = 0; j < K / 2; j++)
					dst[(size_t) j * 16] = 0;
				continue;
			}
			for (; k + 32 <= b->K; k += 32)
			{
				_mm512_storeu_si512(words, (__m512i) _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + k + 16),
																		 _mm512_loadu_ps(row + k)));
				for (int j = 0; j < 16; j++)
					dst[(size_t) (k / 2 + j) * 16] = words[j];
			}
			for (; k < K; k += 2)
				dst[(size_t) (k / 2) * 16] = bt_bf16_round(strided_at(b, n, k)) |
					(uint32_t) bt_bf16_round(strided_at(b, n, k + 1)) << 16;
		}
		return;
	}
	/* outputs contiguous (b->rs == 1), k strided: a pair of k for 16 outputs is one 64-byte store */
	for (int p = p0; p < p1; p++)
	{
		__mmask16	live = N - 16 * p >= 16 ? 0xffff : N <= 16 * p ? 0 : (__mmask16) ((1u << (N - 16 * p)) - 1);

		for (int j = 0; j < K / 2; j++)
		{
			const float *x0 = b->p + (size_t) (2 * j) * b->cs + 16 * p;
			__m512		lo = 2 * j < b->K ? _mm512_maskz_loadu_ps(live, x0) : _mm512_setzero_ps(),
						hi = 2 * j + 1 < b->K ? _mm512_maskz_loadu_ps(live, x0 + b->cs) : _mm512_setzero_ps();

			_mm512_storeu_si512(w32 + (size_t) p * 8 * K + 16 * j, bf16_pair_words(lo, hi));
		}
	}
}

void
bt_bf16_convert_strided(BtBf16Weight *bw, const BtStrided *b, int N, int p0, int p1)
{
	if (bt_cpu_bf16() && (b->cs == 1 || b->rs == 1))
		convert_strided_avx512(bw, b, N, p0, p1);
	else
		convert_strided_plain(bw, b, N, p0, p1);
}

#else							/* not x86-64: plain loops */

void
bt_gemm_bf16(float *out, int ldo, const float *in, int T, const BtBf16Weight *bw, const float *bias,
			 int p0, int p1, const BtActivation *gelu)
{
	bt_gemm_bf16_plain(out, ldo, in, T, bw, bias, p0, p1, gelu);
}

void
bt_gemm_bf16_strided(float *out, int ldo, const BtStrided *a, int T, const BtBf16Weight *bw, const float *bias,
					 int p0, int p1, bool accumulate)
{
	plain_rows(out, ldo, a, T, bw, bias, p0, p1, accumulate);
}

void
bt_bf16_convert_strided(BtBf16Weight *bw, const BtStrided *b, int N, int p0, int p1)
{
	convert_strided_plain(bw, b, N, p0, p1);
}

#endif
