/*
 * kernels/gpu_train_internal.h
 *     The training kernels' launchers that the trainer (gpu_train.cu)
 *     issues, each in its layer's file (gpu_embeddings.cu, gpu_layernorm.cu,
 *     gpu_gelu.cu, gpu_attention.cu, gpu_head.cu, gpu_dense.cu,
 *     gpu_optimizer.cu): the training forward's row kernels (they save what
 *     backward needs and apply dropout), the backward of each layer, the
 *     gradient norm and AdamW. T is the packed token count; "in" buffers of
 *     type Tin are the matrix products' inputs (float or __nv_bfloat16). All
 *     run on stream s and check nothing: the caller checks cudaGetLastError.
 *     CUDA code only; no PostgreSQL header may be included here.
 */
#ifndef PGBERT_KERNELS_GPU_TRAIN_INTERNAL_H
#define PGBERT_KERNELS_GPU_TRAIN_INTERNAL_H

#include "gpu_internal.h"

#include <stdint.h>

/*
 * One dropout site of one forward pass, as the engine's BtDropout (ops.c):
 * element idx of the site's flat tensor is dropped when 32 bits of
 * mix64(key + ((idx >> 1) + 1) * golden) (the low half for even idx, the
 * high half for odd) are below threshold = p * 2^32, and kept elements are
 * multiplied by scale = 1 / (1 - p). threshold 0: the identity.
 */
typedef struct TrainDrop
{
	uint64_t	key;
	uint64_t	threshold;
	float		scale;
} TrainDrop;

/* splitmix64's finalizer, the engine's bt_mix64. */
__host__ __device__ static inline uint64_t
train_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* Blocks of the norm's first pass (its partial sums). */
#define TRAIN_NORM_BLOCKS 512

/* ---- training forward ---- */

/*
 * emb (T, H) = word[id] + position[pos] + type[type] (saved); mean, rstd (T)
 * of its LayerNorm; xs (T, H) float and xin (T, H) Tin = dropout(LayerNorm(emb)).
 */
template <typename Tin>
void		launch_train_embed_ln(cudaStream_t s, float *emb, float *mean, float *rstd, float *xs, Tin *xin,
								  const int *ids, const int *types, const int *pos, const float *word,
								  const float *posemb, const float *typeemb, const float *w, const float *b,
								  int T, int H, float eps, TrainDrop drop);

/*
 * res (T, H) = xs + dropout(y + bias) (saved); mean, rstd (T) of its
 * LayerNorm; xs (float, in place) and xin (Tin) = LayerNorm(res).
 */
template <typename Tin>
void		launch_train_residual_ln(cudaStream_t s, float *res, float *mean, float *rstd, float *xs, Tin *xin,
									 const float *y, const float *bias, const float *w, const float *b,
									 int T, int H, float eps, TrainDrop drop);

/* With bias: ffn (T, I) += bias in place (saved GELU input); always act (Tin) = gelu(ffn). */
template <typename Tin>
void		launch_train_gelu(cudaStream_t s, Tin *act, float *ffn, const float *bias, int T, int I, int gelu_tanh);

/*
 * pin (B, NH, P, P) Tin = dropout of the probabilities (B, NH, P, P) float,
 * element (b, h, i, j) with index pbase[b] + h S^2 + i S + j in the site's
 * stream (S = lens[b]: the engine's packed layout); 0 outside S x S.
 */
template <typename Tin>
void		launch_train_attn_dropout(cudaStream_t s, Tin *pin, const float *probs, const int *lens,
									  const unsigned long long *pbase, int B, int NH, int P, TrainDrop drop);

/* dst (n) = dropout(src (n)); element i has index i. */
void		launch_train_dropout_copy(cudaStream_t s, float *dst, const float *src, size_t n, TrainDrop drop);

/* ---- backward ---- */

