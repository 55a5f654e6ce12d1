/*
 * kernels/gpu_gemm.cu
 *     GPU context (cuBLAS handle + stream + workspace), device-memory
 *     accounting under a limit, and a row-major FP32 GEMM on
 *     host pointers for pgbert (see gpu.h for the contract).
 *
 * This is a correctness-first starter: every pgbert_gpu_sgemm() call
 * allocates device buffers, copies operands in, runs one cublasSgemm and
 * copies the result back.  No PostgreSQL header may be included here.
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

/* C = beta * C on the host (row-major m x n, row stride ldc); beta == 0 writes zeros. */
static void
scale_host_c(int m, int n, float beta, float *c, int ldc)
{
	for (int i = 0; i < m; i++)
	{
		float	   *row = c + (size_t) i * (size_t) ldc;

		for (int j = 0; j < n; j++)
			row[j] = (beta == 0.0f) ? 0.0f : beta * row[j];
	}
}

/* Allocates a packed rows x cols float device buffer; 0 or -1 with a message. */
static int
device_alloc(float **dptr, int rows, int cols, const char *what,
			 char *errbuf, size_t errlen)
{
	size_t		elems = (size_t) rows * (size_t) cols;
	cudaError_t err;

	*dptr = NULL;
	if (elems > SIZE_MAX / sizeof(float))
	{
		set_error(errbuf, errlen, "matrix %s too large (%d x %d)", what, rows, cols);
		return -1;
	}
	err = cudaMalloc(reinterpret_cast<void **>(dptr), elems * sizeof(float));
	if (err != cudaSuccess)
	{
		*dptr = NULL;
		set_error(errbuf, errlen,
				  "cudaMalloc of %zu bytes for matrix %s failed: %s (%s)",
				  elems * sizeof(float), what,
				  cudaGetErrorString(err), cudaGetErrorName(err));
		(void) cudaGetLastError();
		return -1;
	}
	return 0;
}

extern "C" int
pgbert_gpu_sgemm(PgbertGpuContext *ctx, int trans_a, int trans_b,
				 int m, int n, int k,
				 float alpha, const float *a, int lda,
				 const float *b, int ldb,
				 float beta, float *c, int ldc,
				 char *errbuf, size_t errlen)
{
	/* row-major shapes of A and B as stored in memory */
	const int	a_rows = trans_a ? k : m;
	const int	a_cols = trans_a ? m : k;
	const int	b_rows = trans_b ? n : k;
	const int	b_cols = trans_b ? k : n;
	float	   *d_a = NULL;
	float	   *d_b = NULL;
	float	   *d_c = NULL;
	int			rc = -1;
	cudaError_t err;
	cublasStatus_t st;

	/* ---- argument validation (mirrors cblas_sgemm, row-major) ---- */
	if (ctx == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_sgemm: context must not be null");
		return -1;
	}
	if (m < 0 || n < 0 || k < 0)
	{
		set_error(errbuf, errlen,
				  "pgbert_gpu_sgemm: dimensions must be non-negative (m=%d n=%d k=%d)",
				  m, n, k);
		return -1;
	}
	if (lda < (a_cols > 1 ? a_cols : 1))
	{
		set_error(errbuf, errlen,
				  "pgbert_gpu_sgemm: lda=%d too small, need at least %d",
				  lda, a_cols > 1 ? a_cols : 1);
		return -1;
	}
	if (ldb < (b_cols > 1 ? b_cols : 1))
	{
		set_error(errbuf, errlen,
				  "pgbert_gpu_sgemm: ldb=%d too small, need at least %d",
				  ldb, b_cols > 1 ? b_cols : 1);
		return -1;
	}
	if (ldc < (n > 1 ? n : 1))
	{
		set_error(errbuf, errlen,
				  "pgbert_gpu_sgemm: ldc=%d too small, need at least %d",
				  ldc, n > 1 ? n : 1);
		return -1;
	}

	/* quick returns, as in reference BLAS */
	if (m == 0 || n == 0)
		return 0;
	if (c == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_sgemm: c must not be null");
		return -1;
	}
	if (k == 0 || alpha == 0.0f)
	{
		/* A and B are not referenced: C = beta * C */
		if (beta != 1.0f)
			scale_host_c(m, n, beta, c, ldc);
		return 0;
	}
	if (a == NULL || b == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_sgemm: a and b must not be null");
		return -1;
	}

	/* ---- device work ---- */
	err = cudaSetDevice(ctx->ordinal);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaSetDevice", err);
		return -1;
	}

	/* device copies are packed: leading dimension == number of columns */
	if (device_alloc(&d_a, a_rows, a_cols, "a", errbuf, errlen) != 0 ||
		device_alloc(&d_b, b_rows, b_cols, "b", errbuf, errlen) != 0 ||
		device_alloc(&d_c, m, n, "c", errbuf, errlen) != 0)
		goto done;

	err = cudaMemcpy2DAsync(d_a, (size_t) a_cols * sizeof(float),
							a, (size_t) lda * sizeof(float),
							(size_t) a_cols * sizeof(float), (size_t) a_rows,
							cudaMemcpyHostToDevice, ctx->stream);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaMemcpy2DAsync of a to device", err);
		goto done;
	}
	err = cudaMemcpy2DAsync(d_b, (size_t) b_cols * sizeof(float),
							b, (size_t) ldb * sizeof(float),
							(size_t) b_cols * sizeof(float), (size_t) b_rows,
							cudaMemcpyHostToDevice, ctx->stream);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaMemcpy2DAsync of b to device", err);
		goto done;
	}
	if (beta != 0.0f)
	{
		err = cudaMemcpy2DAsync(d_c, (size_t) n * sizeof(float),
								c, (size_t) ldc * sizeof(float),
								(size_t) n * sizeof(float), (size_t) m,
								cudaMemcpyHostToDevice, ctx->stream);
		if (err != cudaSuccess)
		{
			set_cuda_error(errbuf, errlen, "cudaMemcpy2DAsync of c to device", err);
			goto done;
		}
	}

	/*
	 * Row-major trick: a row-major X with row stride ld is, to column-major
	 * cuBLAS, X^T with the same ld.  So computing the column-major product
	 * C^T (n x m) = op(B)^T (n x k) * op(A)^T (k x m) writes exactly the
	 * row-major C.  Operand order is swapped; transpose flags carry over.
	 */
	st = cublasSgemm(ctx->handle,
					 trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
					 trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
					 n, m, k,
					 &alpha,
					 d_b, b_cols,
					 d_a, a_cols,
					 &beta,
					 d_c, n);
	if (st != CUBLAS_STATUS_SUCCESS)
	{
		set_cublas_error(errbuf, errlen, "cublasSgemm", st);
		goto done;
	}

	err = cudaMemcpy2DAsync(c, (size_t) ldc * sizeof(float),
							d_c, (size_t) n * sizeof(float),
							(size_t) n * sizeof(float), (size_t) m,
							cudaMemcpyDeviceToHost, ctx->stream);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaMemcpy2DAsync of c to host", err);
		goto done;
	}
	err = cudaStreamSynchronize(ctx->stream);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaStreamSynchronize", err);
		goto done;
	}
	rc = 0;

done:
	/* make sure nothing still uses the buffers (e.g. after an early error) */
	(void) cudaStreamSynchronize(ctx->stream);
	if (d_a != NULL)
		(void) cudaFree(d_a);
	if (d_b != NULL)
		(void) cudaFree(d_b);
	if (d_c != NULL)
		(void) cudaFree(d_c);
	if (rc != 0)
		(void) cudaGetLastError();
	return rc;
}
