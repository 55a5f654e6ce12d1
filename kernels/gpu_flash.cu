/*
 * kernels/gpu_flash.cu
 *     Fused self-attention for bf16 inference (see gpu_flash.h): one kernel
 *     reads the QKV product, adds the bias, and writes the context, keeping
 *     scores and probabilities on chip (flash-attention style online
 *     softmax), so that nothing of size heads x P x P reaches device memory.
 *
 * Block: 128 threads (4 warps) for 64 query rows of one (sequence, head);
 * warp w owns query rows 16w .. 16w+15. Keys in tiles of 64:
 *   - K and V tiles are read with 16-byte loads, the bias added in float,
 *     rounded to bf16 and stored to shared memory (rows past the sequence
 *     end are zero); Q the same, once;
 *   - S = Q K^T: mma.sync m16n8k16 (bf16 in, fp32 accumulators), the A
 *     fragments of Q kept in registers, the B fragments of K read from
 *     shared memory as 32-bit words;
 *   - keys past the end masked to -inf, online softmax in the log2 domain
 *     (running max and sum per row, fp32), the output rescaled;
 *   - O += P V: the S accumulators are, register for register, the A
 *     fragments of P (rounded to bf16); V's B fragments come from
 *     ldmatrix .trans on the row-major V tile;
 *   - O / l rounded to bf16 and written to the sequence's ctx rows (rows
 *     past the end are not written).
 * Shared memory (static, no attribute needed): Q, K and V tiles of 64 rows
 * of d + 8 bf16 (the padding keeps the fragment reads and ldmatrix rows
 * free of bank conflicts): 27,648 bytes for d = 64, 15,360 for d = 32.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16; g = lane / 4,
 * t = lane % 4; each 32-bit register holds two bf16, the lower column in
 * the low half):
 *   A (16 x 16, row): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
 *   B (16 x 8, col):  b0 (k 2t..2t+1, n g), b1 (k 2t+8..2t+9, n g)
 *   C (16 x 8, f32):  c0 c1 (g, 2t and 2t+1), c2 c3 (g+8, 2t and 2t+1)
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_flash.h"
#include "gpu_errors.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FLASH_BQ		64		/* query rows per block */
#define FLASH_BK		64		/* keys per tile */
#define FLASH_THREADS	128		/* 4 warps of 16 query rows */
#define FLASH_MAX_LEN	512

bool
flash_attention_supported(int H, int NH, int max_len)
{
	int			d;

	if (H <= 0 || NH <= 0 || NH > 65535 || H % NH != 0 || max_len < 0 || max_len > FLASH_MAX_LEN)
		return false;
	d = H / NH;
	return d == 32 || d == 64;
}

/* Two floats as the bf16 pair an mma operand register holds. */
__device__ __forceinline__ uint32_t
pack_bf16(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);	/* .x (lo) in the low half */
	uint32_t	u;

	memcpy(&u, &v, sizeof u);
	return u;
}

/* Two adjacent bf16 from shared memory as one 32-bit operand register. */
__device__ __forceinline__ uint32_t
lds32(const __nv_bfloat16 *p)
{
	return *reinterpret_cast<const uint32_t *>(p);
}

/* c += a . b, 16x8x16, bf16 inputs, fp32 accumulators */
__device__ __forceinline__ void
mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
	asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		"{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
		: "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		: "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Four transposed 8x8 b16 matrices; lanes 8i .. 8i+7 give the row addresses of matrix i. */
__device__ __forceinline__ void
ldsm_x4_trans(uint32_t (&r)[4], const __nv_bfloat16 *p)
{
	uint32_t	a = (uint32_t) __cvta_generic_to_shared(p);

	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
				 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
				 : "r"(a)
				 : "memory");
}

/*
 * Rows row0 .. row0+63 (relative to the sequence start) of one part's head
 * slice, bias added, to dst (64 x (D + 8) bf16); zeros for rows >= len.
 * Thread: chunk ch (8 columns) of rows r0, r0 + RSTEP, ...
 */
