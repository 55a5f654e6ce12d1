/*
 * simd.c - AVX2+FMA elementwise kernels (see simd.h), eight floats at a time.
 * Row tails shorter than eight go through masked loads and stores, so every
 * element takes the same arithmetic path whatever its position.
 */
#include "simd.h"

#include "cpu.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(BT_PORTABLE)

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define AVX2 __attribute__((target("avx2,fma")))

#include "simd_math.h"

bool
bt_simd_avx2(void)
{
	return bt_cpu_path() >= BT_CPU_AVX2;
}

/* Lanes 0 .. n-1 set (n from 0 to 8), for maskload/maskstore of a row's tail. */
AVX2 static inline __m256i
tail_mask(size_t n)
{
	return _mm256_cmpgt_epi32(_mm256_set1_epi32((int) n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The eight lanes of v combined by max (largest) or else by addition (sum): halves, then quarters, then pairs. */
AVX2 static inline __attribute__((always_inline)) float
hcombine(__m256 v, const bool max)
{
	__m128		s = max ? _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)) :
					_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = max ? _mm_max_ps(s, _mm_movehl_ps(s, s)) : _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = max ? _mm_max_ss(s, _mm_movehdup_ps(s)) : _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* Sum of the eight lanes. */
AVX2 static inline float
hsum(__m256 v)
{
	return hcombine(v, false);
}

/* Largest of the eight lanes. */
AVX2 static inline float
hmax(__m256 v)
{
	return hcombine(v, true);
}

/* Sum of the four double lanes. */
AVX2 static inline double
hsum_pd(__m256d v)
{
	__m128d		s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));

	return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* out[i] = f(in[i]) for all n, eight at a time and a masked tail; f is inlined where this is. */
AVX2 static inline __attribute__((always_inline)) void
map256(float *out, const float *in, size_t n, __m256 (*f) (__m256))
{
	size_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(out + i, f(_mm256_loadu_ps(in + i)));
	if (i < n)
	{
		__m256i		m = tail_mask(n - i);

		_mm256_maskstore_ps(out + i, m, f(_mm256_maskload_ps(in + i, m)));
	}
}

AVX2 void
bt_avx2_erf(float *out, const float *in, size_t n)
{
	map256(out, in, n, erf256);
}

AVX2 void
bt_avx2_exp(float *out, const float *in, size_t n)
{
	map256(out, in, n, exp256);
}

AVX2 void
bt_avx2_gelu(float *out, const float *in, size_t n)
{
	map256(out, in, n, gelu256);
}

/* gelu'(x) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi), on eight floats */
AVX2 static inline __m256
gelu_slope256(__m256 x)
{
	__m256		cdf = _mm256_mul_ps(_mm256_set1_ps(0.5f),
									_mm256_add_ps(_mm256_set1_ps(1.0f),
												  erf256(_mm256_mul_ps(x, _mm256_set1_ps((float) M_SQRT1_2))))),
				pdf = exp256(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(x, x)));

	return _mm256_fmadd_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.3989422804014327f)), pdf, cdf);
}

AVX2 void
bt_avx2_gelu_backward(float *dx, const float *x, size_t n)
{
	size_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dx + i), gelu_slope256(_mm256_loadu_ps(x + i))));
	if (i < n)
	{
		__m256i		m = tail_mask(n - i);

		_mm256_maskstore_ps(dx + i, m, _mm256_mul_ps(_mm256_maskload_ps(dx + i, m),
													 gelu_slope256(_mm256_maskload_ps(x + i, m))));
	}
}

/* gelu_slope256 on sixteen floats, lane for lane the same operations */
BT_MATH512 static inline __m512
gelu_slope512(__m512 x)
{
	__m512		cdf = _mm512_mul_ps(_mm512_set1_ps(0.5f),
									_mm512_add_ps(_mm512_set1_ps(1.0f),
												  erf512(_mm512_mul_ps(x, _mm512_set1_ps((float) M_SQRT1_2))))),
				pdf = exp512(_mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(x, x)));

	return _mm512_fmadd_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.3989422804014327f)), pdf, cdf);
}

