/*
 * simd.h - AVX2+FMA versions of the elementwise loops of ops.c, chosen at run
 * time: the engine is built for baseline x86-64 (and other CPUs), so these
 * are compiled with a per-function target attribute and used only when the
 * CPU says it has AVX2 and FMA. ops.c keeps the plain C loops as the fallback
 * and as the reference the tests compare these with. PostgreSQL-free.
 */
#ifndef PGBERT_SIMD_H
#define PGBERT_SIMD_H

#include <stdbool.h>
#include <stddef.h>

/* Can the functions below run here: is cpu.h's path avx2 or above? */
extern bool bt_simd_avx2(void);

/*
 * out (n) = erff(in) and expf(in), vectorized; out may be in. erf follows
 * Norbert Juffa's faithfully rounded erff (a polynomial below |x| 0.921875,
 * 1 - exp(-polynomial) above); exp is Cephes' expf (range reduction by ln 2,
 * degree-6 polynomial), its argument clamped to [-87.3, 88], so it never
 * returns 0 or infinity. Both within a few ulp of glibc (test_model checks).
 */
extern void bt_avx2_erf(float *out, const float *in, size_t n);
extern void bt_avx2_exp(float *out, const float *in, size_t n);

/* out (n) = 0.5 x (1 + erf(x / sqrt 2)), the exact GELU; out may be in */
extern void bt_avx2_gelu(float *out, const float *in, size_t n);

/* dx (n) *= gelu'(x), the exact GELU's slope (bt_gelu_backward's loop) */
extern void bt_avx2_gelu_backward(float *dx, const float *x, size_t n);

/*
 * bt_avx2_gelu and bt_avx2_gelu_backward on AVX-512F: the backward lane for
 * lane the same arithmetic, so the same bits; the forward through gelu512
 * (erf from polynomial pieces), within 1 ulp of the GELU in double
 */
extern void bt_avx512_gelu(float *out, const float *in, size_t n);
extern void bt_avx512_gelu_backward(float *dx, const float *x, size_t n);

/* Sum of x[i]^2 over n floats, in double (four partial sums, so not the plain loop's order) */
extern double bt_avx2_sumsq(const float *x, size_t n);

/* One AdamW step's constants (ops.h's bt_adamw_update). */
typedef struct BtAdamStep
{
	bool		clip;			/* scale each gradient by grad_scale first */
	bool		decay_on;		/* multiply each weight by decay first */
	float		grad_scale,
				decay,
				one_minus_b1,
				one_minus_b2,
				b2,
				bc2_sqrt,		/* sqrt(1 - b2^step) */
				eps,
				step_size;		/* lr / (1 - b1^step) */
} BtAdamStep;

/*
 * bt_adamw_update's loop over the first n rounded down to 8 elements, the
 * same operations in the same order (so the same bits); returns how many it did.
 */
extern size_t bt_avx2_adamw(float *p, float *g, float *m, float *v, size_t n, const BtAdamStep *s);

/* x (rows, cols) = softmax of each row in place, with max subtraction */
extern void bt_avx2_softmax_rows(float *x, int rows, int cols);

/* g (rows, cols) = p * (g - sum_j p g) per row: softmax backward in place, p the softmax's output */
extern void bt_avx2_softmax_backward_rows(float *g, const float *p, int rows, int cols);

/* x (n) += add (n) */
extern void bt_avx2_add(float *x, const float *add, size_t n);

/*
 * out (T, H) = LayerNorm(in + add) * w + b per row (add may be NULL; out may
 * be in), with the row statistics summed in double as the plain loop does;
 * mean and rstd (T) get them when not NULL.
 */
extern void bt_avx2_layernorm(float *out, float *mean, float *rstd, const float *in, const float *add,
							  const float *w, const float *b, int T, int H, float eps);

/*
 * Backward of bt_avx2_layernorm from its saved input, mean and rstd (ops.h's
 * bt_layernorm_backward, with its two row sums reassociated): din (T, H) may
 * be dout; dw, db (H) +=.
 */
extern void bt_avx2_layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in,
									   const float *mean, const float *rstd, const float *w, int T, int H);

/* The longest sequence and the widest head bt_avx2_attention_head takes (d a multiple of 16). */
#define BT_SMALL_ATTN_S 64
#define BT_SMALL_ATTN_D 128

/*
 * One head of self-attention over S tokens without a BLAS call, for short
 * sequences where the call costs more than the arithmetic: ctx (S, d; row
 * stride ldc) = softmax(q k^T * scale) v, q, k and v (S, d) with row stride
 * ld (the QKV rows). S <= BT_SMALL_ATTN_S, d <= BT_SMALL_ATTN_D and d % 16 == 0.
 */
extern void bt_avx2_attention_head(float *ctx, int ldc, const float *q, const float *k, const float *v, int ld,
								   int S, int d, float scale);

/* The longest sequence bt_avx512_attention_head takes. */
#define BT_SMALL_ATTN_S512 128

/*
 * bt_avx2_attention_head on AVX-512F (attention512.c), for the avx512 path:
 * the same contract, but S <= BT_SMALL_ATTN_S512.
 */
extern void bt_avx512_attention_head(float *ctx, int ldc, const float *q, const float *k, const float *v, int ld,
									 int S, int d, float scale);

/*
 * bt_avx512_attention_head with bf16 products (AVX512-BF16): q, k, the
 * probabilities and v rounded to bf16, sums and the softmax in float32.
 */
extern void bt_avx512_bf16_attention_head(float *ctx, int ldc, const float *q, const float *k, const float *v,
										  int ld, int S, int d, float scale);

#endif
