/*
 * test/gpu/emu/emu.cpp
 *     The emulator's launch, barriers, shuffles and shared memory (emu.h).
 */
#include "emu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <barrier>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace emu
{

thread_local uint3 threadIdx,
			blockIdx;
dim3		blockDim,
			gridDim;
unsigned int grid_cap = 0;
bool		use_fibers = false;
void		(*launch_hook)(const char *, std::function<void()>, dim3, dim3, size_t, cudaStream_t) = nullptr;
std::atomic<long> launches{0},
			blocks_run{0};

static std::mutex err_mutex;
static std::map<std::string, long> *kernel_launches;	/* registered kernel -> launches */

Kernels::Kernels(const char *file, std::initializer_list<const char *> names)
{
	if (!kernel_launches)
		kernel_launches = new std::map<std::string, long>;
	for (const char *n : names)
		(*kernel_launches)[n] += 0;
}

std::vector<std::string>
never_launched()
{
	std::vector<std::string> r;

	if (kernel_launches)
		for (auto &[name, n] : *kernel_launches)
			if (n == 0)
				r.push_back(name);
	return r;
}
static std::string first_error;

void
error(const char *fmt, ...)
{
	char		buf[512];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	std::lock_guard<std::mutex> g(err_mutex);
	if (first_error.empty())
		first_error = buf;
}

std::string
take_error()
{
	std::lock_guard<std::mutex> g(err_mutex);
	std::string e = first_error;

	first_error.clear();
	return e;
}

struct Aligned
{
	void	   *p;
	explicit Aligned(size_t bytes, size_t align)
	{
		bytes = (bytes + align - 1) / align * align;
		p = aligned_alloc(align < 16 ? 16 : align, bytes ? bytes : align);
		memset(p, 0xff, bytes);	/* NaN as float and double: reads of unwritten shared memory show */
	}
	~Aligned() { free(p); }
};

/* One block's state: barriers, shuffle slots, shared memory. */
struct Block
{
	static constexpr size_t wide_lane = 32;
	int			nthreads;
	std::unique_ptr<std::barrier<>> bar;
	std::vector<std::unique_ptr<std::barrier<>>> warp_bar;
	std::vector<uint64_t> slots;				/* 32 per warp */
	std::vector<unsigned char> wide;			/* warp_gather: 32 x wide_lane bytes per warp */
	std::unique_ptr<std::atomic<uint32_t>[]> exited;	/* lanes of each warp that returned */
	std::unique_ptr<Aligned> dyn;
	std::mutex	shared_mutex;
	std::map<const void *, std::unique_ptr<Aligned>> statics;
	size_t		static_bytes = 0;
	size_t		dyn_bytes = 0;

	void
	reset(int n, size_t smem)
	{
		int			nwarps = (n + 31) / 32;

		nthreads = n;
		bar = std::make_unique<std::barrier<>>(n);
		warp_bar.clear();
		for (int w = 0; w < nwarps; w++)
			warp_bar.push_back(std::make_unique<std::barrier<>>(std::min(32, n - 32 * w)));
		slots.assign((size_t) nwarps * 32, 0);
		wide.assign((size_t) nwarps * 32 * wide_lane, 0);
		exited.reset(new std::atomic<uint32_t>[nwarps]);
		for (int w = 0; w < nwarps; w++)
			exited[w] = 0;
		dyn = std::make_unique<Aligned>(smem, 16);
		dyn_bytes = smem;
		statics.clear();
		static_bytes = 0;
	}
};

static thread_local Block *cur;
static thread_local int linear_tid;

int
lane_id()
{
	return linear_tid % 32;
}

static void fiber_wait(int state);

void
__syncthreads()
{
	if (use_fibers)
		fiber_wait(1);
	else
		cur->bar->arrive_and_wait();
}

void
__syncwarp(unsigned mask)
{
	warp_exchange(mask, 0, -1);
}

/*
 * Every lane publishes bytes (at most wide_lane) of mine; once all 32 have, the warp's
 * slots (lane l's at l * wide_lane) are returned, valid until warp_release().
 * Full warps only, like the mma.sync and ldmatrix built on it (.aligned).
 */
static const unsigned char *
warp_publish(const void *mine, size_t bytes)
{
	int			w = linear_tid / 32,
				lane = linear_tid % 32;
	int			nlanes = std::min(32, cur->nthreads - 32 * w);
	unsigned char *s = &cur->wide[(size_t) w * 32 * Block::wide_lane];

	memcpy(s + (size_t) lane * Block::wide_lane, mine, bytes);
	if (use_fibers)
		fiber_wait(2);
	else
		cur->warp_bar[w]->arrive_and_wait();
	if (nlanes != 32 || cur->exited[w].load() != 0)
	{
		error("warp-wide mma/ldmatrix while lanes of the warp are missing or have returned");
		return nullptr;
	}
	return s;
}

static void
warp_release()
{
	if (use_fibers)
		fiber_wait(2);
	else
		cur->warp_bar[linear_tid / 32]->arrive_and_wait();
}

void
warp_gather(const void *mine, size_t bytes, void *all)
{
	const unsigned char *s;

	if (bytes > Block::wide_lane)
	{
		error("warp_gather of %zu bytes a lane (at most %zu)", bytes, Block::wide_lane);
		bytes = Block::wide_lane;
	}
	if ((s = warp_publish(mine, bytes)) != nullptr)
		for (int l = 0; l < 32; l++)
			memcpy((unsigned char *) all + (size_t) l * bytes, s + (size_t) l * Block::wide_lane, bytes);
	warp_release();
}

static float
bf16_lo(uint32_t u)
{
	uint32_t	x = u << 16;
	float		f;

	memcpy(&f, &x, 4);
	return f;
}

static float
bf16_hi(uint32_t u)
{
	uint32_t	x = u & 0xffff0000u;
	float		f;

	memcpy(&f, &x, 4);
	return f;
}

/*
 * mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, fragments as the PTX ISA lays
 * them out (g = lane / 4, t = lane % 4; low half of a register = lower column / k):
 *   A (16 x 16): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
 *   B (16 x 8):  b0 (k 2t..2t+1, n g), b1 (k 2t+8..2t+9, n g)
 *   C (16 x 8):  c0 c1 (g, 2t and 2t+1), c2 c3 (g+8, 2t and 2t+1)
 * The products of bf16 values are exact in float; the sum is in float, k in order.
 */
void
mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
	uint32_t	mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
	const unsigned char *s = warp_publish(mine, sizeof mine);
	int			lane = lane_id(),
				g = lane / 4,
				t = lane % 4;

	if (s != nullptr)
	{
		auto		reg = [s](int l, int i) {
			uint32_t	u;

			memcpy(&u, s + (size_t) l * Block::wide_lane + 4 * i, 4);
			return u;
		};

		/* c[r]: row g + 8 (r / 2) of A (lanes 4g'..4g'+3), column n = 2t + r % 2 of B (lanes 4n..4n+3) */
		for (int r = 0; r < 4; r++)
		{
			int			half = r / 2,
						n = 2 * t + r % 2;
			float		acc = c[r];

			for (int k = 0; k < 16; k++)
			{
				int			kt = (k % 8) / 2,	/* the lane's t holding column k of A / row k of B */
							hi = k % 2,
							upper = k / 8;
				uint32_t	ar = reg(4 * g + kt, half + 2 * upper),
							br = reg(4 * n + kt, 4 + upper);
				float		av = hi ? bf16_hi(ar) : bf16_lo(ar),
							bv = hi ? bf16_hi(br) : bf16_lo(br);

				acc += av * bv;
			}
			c[r] = acc;
		}
	}
	warp_release();
}

