/*
 * simd_math.h - exp, erf and the exact GELU on eight floats (AVX2+FMA), inline
 * for simd.c's loops and for the GEMM kernels, which apply the GELU to their
 * accumulators before storing them; and the same on sixteen floats for the
 * AVX-512 kernels, lane for lane the same operations, so the same bits; and
 * the words of bf16 pairs the bf16 products take (AVX512-BF16). Include
 * after <immintrin.h> with AVX2 defined as the target attribute; x86-64 only.
 * PostgreSQL-free.
 */
#ifndef PGBERT_SIMD_MATH_H
#define PGBERT_SIMD_MATH_H

#include <math.h>

/*
 * exp(x): x = n ln 2 + r with |r| <= ln 2 / 2 (ln 2 split in two so that
 * n ln 2 is exact enough), e^r by Cephes' expf polynomial, 2^n built in the
 * exponent bits. The clamp keeps n within the normal exponents.
 */
AVX2 static inline __m256
exp256(__m256 x)
{
	const __m256 ln2_hi = _mm256_set1_ps(0.693359375f),
				ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
	__m256		n,
				r,
				p;
	__m256i		pow2n;

	x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.3f));
	n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
						_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm256_fnmadd_ps(n, ln2_hi, x);
	r = _mm256_fnmadd_ps(n, ln2_lo, r);
	p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
	/* e^r = 1 + r + r^2 p(r) */
	p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
	pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n));
}

/*
 * erf(x), Norbert Juffa's erff ("Efficient faithfully-rounded implementation
 * of error function erff", Stack Overflow 35148198; the coefficients ONNX
 * Runtime's MLAS uses too): x + x p(x^2) below |x| = 0.921875, else
 * sign(x) (1 - exp(-q(|x|))) with |x| clamped at 3.925, where erf is 1 in float.
 * Both branches are computed and blended.
 */
AVX2 static inline __m256
erf256(__m256 x)
{
	const __m256 sign_bit = _mm256_set1_ps(-0.0f);
	__m256		t = _mm256_andnot_ps(sign_bit, x),
				s = _mm256_mul_ps(x, x),
				small,
				big,
				u,
				t2;

	small = _mm256_set1_ps(-5.99104969e-4f);
	small = _mm256_fmadd_ps(small, s, _mm256_set1_ps(4.99339588e-3f));
	small = _mm256_fmadd_ps(small, s, _mm256_set1_ps(-2.67667342e-2f));
	small = _mm256_fmadd_ps(small, s, _mm256_set1_ps(1.12818025e-1f));
	small = _mm256_fmadd_ps(small, s, _mm256_set1_ps(-3.76124859e-1f));
	small = _mm256_fmadd_ps(small, s, _mm256_set1_ps(1.28379151e-1f));
	small = _mm256_fmadd_ps(small, x, x);

	t = _mm256_min_ps(t, _mm256_set1_ps(3.925f));
	t2 = _mm256_mul_ps(t, t);
	big = _mm256_fmadd_ps(_mm256_set1_ps(1.72948930e-5f), t, _mm256_set1_ps(-3.83208680e-4f));
	u = _mm256_fmadd_ps(_mm256_set1_ps(3.88393435e-3f), t, _mm256_set1_ps(-2.42545605e-2f));
	big = _mm256_fmadd_ps(big, t2, u);
	big = _mm256_fmadd_ps(big, t, _mm256_set1_ps(1.06777847e-1f));
	big = _mm256_fmadd_ps(big, t, _mm256_set1_ps(6.34846687e-1f));
	big = _mm256_fmadd_ps(big, t, _mm256_set1_ps(1.28717512e-1f));
	big = _mm256_fmadd_ps(big, t, t);
	big = _mm256_sub_ps(_mm256_set1_ps(1.0f), exp256(_mm256_xor_ps(big, sign_bit)));
	big = _mm256_or_ps(big, _mm256_and_ps(x, sign_bit));	/* copysign: big >= 0 here */

	return _mm256_blendv_ps(small, big,
							_mm256_cmp_ps(_mm256_andnot_ps(sign_bit, x), _mm256_set1_ps(0.921875f), _CMP_GT_OQ));
}

