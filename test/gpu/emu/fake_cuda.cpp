/*
 * test/gpu/emu/fake_cuda.cpp
 *     The CUDA runtime and cuBLAS functions the kernels/ .cu files call, on the host, for
 *     build/pgbert_gpu_emu.so (test/gpu/emu/library.sh): device memory is host
 *     memory (cudaMalloc'd blocks tracked, so that a copy, memset or GEMM
 *     reaching outside one is an error), every stream runs its work at once, in
 *     order, and kernels run through the emulator (emu.h).
 *
 *     Graphs: while a stream captures, its work (launches with copies of their
 *     arguments, copies, memsets, GEMMs with their host scalars) is recorded
 *     and nothing runs; cudaGraphLaunch replays the list. So a replay reads
 *     pinned staging buffers and device memory as they are at replay time, as
 *     on the device. In a thread-local capture, the calls CUDA forbids there
 *     (cudaMalloc, cudaFree, cudaHostAlloc, cudaFreeHost, cudaMemcpy,
 *     cudaStreamSynchronize of the capturing stream, cudaDeviceSynchronize)
 *     fail and invalidate the capture.
 *
 *     cuBLAS: cublasSgemm, cublasGemmEx and cublasGemmStridedBatchedEx with
 *     the documented column-major semantics, CUDA_R_32F and CUDA_R_16BF
 *     operands, accumulation in double, beta == 0 not reading C, and
 *     CUBLAS_STATUS_INVALID_VALUE for negative sizes or a leading dimension
 *     below the stored rows of its matrix.
 */
#include "emu.h"

#include <cublas_v2.h>

#include <stdio.h>
#include <stdlib.h>

#include <map>
#include <mutex>
#include <vector>

struct CUstream_st
{
	bool		capturing = false;
	bool		invalidated = false;
	cudaGraph_t graph = nullptr;
};

struct CUgraph_st
{
	std::vector<std::function<void()>> ops;
};

struct CUgraphExec_st
{
	std::vector<std::function<void()>> ops;
};

struct cublasContext
{
	cudaStream_t stream = 0;
};

namespace
{

std::recursive_mutex api_mutex;
std::map<uintptr_t, size_t> device_blocks;	/* cudaMalloc'd: base -> bytes */
std::map<uintptr_t, size_t> host_blocks;	/* cudaHostAlloc'd */
cudaError_t last_error = cudaSuccess;
cudaError_t sticky_error = cudaSuccess;
thread_local cudaStream_t capturing_here;	/* this thread's capturing stream (thread-local mode) */
bool		verbose = getenv("PGBERT_EMU_VERBOSE") != nullptr;

#define API std::lock_guard<std::recursive_mutex> api_guard(api_mutex)

cudaError_t
fail(cudaError_t e, const char *what)
{
	if (verbose || e != cudaErrorInvalidValue)
		fprintf(stderr, "emulated cuda: %s: %s\n", what, cudaGetErrorName(e));
	last_error = e;
	return e;
}

/* whether [p, p + bytes) lies inside one block of the map */
bool
inside(const std::map<uintptr_t, size_t> &m, const void *p, size_t bytes)
{
	uintptr_t	a = (uintptr_t) p;
	auto		it = m.upper_bound(a);

	if (it == m.begin())
		return false;
	--it;
	return a >= it->first && a - it->first <= it->second && bytes <= it->second - (a - it->first);
}

bool
on_device(const void *p, size_t bytes)
{
	return bytes == 0 || inside(device_blocks, p, bytes);
}

/* a forbidden call during this thread's capture: invalidates it */
bool
capture_forbids(const char *what)
{
	if (capturing_here && capturing_here->capturing)
	{
		capturing_here->invalidated = true;
		fprintf(stderr, "emulated cuda: %s during stream capture\n", what);
		last_error = cudaErrorStreamCaptureUnsupported;
		return true;
	}
	return false;
}

/* runs op now, or records it when s captures */
cudaError_t
submit(cudaStream_t s, std::function<void()> op)
{
	if (s == 0 && capturing_here && capturing_here->capturing)
	{
		capturing_here->invalidated = true;
		return fail(cudaErrorStreamCaptureImplicit, "work on the legacy stream during a capture");
	}
	if (s && s->capturing)
		s->graph->ops.push_back(std::move(op));
	else
		op();
	return cudaSuccess;
}

void
check_kernel(const char *kernel)
{
	std::string e = emu::take_error();

	if (!e.empty())
	{
		fprintf(stderr, "emulated cuda: kernel %s: %s\n", kernel, e.c_str());
		last_error = sticky_error = cudaErrorLaunchFailure;
	}
}

void
hook(const char *kernel, std::function<void()> body, dim3 grid, dim3 block, size_t smem, cudaStream_t s)
{
	API;
	submit(s, [=] {
		emu::launch_grid(kernel, body, grid, block, smem);
		check_kernel(kernel);
	});
}

struct InstallHook
{
	InstallHook() { emu::launch_hook = hook; emu::use_fibers = true; }
} install_hook;

cudaError_t
copy_check(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
	bool		ok;

	switch (kind)
	{
		case cudaMemcpyHostToDevice:
			ok = on_device(dst, bytes) && (bytes == 0 || !inside(device_blocks, src, 1));
			break;
		case cudaMemcpyDeviceToHost:
			ok = on_device(src, bytes) && (bytes == 0 || !inside(device_blocks, dst, 1));
			break;
		case cudaMemcpyDeviceToDevice:
			ok = on_device(src, bytes) && on_device(dst, bytes);
			break;
		case cudaMemcpyHostToHost:
			ok = true;
			break;
		default:
			/* cudaMemcpyDefault: either side anywhere, but a device side must fit */
			ok = (!inside(device_blocks, dst, 1) || on_device(dst, bytes))
				&& (!inside(device_blocks, src, 1) || on_device(src, bytes));
	}
	if (!ok)
	{
		fprintf(stderr, "emulated cuda: copy of %zu bytes %p -> %p (kind %d) outside device memory or of the wrong kind\n",
				bytes, src, dst, (int) kind);
		return fail(cudaErrorInvalidValue, "cudaMemcpy");
	}
	return cudaSuccess;
}

}								/* namespace */

