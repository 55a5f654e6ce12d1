/*
 * kernels/gpu_gemm.cu
 *     GPU context (cuBLAS handle + stream + workspace), device-memory
 *     accounting under a limit, and the dense product the inference pass and
 *     the trainer share, for pgbert (see gpu.h for the contract).
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_internal.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Formats a cuBLAS error with its status name and description. */
void
set_cublas_error(char *errbuf, size_t errlen, const char *what,
				 cublasStatus_t st)
{
	set_error(errbuf, errlen, "%s failed: %s (%s)",
			  what, cublasGetStatusName(st), cublasGetStatusString(st));
}

cublasStatus_t
gemm_dense(cublasHandle_t h, cudaDataType_t xt, cudaDataType_t yt, void *y, const void *x, const void *w, int rows,
		   int O, int K)
{
	const float one = 1.0f,
				zero = 0.0f;

	/* column-major, y^T (O, rows) = w (K, O)^T x^T (K, rows) */
	return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, O, rows, K, &one, w, xt, K, x, xt, K, &zero,
						y, yt, O, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

int
gpu_alloc(PgbertGpuContext *ctx, void **ptr, size_t bytes, const char *what,
		  char *errbuf, size_t errlen)
{
	cudaError_t err;

	*ptr = NULL;
	if (bytes == 0)
		bytes = 16;
	if (ctx->limit > 0 && (bytes > ctx->limit || ctx->used > ctx->limit - bytes))
	{
		set_error(errbuf, errlen,
				  "out of gpu memory: %s needs %.1f MiB, %.1f MiB of the %.1f MiB limit are in use",
				  what, bytes / 1048576.0, ctx->used / 1048576.0, ctx->limit / 1048576.0);
		return -1;
	}
	err = cudaMalloc(ptr, bytes);
	if (err != cudaSuccess)
	{
		*ptr = NULL;
		/* only exhausted memory is the request's error; anything else is a device failure */
		set_error(errbuf, errlen, "%s: cudaMalloc of %.1f MiB for %s failed: %s",
				  err == cudaErrorMemoryAllocation ? "out of gpu memory" : "cuda error",
				  bytes / 1048576.0, what, cudaGetErrorString(err));
		(void) cudaGetLastError();
		return -1;
	}
	ctx->used += bytes;
	return 0;
}

void
gpu_free(PgbertGpuContext *ctx, void *ptr, size_t bytes)
{
	if (ptr == NULL)
		return;
	(void) cudaFree(ptr);
	ctx->used -= (bytes == 0 ? 16 : bytes);
}

extern "C" void
pgbert_gpu_set_memory_limit(PgbertGpuContext *ctx, size_t bytes)
{
	ctx->limit = bytes;
}

extern "C" size_t
pgbert_gpu_memory_used(PgbertGpuContext *ctx)
{
	return ctx->used;
}

extern "C" PgbertGpuContext *
pgbert_gpu_open(int ordinal, char *errbuf, size_t errlen)
{
	PgbertGpuContext *ctx;
	int			n = 0;
	cudaError_t err;
	cublasStatus_t st;

	if (pgbert_gpu_device_count(&n, errbuf, errlen) != 0)
		return NULL;
	if (ordinal < 0 || ordinal >= n)
	{
		set_error(errbuf, errlen,
				  "invalid cuda device ordinal %d (%d device(s) available)",
				  ordinal, n);
		return NULL;
	}

	ctx = static_cast<PgbertGpuContext *>(calloc(1, sizeof(PgbertGpuContext)));
	if (ctx == NULL)
	{
		set_error(errbuf, errlen, "out of host memory allocating gpu context");
		return NULL;
	}
	ctx->ordinal = ordinal;

	err = cudaSetDevice(ordinal);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaSetDevice", err);
		goto fail;
	}
	err = cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking);
	if (err != cudaSuccess)
	{
		ctx->stream = NULL;
		set_cuda_error(errbuf, errlen, "cudaStreamCreateWithFlags", err);
		goto fail;
	}
	st = cublasCreate(&ctx->handle);
	if (st != CUBLAS_STATUS_SUCCESS)
	{
		ctx->handle = NULL;
		set_cublas_error(errbuf, errlen, "cublasCreate", st);
		goto fail;
	}
	st = cublasSetStream(ctx->handle, ctx->stream);
	if (st != CUBLAS_STATUS_SUCCESS)
	{
		set_cublas_error(errbuf, errlen, "cublasSetStream", st);
		goto fail;
	}
	/* alpha/beta are host scalars */
	st = cublasSetPointerMode(ctx->handle, CUBLAS_POINTER_MODE_HOST);
	if (st != CUBLAS_STATUS_SUCCESS)
	{
		set_cublas_error(errbuf, errlen, "cublasSetPointerMode", st);
		goto fail;
	}
	/* plain FP32: CUBLAS_DEFAULT_MATH never uses TF32 for cublasSgemm */
	st = cublasSetMathMode(ctx->handle, CUBLAS_DEFAULT_MATH);
	if (st != CUBLAS_STATUS_SUCCESS)
	{
		set_cublas_error(errbuf, errlen, "cublasSetMathMode", st);
		goto fail;
	}
	/* a workspace of our own: cuBLAS then allocates nothing while a graph is captured */
	ctx->blas_workspace_bytes = (size_t) 32 << 20;
	if (gpu_alloc(ctx, &ctx->blas_workspace, ctx->blas_workspace_bytes, "the cuBLAS workspace",
				  errbuf, errlen) != 0)
	{
		ctx->blas_workspace_bytes = 0;
		goto fail;
	}
	st = cublasSetWorkspace(ctx->handle, ctx->blas_workspace, ctx->blas_workspace_bytes);
	if (st != CUBLAS_STATUS_SUCCESS)
	{
		set_cublas_error(errbuf, errlen, "cublasSetWorkspace", st);
		goto fail;
	}
	return ctx;

fail:
	pgbert_gpu_close(ctx);
	return NULL;
}

extern "C" void
pgbert_gpu_close(PgbertGpuContext *ctx)
{
	if (ctx == NULL)
		return;
	/* make the owning device current; errors here cannot be reported */
	(void) cudaSetDevice(ctx->ordinal);
	if (ctx->handle != NULL)
		(void) cublasDestroy(ctx->handle);
	gpu_free(ctx, ctx->blas_workspace, ctx->blas_workspace_bytes);
	if (ctx->stream != NULL)
		(void) cudaStreamDestroy(ctx->stream);
	(void) cudaGetLastError();
	free(ctx);
}