/*
 * LayerNorm backward from its saved input, mean, rstd, one warp per row:
 * g = dropout_in(dy) (the embeddings' dropout sits after their LayerNorm;
 * threshold 0 elsewhere); dx (T, H) float = dLN/din applied to g; dw += sum
 * g xhat; db += sum g. When dbr is not NULL: dbr (Tin) = dropout_br(dx), the
 * gradient of the dropped branch that joined the residual before the
 * LayerNorm, and dbias (may be NULL) += its column sums (the branch's dense
 * bias). H <= 4096.
 */
template <typename Tin>
void		launch_train_ln_backward(cudaStream_t s, float *dx, Tin *dbr, float *dw, float *db, float *dbias,
									 const float *dy, const float *in, const float *mean, const float *rstd,
									 const float *w, int T, int H, TrainDrop drop_in, TrainDrop drop_br);

/* dst (cols) += column sums of src (rows, cols). */
void		launch_train_colsum(cudaStream_t s, float *dst, const float *src, int rows, int cols);

/* gin (T, I) Tin = g * gelu'(ffn) (ffn the GELU's input); dbias (I) += its column sums. */
template <typename Tin>
void		launch_train_gelu_backward(cudaStream_t s, Tin *gin, const float *g, const float *ffn, float *dbias,
									   int T, int I, int gelu_tanh);

/* g (n, H) = dropout(g) * (1 - y^2) in place (y the pooler's tanh output); dbias (H) += its column sums. */
void		launch_train_tanh_backward(cudaStream_t s, float *g, const float *y, float *dbias, int n, int H,
									   TrainDrop drop);

/* dst row rows[r] = src row r, for r < n (rows of dst not named are left alone). */
void		launch_train_scatter_rows(cudaStream_t s, float *dst, const float *src, const int *rows, int n, int H);

/* dst (B, NH, P, d) Tin = src (T, H) float split by head at the bucket's slots; 0 in padding slots. */
template <typename Tin>
void		launch_train_scatter_heads(cudaStream_t s, Tin *dst, const float *src, const int *slot_token,
									   int B, int P, int H, int NH);

/*
 * Softmax backward with the attention dropout, one warp per row (b, h, i):
 * g = dropout(dp) (the dropped probabilities' gradient, the forward's mask);
 * ds = probs * (g - sum_j probs g) on the S x S block, 0 elsewhere (Tin).
 * dp is overwritten with g.
 */
template <typename Tin>
void		launch_train_softmax_backward(cudaStream_t s, Tin *ds, float *dp, const float *probs, const int *lens,
										  const unsigned long long *pbase, int B, int NH, int P, TrainDrop drop);

/* g (T, 3H) float and gin (Tin; may equal g when Tin is float) = dq | dk | dv (B, NH, P, d) at the real slots. */
template <typename Tin>
void		launch_train_gather_qkv(cudaStream_t s, float *g, Tin *gin, const float *dq, const float *dk,
									const float *dv, const int *slot_token, int B, int P, int H, int NH);

/* Scatter-adds dx (T, H) into the rows of dword (skipping pad_id tokens), dpos and dtype. */
void		launch_train_embed_backward(cudaStream_t s, float *dword, float *dpos, float *dtype, const float *dx,
										const int *ids, const int *types, const int *pos, int T, int H, int pad_id);

/* ---- optimizer ---- */

/* partials (TRAIN_NORM_BLOCKS) then *out = sum over g (n) of g^2, in double. */
void		launch_train_sumsq(cudaStream_t s, double *out, double *partials, const float *g, size_t n);

/*
 * torch.optim.AdamW over one segment, the engine's arithmetic (no fused
 * multiply-adds): g = grad (* coef when clip), p *= decay when wd, then the
 * moments and the bias-corrected update.
 */
void		launch_train_adamw(cudaStream_t s, float *p, const float *grad, float *m, float *v, size_t n,
							   int clip, float coef, int wd, float decay, float one_minus_b1, float b2,
							   float one_minus_b2, float bc2_sqrt, float eps, float step_size);

#endif							/* PGBERT_KERNELS_GPU_TRAIN_INTERNAL_H */