extern "C"
{

cudaError_t
cudaGetDeviceCount(int *count)
{
	*count = 1;
	return cudaSuccess;
}

cudaError_t
cudaSetDevice(int device)
{
	return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice, "cudaSetDevice");
}

cudaError_t
cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
	if (device != 0)
		return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties");
	memset(prop, 0, sizeof(*prop));
	snprintf(prop->name, sizeof(prop->name), "emulated H200");
	prop->major = 9;
	prop->minor = 0;
	prop->totalGlobalMem = (size_t) 141 << 30;
	prop->multiProcessorCount = 132;
	prop->warpSize = 32;
	prop->maxThreadsPerBlock = 1024;
	prop->sharedMemPerBlock = 48 * 1024;
	prop->sharedMemPerBlockOptin = 227 * 1024;
	return cudaSuccess;
}

cudaError_t
cudaGetLastError(void)
{
	API;
	cudaError_t e = last_error;

	last_error = sticky_error;
	return e;
}

cudaError_t
cudaPeekAtLastError(void)
{
	API;
	return last_error;
}

const char *
cudaGetErrorName(cudaError_t e)
{
	switch (e)
	{
		case cudaSuccess: return "cudaSuccess";
		case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
		case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
		case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
		case cudaErrorInvalidPitchValue: return "cudaErrorInvalidPitchValue";
		case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
		case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
		case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
		case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
		case cudaErrorIllegalState: return "cudaErrorIllegalState";
		default: return "cudaError(emulated)";
	}
}

const char *
cudaGetErrorString(cudaError_t e)
{
	return cudaGetErrorName(e);
}

cudaError_t
cudaFuncGetAttributes(cudaFuncAttributes *attr, const void *func)
{
	memset(attr, 0, sizeof(*attr));
	attr->maxThreadsPerBlock = 1024;
	attr->ptxVersion = attr->binaryVersion = 90;
	return cudaSuccess;
}

cudaError_t
cudaMalloc(void **p, size_t bytes)
{
	API;
	if (capture_forbids("cudaMalloc"))
		return cudaErrorStreamCaptureUnsupported;
	*p = aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
	if (!*p)
		return fail(cudaErrorMemoryAllocation, "cudaMalloc");
	memset(*p, 0xff, bytes);	/* NaN as float: reading what was never written shows */
	device_blocks[(uintptr_t) *p] = bytes;
	return cudaSuccess;
}

cudaError_t
cudaFree(void *p)
{
	API;
	if (capture_forbids("cudaFree"))
		return cudaErrorStreamCaptureUnsupported;
	if (!p)
		return cudaSuccess;
	if (!device_blocks.erase((uintptr_t) p))
		return fail(cudaErrorInvalidValue, "cudaFree of a pointer cudaMalloc did not return");
	free(p);
	return cudaSuccess;
}

