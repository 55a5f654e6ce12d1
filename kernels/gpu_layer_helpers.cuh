/*
 * kernels/gpu_layer_helpers.cuh
 *     What the layer files (gpu_embeddings.cu, gpu_layernorm.cu, gpu_gelu.cu,
 *     gpu_attention.cu, gpu_head.cu, gpu_dense.cu) share beyond
 *     gpu_device_helpers.cuh: the row kernels' block shapes, a LayerNorm row
 *     of the inference forward and of the training forward, the engine's
 *     dropout, the column kernels' loop, and the block counts of their
 *     launchers. Include it after gpu_device_helpers.cuh (extract.py pastes
 *     each .cuh a .cu file includes, but not one included by another). Plain
 *     CUDA; no PostgreSQL header may be included here.
 */
#ifndef PGBERT_KERNELS_GPU_LAYER_HELPERS_CUH
#define PGBERT_KERNELS_GPU_LAYER_HELPERS_CUH

#include "gpu_train_internal.h"

#include <math.h>

#define WARP_ROWS 8				/* one warp per row, 256 threads */
#define ROWS_PER_BLOCK WARP_ROWS	/* the inference kernels' name for it */
#define COL_THREADS 256			/* column kernels: one thread per column, a run of rows per block */
#define COL_ROWS 64

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

/* v dropped or scaled as element idx of the site (ops.c's bt_dropout_apply). */
__device__ __forceinline__ float
drop_apply(const TrainDrop &d, uint64_t idx, float v)
{
	uint64_t	h;
	uint32_t	r;

	if (d.threshold == 0)
		return v;
	h = train_mix64(d.key + ((idx >> 1) + 1) * 0x9e3779b97f4a7c15ULL);
	r = (idx & 1) ? (uint32_t) (h >> 32) : (uint32_t) h;
	return (uint64_t) r < d.threshold ? 0.0f : v * d.scale;
}

/*
 * The LayerNorm of a row already written to in (H floats, this warp's lanes
 * wrote their own elements): statistics into mean/rstd, then
 * out = dropout(LayerNorm(in) * w + b) as float (xs) and Tin (xin).
 */
template <typename Tin>
__device__ __forceinline__ void
ln_row_train(const float *in, float *mean, float *rstd, float *xs, Tin *xin, const float *w, const float *b,
			 int H, float eps, int lane, const TrainDrop &drop, uint64_t base)
{
	float		mu,
				r;

	layernorm_stats(H, eps, lane, [&](int i) { return in[i]; }, &mu, &r);
	for (int i = lane; i < H; i += 32)
	{
		float		y = drop_apply(drop, base + i, ((in[i] - mu) * r) * w[i] + b[i]);

		xs[i] = y;
		xin[i] = from_float<Tin>(y);
	}
	if (lane == 0)
	{
		*mean = mu;
		*rstd = r;
	}
}

/*
 * The column kernels' loop: the thread of column c in block row y adds
 * value(e) over the elements e of rows [y rows_per, (y + 1) rows_per) of
 * that column of a (rows, cols) matrix (value may also write element e),
 * then adds the sum to dst[c].
 */
template <typename Value>
__device__ __forceinline__ void
column_sum_into(float *dst, int rows, int cols, int rows_per, Value value)
{
	int			c = blockIdx.x * blockDim.x + threadIdx.x;
	int			r0 = blockIdx.y * rows_per,
				r1 = min(rows, r0 + rows_per);
	float		sum = 0.0f;

	if (c >= cols)
		return;
	for (int r = r0; r < r1; r++)
		sum += value((size_t) r * cols + c);
	atomicAdd(dst + c, sum);
}

/* Blocks for the one-warp-per-row kernels (WARP_ROWS rows a block). */
static inline unsigned int
warp_row_blocks(size_t rows)
{
	return (unsigned int) ((rows + WARP_ROWS - 1) / WARP_ROWS);
}

/* Rows per block of a column kernel: at least COL_ROWS, and few enough blocks in y. */
static inline int
col_rows_per(int rows)
{
	int			per = (rows + 65534) / 65535;

	return per < COL_ROWS ? COL_ROWS : per;
}

#endif							/* PGBERT_KERNELS_GPU_LAYER_HELPERS_CUH */
