/*
 * kernels/gpu_gelu.cu
 *     The feed-forward block's bias + GELU, forward and backward: the
 *     inference forward (into the next product's input type), the training
 *     forward (saves the GELU's input; recomputes the activation for the
 *     backward), and the backward with the bias gradient summed by column.
 *     Exact erf GELU or the tanh approximation, as the engine
 *     (src/engine/ops.c).
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_device_helpers.cuh"
#include "gpu_layer_helpers.cuh"

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

/* Grid-stride over (T, I); the backward calls it again with no bias to recompute the activation. */
template <typename Tin, int TANH>
__global__ void
train_gelu_kernel(Tin *act, float *ffn, const float *bias, size_t n, int I)
{
	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
	{
		float		v = ffn[i];

		if (bias)
		{
			v += bias[i % I];
			ffn[i] = v;
		}
		act[i] = from_float<Tin>(gelu(v, TANH));
	}
}

/* TANH a template argument, so that the choice of GELU is made once per launch, not per element. */
template <typename Tin, int TANH>
__global__ void
train_gelu_backward_kernel(Tin *gin, const float *g, const float *ffn, float *dbias, int T, int I, int rows_per)
{
	column_sum_into(dbias, T, I, rows_per, [&](size_t e) {
		float		v = g[e] * gelu_grad(ffn[e], TANH);

		gin[e] = from_float<Tin>(v);
		return v;
	});
}

/* ---- launchers ---- */

template <typename Tin, typename Ty>
void
launch_bias_gelu(cudaStream_t s, Tin *out, const Ty *y, const float *bias, int T, int I, int gelu_tanh)
{
	size_t		n = (size_t) T * I;

	bias_gelu_kernel<Tin, Ty><<<grid_for(n, 256), 256, 0, s>>>(out, y, bias, n, I, gelu_tanh);
}

template <typename Tin>
void
launch_train_gelu(cudaStream_t s, Tin *act, float *ffn, const float *bias, int T, int I, int gelu_tanh)
{
	size_t		n = (size_t) T * I;

	if (gelu_tanh)
		train_gelu_kernel<Tin, 1><<<grid_for(n, 256), 256, 0, s>>>(act, ffn, bias, n, I);
	else
		train_gelu_kernel<Tin, 0><<<grid_for(n, 256), 256, 0, s>>>(act, ffn, bias, n, I);
}

template <typename Tin>
void
launch_train_gelu_backward(cudaStream_t s, Tin *gin, const float *g, const float *ffn, float *dbias, int T, int I,
						   int gelu_tanh)
{
	int			per = col_rows_per(T);
	dim3		grid((I + COL_THREADS - 1) / COL_THREADS, (T + per - 1) / per);

	if (gelu_tanh)
		train_gelu_backward_kernel<Tin, 1><<<grid, COL_THREADS, 0, s>>>(gin, g, ffn, dbias, T, I, per);
	else
		train_gelu_backward_kernel<Tin, 0><<<grid, COL_THREADS, 0, s>>>(gin, g, ffn, dbias, T, I, per);
}

#define INSTANTIATE(Tin) \
	template void launch_bias_gelu<Tin, Tin>(cudaStream_t, Tin *, const Tin *, const float *, int, int, int); \
	template void launch_train_gelu<Tin>(cudaStream_t, Tin *, float *, const float *, int, int, int); \
	template void launch_train_gelu_backward<Tin>(cudaStream_t, Tin *, const float *, const float *, float *, \
												  int, int, int);
INSTANTIATE(float)
INSTANTIATE(__nv_bfloat16)
