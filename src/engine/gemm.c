/*
 * gemm.c - dense layers over packed weights (see gemm.h).
 *
 * The AVX2 kernel computes a tile of 6 rows by one panel of 16 outputs in
 * twelve ymm accumulators: per k, two loads of the panel and six broadcasts
 * of the (repacked) input feed twelve FMAs. Blocking: KC = 384 of K at a time
 * (a panel slice of 24 KiB stays in L1 while MC = 264 rows of input, repacked
 * 6 rows at a time into 396 KiB, stay in L2). A last panel narrower than 16
 * goes through the plain loops: real models have none.
 */
#include "gemm.h"

#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "ops.h"
#include "simd.h"

/* Where output o of a packed (O, K) weight keeps its k-th weight. */
static inline size_t
packed_index(int O, int K, int o, int k)
{
	int			p = o / BT_GEMM_PANEL,
				c = o % BT_GEMM_PANEL,
				w = O - p * BT_GEMM_PANEL < BT_GEMM_PANEL ? O - p * BT_GEMM_PANEL : BT_GEMM_PANEL;

	return (size_t) p * BT_GEMM_PANEL * K + (size_t) k * w + c;
}

void
bt_gemm_pack(float *w, int O, int K, float *scratch)
{
	memcpy(scratch, w, (size_t) O * K * sizeof(float));
	for (int o = 0; o < O; o++)
		for (int k = 0; k < K; k++)
			w[packed_index(O, K, o, k)] = scratch[(size_t) o * K + k];
}

void
bt_gemm_unpack(float *w, int O, int K, float *scratch)
{
	memcpy(scratch, w, (size_t) O * K * sizeof(float));
	for (int o = 0; o < O; o++)
		for (int k = 0; k < K; k++)
			w[(size_t) o * K + k] = scratch[packed_index(O, K, o, k)];
}

