/*
 * kernels/gpu.h
 *     Plain C interface to pgbert's CUDA/cuBLAS code.
 *
 * This header is shared by the C side of the extension (compiled by gcc
 * against the PostgreSQL headers) and by the .cu files (compiled by nvcc).
 * It therefore must stay plain C: no PostgreSQL headers (their float4
 * typedef clashes with CUDA's float4 vector type) and no CUDA types.
 *
 * Conventions shared by every function here:
 *   - nothing touches CUDA until one of these functions is called;
 *   - functions never abort or exit; failures are reported through the
 *     return value (-1 or NULL) plus a lowercase, NUL-terminated message
 *     written into the caller-provided errbuf (errbuf may be NULL or
 *     errlen 0, in which case no message is written);
 *   - on success errbuf is left untouched.
 */
#ifndef PGBERT_KERNELS_GPU_H
#define PGBERT_KERNELS_GPU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Description of one CUDA device, as filled by pgbert_gpu_device_info(). */
typedef struct PgbertGpuDevice
{
	int			ordinal;			/* CUDA device ordinal */
	char		name[256];			/* NUL-terminated device name */
	int			cc_major;			/* compute capability, major */
	int			cc_minor;			/* compute capability, minor */
	size_t		total_mem;			/* global memory in bytes */
	int			multiprocessors;	/* number of SMs */
} PgbertGpuDevice;

/* Opaque per-device handle: cuBLAS handle plus a dedicated CUDA stream. */
typedef struct PgbertGpuContext PgbertGpuContext;

/* Counts CUDA devices: no driver or no device gives *count = 0 and 0; other failures -1. */
int			pgbert_gpu_device_count(int *count, char *errbuf, size_t errlen);

/* Fills *out with name, compute capability, memory and SM count of a device; 0 or -1. */
int			pgbert_gpu_device_info(int ordinal, PgbertGpuDevice *out,
								   char *errbuf, size_t errlen);

/* Selects a device and creates a cuBLAS handle bound to a new stream; NULL on failure. */
PgbertGpuContext *pgbert_gpu_open(int ordinal, char *errbuf, size_t errlen);

/* Releases everything pgbert_gpu_open() created; NULL is accepted and ignored. */
void		pgbert_gpu_close(PgbertGpuContext *ctx);

/*
 * Row-major FP32 GEMM on host pointers, with the semantics of
 * cblas_sgemm(CblasRowMajor, ...):
 *
 *     C = alpha * op(A) * op(B) + beta * C
 *
 * where op(X) = X when trans_x == 0 and X^T otherwise, op(A) is m x k,
 * op(B) is k x n and C is m x n, all stored row-major with the given
 * leading dimensions (row strides, in elements).  When beta == 0, C is not
 * read (so it may hold garbage or NaN).  Computation is plain FP32 (no
 * TF32).  Returns 0 on success, -1 on bad arguments or CUDA/cuBLAS errors.
 */
int			pgbert_gpu_sgemm(PgbertGpuContext *ctx, int trans_a, int trans_b,
							 int m, int n, int k,
							 float alpha, const float *a, int lda,
							 const float *b, int ldb,
							 float beta, float *c, int ldc,
							 char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif							/* PGBERT_KERNELS_GPU_H */