BT_MATH512 void
bt_avx512_gelu(float *out, const float *in, size_t n)
{
	size_t		i = 0;

	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(out + i, gelu512(_mm512_loadu_ps(in + i)));
	if (i < n)
	{
		__mmask16	m = (__mmask16) ((1u << (n - i)) - 1);

		_mm512_mask_storeu_ps(out + i, m, gelu512(_mm512_maskz_loadu_ps(m, in + i)));
	}
}

BT_MATH512 void
bt_avx512_gelu_backward(float *dx, const float *x, size_t n)
{
	size_t		i = 0;

	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(dx + i, _mm512_mul_ps(_mm512_loadu_ps(dx + i), gelu_slope512(_mm512_loadu_ps(x + i))));
	if (i < n)
	{
		__mmask16	m = (__mmask16) ((1u << (n - i)) - 1);

		_mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dx + i),
													   gelu_slope512(_mm512_maskz_loadu_ps(m, x + i))));
	}
}

AVX2 double
bt_avx2_sumsq(const float *x, size_t n)
{
	__m256d		acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
	double		sum = 0.0;
	size_t		i = 0;

	/* four independent sums, so the adds do not wait on each other */
	for (; i + 16 <= n; i += 16)
		for (int a = 0; a < 4; a++)
		{
			__m256d		d = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * a));

			acc[a] = _mm256_fmadd_pd(d, d, acc[a]);
		}
	sum = hsum_pd(_mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])));
	for (; i < n; i++)
		sum += (double) x[i] * x[i];
	return sum;
}

/* GCC fuses an intrinsic multiply and add into an FMA on its own; clang does not across statements */
#if defined(__clang__)
#define NO_FMA_CONTRACTION
#else
#define NO_FMA_CONTRACTION __attribute__((optimize("fp-contract=off")))
#endif

AVX2 NO_FMA_CONTRACTION size_t
bt_avx2_adamw(float *p, float *g, float *m, float *v, size_t n, const BtAdamStep *s)
{
	const __m256 grad_scale = _mm256_set1_ps(s->grad_scale),
				decay = _mm256_set1_ps(s->decay),
				one_minus_b1 = _mm256_set1_ps(s->one_minus_b1),
				one_minus_b2 = _mm256_set1_ps(s->one_minus_b2),
				b2 = _mm256_set1_ps(s->b2),
				bc2_sqrt = _mm256_set1_ps(s->bc2_sqrt),
				eps = _mm256_set1_ps(s->eps),
				minus_step = _mm256_set1_ps(-s->step_size),
				zero = _mm256_setzero_ps();
	size_t		i = 0;

	/* bt_adamw_update's plain loop, operation for operation (no fused multiply-adds), so the same bits */
	for (; i + 8 <= n; i += 8)
	{
		__m256		gi = _mm256_loadu_ps(g + i),
					pi = _mm256_loadu_ps(p + i),
					mi = _mm256_loadu_ps(m + i),
					vi = _mm256_loadu_ps(v + i),
					denom;

		if (s->clip)
			gi = _mm256_mul_ps(gi, grad_scale);
		if (s->decay_on)
			pi = _mm256_mul_ps(pi, decay);
		mi = _mm256_add_ps(mi, _mm256_mul_ps(one_minus_b1, _mm256_sub_ps(gi, mi)));
		vi = _mm256_add_ps(_mm256_mul_ps(vi, b2), _mm256_mul_ps(_mm256_mul_ps(one_minus_b2, gi), gi));
		denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2_sqrt), eps);
		pi = _mm256_add_ps(pi, _mm256_mul_ps(minus_step, _mm256_div_ps(mi, denom)));
		_mm256_storeu_ps(p + i, pi);
		_mm256_storeu_ps(m + i, mi);
		_mm256_storeu_ps(v + i, vi);
		_mm256_storeu_ps(g + i, zero);
	}
	return i;
}

