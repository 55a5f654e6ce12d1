/*
 * kernels/gpu_errors.h
 *     Error-message helpers shared by the .cu files (CUDA code only; not part
 *     of the plain C API in gpu.h). No PostgreSQL header may be included here.
 */
#ifndef PGBERT_KERNELS_GPU_ERRORS_H
#define PGBERT_KERNELS_GPU_ERRORS_H

#include <cuda_runtime.h>

#include <stdarg.h>
#include <stdio.h>

/* Writes a formatted message into the caller's buffer, if one was given. */
static inline void
set_error(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list		ap;

	if (errbuf == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

/* Formats a runtime error, then clears CUDA's last-error state. */
static inline void
set_cuda_error(char *errbuf, size_t errlen, const char *what, cudaError_t err)
{
	set_error(errbuf, errlen, "%s failed: %s (%s)",
			  what, cudaGetErrorString(err), cudaGetErrorName(err));
	(void) cudaGetLastError();
}

#endif							/* PGBERT_KERNELS_GPU_ERRORS_H */