template <int D>
__device__ __forceinline__ void
load_tile(__nv_bfloat16 *dst, const __nv_bfloat16 *src, size_t ld3, const float (&b)[8], int row0, int len,
		  int r0, int ch)
{
	constexpr int LD = D + 8;
	constexpr int CPR = D / 8;
	constexpr int RSTEP = FLASH_THREADS / CPR;
	constexpr int RPT = FLASH_BK / RSTEP;
	uint4		raw[RPT];

#pragma unroll
	for (int i = 0; i < RPT; i++)
	{
		int			row = row0 + r0 + i * RSTEP;

		raw[i] = make_uint4(0u, 0u, 0u, 0u);
		if (row < len)
			raw[i] = __ldg(reinterpret_cast<const uint4 *>(src + (size_t) row * ld3));
	}
#pragma unroll
	for (int i = 0; i < RPT; i++)
	{
		int			r = r0 + i * RSTEP;
		uint32_t	w[4] = {0u, 0u, 0u, 0u};

		if (row0 + r < len)
		{
			const uint32_t in[4] = {raw[i].x, raw[i].y, raw[i].z, raw[i].w};

#pragma unroll
			for (int j = 0; j < 4; j++)
			{
				__nv_bfloat162 h;
				float2		f;

				memcpy(&h, &in[j], sizeof h);
				f = __bfloat1622float2(h);	/* .x: the lower column */
				w[j] = pack_bf16(f.x + b[2 * j], f.y + b[2 * j + 1]);
			}
		}
		*reinterpret_cast<uint4 *>(dst + r * LD + ch * 8) = make_uint4(w[0], w[1], w[2], w[3]);
	}
}