cudaError_t
cudaHostAlloc(void **p, size_t bytes, unsigned int flags)
{
	API;
	if (capture_forbids("cudaHostAlloc"))
		return cudaErrorStreamCaptureUnsupported;
	*p = aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
	if (!*p)
		return fail(cudaErrorMemoryAllocation, "cudaHostAlloc");
	memset(*p, 0xff, bytes);
	host_blocks[(uintptr_t) *p] = bytes;
	return cudaSuccess;
}

cudaError_t
cudaFreeHost(void *p)
{
	API;
	if (capture_forbids("cudaFreeHost"))
		return cudaErrorStreamCaptureUnsupported;
	if (!p)
		return cudaSuccess;
	if (!host_blocks.erase((uintptr_t) p))
		return fail(cudaErrorInvalidValue, "cudaFreeHost of a pointer cudaHostAlloc did not return");
	free(p);
	return cudaSuccess;
}

cudaError_t
cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
	API;
	cudaError_t e;

	if (capture_forbids("cudaMemcpy"))
		return cudaErrorStreamCaptureUnsupported;
	if ((e = copy_check(dst, src, bytes, kind)) != cudaSuccess)
		return e;
	if (bytes)
		memmove(dst, src, bytes);
	return sticky_error;
}

cudaError_t
cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s)
{
	API;
	cudaError_t e;

	if ((e = copy_check(dst, src, bytes, kind)) != cudaSuccess)
		return e;
	return submit(s, [=] { if (bytes) memmove(dst, src, bytes); });
}

cudaError_t
cudaMemset(void *dst, int value, size_t bytes)
{
	API;
	if (!on_device(dst, bytes))
		return fail(cudaErrorInvalidValue, "cudaMemset outside device memory");
	memset(dst, value, bytes);
	return cudaSuccess;
}

cudaError_t
cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s)
{
	API;
	if (!on_device(dst, bytes))
		return fail(cudaErrorInvalidValue, "cudaMemsetAsync outside device memory");
	return submit(s, [=] { memset(dst, value, bytes); });
}

cudaError_t
cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
				  cudaMemcpyKind kind, cudaStream_t s)
{
	API;
	if (width > dpitch || width > spitch)
		return fail(cudaErrorInvalidPitchValue, "cudaMemcpy2DAsync");
	if (height > 0 && width > 0)
	{
		size_t		dspan = dpitch * (height - 1) + width,
					sspan = spitch * (height - 1) + width;

		/* both spans checked as a whole */
		if (kind == cudaMemcpyHostToDevice && !on_device(dst, dspan))
			return fail(cudaErrorInvalidValue, "cudaMemcpy2DAsync to outside device memory");
		if (kind == cudaMemcpyDeviceToHost && !on_device(src, sspan))
			return fail(cudaErrorInvalidValue, "cudaMemcpy2DAsync from outside device memory");
		if (kind == cudaMemcpyHostToDevice && inside(device_blocks, src, 1))
			return fail(cudaErrorInvalidValue, "cudaMemcpy2DAsync host to device from device memory");
		if (kind == cudaMemcpyDeviceToHost && inside(device_blocks, dst, 1))
			return fail(cudaErrorInvalidValue, "cudaMemcpy2DAsync device to host into device memory");
	}
	return submit(s, [=] {
		for (size_t r = 0; r < height; r++)
			memmove((char *) dst + r * dpitch, (const char *) src + r * spitch, width);
	});
}

cudaError_t
cudaStreamCreate(cudaStream_t *s)
{
	*s = new CUstream_st;
	return cudaSuccess;
}

cudaError_t
cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags)
{
	*s = new CUstream_st;
	return cudaSuccess;
}

cudaError_t
cudaStreamDestroy(cudaStream_t s)
{
	API;
	if (!s)
		return fail(cudaErrorInvalidValue, "cudaStreamDestroy");
	if (s->capturing)
		return fail(cudaErrorIllegalState, "cudaStreamDestroy of a capturing stream");
	delete s;
	return cudaSuccess;
}

cudaError_t
cudaStreamSynchronize(cudaStream_t s)
{
	API;
	if (s && s->capturing)
	{
		s->invalidated = true;
		return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize of a capturing stream");
	}
	if (s == 0 && capture_forbids("cudaStreamSynchronize"))
		return cudaErrorStreamCaptureUnsupported;
	return sticky_error;
}

cudaError_t
cudaDeviceSynchronize(void)
{
	API;
	if (capture_forbids("cudaDeviceSynchronize"))
		return cudaErrorStreamCaptureUnsupported;
	return sticky_error;
}

