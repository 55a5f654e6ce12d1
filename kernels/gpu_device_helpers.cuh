/*
 * kernels/gpu_device_helpers.cuh
 *     The device functions that the row kernels of several .cu files share:
 *     the matrix-product input type (float or bf16) read and written as
 *     float, warp reductions, a bucket slot and its per-head index,
 *     GELU and its derivative, and the statistics of a LayerNorm row held
 *     by a warp. All __forceinline__, so that each
 *     kernel compiles to what it did with its own copy. Plain CUDA; no
 *     PostgreSQL header may be included here. test/gpu/emu/extract.py
 *     pastes this file into the .cu files it rewrites for the emulator.
 */
#ifndef PGBERT_KERNELS_GPU_DEVICE_HELPERS_CUH
#define PGBERT_KERNELS_GPU_DEVICE_HELPERS_CUH

#include <cuda_bf16.h>
#include <math.h>

/* Reads a value of a matrix-product input type as float. */
__device__ __forceinline__ float
to_float(float x)
{
	return x;
}

__device__ __forceinline__ float
to_float(__nv_bfloat16 x)
{
	return __bfloat162float(x);
}

/* Writes a float as a matrix-product input type (round to nearest even for bf16). */
template <typename T>
__device__ __forceinline__ T from_float(float x);

template <>
__device__ __forceinline__ float
from_float<float>(float x)
{
	return x;
}

template <>
__device__ __forceinline__ __nv_bfloat16
from_float<__nv_bfloat16>(float x)
{
	return __float2bfloat16_rn(x);
}

/* Sum over the 32 lanes of a warp (float, or double for the gradient norm); every lane gets it. */
template <typename T>
__device__ __forceinline__ T
warp_sum(T v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* Maximum over the 32 lanes of a warp; every lane gets it. */
__device__ __forceinline__ float
warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/*
 * The attention bucket slot of this block, for kernels that run one block
 * per slot: sequence b, position p, packed token tok (-1 in a padding slot)
 * and the head width d.
 */
struct BucketSlot
{
	int			b,
				p,
				tok,
				d;
};

__device__ __forceinline__ BucketSlot
block_bucket_slot(const int *slot_token, int P, int H, int NH)
{
	int			slot = blockIdx.x;
	BucketSlot	bs;

	bs.b = slot / P;
	bs.p = slot % P;
	bs.tok = slot_token[slot];
	bs.d = H / NH;
	return bs;
}

/* Where column c (of H = NH d) of slot bs sits in the bucket's per-head (B, NH, P, d) layout. */
__device__ __forceinline__ size_t
head_slot_index(const BucketSlot &bs, int c, int P, int NH)
{
	return (((size_t) bs.b * NH + c / bs.d) * P + bs.p) * bs.d + c % bs.d;
}

#define GELU_SQRT1_2 0.7071067811865476f
#define GELU_TANH_C 0.7978845608028654f	/* sqrt(2 / pi) */
#define GELU_INV_SQRT_2PI 0.3989422804014327f

/* GELU as the engine computes it (ops.c): exact erf, or the tanh approximation when gelu_tanh. */
__device__ __forceinline__ float
gelu(float x, int gelu_tanh)
{
	if (gelu_tanh)
		return 0.5f * x * (1.0f + tanhf(GELU_TANH_C * (x + 0.044715f * x * x * x)));
	return 0.5f * x * (1.0f + erff(x * GELU_SQRT1_2));
}

/* gelu'(x), ops.c's bt_gelu_backward */
__device__ __forceinline__ float
gelu_grad(float x, int gelu_tanh)
{
	if (gelu_tanh)
	{
		float		th = tanhf(GELU_TANH_C * (x + 0.044715f * x * x * x)),
					du = GELU_TANH_C * (1.0f + 3.0f * 0.044715f * x * x);

		return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
	}
	return 0.5f * (1.0f + erff(x * GELU_SQRT1_2)) + x * GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
}

/*
 * Mean and 1 / sqrt(biased variance + eps) of a row of H values held by a
 * warp, the row's values produced by load(i) (called twice per element, so
 * that rows of any width need no registers per element: the row stays in L1).
 */
template <typename Load>
__device__ __forceinline__ void
layernorm_stats(int H, float eps, int lane, Load load, float *mean, float *rstd)
{
	float		sum = 0.0f,
				var = 0.0f,
				mu;

	for (int i = lane; i < H; i += 32)
		sum += load(i);
	mu = warp_sum(sum) / H;
	for (int i = lane; i < H; i += 32)
	{
		float		d = load(i) - mu;

		var += d * d;
	}
	*mean = mu;
	*rstd = rsqrtf(warp_sum(var) / H + eps);
}

#endif							/* PGBERT_KERNELS_GPU_DEVICE_HELPERS_CUH */