template <int D>
__global__ void __launch_bounds__(FLASH_THREADS, 4)
flash_attention_kernel(__nv_bfloat16 *__restrict__ ctx, const __nv_bfloat16 *__restrict__ qkv,
					   const float *__restrict__ bias, const int *__restrict__ offsets, int qtiles, int H,
					   float scale_log2)
{
	constexpr int LD = D + 8;	/* shared row stride in bf16: 16-byte multiple, conflict-free */
	constexpr int CPR = D / 8;	/* 16-byte chunks per row */
	constexpr int KC = D / 16;	/* k steps of Q K^T */
	constexpr int DN = D / 8;	/* n tiles of O */
	constexpr int SN = FLASH_BK / 8;	/* n tiles of S */

	__shared__ __align__(16) __nv_bfloat16 Qs[FLASH_BQ * LD];
	__shared__ __align__(16) __nv_bfloat16 Ks[FLASH_BK * LD];
	__shared__ __align__(16) __nv_bfloat16 Vs[FLASH_BK * LD];

	const int	seq = blockIdx.x / qtiles;
	const int	q0 = (blockIdx.x - seq * qtiles) * FLASH_BQ;
	const int	col = blockIdx.y * D;	/* the head's first column within a part */
	const int	start = offsets[seq];
	const int	len = offsets[seq + 1] - start;

	if (q0 >= len)
		return;					/* the whole block: nothing to do, no barrier reached */

	const int	tid = threadIdx.x,
				warp = tid >> 5,
				lane = tid & 31,
				g = lane >> 2,
				t = lane & 3;
	const size_t ld3 = (size_t) 3 * H;
	const int	ch = tid % CPR,
				r0 = tid / CPR;
	const __nv_bfloat16 *src = qkv + (size_t) start * ld3 + col + ch * 8;
	float		bq[8],
				bk[8],
				bv[8];

#pragma unroll
	for (int i = 0; i < 8; i++)
	{
		bq[i] = bias[col + ch * 8 + i];
		bk[i] = bias[H + col + ch * 8 + i];
		bv[i] = bias[2 * H + col + ch * 8 + i];
	}

	load_tile<D>(Qs, src, ld3, bq, q0, len, r0, ch);
	load_tile<D>(Ks, src + H, ld3, bk, 0, len, r0, ch);
	load_tile<D>(Vs, src + 2 * H, ld3, bv, 0, len, r0, ch);

	uint32_t	qa[KC][4];
	float		o[DN][4];
	float		m0 = -INFINITY,
				m1 = -INFINITY,
				l0 = 0.0f,
				l1 = 0.0f;
	const int	nkt = (len + FLASH_BK - 1) / FLASH_BK;

#pragma unroll
	for (int n = 0; n < DN; n++)
		o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
	__syncthreads();			/* Q and the first K, V tile stored */
	{
		const __nv_bfloat16 *qr = Qs + (warp * 16 + g) * LD + 2 * t;

#pragma unroll
		for (int kk = 0; kk < KC; kk++)
		{
			qa[kk][0] = lds32(qr + kk * 16);
			qa[kk][1] = lds32(qr + 8 * LD + kk * 16);
			qa[kk][2] = lds32(qr + kk * 16 + 8);
			qa[kk][3] = lds32(qr + 8 * LD + kk * 16 + 8);
		}
	}

	for (int kt = 0; kt < nkt; kt++)
	{
		const int	kbase = kt * FLASH_BK;
		float		s[SN][4];

		/* S = Q K^T for this warp's 16 rows and the tile's 64 keys */
#pragma unroll
		for (int j = 0; j < SN; j++)
		{
			const __nv_bfloat16 *kr = Ks + (j * 8 + g) * LD + 2 * t;

			s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
			for (int kk = 0; kk < KC; kk++)
				mma_bf16(s[j], qa[kk], lds32(kr + kk * 16), lds32(kr + kk * 16 + 8));
		}

		/* scale into the log2 domain; keys past the end to -inf */
#pragma unroll
		for (int j = 0; j < SN; j++)
#pragma unroll
			for (int r = 0; r < 4; r++)
				s[j][r] *= scale_log2;
		if (kbase + FLASH_BK > len)
		{
#pragma unroll
			for (int j = 0; j < SN; j++)
#pragma unroll
				for (int r = 0; r < 4; r++)
					if (kbase + j * 8 + 2 * t + (r & 1) >= len)
						s[j][r] = -INFINITY;
		}

		/* online softmax: rows g (registers 0, 1) and g + 8 (2, 3), reduced over the quad */
		{
			float		mx0 = m0,
						mx1 = m1,
						a0,
						a1,
						rs0 = 0.0f,
						rs1 = 0.0f;

#pragma unroll
			for (int j = 0; j < SN; j++)
			{
				mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
				mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
			}
			mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
			mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
			mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
			mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
			/* key kbase < len is in every row: mx0, mx1 are finite; exp2(-inf) = 0 at the first tile */
			a0 = exp2f(m0 - mx0);
			a1 = exp2f(m1 - mx1);
			m0 = mx0;
			m1 = mx1;
#pragma unroll
			for (int j = 0; j < SN; j++)
			{
				s[j][0] = exp2f(s[j][0] - mx0);
				s[j][1] = exp2f(s[j][1] - mx0);
				s[j][2] = exp2f(s[j][2] - mx1);
				s[j][3] = exp2f(s[j][3] - mx1);
				rs0 += s[j][0] + s[j][1];
				rs1 += s[j][2] + s[j][3];
			}
			l0 = l0 * a0 + rs0; /* per-thread partial sums, reduced at the end */
			l1 = l1 * a1 + rs1;
#pragma unroll
			for (int n = 0; n < DN; n++)
			{
				o[n][0] *= a0;
				o[n][1] *= a0;
				o[n][2] *= a1;
				o[n][3] *= a1;
			}
		}

		/* O += P V, 16 keys at a time */
#pragma unroll
		for (int kc = 0; kc < FLASH_BK / 16; kc++)
		{
			const uint32_t pa[4] = {
				pack_bf16(s[2 * kc][0], s[2 * kc][1]),
				pack_bf16(s[2 * kc][2], s[2 * kc][3]),
				pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]),
				pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3])
			};
			/* matrix i = lane / 8: keys kc*16 + (i & 1) * 8 + lane % 8, columns of n tile 2np + (i >> 1) */
			const __nv_bfloat16 *vr = Vs + (kc * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + (lane >> 4) * 8;

#pragma unroll
			for (int np = 0; np < DN / 2; np++)
			{
				uint32_t	vb[4];

				ldsm_x4_trans(vb, vr + np * 16);
				mma_bf16(o[2 * np], pa, vb[0], vb[1]);
				mma_bf16(o[2 * np + 1], pa, vb[2], vb[3]);
			}
		}

		if (kt + 1 < nkt)
		{
			__syncthreads();	/* every warp is done with tile kt */
			load_tile<D>(Ks, src + H, ld3, bk, kbase + FLASH_BK, len, r0, ch);
			load_tile<D>(Vs, src + 2 * H, ld3, bv, kbase + FLASH_BK, len, r0, ch);
			__syncthreads();	/* tile kt + 1 stored */
		}
	}

	l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
	l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
	l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
	l1 += __shfl_xor_sync(0xffffffffu, l1, 2);

	{
		const int	ra = q0 + warp * 16 + g,
					rb = ra + 8;
		const float inv0 = 1.0f / l0,
					inv1 = 1.0f / l1;
		__nv_bfloat16 *out = ctx + (size_t) start * H + col + 2 * t;

		if (ra < len)
		{
#pragma unroll
			for (int n = 0; n < DN; n++)
				*reinterpret_cast<uint32_t *>(out + (size_t) ra * H + n * 8) =
					pack_bf16(o[n][0] * inv0, o[n][1] * inv0);
		}
		if (rb < len)
		{
#pragma unroll
			for (int n = 0; n < DN; n++)
				*reinterpret_cast<uint32_t *>(out + (size_t) rb * H + n * 8) =
					pack_bf16(o[n][2] * inv1, o[n][3] * inv1);
		}
	}
}