AVX2 void
bt_avx2_softmax_rows(float *x, int rows, int cols)
{
	size_t		full = (size_t) cols & ~(size_t) 7,
				rest = (size_t) cols - full;
	__m256i		m = tail_mask(rest);
	__m256		zero = _mm256_setzero_ps();

	for (int i = 0; i < rows; i++)
	{
		float	   *row = x + (size_t) i * cols;
		__m256		vmax = _mm256_set1_ps(row[0]),
					vsum = zero,
					e;
		float		inv;

		for (size_t j = 0; j < full; j += 8)
			vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(row + j));
		if (rest)				/* masked-off lanes load 0; row[0] stands in for them */
			vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(_mm256_set1_ps(row[0]), _mm256_maskload_ps(row + full, m),
														_mm256_castsi256_ps(m)));
		vmax = _mm256_set1_ps(hmax(vmax));
		for (size_t j = 0; j < full; j += 8)
		{
			e = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + j), vmax));
			_mm256_storeu_ps(row + j, e);
			vsum = _mm256_add_ps(vsum, e);
		}
		if (rest)
		{
			e = _mm256_and_ps(exp256(_mm256_sub_ps(_mm256_maskload_ps(row + full, m), vmax)), _mm256_castsi256_ps(m));
			_mm256_maskstore_ps(row + full, m, e);
			vsum = _mm256_add_ps(vsum, e);
		}
		inv = 1.0f / hsum(vsum);
		for (size_t j = 0; j < full; j += 8)
			_mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), _mm256_set1_ps(inv)));
		if (rest)
			_mm256_maskstore_ps(row + full, m, _mm256_mul_ps(_mm256_maskload_ps(row + full, m), _mm256_set1_ps(inv)));
	}
}

AVX2 void
bt_avx2_layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in,
						   const float *mean, const float *rstd, const float *w, int T, int H)
{
	size_t		full = (size_t) H & ~(size_t) 7,
				rest = (size_t) H - full;
	__m256i		m = tail_mask(rest);

	for (int t = 0; t < T; t++)
	{
		const float *x = in + (size_t) t * H;
		const float *dy = dout + (size_t) t * H;
		float	   *dx = din + (size_t) t * H;
		__m256		mu = _mm256_set1_ps(mean[t]),
					r = _mm256_set1_ps(rstd[t]),
					sum_g = _mm256_setzero_ps(),
					sum_gx = _mm256_setzero_ps(),
					mean_g,
					mean_gx;

		/* y = xhat w + b, xhat = (x - mean) rstd: the sums of g = dy w and g xhat, and dw, db */
		for (size_t j = 0; j < full + (rest ? 8 : 0); j += 8)
		{
			bool		tail = j >= full;
			__m256		xj = tail ? _mm256_maskload_ps(x + j, m) : _mm256_loadu_ps(x + j),
						dyj = tail ? _mm256_maskload_ps(dy + j, m) : _mm256_loadu_ps(dy + j),
						wj = tail ? _mm256_maskload_ps(w + j, m) : _mm256_loadu_ps(w + j),
						dwj = tail ? _mm256_maskload_ps(dw + j, m) : _mm256_loadu_ps(dw + j),
						dbj = tail ? _mm256_maskload_ps(db + j, m) : _mm256_loadu_ps(db + j),
						xhat = _mm256_mul_ps(_mm256_sub_ps(xj, mu), r),
						g = _mm256_mul_ps(dyj, wj);

			sum_g = _mm256_add_ps(sum_g, g);	/* masked-off lanes: dy = 0, so g = 0 */
			sum_gx = _mm256_fmadd_ps(g, xhat, sum_gx);
			dwj = _mm256_fmadd_ps(dyj, xhat, dwj);
			dbj = _mm256_add_ps(dbj, dyj);
			if (tail)
			{
				_mm256_maskstore_ps(dw + j, m, dwj);
				_mm256_maskstore_ps(db + j, m, dbj);
			}
			else
			{
				_mm256_storeu_ps(dw + j, dwj);
				_mm256_storeu_ps(db + j, dbj);
			}
		}
		mean_g = _mm256_set1_ps(hsum(sum_g) / H);
		mean_gx = _mm256_set1_ps(hsum(sum_gx) / H);
		/* dx = rstd (g - mean(g) - xhat mean(g xhat)) */
		for (size_t j = 0; j < full + (rest ? 8 : 0); j += 8)
		{
			bool		tail = j >= full;
			__m256		xj = tail ? _mm256_maskload_ps(x + j, m) : _mm256_loadu_ps(x + j),
						dyj = tail ? _mm256_maskload_ps(dy + j, m) : _mm256_loadu_ps(dy + j),
						wj = tail ? _mm256_maskload_ps(w + j, m) : _mm256_loadu_ps(w + j),
						xhat = _mm256_mul_ps(_mm256_sub_ps(xj, mu), r),
						dxj = _mm256_mul_ps(r, _mm256_sub_ps(_mm256_sub_ps(_mm256_mul_ps(dyj, wj), mean_g),
															 _mm256_mul_ps(xhat, mean_gx)));

			if (tail)
				_mm256_maskstore_ps(dx + j, m, dxj);
			else
				_mm256_storeu_ps(dx + j, dxj);
		}
	}
}

