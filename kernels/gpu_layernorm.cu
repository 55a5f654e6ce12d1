/*
 * kernels/gpu_layernorm.cu
 *     Bias + residual + LayerNorm, where each sublayer's output projection
 *     joins the residual stream, forward and backward: the inference forward
 *     (the float32 residual stream kept beside the matrix products' input
 *     copy, bf16 or float), the training forward (the sublayer's dropout;
 *     saves the sum and the statistics), and the LayerNorm backward, which
 *     also serves the embeddings' LayerNorm and sums the branch's bias
 *     gradient on the way. Numerics follow the CPU engine (src/engine/ops.c):
 *     the checkpoint's eps, a biased variance; sums over rows use atomics, so
 *     their order (not their terms) differs.
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_device_helpers.cuh"
#include "gpu_layer_helpers.cuh"

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

/* One warp per token row; launch_train_residual_ln says what it saves. */
template <typename Tin>
__global__ void
train_residual_ln_kernel(float *res, float *mean, float *rstd, float *xs, Tin *xin, const float *y,
						 const float *bias, const float *w, const float *b, int T, int H, float eps, TrainDrop drop)
{
	int			t = blockIdx.x * WARP_ROWS + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;
	size_t		row = (size_t) t * H;
	TrainDrop	none = {0, 0, 1.0f};

	if (t >= T)
		return;
	{
		float	   *rr = res + row,
				   *xr = xs + row;
		const float *yr = y + row;

		/* the CPU: tmp = dense + bias; dropout(tmp); res = x + tmp */
		for (int i = lane; i < H; i += 32)
			rr[i] = xr[i] + drop_apply(drop, row + i, yr[i] + bias[i]);
		ln_row_train(rr, mean + t, rstd + t, xr, xin + row, w, b, H, eps, lane, none, 0);
	}
}

/* One warp per row, recomputing xhat from the saved input and statistics instead of storing it. */
template <typename Tin>
__global__ void
train_ln_backward_kernel(float *dx, Tin *dbr, float *dw, float *db, float *dbias, const float *dy,
						 const float *in, const float *mean, const float *rstd, const float *w, int T, int H,
						 TrainDrop drop_in, TrainDrop drop_br)
{
	extern __shared__ float sh[];	/* dw, db, dbias partial sums of this block (3 H) */
	float	   *sdw = sh,
			   *sdb = sh + H,
			   *sdbias = sh + 2 * H;
	int			warp = threadIdx.x / 32,
				lane = threadIdx.x % 32;

	for (int i = threadIdx.x; i < 3 * H; i += blockDim.x)
		sh[i] = 0.0f;
	__syncthreads();
	for (int t = blockIdx.x * WARP_ROWS + warp; t < T; t += gridDim.x * WARP_ROWS)
	{
		size_t		row = (size_t) t * H;
		const float *x = in + row,
				   *g = dy + row;
		float		mu = mean[t],
					r = rstd[t],
					sum_g = 0.0f,
					sum_gx = 0.0f;

		/* y = xhat * w + b with xhat = (x - mean) * rstd */
		for (int i = lane; i < H; i += 32)
		{
			float		xhat = (x[i] - mu) * r,
						gi = drop_apply(drop_in, row + i, g[i]),
						gw = gi * w[i];

			sum_g += gw;
			sum_gx += gw * xhat;
			atomicAdd(&sdw[i], gi * xhat);
			atomicAdd(&sdb[i], gi);
		}
		sum_g = warp_sum(sum_g) / H;
		sum_gx = warp_sum(sum_gx) / H;
		/* dx = rstd * (g w - mean(g w) - xhat * mean(g w xhat)) */
		for (int i = lane; i < H; i += 32)
		{
			float		xhat = (x[i] - mu) * r,
						gi = drop_apply(drop_in, row + i, g[i]),
						v = r * (gi * w[i] - sum_g - xhat * sum_gx);

			dx[row + i] = v;
			if (dbr)
			{
				float		bv = drop_apply(drop_br, row + i, v);

				dbr[row + i] = from_float<Tin>(bv);
				if (dbias)
					atomicAdd(&sdbias[i], bv);
			}
		}
	}
	__syncthreads();
	for (int i = threadIdx.x; i < H; i += blockDim.x)
	{
		atomicAdd(dw + i, sdw[i]);
		atomicAdd(db + i, sdb[i]);
		if (dbias)
			atomicAdd(dbias + i, sdbias[i]);
	}
}

/* ---- launchers ---- */

template <typename Tin, typename Ty>
void
launch_bias_residual_ln(cudaStream_t s, float *x, Tin *xin, const Ty *y, const float *bias,
						const float *w, const float *b, int T, int H, float eps)
{
	bias_residual_ln_kernel<Tin, Ty><<<(T + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0, s>>>
		(x, xin, y, bias, w, b, T, H, eps);
}

template <typename Tin>
void
launch_train_residual_ln(cudaStream_t s, float *res, float *mean, float *rstd, float *xs, Tin *xin, const float *y,
						 const float *bias, const float *w, const float *b, int T, int H, float eps, TrainDrop drop)
{
	train_residual_ln_kernel<Tin><<<warp_row_blocks(T), 32 * WARP_ROWS, 0, s>>>
		(res, mean, rstd, xs, xin, y, bias, w, b, T, H, eps, drop);
}

template <typename Tin>
void
launch_train_ln_backward(cudaStream_t s, float *dx, Tin *dbr, float *dw, float *db, float *dbias, const float *dy,
						 const float *in, const float *mean, const float *rstd, const float *w, int T, int H,
						 TrainDrop drop_in, TrainDrop drop_br)
{
	unsigned int blocks = warp_row_blocks(T);

	if (blocks > 256)
		blocks = 256;			/* each block adds its 3 H partial sums once */
	train_ln_backward_kernel<Tin><<<blocks, 32 * WARP_ROWS, 3 * (size_t) H * sizeof(float), s>>>
		(dx, dbr, dw, db, dbias, dy, in, mean, rstd, w, T, H, drop_in, drop_br);
}

#define INSTANTIATE(Tin) \
	template void launch_bias_residual_ln<Tin, Tin>(cudaStream_t, float *, Tin *, const Tin *, const float *, \
													const float *, const float *, int, int, float); \
	template void launch_train_residual_ln<Tin>(cudaStream_t, float *, float *, float *, float *, Tin *, \
												const float *, const float *, const float *, const float *, \
												int, int, float, TrainDrop); \
	template void launch_train_ln_backward<Tin>(cudaStream_t, float *, Tin *, float *, float *, float *, \
												const float *, const float *, const float *, const float *, \
												const float *, int, int, TrainDrop, TrainDrop);
INSTANTIATE(float)
INSTANTIATE(__nv_bfloat16)
