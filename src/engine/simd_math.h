/*
 * simd_math.h - exp, erf and the exact GELU on eight floats (AVX2+FMA), inline
 * for simd.c's loops and for the GEMM kernels, which apply the GELU to their
 * accumulators before storing them; and the same on sixteen floats for the
 * AVX-512 kernels, lane for lane the same operations, so the same bits, but
 * for the GELU (gelu512 takes erf from polynomial pieces); and the words of
 * bf16 pairs the bf16 products take (AVX512-BF16). Include after
 * <immintrin.h> with AVX2 defined as the target attribute; x86-64 only.
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

/*
 * erf on [i/8, (i+1)/8), i = 0 .. 31: coefficient k of a degree-4 polynomial
 * in u = 8 t - i - 1/2. At 4 and beyond, erf is 1 in float.
 */
/* generated by test/oracle/gen_erf_table.py: worst |error| 5.78e-08 (0.97 ulp of 1) at t = 2.93617582 */
static const float erf_pieces[5][32] __attribute__((aligned(64))) = {
	{0.0704319775f, 0.209117681f, 0.341468632f, 0.463898122f,
	 0.57367444f, 0.669084668f, 0.749464035f, 0.815102398f,
	 0.867058277f, 0.906921744f, 0.936568558f, 0.957940578f,
	 0.972874641f, 0.982989728f, 0.98963064f, 0.993856788f,
	 0.996463776f, 0.998022497f, 0.998925924f, 0.999433458f,
	 0.999709845f, 0.999855697f, 0.999930322f, 0.999967337f,
	 0.999985158f, 0.999993443f, 0.999997199f, 0.999998808f,
	 0.999999523f, 0.999999821f, 0.99999994f, 1.0f},
	{0.140497431f, 0.136174798f, 0.127924398f, 0.116476506f,
	 0.102790177f, 0.0879211128f, 0.072889179f, 0.0585681163f,
	 0.0456129014f, 0.0344304256f, 0.0251898374f, 0.0178622659f,
	 0.0122765396f, 0.00817793421f, 0.00528006628f, 0.0033041772f,
	 0.00200408162f, 0.00117813633f, 0.000671280141f, 0.00037071493f,
	 0.000198428665f, 0.00010294297f, 5.17626977e-05f, 2.52269674e-05f,
	 1.19162905e-05f, 5.45563034e-06f, 2.42089845e-06f, 1.04120431e-06f,
	 4.34033296e-07f, 1.75362942e-07f, 6.86720796e-08f, 2.60645425e-08f},
	{-0.00109763211f, -0.00319165434f, -0.00499702292f, -0.00636958936f,
	 -0.00722716935f, -0.00755579956f, -0.00740295323f, -0.0068634036f,
	 -0.00605808245f, -0.0051111565f, -0.00413244218f, -0.00320918439f,
	 -0.00239820406f, -0.00172522408f, -0.00119648711f, -0.000799932983f,
	 -0.000517075357f, -0.000321954431f, -0.000194004708f, -0.000112970898f,
	 -6.37751073e-05f, -3.43536449e-05f, -1.77649326e-05f, -8.8142906e-06f,
	 -4.55948793e-06f, -2.07203084e-06f, -1.06474783e-06f, -2.71304792e-08f,
	 -8.53007904e-08f, -1.62277175e-07f, -1.9582896e-07f, -4.24016662e-07f},
	{-0.000724952377f, -0.000658497971f, -0.000535545347f, -0.000374162832f,
	 -0.000196685243f, -2.54225924e-05f, 0.000121025245f, 0.000230494392f,
	 0.000298180297f, 0.000325910805f, 0.000320447114f, 0.000291242293f,
	 0.000248192868f, 0.000200013426f, 0.000153276196f, 0.000112114525f,
	 7.84897493e-05f, 5.27002267e-05f, 3.398837e-05f, 2.10816524e-05f,
	 1.25880197e-05f, 7.24173697e-06f, 4.0164955e-06f, 2.14886745e-06f,
	 1.10951885e-06f, 5.53094424e-07f, 2.66289163e-07f, 1.2385911e-07f,
	 5.56720607e-08f, 2.41869671e-08f, 1.01590025e-08f, 4.12597334e-09f},
	{8.52638277e-06f, 2.44975909e-05f, 3.63705476e-05f, 4.26572478e-05f,
	 4.36610462e-05f, 4.06525251e-05f, 3.28410897e-05f, 2.20637849e-05f,
	 1.21172097e-05f, 3.67394478e-06f, -5.6081135e-06f, -1.08527538e-05f,
	 -1.03210577e-05f, -1.14857057e-05f, -1.04095025e-05f, -1.03494367e-05f,
	 -6.14417604e-06f, -6.13574093e-06f, -4.01601756e-06f, -2.56026806e-06f,
	 -9.9189333e-07f, -1.76694596e-06f, -1.9956799e-06f, -1.78175947e-06f,
	 -1.95442183e-07f, -4.24154592e-07f, 1.49665937e-07f, -1.3690825e-06f,
	 -3.56906639e-07f, 2.55481297e-07f, 5.19681066e-07f, 1.31485467e-06f}
};

/*
 * The exact GELU, 0.5 x (1 + erf(x / sqrt 2)), on sixteen floats, with erf
 * from erf_pieces: |x| / sqrt 2 picks its piece by its eighths (the piece's
 * coefficients come out of two registers with one permute each) and the
 * polynomial takes the fraction exactly. Four FMAs and five permutes against
 * erf512's two polynomials and exp512: 16 cycles a vector against 38 on Zen 4,
 * which matters because the intermediate layer's tiles end in it. erf within
 * 1 ulp of erf in double (gen_erf_table.py; gelu256 carries up to 2), so not
 * gelu256's bits; the sign is z's, |erf| at most 1.
 */
BT_MATH512 static inline __m512
gelu512(__m512 x)
{
	const __m512 sign_bit = _mm512_set1_ps(-0.0f);
	__m512		z = _mm512_mul_ps(x, _mm512_set1_ps((float) M_SQRT1_2)),
				eighths = _mm512_mul_ps(_mm512_min_ps(bits512_andnot(sign_bit, z), _mm512_set1_ps(0x1.fffffep1f)),
										_mm512_set1_ps(8.0f)),
				whole = _mm512_roundscale_ps(eighths, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC),
				u = _mm512_sub_ps(_mm512_sub_ps(eighths, whole), _mm512_set1_ps(0.5f)),
				half = _mm512_mul_ps(x, _mm512_set1_ps(0.5f)),
				e;
	__m512i		piece = _mm512_cvttps_epi32(whole);

#define ERF_COEFFICIENT(k) \
	_mm512_permutex2var_ps(_mm512_load_ps(erf_pieces[k]), piece, _mm512_load_ps(erf_pieces[k] + 16))
	e = ERF_COEFFICIENT(4);
	e = _mm512_fmadd_ps(e, u, ERF_COEFFICIENT(3));
	e = _mm512_fmadd_ps(e, u, ERF_COEFFICIENT(2));
	e = _mm512_fmadd_ps(e, u, ERF_COEFFICIENT(1));
	e = _mm512_fmadd_ps(e, u, ERF_COEFFICIENT(0));
#undef ERF_COEFFICIENT
	e = bits512_xor(_mm512_min_ps(e, _mm512_set1_ps(1.0f)), bits512_and(z, sign_bit));
	return _mm512_fmadd_ps(half, e, half);
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