AVX2 void
bt_avx2_softmax_backward_rows(float *g, const float *p, int rows, int cols)
{
	size_t		full = (size_t) cols & ~(size_t) 7,
				rest = (size_t) cols - full;
	__m256i		m = tail_mask(rest);

	for (int i = 0; i < rows; i++)
	{
		const float *pr = p + (size_t) i * cols;
		float	   *gr = g + (size_t) i * cols;
		__m256		acc = _mm256_setzero_ps(),
					dot;

		for (size_t j = 0; j < full; j += 8)
			acc = _mm256_fmadd_ps(_mm256_loadu_ps(pr + j), _mm256_loadu_ps(gr + j), acc);
		if (rest)
			acc = _mm256_fmadd_ps(_mm256_maskload_ps(pr + full, m), _mm256_maskload_ps(gr + full, m), acc);
		dot = _mm256_set1_ps(hsum(acc));
		for (size_t j = 0; j < full; j += 8)
			_mm256_storeu_ps(gr + j, _mm256_mul_ps(_mm256_loadu_ps(pr + j), _mm256_sub_ps(_mm256_loadu_ps(gr + j), dot)));
		if (rest)
			_mm256_maskstore_ps(gr + full, m, _mm256_mul_ps(_mm256_maskload_ps(pr + full, m),
															_mm256_sub_ps(_mm256_maskload_ps(gr + full, m), dot)));
	}
}

AVX2 void
bt_avx2_add(float *x, const float *add, size_t n)
{
	size_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(add + i)));
	for (; i < n; i++)
		x[i] += add[i];
}

/* v (8) = in (8) [+ add (8)]: one chunk of a LayerNorm input row */
AVX2 static inline __m256
ln_input(const float *in, const float *add, size_t j, __m256i m, bool masked)
{
	__m256		v = masked ? _mm256_maskload_ps(in + j, m) : _mm256_loadu_ps(in + j);

	if (add)
		v = _mm256_add_ps(v, masked ? _mm256_maskload_ps(add + j, m) : _mm256_loadu_ps(add + j));
	return v;
}

