/*
 * tolerance.h - test tolerances derived from float32 rounding-error analysis,
 * so that they hold on every CPU (any summation order, with or without FMA,
 * AVX2 or AVX-512 BLAS kernels, the plain loops) and still catch real errors.
 * Header-only, for the engine and GPU test programs (C and C++).
 *
 * u = 2^-24 is float32's unit roundoff: one rounding changes a value by at
 * most u relative. Two results the tests rely on (Higham, "Accuracy and
 * Stability of Numerical Algorithms", 2nd ed., 2002, section 3.1; Higham and
 * Mary, "A new approach to probabilistic rounding error analysis", SIAM J.
 * Sci. Comput. 41(5), 2019, theorem 3.1):
 *  - worst case: a sum or dot product of n terms, computed in any order, is
 *    within gamma(n) = n u / (1 - n u) of the exact value relative to the sum
 *    of the terms' magnitudes;
 *  - when the rounding errors behave as independent zero-mean variables (what
 *    the theorem assumes, and what blocked BLAS kernels give in practice),
 *    within LAMBDA sqrt(n) u of it instead, except with probability
 *    2 n exp(-LAMBDA^2 / 2): 2n * 1.3e-14 for LAMBDA = 8, never at our sizes.
 */
#ifndef PGBERT_TEST_TOLERANCE_H
#define PGBERT_TEST_TOLERANCE_H

#include <float.h>
#include <math.h>

#define F32_U (FLT_EPSILON / 2)	/* 2^-24 */
#define LAMBDA 8.0

/* Worst-case relative error bound of n float32 roundings in sequence (n u < 1). */
static inline double
gamma32(double n)
{
	return n * F32_U / (1.0 - n * F32_U);
}

/* Probabilistic bound of a float32 sum of n terms, relative to the sum of their magnitudes. */
static inline double
sum_noise32(double n)
{
	return LAMBDA * sqrt(n) * F32_U;
}

/*
 * A float32 sum of n terms relative to the sum of their magnitudes: the
 * smaller of the worst-case and the probabilistic bound (both hold; the worst
 * case is the smaller one below about LAMBDA^2 = 64 terms).
 */
static inline double
sum_bound32(double n)
{
	double		g = gamma32(n),
				p = sum_noise32(n);

	return g < p ? g : p;
}

/*
 * How far two float32 implementations of the same BERT encoder (the engine and
 * torch, or two engine paths) may differ in values of magnitude up to scale,
 * after layers layers whose longest dot product has k terms. Each layer's
 * outputs carry the rounding of its dot products: the partial sums of the
 * products are of the size of the result (a random walk toward it), so each
 * result is off by at most sum_noise32(k) of its scale. LayerNorm brings every
 * layer's output back to the scale of its gains and the residual carries an
 * earlier error on unchanged, so the errors of the embedding LayerNorm and of
 * each layer add up (layers + 1 terms) rather than multiply; the two
 * implementations round independently (factor 2). The pooler's and the
 * classifier's dot products of hidden terms are within the same budget since
 * k >= hidden. Outputs that are means or cosines of these are no further off.
 */
static inline double
encoder_tolerance(int layers, int k, double scale)
{
	return 2.0 * (layers + 1) * sum_noise32(k) * scale;
}

/*
 * The rounding noise of a central difference with Richardson extrapolation,
 * (4 D(h/2) - D(h)) / 3 with D(s) = (f(x+s) - f(x-s)) / 2s: the four values
 * of f enter with coefficients whose magnitudes add up to 3/h, so an error of
 * at most err in each value of f moves the estimate by at most 3 err / h.
 */
static inline double
central_difference_noise(double err, double h)
{
	return 3.0 * err / h;
}

/* ---- for the GPU tests (test/gpu): other precisions, math functions, double sums ---- */

#define BF16_U (1.0 / 256)		/* 2^-8: bf16 keeps 8 significant bits */
#define F16_U (1.0 / 2048)		/* 2^-11: fp16 keeps 11 */
#define F64_U (DBL_EPSILON / 2) /* 2^-53 */

/* The same for a sum of n double terms (the products of floats are exact in double). */
static inline double
sum_bound64(double n)
{
	double		w = n * F64_U / (1.0 - n * F64_U),
				p = LAMBDA * sqrt(n) * F64_U;

	return w < p ? w : p;
}

/*
 * The relative error of a float32 math function documented to be within ulps
 * units in the last place (CUDA C Programming Guide, "Mathematical Functions":
 * expf, erff, tanhf and rsqrtf 2 ulp; glibc's are within 1 to 2): one ulp of
 * a float is at most 2 u of its value.
 */
static inline double
math_err32(double ulps)
{
	return ulps * 2.0 * F32_U;
}

#endif
