/*
 * kernels/gpu_head.cu
 *     The heads after the encoder, forward and backward: the [CLS] rows
 *     gathered (or each sequence's rows averaged), the pooler's and the
 *     classifier's bias (+ tanh for the pooler) after their cuBLAS products;
 *     the pooler output's dropout in training; tanh's backward with the
 *     pooler's bias gradient, and the [CLS] rows' gradient put back at their
 *     packed rows.
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_device_helpers.cuh"
#include "gpu_layer_helpers.cuh"

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

/* Grid-stride: the pooler output's dropout, element i of the site being index i. */
__global__ void
train_dropout_copy_kernel(float *dst, const float *src, size_t n, TrainDrop drop)
{
	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
		dst[i] = drop_apply(drop, i, src[i]);
}

/* The pooler's backward: its dropout, then tanh', in place. */
__global__ void
train_tanh_backward_kernel(float *g, const float *y, float *dbias, int n, int H, int rows_per, TrainDrop drop)
{
	column_sum_into(dbias, n, H, rows_per, [&](size_t e) {
		float		v = drop_apply(drop, e, g[e]);

		v *= 1.0f - y[e] * y[e];
		g[e] = v;
		return v;
	});
}

/* Grid-stride: puts the [CLS] rows' gradient back at their packed rows. */
__global__ void
train_scatter_rows_kernel(float *dst, const float *src, const int *rows, int n, int H)
{
	size_t		total = (size_t) n * H;

	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < total; i += (size_t) gridDim.x * blockDim.x)
		dst[(size_t) rows[i / H] * H + i % H] = src[i];
}

/* ---- launchers ---- */

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

void
launch_train_dropout_copy(cudaStream_t s, float *dst, const float *src, size_t n, TrainDrop drop)
{
	train_dropout_copy_kernel<<<grid_for(n, 256), 256, 0, s>>>(dst, src, n, drop);
}

void
launch_train_tanh_backward(cudaStream_t s, float *g, const float *y, float *dbias, int n, int H, TrainDrop drop)
{
	int			per = col_rows_per(n);
	dim3		grid((H + COL_THREADS - 1) / COL_THREADS, (n + per - 1) / per);

	train_tanh_backward_kernel<<<grid, COL_THREADS, 0, s>>>(g, y, dbias, n, H, per, drop);
}

void
launch_train_scatter_rows(cudaStream_t s, float *dst, const float *src, const int *rows, int n, int H)
{
	train_scatter_rows_kernel<<<grid_for((size_t) n * H, 256), 256, 0, s>>>(dst, src, rows, n, H);
}