cudaError_t
flash_attention_prepare(void)
{
	cudaFuncAttributes attr;
	cudaError_t err;

	if ((err = cudaFuncGetAttributes(&attr, flash_attention_kernel<64>)) != cudaSuccess)
		return err;
	return cudaFuncGetAttributes(&attr, flash_attention_kernel<32>);
}

cudaError_t
launch_flash_attention(cudaStream_t s, __nv_bfloat16 *ctx, const __nv_bfloat16 *qkv, const float *bias,
					   const int *offsets, int n_seq, int max_len, int H, int NH, float scale)
{
	int			qtiles;
	dim3		grid;
	const float log2e = 1.4426950408889634f;

	if (!flash_attention_supported(H, NH, max_len) || n_seq < 0)
		return cudaErrorInvalidValue;
	if (n_seq == 0 || max_len == 0)
		return cudaSuccess;
	if (ctx == NULL || qkv == NULL || bias == NULL || offsets == NULL ||
		((uintptr_t) ctx & 15) != 0 || ((uintptr_t) qkv & 15) != 0)
		return cudaErrorInvalidValue;
	qtiles = (max_len + FLASH_BQ - 1) / FLASH_BQ;
	if ((long long) n_seq * qtiles > INT_MAX)
		return cudaErrorInvalidValue;
	grid = dim3((unsigned int) (n_seq * qtiles), (unsigned int) NH, 1);
	if (H / NH == 64)
		flash_attention_kernel<64><<<grid, FLASH_THREADS, 0, s>>>(ctx, qkv, bias, offsets, qtiles, H,
																  scale * log2e);
	else
		flash_attention_kernel<32><<<grid, FLASH_THREADS, 0, s>>>(ctx, qkv, bias, offsets, qtiles, H,
																  scale * log2e);
	return cudaGetLastError();
}

/* ---------------------------------------------------------------- self-test */

/* A float rounded to bf16 and widened, as the kernel sees its inputs. */
__device__ __forceinline__ double
bf16_rounded(float x)
{
	return (double) __bfloat162float(__float2bfloat16_rn(x));
}

/*
 * Naive reference, one thread per (token, head), in double over the same
 * bf16-rounded inputs (q + bq, k + bk, v + bv each rounded to bf16).
 */
