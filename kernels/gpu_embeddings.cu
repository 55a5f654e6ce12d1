/*
 * kernels/gpu_embeddings.cu
 *     The embeddings layer, forward and backward: word + position + token
 *     type embeddings summed and LayerNormed in one pass (the inference
 *     forward; the training forward, which saves the sum and the LayerNorm's
 *     statistics and applies the embeddings' dropout), and the scatter-add
 *     of the gradient into the three tables. The LayerNorm's own backward is
 *     gpu_layernorm.cu's. Numerics follow the CPU engine (src/engine/ops.c,
 *     train.c).
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_device_helpers.cuh"
#include "gpu_layer_helpers.cuh"

/* x = LayerNorm(word[id] + type[type id] + position[pos]), one warp per token. */
template <typename Tin>
__global__ void
embed_ln_kernel(float *x, Tin *xin, const int *ids, const int *types, const int *pos,
				const float *word, const float *posemb, const float *typeemb,
				const float *w, const float *b, int T, int H, float eps)
{
	int			t = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;

	if (t >= T)
		return;
	{
		const float *we = word + (size_t) ids[t] * H;
		const float *pe = posemb + (size_t) pos[t] * H;
		const float *te = typeemb + (size_t) (types ? types[t] : 0) * H;

		layernorm_row(x + (size_t) t * H, xin + (size_t) t * H, w, b, H, eps, lane,
					  [&](int i) { return we[i] + pe[i] + te[i]; });
	}
}

/* One warp per token row; launch_train_embed_ln (gpu_train_internal.h) says what it saves. */
template <typename Tin>
__global__ void
train_embed_ln_kernel(float *emb, float *mean, float *rstd, float *xs, Tin *xin, const int *ids, const int *types,
					  const int *pos, const float *word, const float *posemb, const float *typeemb,
					  const float *w, const float *b, int T, int H, float eps, TrainDrop drop)
{
	int			t = blockIdx.x * WARP_ROWS + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;
	size_t		row = (size_t) t * H;

	if (t >= T)
		return;
	{
		const float *we = word + (size_t) ids[t] * H;
		const float *pe = posemb + (size_t) pos[t] * H;
		const float *te = typeemb + (size_t) types[t] * H;
		float	   *er = emb + row;

		for (int i = lane; i < H; i += 32)
			er[i] = we[i] + pe[i] + te[i];
		ln_row_train(er, mean + t, rstd + t, xs + row, xin + row, w, b, H, eps, lane, drop, row);
	}
}

/* Atomics, since tokens share embedding rows; the padding token's word row gets none (padding_idx). */
__global__ void
train_embed_backward_kernel(float *dword, float *dpos, float *dtype, const float *dx, const int *ids,
							const int *types, const int *pos, int T, int H, int pad_id)
{
	size_t		total = (size_t) T * H;

	for (size_t e = blockIdx.x * (size_t) blockDim.x + threadIdx.x; e < total; e += (size_t) gridDim.x * blockDim.x)
	{
		size_t		t = e / H;
		int			i = (int) (e % H);
		float		v = dx[e];

		atomicAdd(dpos + (size_t) pos[t] * H + i, v);
		atomicAdd(dtype + (size_t) types[t] * H + i, v);
		if (ids[t] != pad_id)
			atomicAdd(dword + (size_t) ids[t] * H + i, v);
	}
}

/* ---- launchers ---- */

template <typename Tin>
void
launch_embed_ln(cudaStream_t s, float *x, Tin *xin, const int *ids, const int *types, const int *pos,
				const float *word, const float *posemb, const float *typeemb,
				const float *w, const float *b, int T, int H, float eps)
{
	embed_ln_kernel<Tin><<<(T + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0, s>>>
		(x, xin, ids, types, pos, word, posemb, typeemb, w, b, T, H, eps);
}

template <typename Tin>
void
launch_train_embed_ln(cudaStream_t s, float *emb, float *mean, float *rstd, float *xs, Tin *xin, const int *ids,
					  const int *types, const int *pos, const float *word, const float *posemb,
					  const float *typeemb, const float *w, const float *b, int T, int H, float eps, TrainDrop drop)
{
	train_embed_ln_kernel<Tin><<<warp_row_blocks(T), 32 * WARP_ROWS, 0, s>>>
		(emb, mean, rstd, xs, xin, ids, types, pos, word, posemb, typeemb, w, b, T, H, eps, drop);
}

void
launch_train_embed_backward(cudaStream_t s, float *dword, float *dpos, float *dtype, const float *dx, const int *ids,
							const int *types, const int *pos, int T, int H, int pad_id)
{
	train_embed_backward_kernel<<<grid_for((size_t) T * H, 256), 256, 0, s>>>
		(dword, dpos, dtype, dx, ids, types, pos, T, H, pad_id);
}

#define INSTANTIATE(Tin) \
	template void launch_embed_ln<Tin>(cudaStream_t, float *, Tin *, const int *, const int *, const int *, \
									   const float *, const float *, const float *, const float *, \
									   const float *, int, int, float); \
	template void launch_train_embed_ln<Tin>(cudaStream_t, float *, float *, float *, float *, Tin *, const int *, \
											 const int *, const int *, const float *, const float *, \
											 const float *, const float *, const float *, int, int, float, \
											 TrainDrop);
INSTANTIATE(float)
INSTANTIATE(__nv_bfloat16)