cudaError_t
cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode)
{
	API;
	if (!s)
		return fail(cudaErrorStreamCaptureUnsupported, "capture of the legacy stream");
	if (s->capturing)
		return fail(cudaErrorIllegalState, "cudaStreamBeginCapture of a capturing stream");
	s->capturing = true;
	s->invalidated = false;
	s->graph = new CUgraph_st;
	capturing_here = s;
	return cudaSuccess;
}

cudaError_t
cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph)
{
	API;
	if (!s || !s->capturing)
		return fail(cudaErrorIllegalState, "cudaStreamEndCapture of a stream not capturing");
	s->capturing = false;
	if (capturing_here == s)
		capturing_here = nullptr;
	if (s->invalidated)
	{
		delete s->graph;
		s->graph = nullptr;
		*graph = nullptr;
		return fail(cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture");
	}
	*graph = s->graph;
	s->graph = nullptr;
	return cudaSuccess;
}

cudaError_t
cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
	API;
	if (!graph)
		return fail(cudaErrorInvalidValue, "cudaGraphInstantiate");
	*exec = new CUgraphExec_st;
	(*exec)->ops = graph->ops;
	return cudaSuccess;
}

cudaError_t
cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s)
{
	API;
	if (!exec)
		return fail(cudaErrorInvalidValue, "cudaGraphLaunch");
	if (s && s->capturing)
	{
		/* a graph launched into a capture becomes part of it */
		for (auto &op : exec->ops)
			s->graph->ops.push_back(op);
		return cudaSuccess;
	}
	for (auto &op : exec->ops)
		op();
	return sticky_error;
}

cudaError_t
cudaGraphExecDestroy(cudaGraphExec_t exec)
{
	delete exec;
	return cudaSuccess;
}

cudaError_t
cudaGraphDestroy(cudaGraph_t graph)
{
	delete graph;
	return cudaSuccess;
}

/* ---- cuBLAS ---- */