/*
 * ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16: lanes 8i .. 8i+7 give the addresses of
 * the 8 rows (8 b16 each, 16-byte aligned) of matrix i; register i of lane l holds,
 * transposed, elements (rows 2t and 2t+1, column g) of matrix i (g = l / 4, t = l % 4).
 */
void
ldmatrix_x4_trans(uint32_t (&r)[4], const void *p)
{
	const unsigned char *s;
	int			lane = lane_id(),
				g = lane / 4,
				t = lane % 4;

	if (((uintptr_t) p & 15) != 0)
		error("ldmatrix row address %p is not 16-byte aligned", p);
	r[0] = r[1] = r[2] = r[3] = 0;
	if ((s = warp_publish(&p, sizeof p)) != nullptr)
		for (int i = 0; i < 4; i++)
		{
			const uint16_t *r0,
					   *r1;

			memcpy(&r0, s + (size_t) (8 * i + 2 * t) * Block::wide_lane, sizeof r0);
			memcpy(&r1, s + (size_t) (8 * i + 2 * t + 1) * Block::wide_lane, sizeof r1);
			r[i] = (uint32_t) r0[g] | ((uint32_t) r1[g] << 16);
		}
	warp_release();
}

uint64_t
warp_exchange(unsigned mask, uint64_t v, int src)
{
	int			w = linear_tid / 32,
				lane = linear_tid % 32;
	int			nlanes = std::min(32, cur->nthreads - 32 * w);
	uint32_t	all = nlanes == 32 ? 0xffffffffu : (1u << nlanes) - 1;
	uint64_t   *s = &cur->slots[(size_t) w * 32];
	uint64_t	r;

	s[lane] = v;
	if (use_fibers)
		fiber_wait(2);
	else
		cur->warp_bar[w]->arrive_and_wait();
	{
		uint32_t	gone = cur->exited[w].load();

		if ((all & ~gone) & ~mask)
			error("warp shuffle with mask %08x while lanes %08x of the warp are running (partial masks are not emulated)",
				  mask, all & ~gone);
		if (mask & gone)
			error("warp shuffle with mask %08x names lanes %08x that have returned", mask, mask & gone);
		if (src >= nlanes || (src >= 0 && ((gone >> src) & 1)))
			error("warp shuffle reads lane %d, which is not running", src);
	}
	r = src < 0 ? v : s[src];
	if (use_fibers)
		fiber_wait(2);
	else
		cur->warp_bar[w]->arrive_and_wait();
	return r;
}

