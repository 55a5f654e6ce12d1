/*
 * kernels/gpu_flash.h
 *     Fused (flash-attention style) self-attention for bf16 inference over
 *     packed variable-length sequences (gpu_flash.cu). CUDA code only; no
 *     PostgreSQL header may be included here.
 *
 * One kernel computes, per sequence and head, softmax(Q K^T * scale) V from
 * the QKV product directly: no padding, no (heads, P, P) scores in device
 * memory. Tensor cores (mma.sync m16n8k16 bf16, fp32 accumulation), fp32
 * softmax statistics (online softmax), keys exactly the sequence's tokens.
 */
#ifndef PGBERT_KERNELS_GPU_FLASH_H
#define PGBERT_KERNELS_GPU_FLASH_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stddef.h>

/* Whether the fused kernel handles this shape (head dim d in {32, 64}, hidden % heads == 0, max_len <= 512). */
bool		flash_attention_supported(int H, int NH, int max_len);

/*
 * Optional, once, outside stream capture: loads both kernel instantiations
 * (cudaFuncGetAttributes), so that a first launch inside a capture does not
 * trigger lazy module loading there. The kernels use static shared memory
 * only (<= 27,648 bytes), so no cudaFuncSetAttribute is ever needed and the
 * launch itself is capture-safe. Returns the first error, or cudaSuccess.
 */
cudaError_t flash_attention_prepare(void);

/*
 * ctx (T, H) bf16 = softmax(Q K^T * scale) V per sequence and head, over a
 * packed batch: qkv (T, 3H) bf16 is the QKV product without bias (row t:
 * q | k | v, each H = NH * d wide, head h at columns h*d .. h*d+d-1 of each
 * part); bias (3H) float is added on load, in float, then rounded to bf16.
 * Sequence s is rows offsets[s] .. offsets[s+1]-1 (device array, n_seq + 1
 * ints, nondecreasing); max_len (host) is the longest sequence, for the
 * grid. qkv and ctx must be 16-byte aligned (cudaMalloc'd bases are).
 * Launches on stream s (no allocation, no synchronization: capture-safe);
 * returns cudaErrorInvalidValue for an unsupported shape, else
 * cudaGetLastError() after the launch. n_seq == 0 or max_len == 0 launch
 * nothing.
 */
cudaError_t launch_flash_attention(cudaStream_t s, __nv_bfloat16 *ctx, const __nv_bfloat16 *qkv,
								   const float *bias, const int *offsets, int n_seq, int max_len, int H,
								   int NH, float scale);

/*
 * Device self-test (exported from pgbert_gpu.so for test_gpu_model.c via
 * dlsym): n_seq sequences of the given lengths (each 0 .. 512), hidden H
 * with NH heads, random qkv in [-1, 1] and bias in [-0.25, 0.25] from seed.
 * Runs launch_flash_attention (output poisoned first, guard rows past the
 * batch checked untouched), replays it through a captured CUDA graph on a
 * stream of its own (bitwise equal to the first run, else an error: a race),
 * and compares with a naive fp32 reference kernel over the same
 * bf16-rounded inputs. *max_abs_err: the largest |flash - reference| over
 * every output element (INFINITY when one is not finite).
 * Returns 0 when the check ran, 1 + "no device" when there is no CUDA
 * device, -1 + message on bad arguments or a CUDA error.
 */
extern "C" int pgbert_gpu_flash_selftest(int n_seq, const int *lengths, int H, int NH, unsigned seed,
										 double *max_abs_err, char *errbuf, size_t errlen);

#endif							/* PGBERT_KERNELS_GPU_FLASH_H */