cublasStatus_t
cublasCreate(cublasHandle_t *h)
{
	*h = new cublasContext;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasDestroy(cublasHandle_t h)
{
	if (!h)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	delete h;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
	if (!h)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	h->stream = s;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetPointerMode(cublasHandle_t h, cublasPointerMode_t mode)
{
	if (!h)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	return mode == CUBLAS_POINTER_MODE_HOST ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t
cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
	return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t
cublasSetWorkspace(cublasHandle_t h, void *workspace, size_t bytes)
{
	if (!h)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if (bytes && !on_device(workspace, bytes))
		return CUBLAS_STATUS_INVALID_VALUE;
	return CUBLAS_STATUS_SUCCESS;
}

const char *
cublasGetStatusName(cublasStatus_t st)
{
	switch (st)
	{
		case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
		case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
		case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
		case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
		case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
		default: return "CUBLAS_STATUS_(emulated)";
	}
}

const char *
cublasGetStatusString(cublasStatus_t st)
{
	return cublasGetStatusName(st);
}

}								/* extern "C" */

namespace
{

double
load(const void *p, cudaDataType_t t, size_t i)
{
	return t == CUDA_R_32F ? (double) ((const float *) p)[i] : (double) __bfloat162float(((const __nv_bfloat16 *) p)[i]);
}

void
store(void *p, cudaDataType_t t, size_t i, double v)
{
	if (t == CUDA_R_32F)
		((float *) p)[i] = (float) v;
	else
		((__nv_bfloat16 *) p)[i] = __float2bfloat16_rn((float) v);
}

size_t
type_size(cudaDataType_t t)
{
	return t == CUDA_R_32F ? 4 : 2;
}

/* C = alpha op(A) op(B) + beta C, column-major, batch of them */
cublasStatus_t
gemm(const char *what, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
	 float alpha, const void *A, cudaDataType_t at, int lda, long long sa,
	 const void *B, cudaDataType_t bt, int ldb, long long sb,
	 float beta, void *C, cudaDataType_t ct, int ldc, long long sc, int batch)
{
	API;
	auto		bad = [&](const char *why) {
		fprintf(stderr, "emulated cublas: %s: %s (m %d n %d k %d lda %d ldb %d ldc %d batch %d)\n",
				what, why, m, n, k, lda, ldb, ldc, batch);
		return CUBLAS_STATUS_INVALID_VALUE;
	};
	int			arows = ta == CUBLAS_OP_N ? m : k,
				acols = ta == CUBLAS_OP_N ? k : m,
				brows = tb == CUBLAS_OP_N ? k : n,
				bcols = tb == CUBLAS_OP_N ? n : k;

	if (!h)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
		return bad("unsupported transpose");
	if (m < 0 || n < 0 || k < 0 || batch < 0)
		return bad("negative size");
	if (lda < std::max(1, arows))
		return bad("lda below the rows of A");
	if (ldb < std::max(1, brows))
		return bad("ldb below the rows of B");
	if (ldc < std::max(1, m))
		return bad("ldc below the rows of C");
	if ((at != CUDA_R_32F && at != CUDA_R_16BF) || at != bt || (ct != CUDA_R_32F && ct != at))
	{
		fprintf(stderr, "emulated cublas: %s: unsupported types %d %d %d\n", what, (int) at, (int) bt, (int) ct);
		return CUBLAS_STATUS_NOT_SUPPORTED;
	}
	if (m == 0 || n == 0 || batch == 0)
		return CUBLAS_STATUS_SUCCESS;

	/* every element touched lies in device memory */
	{
		auto		span = [](int rows, int cols, int ld, long long stride, int batch) {
			return (size_t) ((long long) (cols - 1) * ld + rows + (long long) (batch - 1) * stride);
		};
		bool		read_ab = k > 0 && alpha != 0.0f;

		if (read_ab && (!on_device(A, span(arows, acols, lda, sa, batch) * type_size(at))
						|| !on_device(B, span(brows, bcols, ldb, sb, batch) * type_size(bt))))
			return bad("A or B outside device memory");
		if (!on_device(C, span(m, n, ldc, sc, batch) * type_size(ct)))
			return bad("C outside device memory");
		if (batch > 1 && sc < (long long) ldc * n)
			return bad("C of one batch overlaps the next");
	}
	submit(h->stream, [=] {
		for (int b = 0; b < batch; b++)
		{
			const char *a = (const char *) A + (size_t) (b * sa) * type_size(at);
			const char *bb = (const char *) B + (size_t) (b * sb) * type_size(bt);
			char	   *c = (char *) C + (size_t) (b * sc) * type_size(ct);

			for (int j = 0; j < n; j++)
				for (int i = 0; i < m; i++)
				{
					double		acc = 0;

					if (alpha != 0.0f)
						for (int p = 0; p < k; p++)
						{
							size_t		ia = ta == CUBLAS_OP_N ? (size_t) p * lda + i : (size_t) i * lda + p;
							size_t		ib = tb == CUBLAS_OP_N ? (size_t) j * ldb + p : (size_t) p * ldb + j;

							acc += load(a, at, ia) * load(bb, bt, ib);
						}
					acc *= alpha;
					if (beta != 0.0f)
						acc += (double) beta * load(c, ct, (size_t) j * ldc + i);
					store(c, ct, (size_t) j * ldc + i, acc);
				}
		}
	});
	return CUBLAS_STATUS_SUCCESS;
}

bool
compute_ok(cublasComputeType_t t)
{
	return t == CUBLAS_COMPUTE_32F || t == CUBLAS_COMPUTE_32F_PEDANTIC || t == CUBLAS_COMPUTE_32F_FAST_TF32
		|| t == CUBLAS_COMPUTE_32F_FAST_16BF;
}

}								/* namespace */

extern "C"
{

cublasStatus_t
cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
			const float *alpha, const float *A, int lda, const float *B, int ldb,
			const float *beta, float *C, int ldc)
{
	return gemm("cublasSgemm", h, ta, tb, m, n, k, *alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F, ldb, 0,
				*beta, C, CUDA_R_32F, ldc, 0, 1);
}

cublasStatus_t
cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
			 const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B, cudaDataType_t bt, int ldb,
			 const void *beta, void *C, cudaDataType_t ct, int ldc, cublasComputeType_t compute,
			 cublasGemmAlgo_t algo)
{
	if (!compute_ok(compute))
		return CUBLAS_STATUS_NOT_SUPPORTED;
	return gemm("cublasGemmEx", h, ta, tb, m, n, k, *(const float *) alpha, A, at, lda, 0, B, bt, ldb, 0,
				*(const float *) beta, C, ct, ldc, 0, 1);
}

cublasStatus_t
cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
						   const void *alpha, const void *A, cudaDataType_t at, int lda, long long sa,
						   const void *B, cudaDataType_t bt, int ldb, long long sb, const void *beta,
						   void *C, cudaDataType_t ct, int ldc, long long sc, int batch,
						   cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
	if (!compute_ok(compute))
		return CUBLAS_STATUS_NOT_SUPPORTED;
	return gemm("cublasGemmStridedBatchedEx", h, ta, tb, m, n, k, *(const float *) alpha, A, at, lda, sa, B, bt, ldb,
				sb, *(const float *) beta, C, ct, ldc, sc, batch);
}

}								/* extern "C" */
