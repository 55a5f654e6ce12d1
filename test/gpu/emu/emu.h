/*
 * test/gpu/emu/emu.h
 *     Host emulation of what pgbert's row kernels use of CUDA, for running
 *     kernels/ .cu files as rewritten by extract.py: every CUDA thread of a block
 *     is an OS thread (blocks run one after another), __syncthreads is a
 *     barrier over the block's threads, warp shuffles a barrier over the
 *     warp's lanes, shared memory one arena per block (filled with NaN bytes
 *     so that reading what no thread wrote shows), atomics std::atomic_ref.
 *     A thread that returns leaves its block's and warp's barriers, as on
 *     the device. Misuse the device would not forgive (a shuffle naming an
 *     exited lane, too much shared memory, a bad launch) is recorded and
 *     read back with emu::take_error().
 */
#ifndef PGBERT_TEST_GPU_EMU_H
#define PGBERT_TEST_GPU_EMU_H

#include <cuda_runtime.h>
#include <cuda_bf16.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <atomic>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

namespace emu
{

extern thread_local uint3 threadIdx,
			blockIdx;
extern dim3 blockDim,
			gridDim;
constexpr int warpSize = 32;

/* Test knob: when nonzero, launches use at most this many blocks in x (for grid-stride kernels only). */
extern unsigned int grid_cap;

/* Run a block's threads as fibers on the launching thread instead of OS threads (emu.cpp). */
extern bool use_fibers;

void		launch_grid(const char *kernel, const std::function<void()> &body, dim3 grid, dim3 block, size_t smem);

/*
 * Set by an emulated CUDA runtime (fake_cuda.cpp, for build/pgbert_gpu_emu.so): receives
 * every launch with its stream, and runs it or records it in a graph being captured.
 */
extern void (*launch_hook)(const char *kernel, std::function<void()> body, dim3 grid, dim3 block, size_t smem,
						   cudaStream_t stream);

/* body owns copies of the launch's arguments (extract.py captures by value): it may run later, from a graph. */
template <typename F>
void
launch(const char *kernel, F body, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = 0)
{
	if (launch_hook)
		launch_hook(kernel, std::function<void()>(body), grid, block, smem, stream);
	else
		launch_grid(kernel, std::function<void()>(body), grid, block, smem);
}

/* The __global__ functions of a rewritten file (extract.py registers them), and those never launched so far. */
struct Kernels
{
	Kernels(const char *file, std::initializer_list<const char *> names);
};
std::vector<std::string> never_launched();

/* First misuse recorded since the last call ("" if none); clears it. */
std::string take_error();
void		error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Launches so far, and the blocks and threads they ran. */
extern std::atomic<long> launches,
			blocks_run;

void		__syncthreads();
void		__syncwarp(unsigned mask = 0xffffffffu);

/* Every lane of the warp publishes v, then reads the value of lane src (its own when src < 0). */
uint64_t	warp_exchange(unsigned mask, uint64_t v, int src);
int			lane_id();

/*
 * Warp-wide (all 32 lanes) collectives behind inline PTX that extract.py substitutes
 * (emu.cpp): every lane publishes bytes of mine and reads all 32 lanes' (32 x bytes);
 * mma.sync m16n8k16 row.col f32.bf16.bf16.f32 (c += a . b) and ldmatrix m8n8.x4.trans b16.
 */
void		warp_gather(const void *mine, size_t bytes, void *all);
void		mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
void		ldmatrix_x4_trans(uint32_t (&r)[4], const void *p);

template <typename T>
T
shfl_from(unsigned mask, T v, int src)
{
	static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type over 8 bytes");
	uint64_t	u = 0;
	T			r;

	memcpy(&u, &v, sizeof(T));
	u = warp_exchange(mask, u, src);
	memcpy(&r, &u, sizeof(T));
	return r;
}

template <typename T>
T
__shfl_sync(unsigned mask, T v, int src, int width = 32)
{
	int			lane = lane_id();

	return shfl_from(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}

template <typename T>
T
__shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
	int			lane = lane_id(),
				src = lane ^ lane_mask;

	/* a source beyond the lane's group of width: the lane's own value */
	return shfl_from(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : -1);
}

template <typename T>
T
__shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
	int			lane = lane_id();

	return shfl_from(mask, v, (lane & (width - 1)) + (int) delta < width ? lane + (int) delta : -1);
}

template <typename T>
T
__shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
	int			lane = lane_id();

	return shfl_from(mask, v, (lane & (width - 1)) >= (int) delta ? lane - (int) delta : -1);
}

/* The block's dynamic shared memory (the launch's third argument), and static __shared__ arrays by site. */
void	   *dyn_shared();
void	   *static_shared(const void *site, size_t bytes, size_t align);

template <typename T>
T
atomicAdd(T *p, T v)
{
	return std::atomic_ref<T>(*p).fetch_add(v);
}

template <typename T>
T
__ldg(const T *p)
{
	return *p;
}

template <typename A, typename B>
std::common_type_t<A, B>
min(A a, B b)
{
	return b < a ? b : a;
}

template <typename A, typename B>
std::common_type_t<A, B>
max(A a, B b)
{
	return a < b ? b : a;
}

/* Correctly rounded on the device, and so here (the build has -ffp-contract=off). */
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }

}								/* namespace emu */

#endif							/* PGBERT_TEST_GPU_EMU_H */