__global__ void
flash_reference_kernel(float *ref, const __nv_bfloat16 *qkv, const float *bias, const int *offsets,
					   const int *seq_of, int T, int H, int NH, float scale)
{
	int			idx = blockIdx.x * blockDim.x + threadIdx.x;
	int			tok,
				h,
				d,
				sq,
				start,
				len;
	size_t		ld3 = (size_t) 3 * H;
	double		q[64],
				o[64],
				mx = -INFINITY,
				sum = 0.0;

	if (idx >= T * NH)
		return;
	tok = idx / NH;
	h = idx % NH;
	d = H / NH;
	sq = seq_of[tok];
	start = offsets[sq];
	len = offsets[sq + 1] - start;
	for (int i = 0; i < d; i++)
	{
		q[i] = bf16_rounded(__bfloat162float(qkv[tok * ld3 + h * d + i]) + bias[h * d + i]);
		o[i] = 0.0;
	}
	for (int pass = 0; pass < 2; pass++)
	{
		for (int j = 0; j < len; j++)
		{
			const __nv_bfloat16 *kr = qkv + (size_t) (start + j) * ld3 + H + h * d;
			double		dot = 0.0;

			for (int i = 0; i < d; i++)
				dot += q[i] * bf16_rounded(__bfloat162float(kr[i]) + bias[H + h * d + i]);
			dot *= scale;
			if (pass == 0)
				mx = fmax(mx, dot);
			else
			{
				double		p = exp(dot - mx);

				sum += p;
				for (int i = 0; i < d; i++)
					o[i] += p * bf16_rounded(__bfloat162float(kr[H + i]) + bias[2 * H + h * d + i]);
			}
		}
	}
	for (int i = 0; i < d; i++)
		ref[(size_t) tok * H + h * d + i] = (float) (o[i] / sum);
}

/* bf16 bits of a float on the host, for the test's inputs. */
static uint16_t
host_bf16(float f)
{
	uint32_t	u;

	memcpy(&u, &f, sizeof u);
	u += 0x7fffu + ((u >> 16) & 1u);	/* round to nearest even (finite inputs) */
	return (uint16_t) (u >> 16);
}

/* The float of bf16 bits, on the host. */
static float
host_float(uint16_t b)
{
	uint32_t	u = (uint32_t) b << 16;
	float		f;

	memcpy(&f, &u, sizeof f);
	return f;
}

/* xorshift32: seeded, so that a failing self-test can be rerun on the same inputs. */
static float
uniform(uint32_t *st, float lo, float hi)
{
	uint32_t	x = *st;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*st = x;
	return lo + (hi - lo) * (float) (x >> 8) * (1.0f / 16777216.0f);
}

#define SELFTEST_GUARD_ROWS 64

/* One self-test's shape and buffers, host and device; the buffers NULL until made. */
typedef struct FlashSelftest
{
	int			n_seq,
				T,
				max_len,
				H,
				NH;
	float		scale;
	size_t		ctx_elems;		/* output elements, guard rows included */
	cudaStream_t st;
	cudaGraph_t graph;
	cudaGraphExec_t exec;
	int		   *h_off,
			   *h_seq,
			   *d_off,
			   *d_seq;
	uint16_t   *h_qkv,
			   *h_ctx1,
			   *h_ctx2;
	float	   *h_bias,
			   *h_ref,
			   *d_bias,
			   *d_ref;
	__nv_bfloat16 *d_qkv,
			   *d_ctx;
} FlashSelftest;

/* Fails the calling step (0, or -1 + message) when a CUDA call fails. */
#define CK(call, what) do { cudaError_t err_ = (call); if (err_ != cudaSuccess) { \
		set_cuda_error(errbuf, errlen, what, err_); return -1; } } while (0)

