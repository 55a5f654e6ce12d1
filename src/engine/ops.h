/*
 * ops.h - the BERT layers as forward/backward pairs on the CPU, shared by
 * inference (model.c) and training (train.c).
 *
 * Activations are row-major (tokens, features) over a packed batch: the
 * tokens of all sequences back to back, no padding; only attention and the
 * embeddings' positions look at sequence boundaries. Backward functions add
 * (+=) into parameter gradients, so gradient accumulation is free, and write
 * (=) activation gradients unless told to accumulate. Dense layers and
 * attention products are OpenBLAS sgemm (bt_sgemm must be loaded); the rest
 * are plain loops, with AVX2 versions of the forward ones (simd.h) used when
 * the CPU has AVX2 and FMA. PostgreSQL-free.
 */
#ifndef PGBERT_OPS_H
#define PGBERT_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"
#include "simd.h"
#include "team.h"

/*
 * Dropout as a pure function of (key, element index): a counter-based
 * generator (32 bits per element, two elements per splitmix64 hash), so
 * backward recomputes the forward mask instead of storing it. Element i is
 * kept with probability 1 - p and then scaled by 1 / (1 - p), as torch does.
 */
typedef struct BtDropout
{
	float		p;				/* drop probability, 0 to 1 */
	uint64_t	key;			/* one per (seed, forward pass, site) */
} BtDropout;

/* A well-mixed 64-bit hash (splitmix64's finalizer). */
static inline uint64_t
bt_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* Does dropout d do anything? */
static inline bool
bt_dropout_active(const BtDropout *d)
{
	return d != NULL && d->p > 0.0f;
}

/* Check a packed batch against the model: lengths, ids, type ids. 0, or -1 with err. */
extern int	bt_check_batch(const BtBertModel *m, const BtBatch *b, char *err, size_t errlen);

/* Longest sequence of a checked batch. */
extern int	bt_batch_max_len(const BtBatch *b);

/* Floats of saved attention probabilities: NH * sum of squared lengths. */
extern size_t bt_batch_probs_size(const BtBatch *b, int NH);

/* x (n) = dropout(x) in place; element i has index base + i in d's stream. Also its own backward. */
extern void bt_dropout_apply(float *x, size_t n, const BtDropout *d, uint64_t base);

/*
 * How a dense layer multiplies. NULL (or gemm NULL): float32 on OpenBLAS.
 * Otherwise gemm, a product with cblas_sgemm's row-major contract plus a bias
 * (sgemm_bf16.h's bt_sgemm_bf16: bf16 products, float32 sums, training's
 * option), run with team (NULL: one thread); when it returns nonzero (no
 * memory) the layer falls back to OpenBLAS. A pointer, so that ops.c, which
 * the kernels call for the GELU, does not call back into them.
 */
typedef int (*BtDenseGemm) (BtTeam *team, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
							const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc,
							const float *bias);

typedef struct BtDenseMode
{
	BtDenseGemm gemm;
	BtTeam	   *team;
} BtDenseMode;

/* out (T, O) = in (T, K) @ w (O, K)^T + b (O); b may be NULL */
extern void bt_dense_forward(const BtDenseMode *mode, float *out, const float *in, const float *w, const float *b,
							 int T, int O, int K);

/*
 * Backward of bt_dense_forward: din (T, K) = dout (T, O) @ w (O, K), or +=
 * when accumulate (din may be NULL: not wanted); dw (O, K) += dout^T @ in;
 * db (O) += column sums of dout.
 */
extern void bt_dense_backward(const BtDenseMode *mode, float *din, bool accumulate, float *dw, float *db,
							  const float *dout, const float *in, const float *w, int T, int O, int K);

/* x (T, H) += add (T, H): a residual connection (its backward is a copy, done by the caller) */
extern void bt_residual_forward(float *x, const float *add, size_t n);

/*
 * out (T, H) = LayerNorm(in) * w + b over each row (biased variance, eps);
 * out may be in. mean and rstd (T) get the row statistics backward needs,
 * when not NULL.
 */
extern void bt_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
								 const float *b, int T, int H, float eps);

/* x (T, H) = LayerNorm(x + add) * w + b: a residual connection and its LayerNorm in one pass */
extern void bt_residual_layernorm_forward(float *x, const float *add, const float *w, const float *b,
										  int T, int H, float eps);

/*
 * Backward of bt_layernorm_forward from its saved input, mean and rstd:
 * din (T, H) = dLN/din applied to dout (din may be dout); dw, db (H) +=.
 */
