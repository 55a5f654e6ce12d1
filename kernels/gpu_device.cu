/*
 * kernels/gpu_device.cu
 *     CUDA device discovery for pgbert (see gpu.h for the contract).
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu.h"
#include "gpu_errors.h"

#include <cuda_runtime.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

extern "C" int
pgbert_gpu_device_count(int *count, char *errbuf, size_t errlen)
{
	int			n = 0;
	cudaError_t err;

	if (count == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_device_count: count must not be null");
		return -1;
	}
	*count = 0;

	err = cudaGetDeviceCount(&n);
	if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver)
	{
		/* no driver or no device: not an error, just no GPU */
		(void) cudaGetLastError();
		return 0;
	}
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaGetDeviceCount", err);
		return -1;
	}
	*count = n;
	return 0;
}

extern "C" int
pgbert_gpu_device_info(int ordinal, PgbertGpuDevice *out,
					   char *errbuf, size_t errlen)
{
	int			n = 0;
	cudaDeviceProp prop;
	cudaError_t err;

	if (out == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_device_info: out must not be null");
		return -1;
	}
	if (pgbert_gpu_device_count(&n, errbuf, errlen) != 0)
		return -1;
	if (ordinal < 0 || ordinal >= n)
	{
		set_error(errbuf, errlen,
				  "invalid cuda device ordinal %d (%d device(s) available)",
				  ordinal, n);
		return -1;
	}

	memset(&prop, 0, sizeof(prop));
	err = cudaGetDeviceProperties(&prop, ordinal);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaGetDeviceProperties", err);
		return -1;
	}

	memset(out, 0, sizeof(*out));
	out->ordinal = ordinal;
	snprintf(out->name, sizeof(out->name), "%s", prop.name);
	out->cc_major = prop.major;
	out->cc_minor = prop.minor;
	out->total_mem = prop.totalGlobalMem;
	out->multiprocessors = prop.multiProcessorCount;
	return 0;
}
