/*
 * test/gpu/emu/flash_stub.cpp
 *     kernels/gpu_flash.cu in build/pgbert_gpu_emu.so: not emulated (its inline
 *     PTX, mma.sync and ldmatrix, is beyond extract.py), so the fused attention
 *     supports no shape and gpu_model.cu takes the bucketed attention path.
 */
#include "emu.h"
#include "gpu_flash.h"

#include <stdio.h>

bool
flash_attention_supported(int H, int NH, int max_len)
{
	return false;
}

cudaError_t
flash_attention_prepare(void)
{
	return cudaSuccess;
}

cudaError_t
launch_flash_attention(cudaStream_t s, __nv_bfloat16 *ctx, const __nv_bfloat16 *qkv, const float *bias,
					   const int *offsets, int n_seq, int max_len, int H, int NH, float scale)
{
	return cudaErrorInvalidValue;
}

/* "not available here" (1): test_gpu_model skips the fused kernel's checks in this library */
extern "C" int
pgbert_gpu_flash_selftest(int n_seq, const int *lengths, int H, int NH, unsigned seed, double *max_abs_err,
						  char *errbuf, size_t errlen)
{
	snprintf(errbuf, errlen, "flash attention is not emulated");
	return 1;
}
