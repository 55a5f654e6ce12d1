/*
 * kernels/gpu_internal.h
 *     What the .cu files share and gpu.h does not export: the context's
 *     layout, device-memory accounting, cuBLAS error text, the dense
 *     product and the inference forward's kernel launchers (gpu_embeddings.cu,
 *     gpu_layernorm.cu, gpu_gelu.cu, gpu_dense.cu, gpu_head.cu,
 *     gpu_attention.cu). CUDA code only; no PostgreSQL header may be included
 *     here.
 */
#ifndef PGBERT_KERNELS_GPU_INTERNAL_H
#define PGBERT_KERNELS_GPU_INTERNAL_H

#include "gpu.h"
#include "gpu_errors.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

struct PgbertGpuContext
{
	int			ordinal;		/* device this context is bound to */
	cudaStream_t stream;		/* stream used for all copies, kernels and GEMMs */
	cublasHandle_t handle;		/* cuBLAS handle bound to stream */
	void	   *blas_workspace; /* given to cuBLAS so that graph capture allocates nothing */
	size_t		blas_workspace_bytes;
	size_t		used;			/* device bytes allocated through gpu_alloc */
	size_t		limit;			/* 0: none */
};

/* cudaMalloc under the context's bound; 0, or -1 + message naming what. */
int			gpu_alloc(PgbertGpuContext *ctx, void **ptr, size_t bytes, const char *what,
					  char *errbuf, size_t errlen);

/* cudaFree of a gpu_alloc'd block of that size; NULL is ignored. */
void		gpu_free(PgbertGpuContext *ctx, void *ptr, size_t bytes);

/* Formats a cuBLAS error with its status name and description. */
void		set_cublas_error(char *errbuf, size_t errlen, const char *what, cublasStatus_t st);

/*
 * y (rows, O) = x (rows, K) @ w (O, K)^T, row-major, x and w of type xt, y
 * of type yt (float, or rounded once to xt), fp32 accumulation: the dense
 * layers of the inference pass and the trainer's forward products.
 */
cublasStatus_t gemm_dense(cublasHandle_t h, cudaDataType_t xt, cudaDataType_t yt, void *y, const void *x,
						  const void *w, int rows, int O, int K);

/* Blocks of at most 256 threads over n items, capped for grid-stride loops. */
static inline unsigned int
grid_for(size_t n, unsigned int threads)
{
	size_t		blocks = (n + threads - 1) / threads;

	return (unsigned int) (blocks < 1 ? 1 : blocks > 65535 * 8 ? 65535 * 8 : blocks);
}

/*
 * Kernel launchers, each in its layer's file (gpu_embeddings.cu,
 * gpu_layernorm.cu, gpu_gelu.cu, gpu_dense.cu, gpu_head.cu). T is the packed
 * token count; "in" buffers of type Tin are the matrix products' inputs
 * (float or __nv_bfloat16), y buffers of type Ty their outputs (float, or
 * bf16 in the bf16 forward pass); x is the float32 residual stream. All run
 * on stream s and check nothing: the caller checks cudaGetLastError after a
 * layer.
 */
template <typename Tin>
void		launch_embed_ln(cudaStream_t s, float *x, Tin *xin, const int *ids, const int *types,
							const int *pos, const float *word, const float *posemb, const float *typeemb,
							const float *w, const float *b, int T, int H, float eps);
template <typename Tin, typename Ty>
void		launch_bias_residual_ln(cudaStream_t s, float *x, Tin *xin, const Ty *y, const float *bias,
									const float *w, const float *b, int T, int H, float eps);
template <typename Tin, typename Ty>
void		launch_bias_gelu(cudaStream_t s, Tin *out, const Ty *y, const float *bias, int T, int I,
							 int gelu_tanh);
template <typename Tout>
void		launch_convert(cudaStream_t s, Tout *dst, const float *src, size_t n);
void		launch_gather_rows(cudaStream_t s, float *dst, const float *x, const int *rows, int n, int H);
void		launch_mean_rows(cudaStream_t s, float *dst, const float *x, const int *offsets, int n_seq, int H);
void		launch_bias_act(cudaStream_t s, float *y, const float *bias, int rows, int cols, int act_tanh);

/*
 * Attention over one bucket of sequences padded to P (gpu_attention.cu):
 * q, k, v: (B, NH, P, d) of Tin; scores (B, NH, P, P) float; probs of Tin;
 * ctx (B, NH, P, d) of Tin. slot_token[b * P + p] is the packed token of slot
 * p of bucket sequence b, or -1 past its end; lens[b] its length.
 */
template <typename Tin, typename Ty = float>
void		launch_scatter_qkv(cudaStream_t s, Tin *q, Tin *k, Tin *v, const Ty *qkv, const float *bias,
							   const int *slot_token, int B, int P, int H, int NH);
template <typename Tin>
void		launch_masked_softmax(cudaStream_t s, Tin *probs, const float *scores, const int *lens,
								  int B, int NH, int P);
template <typename Tin>
void		launch_gather_ctx(cudaStream_t s, Tin *ctx_packed, const Tin *ctx, const int *slot_token,
							  int B, int P, int H, int NH);

#endif							/* PGBERT_KERNELS_GPU_INTERNAL_H */