/* The self-test's arguments: the batch's token count and longest sequence, or -1 + message. */
static int
selftest_check_args(FlashSelftest *ft, const int *lengths, double *max_abs_err, char *errbuf, size_t errlen)
{
	if (max_abs_err == NULL || lengths == NULL || ft->n_seq < 1)
	{
		set_error(errbuf, errlen, "pgbert_gpu_flash_selftest: bad arguments");
		return -1;
	}
	*max_abs_err = INFINITY;
	for (int i = 0; i < ft->n_seq; i++)
	{
		if (lengths[i] < 0 || lengths[i] > FLASH_MAX_LEN || ft->T > INT_MAX / 2 - lengths[i])
		{
			set_error(errbuf, errlen, "pgbert_gpu_flash_selftest: bad length %d", lengths[i]);
			return -1;
		}
		ft->T += lengths[i];
		if (lengths[i] > ft->max_len)
			ft->max_len = lengths[i];
	}
	if (!flash_attention_supported(ft->H, ft->NH, ft->max_len))
	{
		set_error(errbuf, errlen, "pgbert_gpu_flash_selftest: unsupported shape H %d, heads %d, max_len %d",
				  ft->H, ft->NH, ft->max_len);
		return -1;
	}
	return 0;
}

/* The host side of the inputs: offsets, each token's sequence, random qkv and bias from seed. */
static int
selftest_host_inputs(FlashSelftest *ft, const int *lengths, unsigned seed, char *errbuf, size_t errlen)
{
	int			T = ft->T,
				H = ft->H;
	uint32_t	rng = seed != 0 ? seed : 0x9e3779b9u;

	ft->ctx_elems = (size_t) (T + SELFTEST_GUARD_ROWS) * H;
	ft->h_off = (int *) malloc(sizeof(int) * (ft->n_seq + 1));
	ft->h_seq = (int *) malloc(sizeof(int) * (T + 1));
	ft->h_qkv = (uint16_t *) malloc(sizeof(uint16_t) * ((size_t) T * 3 * H + 1));
	ft->h_bias = (float *) malloc(sizeof(float) * 3 * H);
	ft->h_ref = (float *) malloc(sizeof(float) * ((size_t) T * H + 1));
	ft->h_ctx1 = (uint16_t *) malloc(sizeof(uint16_t) * ft->ctx_elems);
	ft->h_ctx2 = (uint16_t *) malloc(sizeof(uint16_t) * ft->ctx_elems);
	if (!ft->h_off || !ft->h_seq || !ft->h_qkv || !ft->h_bias || !ft->h_ref || !ft->h_ctx1 || !ft->h_ctx2)
	{
		set_error(errbuf, errlen, "pgbert_gpu_flash_selftest: out of host memory");
		return -1;
	}
	ft->h_off[0] = 0;
	for (int i = 0; i < ft->n_seq; i++)
	{
		ft->h_off[i + 1] = ft->h_off[i] + lengths[i];
		for (int tkn = ft->h_off[i]; tkn < ft->h_off[i + 1]; tkn++)
			ft->h_seq[tkn] = i;
	}
	for (size_t e = 0; e < (size_t) T * 3 * H; e++)
		ft->h_qkv[e] = host_bf16(uniform(&rng, -1.0f, 1.0f));
	for (int e = 0; e < 3 * H; e++)
		ft->h_bias[e] = uniform(&rng, -0.25f, 0.25f);
	return 0;
}