void
bt_gemm_packed_plain(float *out, int ldo, const float *in, int T, const float *wp, const float *bias,
					 int O, int K, int p0, int p1, const BtActivation *gelu)
{
	int			o0 = p0 * BT_GEMM_PANEL,
				o1 = p1 * BT_GEMM_PANEL < O ? p1 * BT_GEMM_PANEL : O;

	for (int t = 0; t < T; t++)
	{
		for (int o = o0; o < o1; o++)
		{
			float		sum = bias ? bias[o] : 0.0f;

			for (int k = 0; k < K; k++)
				sum += in[(size_t) t * K + k] * wp[packed_index(O, K, o, k)];
			out[(size_t) t * ldo + o] = sum;
		}
		if (gelu && o1 > o0)
			bt_gelu_forward(out + (size_t) t * ldo + o0, out + (size_t) t * ldo + o0, o1 - o0, *gelu);
	}
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(BT_PORTABLE)

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

#include "simd_math.h"
#include "gemm_tiles.h"

#define MR 6
#define KC 384
#define MC 264					/* a multiple of 2 MR */

/*
 * dst = rows (<= MC) of in, columns k0 .. k0 + kc - 1, as tiles of MR rows:
 * tile i holds k-major groups of MR floats (rows past `rows` are zero).
 */
AVX2 static void
pack_rows(float *dst, const float *in, int K, int rows, int k0, int kc)
{
	for (int r0 = 0; r0 < rows; r0 += MR, dst += MR * kc)
	{
		const float *src[8];
		int			k = 0;

		/* rows past the end read row r0 (any valid row) and are zeroed below */
		for (int r = 0; r < 8; r++)
			src[r] = in + (size_t) (r0 + (r < MR && r0 + r < rows ? r : 0)) * K + k0;
		/*
		 * Eight k at a time: an 8x8 transpose of rows r0 .. r0+7 (the last two
		 * unused) gives one vector per k, stored 8 wide at dst + MR k; its two
		 * extra lanes land in the next k's slot, which the next store rewrites,
		 * and past the tile's end in the slack the buffer keeps for it.
		 */
		for (; k + 8 <= kc; k += 8)
		{
			__m256		a0 = _mm256_loadu_ps(src[0] + k),
						a1 = _mm256_loadu_ps(src[1] + k),
						a2 = _mm256_loadu_ps(src[2] + k),
						a3 = _mm256_loadu_ps(src[3] + k),
						a4 = _mm256_loadu_ps(src[4] + k),
						a5 = _mm256_loadu_ps(src[5] + k),
						a6 = _mm256_setzero_ps(),
						a7 = _mm256_setzero_ps(),
						t0 = _mm256_unpacklo_ps(a0, a1),
						t1 = _mm256_unpackhi_ps(a0, a1),
						t2 = _mm256_unpacklo_ps(a2, a3),
						t3 = _mm256_unpackhi_ps(a2, a3),
						t4 = _mm256_unpacklo_ps(a4, a5),
						t5 = _mm256_unpackhi_ps(a4, a5),
						t6 = _mm256_unpacklo_ps(a6, a7),
						t7 = _mm256_unpackhi_ps(a6, a7),
						u0 = _mm256_shuffle_ps(t0, t2, 0x44),
						u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
						u2 = _mm256_shuffle_ps(t1, t3, 0x44),
						u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
						u4 = _mm256_shuffle_ps(t4, t6, 0x44),
						u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
						u6 = _mm256_shuffle_ps(t5, t7, 0x44),
						u7 = _mm256_shuffle_ps(t5, t7, 0xEE);

			_mm256_storeu_ps(dst + (k + 0) * MR, _mm256_permute2f128_ps(u0, u4, 0x20));
			_mm256_storeu_ps(dst + (k + 1) * MR, _mm256_permute2f128_ps(u1, u5, 0x20));
			_mm256_storeu_ps(dst + (k + 2) * MR, _mm256_permute2f128_ps(u2, u6, 0x20));
			_mm256_storeu_ps(dst + (k + 3) * MR, _mm256_permute2f128_ps(u3, u7, 0x20));
			_mm256_storeu_ps(dst + (k + 4) * MR, _mm256_permute2f128_ps(u0, u4, 0x31));
			_mm256_storeu_ps(dst + (k + 5) * MR, _mm256_permute2f128_ps(u1, u5, 0x31));
			_mm256_storeu_ps(dst + (k + 6) * MR, _mm256_permute2f128_ps(u2, u6, 0x31));
			_mm256_storeu_ps(dst + (k + 7) * MR, _mm256_permute2f128_ps(u3, u7, 0x31));
		}
		for (; k < kc; k++)
			for (int r = 0; r < MR; r++)
				dst[k * MR + r] = src[r][k];
		for (int r = rows - r0; r < MR; r++)
			for (k = 0; k < kc; k++)
				dst[k * MR + r] = 0.0f;
	}
}

/*
 * c (MR rows, stride ldc, 16 columns) = (first ? bias or 0 : c) + a @ b over kc,
 * then the exact GELU when gelu: a is one packed tile (kc groups of MR), b a
 * panel slice (kc rows of 16). The GELU runs on the twelve accumulators at
 * once, whose independent chains hide its latency.
 */
AVX2 static void
tile_6x16(float *c, int ldc, const float *a, const float *b, int kc, const float *bias, bool first, bool gelu)
{
	__m256		c00,
				c01,
				c10,
				c11,
				c20,
				c21,
				c30,
				c31,
				c40,
				c41,
				c50,
				c51;

	if (first)
	{
		__m256		b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps(),
					b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();

		c00 = c10 = c20 = c30 = c40 = c50 = b0;
		c01 = c11 = c21 = c31 = c41 = c51 = b1;
	}
	else
	{
		c00 = _mm256_loadu_ps(c);
		c01 = _mm256_loadu_ps(c + 8);
		c10 = _mm256_loadu_ps(c + ldc);
		c11 = _mm256_loadu_ps(c + ldc + 8);
		c20 = _mm256_loadu_ps(c + 2 * ldc);
		c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
		c30 = _mm256_loadu_ps(c + 3 * ldc);
		c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
		c40 = _mm256_loadu_ps(c + 4 * ldc);
		c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
		c50 = _mm256_loadu_ps(c + 5 * ldc);
		c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
	}
	for (int k = 0; k < kc; k++, a += MR, b += 16)
	{
		__m256		b0 = _mm256_loadu_ps(b),
					b1 = _mm256_loadu_ps(b + 8),
					x;

		_mm_prefetch((const char *) (b + 256), _MM_HINT_T0);
		x = _mm256_broadcast_ss(a);
		c00 = _mm256_fmadd_ps(x, b0, c00);
		c01 = _mm256_fmadd_ps(x, b1, c01);
		x = _mm256_broadcast_ss(a + 1);
		c10 = _mm256_fmadd_ps(x, b0, c10);
		c11 = _mm256_fmadd_ps(x, b1, c11);
		x = _mm256_broadcast_ss(a + 2);
		c20 = _mm256_fmadd_ps(x, b0, c20);
		c21 = _mm256_fmadd_ps(x, b1, c21);
		x = _mm256_broadcast_ss(a + 3);
		c30 = _mm256_fmadd_ps(x, b0, c30);
		c31 = _mm256_fmadd_ps(x, b1, c31);
		x = _mm256_broadcast_ss(a + 4);
		c40 = _mm256_fmadd_ps(x, b0, c40);
		c41 = _mm256_fmadd_ps(x, b1, c41);
		x = _mm256_broadcast_ss(a + 5);
		c50 = _mm256_fmadd_ps(x, b0, c50);
		c51 = _mm256_fmadd_ps(x, b1, c51);
	}
	if (gelu)
	{
		c00 = gelu256(c00);
		c01 = gelu256(c01);
		c10 = gelu256(c10);
		c11 = gelu256(c11);
		c20 = gelu256(c20);
		c21 = gelu256(c21);
		c30 = gelu256(c30);
		c31 = gelu256(c31);
		c40 = gelu256(c40);
		c41 = gelu256(c41);
		c50 = gelu256(c50);
		c51 = gelu256(c51);
	}
	_mm256_storeu_ps(c, c00);
	_mm256_storeu_ps(c + 8, c01);
	_mm256_storeu_ps(c + ldc, c10);
	_mm256_storeu_ps(c + ldc + 8, c11);
	_mm256_storeu_ps(c + 2 * ldc, c20);
	_mm256_storeu_ps(c + 2 * ldc + 8, c21);
	_mm256_storeu_ps(c + 3 * ldc, c30);
	_mm256_storeu_ps(c + 3 * ldc + 8, c31);
	_mm256_storeu_ps(c + 4 * ldc, c40);
	_mm256_storeu_ps(c + 4 * ldc + 8, c41);
	_mm256_storeu_ps(c + 5 * ldc, c50);
	_mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

/* ---- AVX-512: 12 rows by 2 panels ---- */

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
/*
 * K at a time: 768 (two panels' slices of 96 KiB, from L2 rather than L1)
 * beat 256 by 5-11% in whole MiniLM passes on Zen 4: each further block of K
 * reloads and rewrites the outputs, which for the wide layers (1152 to 3072
 * outputs) no longer sit in L2 by then.
 */
#define KC512 768

/*
 * c (ROWS rows, up to 12, stride ldc, 16 P columns) = (first ? bias or 0 :
 * c) + a @ b over kc: a holds packed tiles of MR rows, a_next floats apart
 * (only ROWS rows are read); b holds P panel slices, b_next floats apart;
 * bias, when first, the 16 P biases. Each k loads P vectors of the panels
 * and broadcasts ROWS inputs into ROWS P FMAs on 512-bit registers: with 12
 * rows and 2 panels, 24 accumulators. Each accumulator sums its k in the same
 * order as tile_6x16, so both kernels give the same sums; gelu through
 * gelu512, bt_gelu_forward's GELU on this path (not gelu256's bits). ROWS and
 * P are constants where it is inlined.
 */
AVX512 static inline __attribute__((always_inline)) void
tile512(float *c, int ldc, const float *a, size_t a_next, const float *b, size_t b_next, int kc,
		const float *bias, bool first, bool fetch, bool gelu, const int ROWS, const int P)
{
	__m512		acc[2 * MR][2];

	bt_tile512_start(acc, c, ldc, bias, first, fetch, ROWS, P);
	for (int k = 0; k < kc; k++)
	{
		__m512		b0 = _mm512_loadu_ps(b + 16 * k),
					b1 = P == 2 ? _mm512_loadu_ps(b + b_next + 16 * k) : b0;

		_mm_prefetch((const char *) (b + 16 * k + 256), _MM_HINT_T0);
		if (P == 2)
			_mm_prefetch((const char *) (b + b_next + 16 * k + 256), _MM_HINT_T0);
#pragma GCC unroll 12
		for (int r = 0; r < ROWS; r++)
		{
			__m512		x = _mm512_set1_ps(a[(r / MR) * a_next + (size_t) k * MR + r % MR]);

			acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
			if (P == 2)
				acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
		}
	}
	bt_tile512_store(c, ldc, acc, gelu, ROWS, P);
}

/* tile512 for `rows` rows and P panels, each shape inlined on its own. */
AVX512 static void
tile512_dispatch(float *c, int ldc, const float *a, size_t a_next, const float *b, size_t b_next, int kc,
				 const float *bias, bool first, bool fetch, bool gelu, int rows, int P)
{
	BT_TILE_SHAPES(rows, P, tile512, c, ldc, a, a_next, b, b_next, kc, bias, first, fetch, gelu);
}

/* block() for the AVX-512 kernel: pairs of panels by pairs of row tiles. */
static void
block512(float *out, int ldo, const float *tiles, const float *wp, const float *bias, int K,
		 int m0, int mc, int k0, int kc, int p0, int p1, const BtActivation *gelu)
{
	bool		last = k0 + kc == K,
				in_tile = last && bt_tile_gelu(gelu),
				after = last && gelu && !in_tile,
				fetch = bt_tile_fetch(mc, (p1 - p0) * 16);

	for (int p = p0; p < p1; p += 2)
	{
		int			P = p + 1 < p1 ? 2 : 1;
		const float *panel = wp + (size_t) p * 16 * K + (size_t) k0 * 16;
		const float *pb = bias ? bias + p * 16 : NULL;

		for (int r0 = 0; r0 < mc; r0 += 2 * MR)
		{
			const float *a = tiles + (size_t) r0 * kc;
			float	   *c = out + (size_t) (m0 + r0) * ldo + p * 16;
			int			rows = mc - r0 < 2 * MR ? mc - r0 : 2 * MR;

			tile512_dispatch(c, ldo, a, (size_t) MR * kc, panel, (size_t) 16 * K, kc, pb, k0 == 0, fetch, in_tile,
							 rows, P);
			if (after)
				for (int r = 0; r < rows; r++)
					bt_gelu_forward(c + (size_t) r * ldo, c + (size_t) r * ldo, 16 * P, *gelu);
		}
	}
}

/*
 * Full panels p0 .. p1 - 1 of out over rows m0 .. m0 + mc - 1 and k0 .. k0 + kc - 1;
 * gelu (NULL or the activation) goes over each tile once its last k is in:
 * the exact one in the kernel's registers, the tanh form after the store.
 */
static void
block(float *out, int ldo, const float *tiles, const float *wp, const float *bias, int K,
	  int m0, int mc, int k0, int kc, int p0, int p1, const BtActivation *gelu)
{
	bool		last = k0 + kc == K,
				in_tile = last && bt_tile_gelu(gelu),
				after = last && gelu && !in_tile;

	float		edge[MR * 16];	/* a tile of fewer than MR rows is computed here */

	for (int p = p0; p < p1; p++)
	{
		const float *panel = wp + (size_t) p * 16 * K + (size_t) k0 * 16;
		const float *pb = bias ? bias + p * 16 : NULL;

		for (int r0 = 0; r0 < mc; r0 += MR)
		{
			const float *a = tiles + (size_t) r0 * kc;
			float	   *c = out + (size_t) (m0 + r0) * ldo + p * 16;
			int			rows = mc - r0 < MR ? mc - r0 : MR;

			if (rows == MR)
				tile_6x16(c, ldo, a, panel, kc, pb, k0 == 0, in_tile);
			else
			{
				if (k0 > 0)
					bt_gemm_copy_rows(edge, 16, c, ldo, rows, 16);
				tile_6x16(edge, 16, a, panel, kc, pb, k0 == 0, in_tile);
				bt_gemm_copy_rows(c, ldo, edge, 16, rows, 16);
			}
			if (after)
				for (int r = 0; r < rows; r++)
					bt_gelu_forward(c + (size_t) r * ldo, c + (size_t) r * ldo, 16, *gelu);
		}
	}
}

void
bt_gemm_packed(float *out, int ldo, const float *in, int T, const float *wp, const float *bias,
			   int O, int K, int p0, int p1, const BtActivation *gelu)
{
	bool		avx512 = bt_cpu_path() >= BT_CPU_AVX512;
	int			kc_step = avx512 ? KC512 : KC,
				full = O / 16,	/* panels of 16 */
				q1 = p1 < full ? p1 : full,
				rows = T < MC ? (T + MR - 1) / MR * MR : MC;	/* what one block of input needs */
	/* + pack_rows' slack, rounded up to the 64-byte multiple aligned_alloc asks for */
	size_t		floats = ((size_t) rows * (K < kc_step ? K : kc_step) + 64 + 15) / 16 * 16;
	float	   *tiles;

	if (!bt_simd_avx2() || T <= 0 || (tiles = aligned_alloc(64, floats * sizeof(float))) == NULL)
	{
		bt_gemm_packed_plain(out, ldo, in, T, wp, bias, O, K, p0, p1, gelu);
		return;
	}
	if (p0 < q1)
		for (int k0 = 0; k0 < K; k0 += kc_step)
		{
			int			kc = K - k0 < kc_step ? K - k0 : kc_step;

			for (int m0 = 0; m0 < T; m0 += MC)
			{
				int			mc = T - m0 < MC ? T - m0 : MC;

				pack_rows(tiles, in + (size_t) m0 * K, K, mc, k0, kc);
				if (avx512)
					block512(out, ldo, tiles, wp, bias, K, m0, mc, k0, kc, p0, q1, gelu);
				else
					block(out, ldo, tiles, wp, bias, K, m0, mc, k0, kc, p0, q1, gelu);
			}
		}
	free(tiles);
	if (p1 > full)				/* a last panel narrower than 16 */
		bt_gemm_packed_plain(out, ldo, in, T, wp, bias, O, K, full > p0 ? full : p0, p1, gelu);
}

#else							/* not x86-64: plain loops */

void
bt_gemm_packed(float *out, int ldo, const float *in, int T, const float *wp, const float *bias,
			   int O, int K, int p0, int p1, const BtActivation *gelu)
{
	bt_gemm_packed_plain(out, ldo, in, T, wp, bias, O, K, p0, p1, gelu);
}

#endif
