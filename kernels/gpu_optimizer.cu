/*
 * kernels/gpu_optimizer.cu
 *     The optimizer step's kernels: the global gradient norm (sums of squares
 *     in double, in a fixed order: no atomics) for clipping, and AdamW over a
 *     parameter segment, rounded as the engine's CPU trainer rounds
 *     (src/engine/train.c).
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_device_helpers.cuh"
#include "gpu_train_internal.h"

/* Sum over a block (warps, then warp 0), in double for the gradient norm; thread 0 gets it. */
__device__ __forceinline__ double
block_sum_double(double v)
{
	__shared__ double part[32];
	int			lane = threadIdx.x % 32,
				warp = threadIdx.x / 32;

	v = warp_sum(v);
	if (lane == 0)
		part[warp] = v;
	__syncthreads();
	v = 0.0;
	if (warp == 0)
	{
		v = lane < (int) (blockDim.x / 32) ? part[lane] : 0.0;
		v = warp_sum(v);
	}
	return v;					/* valid in thread 0 */
}

/* The norm's first pass: per-block partial sums of squares in double, no atomics (a fixed order). */
__global__ void
train_sumsq_kernel(double *partials, const float *g, size_t n)
{
	double		s = 0.0;

	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
		s += (double) g[i] * g[i];
	s = block_sum_double(s);
	if (threadIdx.x == 0)
		partials[blockIdx.x] = s;
}

/* The norm's second pass: one block adds the partial sums. */
__global__ void
train_sum_partials_kernel(double *out, const double *partials, int n)
{
	double		s = 0.0;

	for (int i = threadIdx.x; i < n; i += blockDim.x)
		s += partials[i];
	s = block_sum_double(s);
	if (threadIdx.x == 0)
		*out = s;
}

/* Grid-stride AdamW over one parameter segment, rounded step by step as train.c's CPU code rounds. */
__global__ void
train_adamw_kernel(float *p, const float *grad, float *m, float *v, size_t n, int clip, float coef, int wd,
				   float decay, float one_minus_b1, float b2, float one_minus_b2, float bc2_sqrt, float eps,
				   float step_size)
{
	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
	{
		float		g = grad[i],
					pi = p[i],
					mi = m[i],
					vi = v[i],
					denom;

		/* train.c's expressions, each rounded as the CPU rounds it (no contraction into fma) */
		if (clip)
			g = __fmul_rn(g, coef);
		if (wd)
			pi = __fmul_rn(pi, decay);
		mi = __fadd_rn(mi, __fmul_rn(one_minus_b1, __fsub_rn(g, mi)));
		vi = __fadd_rn(__fmul_rn(vi, b2), __fmul_rn(__fmul_rn(one_minus_b2, g), g));
		denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
		pi = __fadd_rn(pi, __fmul_rn(-step_size, __fdiv_rn(mi, denom)));
		p[i] = pi;
		m[i] = mi;
		v[i] = vi;
	}
}

/* ---- launchers ---- */

void
launch_train_sumsq(cudaStream_t s, double *out, double *partials, const float *g, size_t n)
{
	train_sumsq_kernel<<<TRAIN_NORM_BLOCKS, 256, 0, s>>>(partials, g, n);
	train_sum_partials_kernel<<<1, 256, 0, s>>>(out, partials, TRAIN_NORM_BLOCKS);
}

void
launch_train_adamw(cudaStream_t s, float *p, const float *grad, float *m, float *v, size_t n, int clip, float coef,
				   int wd, float decay, float one_minus_b1, float b2, float one_minus_b2, float bc2_sqrt, float eps,
				   float step_size)
{
	train_adamw_kernel<<<grid_for(n, 256), 256, 0, s>>>(p, grad, m, v, n, clip, coef, wd, decay, one_minus_b1, b2,
														one_minus_b2, bc2_sqrt, eps, step_size);
}