/* A stream of the test's own, the device buffers, and the inputs copied to them. */
static int
selftest_upload(FlashSelftest *ft, char *errbuf, size_t errlen)
{
	int			T = ft->T,
				H = ft->H;
	cudaStream_t st;

	CK(cudaStreamCreateWithFlags(&ft->st, cudaStreamNonBlocking), "cudaStreamCreate");
	st = ft->st;
	CK(cudaMalloc((void **) &ft->d_off, sizeof(int) * (ft->n_seq + 1)), "cudaMalloc");
	CK(cudaMalloc((void **) &ft->d_seq, sizeof(int) * (T + 1)), "cudaMalloc");
	CK(cudaMalloc((void **) &ft->d_qkv, sizeof(uint16_t) * ((size_t) T * 3 * H + 8)), "cudaMalloc");
	CK(cudaMalloc((void **) &ft->d_bias, sizeof(float) * 3 * H), "cudaMalloc");
	CK(cudaMalloc((void **) &ft->d_ref, sizeof(float) * ((size_t) T * H + 1)), "cudaMalloc");
	CK(cudaMalloc((void **) &ft->d_ctx, sizeof(uint16_t) * ft->ctx_elems), "cudaMalloc");
	CK(cudaMemcpyAsync(ft->d_off, ft->h_off, sizeof(int) * (ft->n_seq + 1), cudaMemcpyHostToDevice, st),
	   "cudaMemcpy");
	CK(cudaMemcpyAsync(ft->d_seq, ft->h_seq, sizeof(int) * T, cudaMemcpyHostToDevice, st), "cudaMemcpy");
	CK(cudaMemcpyAsync(ft->d_qkv, ft->h_qkv, sizeof(uint16_t) * (size_t) T * 3 * H, cudaMemcpyHostToDevice, st),
	   "cudaMemcpy");
	CK(cudaMemcpyAsync(ft->d_bias, ft->h_bias, sizeof(float) * 3 * H, cudaMemcpyHostToDevice, st), "cudaMemcpy");
	return 0;
}

/* First run: flash attention into poisoned output (0xffff is a bf16 NaN), and the reference, both copied down. */
static int
selftest_first_run(FlashSelftest *ft, char *errbuf, size_t errlen)
{
	cudaStream_t st = ft->st;
	int			T = ft->T;

	CK(cudaMemsetAsync(ft->d_ctx, 0xff, sizeof(uint16_t) * ft->ctx_elems, st), "cudaMemset");
	CK(flash_attention_prepare(), "flash_attention_prepare");
	CK(launch_flash_attention(st, ft->d_ctx, ft->d_qkv, ft->d_bias, ft->d_off, ft->n_seq, ft->max_len, ft->H,
							  ft->NH, ft->scale), "launch_flash_attention");
	if (T > 0)
	{
		flash_reference_kernel<<<(T * ft->NH + 127) / 128, 128, 0, st>>>(ft->d_ref, ft->d_qkv, ft->d_bias,
																		  ft->d_off, ft->d_seq, T, ft->H, ft->NH,
																		  ft->scale);
		CK(cudaGetLastError(), "flash_reference_kernel");
	}
	CK(cudaMemcpyAsync(ft->h_ctx1, ft->d_ctx, sizeof(uint16_t) * ft->ctx_elems, cudaMemcpyDeviceToHost, st),
	   "cudaMemcpy");
	CK(cudaMemcpyAsync(ft->h_ref, ft->d_ref, sizeof(float) * (size_t) T * ft->H, cudaMemcpyDeviceToHost, st),
	   "cudaMemcpy");
	CK(cudaStreamSynchronize(st), "running the flash attention self-test");
	return 0;
}

/* Second run: captured into a graph, replayed on the re-poisoned output, copied down. */
static int
selftest_graph_run(FlashSelftest *ft, char *errbuf, size_t errlen)
{
	cudaStream_t st = ft->st;
	cudaError_t err,
				err2;

	CK(cudaMemsetAsync(ft->d_ctx, 0xff, sizeof(uint16_t) * ft->ctx_elems, st), "cudaMemset");
	CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
	err = launch_flash_attention(st, ft->d_ctx, ft->d_qkv, ft->d_bias, ft->d_off, ft->n_seq, ft->max_len, ft->H,
								 ft->NH, ft->scale);
	err2 = cudaStreamEndCapture(st, &ft->graph);
	if (err == cudaSuccess)
		err = err2;
	CK(err, "capturing launch_flash_attention");
	if (ft->graph != NULL)
	{
		CK(cudaGraphInstantiate(&ft->exec, ft->graph, 0), "cudaGraphInstantiate");
		CK(cudaGraphLaunch(ft->exec, st), "cudaGraphLaunch");
	}
	CK(cudaMemcpyAsync(ft->h_ctx2, ft->d_ctx, sizeof(uint16_t) * ft->ctx_elems, cudaMemcpyDeviceToHost, st),
	   "cudaMemcpy");
	CK(cudaStreamSynchronize(st), "replaying the flash attention graph");
	return 0;
}