extern void bt_layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in,
								  const float *mean, const float *rstd, const float *w, int T, int H);

/* x (T, H) = word[id] + position[index in its sequence] + type[type id] (before LayerNorm) */
extern void bt_embeddings_forward(float *x, const BtBertModel *m, const BtBatch *b);

/*
 * Backward of bt_embeddings_forward: scatter-add dx (T, H) into the rows of
 * dword (V, H), dpos (P, H) and dtype (TV, H). Tokens equal to pad_id add
 * nothing to the word embeddings (torch's padding_idx).
 */
extern void bt_embeddings_backward(float *dword, float *dpos, float *dtype, const float *dx,
								   const BtBatch *b, int H, int pad_id);

/*
 * ctx (T, H) = dropout(softmax(Q K^T / sqrt(d))) V per sequence and head,
 * reading Q, K, V from qkv (T, 3H). Packed sequences only see their own
 * tokens, which is what Hugging Face's additive padding mask amounts to.
 * probs: when save, every (sequence, head)'s (S, S) probabilities back to
 * back, bt_batch_probs_size floats (what backward needs); otherwise one
 * (max S, max S) scratch. drop may be NULL; when active, pd is a (max S, max S)
 * scratch for the dropped probabilities, and element j of row i of
 * (sequence, head) has index (offset of its (S, S) block) + i S + j.
 * Only the (sequence, head) pairs numbered part, part + parts, ... in order
 * are computed (0, 1: all), so that parts threads share the work, each with
 * scratches of its own.
 */
extern void bt_attention_forward(float *ctx, float *probs, bool save, float *pd, const BtDropout *drop,
								 const float *qkv, const BtBatch *b, int H, int NH, int part, int parts);

/*
 * Inference-only attention (no saved probabilities, no dropout) for the
 * (sequence, head) pairs numbered part, part + parts, ... in order: parts
 * threads with part 0 .. parts - 1 do all of bt_attention_forward's work
 * together. scratch: (max S, max S) floats of this part's own. bf16: the
 * short-sequence heads multiply in bf16 (rounded q, k, probabilities and v,
 * float32 sums) where the CPU has AVX512-BF16, as for bf16 weights.
 */
extern void bt_attention_forward_part(float *ctx, float *scratch, const float *qkv, const BtBatch *b,
									  int H, int NH, int part, int parts, bool bf16);

/*
 * Attention for one query per sequence (its first token, [CLS]): ctx (n_seq, H)
 * from q (n_seq, H) and the keys and values of every token in kv (T, 3H),
 * columns H.. and 2H.. as bt_attention_forward reads them. scores: max S
 * floats of scratch. What the last layer needs when only [CLS] is kept.
 */
extern void bt_attention_first_forward(float *ctx, float *scores, const float *q, const float *kv,
									   const BtBatch *b, int H, int NH);

/*
 * Backward of bt_attention_forward from the saved probabilities: dqkv (T, 3H)
 * from dctx (T, H). dp and pd are (max S, max S) scratches. part, parts as
 * in bt_attention_forward.
 */
extern void bt_attention_backward(float *dqkv, float *dp, float *pd, const float *dctx, const float *qkv,
								  const float *probs, const BtDropout *drop, const BtBatch *b, int H, int NH,
								  int part, int parts);

/* out (n) = gelu(in) (out may be in), exact erf form or the tanh approximation */
extern void bt_gelu_forward(float *out, const float *in, size_t n, BtActivation act);

/* Backward of bt_gelu_forward: dx (n) *= gelu'(x) in place, x the GELU's input */
extern void bt_gelu_backward(float *dx, const float *x, size_t n, BtActivation act);

/* x (n) = tanh(x) in place */
extern void bt_tanh_forward(float *x, size_t n);

/* Backward of bt_tanh_forward from its output y: dy (n) *= 1 - y^2 */
extern void bt_tanh_backward(float *dy, const float *y, size_t n);

/* Sum of x[i]^2 over n floats, in double: a gradient norm's square */
extern double bt_sumsq(const float *x, size_t n);

/*
 * One torch.optim.AdamW step over n parameters p with gradients g (scaled by
 * s->grad_scale first when s->clip) and moments m, v: decoupled decay when
 * s->decay_on, then the bias-corrected Adam update; g is zeroed for the next
 * accumulation. AVX2 where the CPU has it, the same bits as the plain loop.
 */
extern void bt_adamw_update(float *p, float *g, float *m, float *v, size_t n, const BtAdamStep *s);

#endif