void *
dyn_shared()
{
	return cur->dyn->p;
}

void *
static_shared(const void *site, size_t bytes, size_t align)
{
	std::lock_guard<std::mutex> g(cur->shared_mutex);
	auto		it = cur->statics.find(site);

	if (it == cur->statics.end())
	{
		cur->static_bytes += bytes;
		if (cur->static_bytes + cur->dyn_bytes > 48 * 1024)
			error("block uses %zu bytes of shared memory, over 48 KiB", cur->static_bytes + cur->dyn_bytes);
		it = cur->statics.emplace(site, std::make_unique<Aligned>(bytes, align)).first;
	}
	return it->second->p;
}

/*
 * Fiber mode (use_fibers): the threads of a block are fibers (emu_fiber_switch) on the
 * launching thread, run in turn until each has returned or waits at a barrier;
 * a warp's barrier opens when every running lane of the warp waits at it, the
 * block's when every running thread does. Much faster than an OS thread per
 * CUDA thread; a barrier that can never open is an error.
 */
struct Fiber
{
	void	   *sp;				/* saved stack pointer while switched out */
	char	   *stack = nullptr;
	int			state;			/* 0 runnable, 1 at the block's barrier, 2 at its warp's, 3 returned */
};
static const size_t fiber_stack = 256 * 1024;
static std::vector<Fiber> fibers;
static void *scheduler_sp;
static int	cur_fiber;
static const std::function<void()> *fiber_body;

/* saves the callee-saved registers on this stack and *save = its pointer, then resumes the stack at to */
extern "C" void emu_fiber_switch(void **save, void *to);
asm(".text\n"
	".globl emu_fiber_switch\n"
	".hidden emu_fiber_switch\n"
	".type emu_fiber_switch,@function\n"
	"emu_fiber_switch:\n"
	"  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
	"  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
	"  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
	"  ret\n"
	".size emu_fiber_switch, .-emu_fiber_switch\n");

static void
fiber_wait(int state)
{
	fibers[cur_fiber].state = state;
	emu_fiber_switch(&fibers[cur_fiber].sp, scheduler_sp);
}

static void
fiber_main()
{
	int			t = cur_fiber;

	(*fiber_body)();
	cur->exited[t / 32] |= 1u << (t % 32);
	fibers[t].state = 3;
	emu_fiber_switch(&fibers[t].sp, scheduler_sp);
	abort();					/* never resumed */
}