/*
 * The guard rows untouched by both runs, the runs bitwise equal, and the
 * first run's largest difference from the reference in *max_abs_err.
 */
static int
selftest_compare(const FlashSelftest *ft, double *max_abs_err, char *errbuf, size_t errlen)
{
	size_t		n = (size_t) ft->T * ft->H;
	double		worst = 0.0;

	for (size_t e = n; e < ft->ctx_elems; e++)
		if (ft->h_ctx1[e] != 0xffffu || ft->h_ctx2[e] != 0xffffu)
		{
			set_error(errbuf, errlen, "flash attention wrote past the batch's last row (element %zu)", e);
			return -1;
		}
	if (memcmp(ft->h_ctx1, ft->h_ctx2, sizeof(uint16_t) * n) != 0)
	{
		size_t		e = 0;

		while (ft->h_ctx1[e] == ft->h_ctx2[e])
			e++;
		set_error(errbuf, errlen, "flash attention is not deterministic: the graph replay differs at "
				  "token %zu, column %zu (a race?)", e / ft->H, e % ft->H);
		return -1;
	}
	for (size_t e = 0; e < n; e++)
	{
		double		v = host_float(ft->h_ctx1[e]),
					diff = fabs(v - (double) ft->h_ref[e]);

		if (!(diff <= worst))	/* NaN (an unwritten element) counts as infinite */
			worst = isfinite(diff) ? diff : INFINITY;
	}
	*max_abs_err = worst;
	return 0;
}

#undef CK

/* Releases what the self-test made, after its stream has finished. */
static void
selftest_free(FlashSelftest *ft)
{
	if (ft->exec)
		(void) cudaGraphExecDestroy(ft->exec);
	if (ft->graph)
		(void) cudaGraphDestroy(ft->graph);
	if (ft->st)
	{
		(void) cudaStreamSynchronize(ft->st);
		(void) cudaStreamDestroy(ft->st);
	}
	(void) cudaFree(ft->d_off);
	(void) cudaFree(ft->d_seq);
	(void) cudaFree(ft->d_qkv);
	(void) cudaFree(ft->d_bias);
	(void) cudaFree(ft->d_ref);
	(void) cudaFree(ft->d_ctx);
	free(ft->h_off);
	free(ft->h_seq);
	free(ft->h_qkv);
	free(ft->h_bias);
	free(ft->h_ref);
	free(ft->h_ctx1);
	free(ft->h_ctx2);
}

extern "C" __attribute__((visibility("default"))) int
pgbert_gpu_flash_selftest(int n_seq, const int *lengths, int H, int NH, unsigned seed, double *max_abs_err,
						  char *errbuf, size_t errlen)
{
	FlashSelftest ft;
	int			rc = -1,
				ndev = 0;
	cudaError_t err;

	memset(&ft, 0, sizeof ft);
	ft.n_seq = n_seq;
	ft.H = H;
	ft.NH = NH;
	if (selftest_check_args(&ft, lengths, max_abs_err, errbuf, errlen) != 0)
		return -1;
	ft.scale = 1.0f / sqrtf((float) (H / NH));

	err = cudaGetDeviceCount(&ndev);
	if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver || (err == cudaSuccess && ndev == 0))
	{
		(void) cudaGetLastError();
		set_error(errbuf, errlen, "no device");
		return 1;
	}
	if (err != cudaSuccess)
		set_cuda_error(errbuf, errlen, "cudaGetDeviceCount", err);
	else if (selftest_host_inputs(&ft, lengths, seed, errbuf, errlen) == 0 &&
			 selftest_upload(&ft, errbuf, errlen) == 0 &&
			 selftest_first_run(&ft, errbuf, errlen) == 0 &&
			 selftest_graph_run(&ft, errbuf, errlen) == 0 &&
			 selftest_compare(&ft, max_abs_err, errbuf, errlen) == 0)
		rc = 0;
	selftest_free(&ft);
	if (rc != 0)
		(void) cudaGetLastError();
	return rc;
}
