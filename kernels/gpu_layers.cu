/*
 * kernels/gpu_layers.cu
 *     The encoder's row-wise kernels: embeddings + LayerNorm, bias + residual
 *     + LayerNorm, bias + GELU, and the small ones of the heads. Each fuses
 *     what would otherwise be separate passes over device memory; the float32
 *     residual stream is kept beside the matrix products' input copy (bf16 or
 *     float). Numerics follow the CPU engine (src/engine/ops.c): LayerNorm
 *     with the checkpoint's eps and a biased variance, exact erf GELU.
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_device_helpers.cuh"
#include "gpu_internal.h"

#include <math.h>

#define ROWS_PER_BLOCK 8		/* one warp per row, 256 threads */

/*
 * LayerNorm of one row held by a warp, the row's values produced by load(i)
 * (called three times per element, so that rows of any width need no
 * registers per element: the row stays in L1). Writes x and xin.
 */
template <typename Tin, typename Load>
__device__ __forceinline__ void
layernorm_row(float *x, Tin *xin, const float *w, const float *b, int H, float eps, int lane, Load load)
{
	float		mean,
				rstd;

	layernorm_stats(H, eps, lane, load, &mean, &rstd);
	for (int i = lane; i < H; i += 32)
	{
		float		y = (load(i) - mean) * rstd * w[i] + b[i];

		x[i] = y;
		xin[i] = from_float<Tin>(y);
	}
}

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

/* x = LayerNorm(y + bias + x): the sublayer's output projection joins the residual stream. */
template <typename Tin, typename Ty>
__global__ void
bias_residual_ln_kernel(float *x, Tin *xin, const Ty *y, const float *bias,
						const float *w, const float *b, int T, int H, float eps)
{
	int			t = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;

	if (t >= T)
		return;
	{
		float	   *xr = x + (size_t) t * H;
		const Ty   *yr = y + (size_t) t * H;

		/* each lane reads and writes only its own elements, so in place is safe */
		layernorm_row(xr, xin + (size_t) t * H, w, b, H, eps, lane,
					  [&](int i) { return to_float(yr[i]) + bias[i] + xr[i]; });
	}
}

/* out = GELU(y + bias) as the next product's input type. */
template <typename Tin, typename Ty>
__global__ void
bias_gelu_kernel(Tin *out, const Ty *y, const float *bias, size_t n, int I, int gelu_tanh)
{
	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
	{
		float		v = to_float(y[i]) + bias[i % I];

		out[i] = from_float<Tin>(gelu(v, gelu_tanh));
	}
}

/* Grid-stride float to the input type: the bf16 copy of the weights. */
template <typename Tout>
__global__ void
convert_kernel(Tout *dst, const float *src, size_t n)
{
	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
		dst[i] = from_float<Tout>(src[i]);
}

/* dst row r = x row rows[r] (the [CLS] rows of a packed batch). */
__global__ void
gather_rows_kernel(float *dst, const float *x, const int *rows, int n, int H)
{
	size_t		total = (size_t) n * H;

	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < total; i += (size_t) gridDim.x * blockDim.x)
		dst[i] = x[(size_t) rows[i / H] * H + i % H];
}

/* dst row s = mean of x rows offsets[s] .. offsets[s+1]-1; one block per sequence. */
__global__ void
mean_rows_kernel(float *dst, const float *x, const int *offsets, int n_seq, int H)
{
	int			s = blockIdx.x;
	int			start = offsets[s],
				end = offsets[s + 1];

	for (int i = threadIdx.x; i < H; i += blockDim.x)
	{
		float		sum = 0.0f;

		for (int t = start; t < end; t++)
			sum += x[(size_t) t * H + i];
		dst[(size_t) s * H + i] = sum / (end - start);
	}
}

/* y += bias per column, then tanh when asked (the pooler) */
__global__ void
bias_act_kernel(float *y, const float *bias, int rows, int cols, int act_tanh)
{
	size_t		total = (size_t) rows * cols;

	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < total; i += (size_t) gridDim.x * blockDim.x)
	{
		float		v = y[i] + bias[i % cols];

		y[i] = act_tanh ? tanhf(v) : v;
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

template <typename Tin, typename Ty>
void
launch_bias_residual_ln(cudaStream_t s, float *x, Tin *xin, const Ty *y, const float *bias,
						const float *w, const float *b, int T, int H, float eps)
{
	bias_residual_ln_kernel<Tin, Ty><<<(T + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0, s>>>
		(x, xin, y, bias, w, b, T, H, eps);
}

template <typename Tin, typename Ty>
void
launch_bias_gelu(cudaStream_t s, Tin *out, const Ty *y, const float *bias, int T, int I, int gelu_tanh)
{
	size_t		n = (size_t) T * I;

	bias_gelu_kernel<Tin, Ty><<<grid_for(n, 256), 256, 0, s>>>(out, y, bias, n, I, gelu_tanh);
}

template <typename Tout>
void
launch_convert(cudaStream_t s, Tout *dst, const float *src, size_t n)
{
	convert_kernel<Tout><<<grid_for(n, 256), 256, 0, s>>>(dst, src, n);
}

void
launch_gather_rows(cudaStream_t s, float *dst, const float *x, const int *rows, int n, int H)
{
	gather_rows_kernel<<<grid_for((size_t) n * H, 256), 256, 0, s>>>(dst, x, rows, n, H);
}

void
launch_mean_rows(cudaStream_t s, float *dst, const float *x, const int *offsets, int n_seq, int H)
{
	mean_rows_kernel<<<n_seq, 256, 0, s>>>(dst, x, offsets, n_seq, H);
}

void
launch_bias_act(cudaStream_t s, float *y, const float *bias, int rows, int cols, int act_tanh)
{
	bias_act_kernel<<<grid_for((size_t) rows * cols, 256), 256, 0, s>>>(y, bias, rows, cols, act_tanh);
}

/* the two matrix-product input types */
#define INSTANTIATE(Tin) \
	template void launch_embed_ln<Tin>(cudaStream_t, float *, Tin *, const int *, const int *, const int *, \
									   const float *, const float *, const float *, const float *, \
									   const float *, int, int, float); \
	template void launch_bias_residual_ln<Tin, Tin>(cudaStream_t, float *, Tin *, const Tin *, const float *, \
													const float *, const float *, int, int, float); \
	template void launch_bias_gelu<Tin, Tin>(cudaStream_t, Tin *, const Tin *, const float *, int, int, int); \
	template void launch_convert<Tin>(cudaStream_t, Tin *, const float *, size_t);
INSTANTIATE(float)
INSTANTIATE(__nv_bfloat16)