AVX2 void
bt_avx2_layernorm(float *out, float *mean, float *rstd, const float *in, const float *add,
				  const float *w, const float *b, int T, int H, float eps)
{
	size_t		full = (size_t) H & ~(size_t) 7,
				rest = (size_t) H - full;
	__m256i		m = tail_mask(rest);

	for (int t = 0; t < T; t++)
	{
		const float *x = in + (size_t) t * H;
		const float *a = add ? add + (size_t) t * H : NULL;
		float	   *y = out + (size_t) t * H;
		/* two sums per pass, each on its own register, so that the adds do not wait on each other */
		__m256d		acc = _mm256_setzero_pd(),
					acc2 = _mm256_setzero_pd();
		__m256		v,
					vmu,
					vr;
		double		mu,
					var;
		float		r;

		/* x + add goes to y first (y may be x), so the later passes read one row */
		for (size_t j = 0; j < full; j += 8)
		{
			v = ln_input(x, a, j, m, false);
			_mm256_storeu_ps(y + j, v);
			acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
			acc2 = _mm256_add_pd(acc2, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
		}
		if (rest)
		{
			v = ln_input(x, a, full, m, true);	/* masked-off lanes are 0 */
			_mm256_maskstore_ps(y + full, m, v);
			acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
			acc2 = _mm256_add_pd(acc2, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
		}
		mu = hsum_pd(_mm256_add_pd(acc, acc2)) / H;

		/* biased variance around the mean, in double like the plain loop */
		acc = _mm256_setzero_pd();
		acc2 = _mm256_setzero_pd();
		for (size_t j = 0; j < full + (rest ? 8 : 0); j += 8)
		{
			__m256d		dlo,
						dhi,
						vmu_d = _mm256_set1_pd(mu);

			v = j < full ? _mm256_loadu_ps(y + j) : _mm256_maskload_ps(y + j, m);
			dlo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vmu_d);
			dhi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vmu_d);
			if (j >= full)		/* the masked-off lanes hold 0, not the mean: drop them */
			{
				__m256i		mlo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(m)),
							mhi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(m, 1));

				dlo = _mm256_and_pd(dlo, _mm256_castsi256_pd(mlo));
				dhi = _mm256_and_pd(dhi, _mm256_castsi256_pd(mhi));
			}
			acc = _mm256_fmadd_pd(dlo, dlo, acc);
			acc2 = _mm256_fmadd_pd(dhi, dhi, acc2);
		}
		var = hsum_pd(_mm256_add_pd(acc, acc2)) / H;
		r = (float) (1.0 / sqrt(var + eps));

		vmu = _mm256_set1_ps((float) mu);
		vr = _mm256_set1_ps(r);
		for (size_t j = 0; j < full; j += 8)
		{
			v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(y + j), vmu), vr);
			_mm256_storeu_ps(y + j, _mm256_fmadd_ps(v, _mm256_loadu_ps(w + j), _mm256_loadu_ps(b + j)));
		}
		if (rest)
		{
			v = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(y + full, m), vmu), vr);
			_mm256_maskstore_ps(y + full, m, _mm256_fmadd_ps(v, _mm256_maskload_ps(w + full, m),
															 _mm256_maskload_ps(b + full, m)));
		}
		if (mean)
			mean[t] = (float) mu;
		if (rstd)
			rstd[t] = r;
	}
}

/*
 * c (rows <= 4, stride ldc, 16 columns) = scale * a (rows, stride lda) @ b
 * (n rows, stride ldb, 16 columns): eight accumulators, two loads of b and
 * four broadcasts of a per step. Rows past `rows` read row 0 and are not
 * stored.
 */
AVX2 static void
small_4x16(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int n, float scale, int rows)
{
	const float *a0 = a,
			   *a1 = rows > 1 ? a + lda : a,
			   *a2 = rows > 2 ? a + 2 * (size_t) lda : a,
			   *a3 = rows > 3 ? a + 3 * (size_t) lda : a;
	__m256		c00 = _mm256_setzero_ps(),
				c01 = _mm256_setzero_ps(),
				c10 = _mm256_setzero_ps(),
				c11 = _mm256_setzero_ps(),
				c20 = _mm256_setzero_ps(),
				c21 = _mm256_setzero_ps(),
				c30 = _mm256_setzero_ps(),
				c31 = _mm256_setzero_ps(),
				vs = _mm256_set1_ps(scale);

	for (int t = 0; t < n; t++, b += ldb)
	{
		__m256		b0 = _mm256_loadu_ps(b),
					b1 = _mm256_loadu_ps(b + 8),
					x;

		x = _mm256_broadcast_ss(a0 + t);
		c00 = _mm256_fmadd_ps(x, b0, c00);
		c01 = _mm256_fmadd_ps(x, b1, c01);
		x = _mm256_broadcast_ss(a1 + t);
		c10 = _mm256_fmadd_ps(x, b0, c10);
		c11 = _mm256_fmadd_ps(x, b1, c11);
		x = _mm256_broadcast_ss(a2 + t);
		c20 = _mm256_fmadd_ps(x, b0, c20);
		c21 = _mm256_fmadd_ps(x, b1, c21);
		x = _mm256_broadcast_ss(a3 + t);
		c30 = _mm256_fmadd_ps(x, b0, c30);
		c31 = _mm256_fmadd_ps(x, b1, c31);
	}
	_mm256_storeu_ps(c, _mm256_mul_ps(c00, vs));
	_mm256_storeu_ps(c + 8, _mm256_mul_ps(c01, vs));
	if (rows > 1)
	{
		_mm256_storeu_ps(c + ldc, _mm256_mul_ps(c10, vs));
		_mm256_storeu_ps(c + ldc + 8, _mm256_mul_ps(c11, vs));
	}
	if (rows > 2)
	{
		_mm256_storeu_ps(c + 2 * (size_t) ldc, _mm256_mul_ps(c20, vs));
		_mm256_storeu_ps(c + 2 * (size_t) ldc + 8, _mm256_mul_ps(c21, vs));
	}
	if (rows > 3)
	{
		_mm256_storeu_ps(c + 3 * (size_t) ldc, _mm256_mul_ps(c30, vs));
		_mm256_storeu_ps(c + 3 * (size_t) ldc + 8, _mm256_mul_ps(c31, vs));
	}
}