/* 0.5 x (1 + erf(x / sqrt 2)), in the order torch evaluates it */
AVX2 static inline __m256
gelu256(__m256 x)
{
	__m256		e = erf256(_mm256_mul_ps(x, _mm256_set1_ps((float) M_SQRT1_2)));

	return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* ---- the same on sixteen floats (AVX-512F), for the 512-bit tiles' stores ---- */

#define BT_MATH512 __attribute__((target("avx512f,avx2,fma")))

/* exp256 on sixteen floats. */
BT_MATH512 static inline __m512
exp512(__m512 x)
{
	const __m512 ln2_hi = _mm512_set1_ps(0.693359375f),
				ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
	__m512		n,
				r,
				p;
	__m512i		pow2n;

	x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-87.3f));
	n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
							 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm512_fnmadd_ps(n, ln2_hi, x);
	r = _mm512_fnmadd_ps(n, ln2_lo, r);
	p = _mm512_set1_ps(1.9875691500e-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
	p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
	pow2n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
	return _mm512_mul_ps(p, _mm512_castsi512_ps(pow2n));
}

/* Bitwise operations on floats through their integer lanes (AVX-512F has no float and/or/xor without DQ). */
BT_MATH512 static inline __m512
bits512_andnot(__m512 a, __m512 b)
{
	return _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

BT_MATH512 static inline __m512
bits512_and(__m512 a, __m512 b)
{
	return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

BT_MATH512 static inline __m512
bits512_or(__m512 a, __m512 b)
{
	return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

BT_MATH512 static inline __m512
bits512_xor(__m512 a, __m512 b)
{
	return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

/* erf256 on sixteen floats. */
BT_MATH512 static inline __m512
erf512(__m512 x)
{
	const __m512 sign_bit = _mm512_set1_ps(-0.0f);
	__m512		t = bits512_andnot(sign_bit, x),
				s = _mm512_mul_ps(x, x),
				small,
				big,
				u,
				t2;

	small = _mm512_set1_ps(-5.99104969e-4f);
	small = _mm512_fmadd_ps(small, s, _mm512_set1_ps(4.99339588e-3f));
	small = _mm512_fmadd_ps(small, s, _mm512_set1_ps(-2.67667342e-2f));
	small = _mm512_fmadd_ps(small, s, _mm512_set1_ps(1.12818025e-1f));
	small = _mm512_fmadd_ps(small, s, _mm512_set1_ps(-3.76124859e-1f));
	small = _mm512_fmadd_ps(small, s, _mm512_set1_ps(1.28379151e-1f));
	small = _mm512_fmadd_ps(small, x, x);

	t = _mm512_min_ps(t, _mm512_set1_ps(3.925f));
	t2 = _mm512_mul_ps(t, t);
	big = _mm512_fmadd_ps(_mm512_set1_ps(1.72948930e-5f), t, _mm512_set1_ps(-3.83208680e-4f));
	u = _mm512_fmadd_ps(_mm512_set1_ps(3.88393435e-3f), t, _mm512_set1_ps(-2.42545605e-2f));
	big = _mm512_fmadd_ps(big, t2, u);
	big = _mm512_fmadd_ps(big, t, _mm512_set1_ps(1.06777847e-1f));
	big = _mm512_fmadd_ps(big, t, _mm512_set1_ps(6.34846687e-1f));
	big = _mm512_fmadd_ps(big, t, _mm512_set1_ps(1.28717512e-1f));
	big = _mm512_fmadd_ps(big, t, t);
	big = _mm512_sub_ps(_mm512_set1_ps(1.0f), exp512(bits512_xor(big, sign_bit)));
	big = bits512_or(big, bits512_and(x, sign_bit));

	return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(bits512_andnot(sign_bit, x), _mm512_set1_ps(0.921875f),
												   _CMP_GT_OQ), small, big);
}

/* gelu256 on sixteen floats. */
BT_MATH512 static inline __m512
gelu512(__m512 x)
{
	__m512		e = erf512(_mm512_mul_ps(x, _mm512_set1_ps((float) M_SQRT1_2)));

	return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* ---- bf16 pairs (AVX512-BF16), for the bf16 products' operands ---- */

#define BT_MATH_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* Sixteen words of bf16 pairs: word i = bf16(lo[i]) | bf16(hi[i]) << 16, each rounded to nearest even. */
BT_MATH_BF16 static inline __m512i
bf16_pair_words(__m512 lo, __m512 hi)
{
	__m512i		l = _mm512_cvtepu16_epi32((__m256i) _mm512_cvtneps_pbh(lo)),
				h = _mm512_cvtepu16_epi32((__m256i) _mm512_cvtneps_pbh(hi));

	return _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

#endif