static void
run_block_fibers(Block &st, int nthreads, const dim3 &block)
{
	if ((int) fibers.size() < nthreads)
		fibers.resize(nthreads);
	for (int t = 0; t < nthreads; t++)
	{
		Fiber	   &f = fibers[t];

		if (!f.stack)
			f.stack = (char *) malloc(fiber_stack);
		{
			void	  **top = (void **) (((uintptr_t) f.stack + fiber_stack) & ~(uintptr_t) 15);

			/* popped by emu_fiber_switch: six registers, then the return into fiber_main */
			top[-1] = nullptr;
			top[-2] = (void *) fiber_main;
			for (int r = 3; r <= 8; r++)
				top[-r] = nullptr;
			f.sp = top - 8;
		}
		f.state = 0;
	}
	for (;;)
	{
		int			done = 0,
					at_block = 0;
		bool		released = false;

		for (int t = 0; t < nthreads; t++)
			if (fibers[t].state == 0)
			{
				cur_fiber = t;
				linear_tid = t;
				threadIdx = make_uint3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
				emu_fiber_switch(&scheduler_sp, fibers[t].sp);
			}
		for (int w = 0; w * 32 < nthreads; w++)
		{
			int			lanes = std::min(32, nthreads - 32 * w),
						waiting = 0,
						running = 0;

			for (int l = 0; l < lanes; l++)
			{
				int			s = fibers[w * 32 + l].state;

				running += s != 3;
				waiting += s == 2;
				done += s == 3;
				at_block += s == 1;
			}
			if (running > 0 && waiting == running)
			{
				for (int l = 0; l < lanes; l++)
					fibers[w * 32 + l].state = 0;
				released = true;
			}
		}
		if (released)
			continue;
		if (done == nthreads)
			return;
		if (at_block == nthreads - done)
		{
			for (int t = 0; t < nthreads; t++)
				if (fibers[t].state == 1)
					fibers[t].state = 0;
			continue;
		}
		error("barrier that can never open (threads split between __syncthreads and a warp barrier)");
		return;
	}
}

void
launch_grid(const char *kernel, const std::function<void()> &body, dim3 grid, dim3 block, size_t smem)
{
	int			nthreads = (int) (block.x * block.y * block.z);
	std::vector<uint3> ids;
	Block		st;
	size_t		k = 0;

	launches++;
	if (kernel_launches && kernel_launches->count(kernel))
		(*kernel_launches)[kernel]++;
	else
		error("launch of %s, which extract.py did not register as a kernel", kernel);
	if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 || block.z > 64
		|| nthreads > 1024)
	{
		error("bad block (%u, %u, %u)", block.x, block.y, block.z);
		return;
	}
	if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu)
	{
		error("bad grid (%u, %u, %u)", grid.x, grid.y, grid.z);
		return;
	}
	if (smem > 48 * 1024)
	{
		error("dynamic shared memory of %zu bytes, over 48 KiB (needs cudaFuncSetAttribute)", smem);
		return;
	}
	if (grid_cap && grid.x > grid_cap)
		grid.x = grid_cap;
	gridDim = grid;
	blockDim = block;
	for (unsigned z = 0; z < grid.z; z++)
		for (unsigned y = 0; y < grid.y; y++)
			for (unsigned x = 0; x < grid.x; x++)
				ids.push_back(make_uint3(x, y, z));

	if (use_fibers)
	{
		fiber_body = &body;
		cur = &st;
		for (auto &id : ids)
		{
			st.reset(nthreads, smem);
			blockIdx = id;
			run_block_fibers(st, nthreads, block);
		}
		blocks_run += ids.size();
		return;
	}

	auto		next_block = [&]() noexcept
	{
		if (k < ids.size())
			st.reset(nthreads, smem);
		k++;
	};
	std::barrier start(nthreads, next_block);
	std::vector<std::thread> threads;

	for (int t = 0; t < nthreads; t++)
		threads.emplace_back([&, t] {
			linear_tid = t;
			threadIdx = make_uint3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
			cur = &st;
			for (size_t b = 0; b < ids.size(); b++)
			{
				int			w = t / 32;

				start.arrive_and_wait();	/* the last to arrive set up block b */
				blockIdx = ids[b];
				body();
				/* returned: leave the block's barriers, as an exited thread does */
				st.exited[w] |= 1u << (t % 32);
				st.warp_bar[w]->arrive_and_drop();
				st.bar->arrive_and_drop();
			}
		});
	for (auto &th : threads)
		th.join();
	blocks_run += ids.size();
}

}								/* namespace emu */
