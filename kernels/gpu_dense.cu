/*
 * kernels/gpu_dense.cu
 *     What the dense layers need beside their cuBLAS products (gpu_gemm.cu):
 *     the bf16 copy of the float32 weights that bf16 products read (made at
 *     upload and after each optimizer step), and a bias gradient as the
 *     column sums of the output's gradient (the QKV and classifier biases;
 *     the others are summed by the kernels of their layers).
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_device_helpers.cuh"
#include "gpu_layer_helpers.cuh"

/* Grid-stride float to the input type: the bf16 copy of the weights. */
template <typename Tout>
__global__ void
convert_kernel(Tout *dst, const float *src, size_t n)
{
	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
		dst[i] = from_float<Tout>(src[i]);
}

/* A bias gradient: column sums of a (rows, cols) gradient. */
__global__ void
train_colsum_kernel(float *dst, const float *src, int rows, int cols, int rows_per)
{
	column_sum_into(dst, rows, cols, rows_per, [&](size_t e) { return src[e]; });
}

/* ---- launchers ---- */

template <typename Tout>
void
launch_convert(cudaStream_t s, Tout *dst, const float *src, size_t n)
{
	convert_kernel<Tout><<<grid_for(n, 256), 256, 0, s>>>(dst, src, n);
}

void
launch_train_colsum(cudaStream_t s, float *dst, const float *src, int rows, int cols)
{
	int			per = col_rows_per(rows);
	dim3		grid((cols + COL_THREADS - 1) / COL_THREADS, (rows + per - 1) / per);

	train_colsum_kernel<<<grid, COL_THREADS, 0, s>>>(dst, src, rows, cols, per);
}

template void launch_convert<float>(cudaStream_t, float *, const float *, size_t);
template void launch_convert<__nv_bfloat16>(cudaStream_t, __nv_bfloat16 *, const float *, size_t);