AVX2 void
bt_avx2_attention_head(float *ctx, int ldc, const float *q, const float *k, const float *v, int ld, int S, int d,
					   float scale)
{
	int			sp = (S + 15) & ~15;	/* key columns padded to whole 16s */
	float		kt[BT_SMALL_ATTN_D * BT_SMALL_ATTN_S],	/* k^T (d, sp), zero past S */
				p[BT_SMALL_ATTN_S * BT_SMALL_ATTN_S];	/* scores, then probabilities (S, sp) */

	for (int i = 0; i < d; i++)
	{
		for (int j = 0; j < S; j++)
			kt[i * sp + j] = k[(size_t) j * ld + i];
		for (int j = S; j < sp; j++)
			kt[i * sp + j] = 0.0f;
	}
	for (int r = 0; r < S; r += 4)
		for (int j = 0; j < sp; j += 16)
			small_4x16(p + r * sp + j, sp, q + (size_t) r * ld, ld, kt + j, sp, d, scale, S - r < 4 ? S - r : 4);
	for (int r = 0; r < S; r++)
		bt_avx2_softmax_rows(p + r * sp, 1, S);
	for (int r = 0; r < S; r += 4)
		for (int c = 0; c < d; c += 16)
			small_4x16(ctx + (size_t) r * ldc + c, ldc, p + r * sp, sp, v + c, ld, S, 1.0f, S - r < 4 ? S - r : 4);
}

#else							/* not x86-64: the plain loops of ops.c run instead */

bool
bt_simd_avx2(void)
{
	return false;
}

void
bt_avx2_erf(float *out, const float *in, size_t n)
{
}

void
bt_avx2_exp(float *out, const float *in, size_t n)
{
}

void
bt_avx2_gelu(float *out, const float *in, size_t n)
{
}

void
bt_avx2_gelu_backward(float *dx, const float *x, size_t n)
{
}

void
bt_avx512_gelu(float *out, const float *in, size_t n)
{
}

void
bt_avx512_gelu_backward(float *dx, const float *x, size_t n)
{
}

double
bt_avx2_sumsq(const float *x, size_t n)
{
	return 0.0;
}

size_t
bt_avx2_adamw(float *p, float *g, float *m, float *v, size_t n, const BtAdamStep *s)
{
	return 0;
}

void
bt_avx2_softmax_rows(float *x, int rows, int cols)
{
}

void
bt_avx2_layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in,
						   const float *mean, const float *rstd, const float *w, int T, int H)
{
}

void
bt_avx2_softmax_backward_rows(float *g, const float *p, int rows, int cols)
{
}

void
bt_avx2_add(float *x, const float *add, size_t n)
{
}

void
bt_avx2_layernorm(float *out, float *mean, float *rstd, const float *in, const float *add,
				  const float *w, const float *b, int T, int H, float eps)
{
}

void
bt_avx2_attention_head(float *ctx, int ldc, const float *q, const float *k, const float *v, int ld, int S, int d,
					   float scale)
{
}

#endif
