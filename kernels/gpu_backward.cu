/*
 * kernels/gpu_backward.cu
 *     The trainer's kernels (see gpu_train_internal.h): the training forward's
 *     row kernels, which save what backward needs and draw the engine's
 *     dropout masks; the backward of LayerNorm, GELU, tanh, attention's
 *     softmax and the embeddings, with the bias gradients summed on the way;
 *     the gradient norm and AdamW. The matrix products are cuBLAS calls in
 *     gpu_train.cu. Numerics follow the engine's CPU trainer (src/engine/ops.c,
 *     train.c) expression by expression; sums over rows use atomics, so their
 *     order (not their terms) differs.
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_device_helpers.cuh"
#include "gpu_train_internal.h"

#include <math.h>

#define WARP_ROWS 8				/* one warp per row, 256 threads */
#define COL_THREADS 256			/* column kernels: one thread per column, a run of rows per block */
#define COL_ROWS 64

/* ---- helpers ---- */

/* v dropped or scaled as element idx of the site (ops.c's bt_dropout_apply). */
__device__ __forceinline__ float
drop_apply(const TrainDrop &d, uint64_t idx, float v)
{
	uint64_t	h;
	uint32_t	r;

	if (d.threshold == 0)
		return v;
	h = train_mix64(d.key + ((idx >> 1) + 1) * 0x9e3779b97f4a7c15ULL);
	r = (idx & 1) ? (uint32_t) (h >> 32) : (uint32_t) h;
	return (uint64_t) r < d.threshold ? 0.0f : v * d.scale;
}

/*
 * The LayerNorm of a row already written to in (H floats, this warp's lanes
 * wrote their own elements): statistics into mean/rstd, then
 * out = dropout(LayerNorm(in) * w + b) as float (xs) and Tin (xin).
 */
template <typename Tin>
__device__ __forceinline__ void
ln_row_train(const float *in, float *mean, float *rstd, float *xs, Tin *xin, const float *w, const float *b,
			 int H, float eps, int lane, const TrainDrop &drop, uint64_t base)
{
	float		mu,
				r;

	layernorm_stats(H, eps, lane, [&](int i) { return in[i]; }, &mu, &r);
	for (int i = lane; i < H; i += 32)
	{
		float		y = drop_apply(drop, base + i, ((in[i] - mu) * r) * w[i] + b[i]);

		xs[i] = y;
		xin[i] = from_float<Tin>(y);
	}
	if (lane == 0)
	{
		*mean = mu;
		*rstd = r;
	}
}

/* ---- training forward ---- */

/* One warp per token row; launch_train_embed_ln (gpu_train_internal.h) says what it saves. */
template <typename Tin>
__global__ void
train_embed_ln_kernel(float *emb, float *mean, float *rstd, float *xs, Tin *xin, const int *ids, const int *types,
					  const int *pos, const float *word, const float *posemb, const float *typeemb,
					  const float *w, const float *b, int T, int H, float eps, TrainDrop drop)
{
	int			t = blockIdx.x * WARP_ROWS + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;
	size_t		row = (size_t) t * H;

	if (t >= T)
		return;
	{
		const float *we = word + (size_t) ids[t] * H;
		const float *pe = posemb + (size_t) pos[t] * H;
		const float *te = typeemb + (size_t) types[t] * H;
		float	   *er = emb + row;

		for (int i = lane; i < H; i += 32)
			er[i] = we[i] + pe[i] + te[i];
		ln_row_train(er, mean + t, rstd + t, xs + row, xin + row, w, b, H, eps, lane, drop, row);
	}
}

/* One warp per token row; launch_train_residual_ln says what it saves. */
template <typename Tin>
__global__ void
train_residual_ln_kernel(float *res, float *mean, float *rstd, float *xs, Tin *xin, const float *y,
						 const float *bias, const float *w, const float *b, int T, int H, float eps, TrainDrop drop)
{
	int			t = blockIdx.x * WARP_ROWS + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;
	size_t		row = (size_t) t * H;
	TrainDrop	none = {0, 0, 1.0f};

	if (t >= T)
		return;
	{
		float	   *rr = res + row,
				   *xr = xs + row;
		const float *yr = y + row;

		/* the CPU: tmp = dense + bias; dropout(tmp); res = x + tmp */
		for (int i = lane; i < H; i += 32)
			rr[i] = xr[i] + drop_apply(drop, row + i, yr[i] + bias[i]);
		ln_row_train(rr, mean + t, rstd + t, xr, xin + row, w, b, H, eps, lane, none, 0);
	}
}

/* Grid-stride over (T, I); the backward calls it again with no bias to recompute the activation. */
template <typename Tin, int TANH>
__global__ void
train_gelu_kernel(Tin *act, float *ffn, const float *bias, size_t n, int I)
{
	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
	{
		float		v = ffn[i];

		if (bias)
		{
			v += bias[i % I];
			ffn[i] = v;
		}
		act[i] = from_float<Tin>(gelu(v, TANH));
	}
}

/* One warp per probability row, indexed in the engine's packed layout so both trainers drop alike. */
template <typename Tin>
__global__ void
train_attn_dropout_kernel(Tin *pin, const float *probs, const int *lens, const unsigned long long *pbase,
						  int NH, int P, size_t n, TrainDrop drop)
{
	for (size_t e = blockIdx.x * (size_t) blockDim.x + threadIdx.x; e < n; e += (size_t) gridDim.x * blockDim.x)
	{
		int			j = (int) (e % P);
		size_t		row = e / P;
		int			i = (int) (row % P);
		int			h = (int) ((row / P) % NH);
		int			b = (int) (row / ((size_t) P * NH));
		int			S = lens[b];
		float		v = 0.0f;

		if (i < S && j < S)
			v = drop_apply(drop, pbase[b] + ((uint64_t) h * S + i) * S + j, probs[e]);
		pin[e] = from_float<Tin>(v);
	}
}

/* Grid-stride: the pooler output's dropout, element i of the site being index i. */
__global__ void
train_dropout_copy_kernel(float *dst, const float *src, size_t n, TrainDrop drop)
{
	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
		dst[i] = drop_apply(drop, i, src[i]);
}

/* ---- backward ---- */

/* One warp per row, recomputing xhat from the saved input and statistics instead of storing it. */
template <typename Tin>
__global__ void
train_ln_backward_kernel(float *dx, Tin *dbr, float *dw, float *db, float *dbias, const float *dy,
						 const float *in, const float *mean, const float *rstd, const float *w, int T, int H,
						 TrainDrop drop_in, TrainDrop drop_br)
{
	extern __shared__ float sh[];	/* dw, db, dbias partial sums of this block (3 H) */
	float	   *sdw = sh,
			   *sdb = sh + H,
			   *sdbias = sh + 2 * H;
	int			warp = threadIdx.x / 32,
				lane = threadIdx.x % 32;

	for (int i = threadIdx.x; i < 3 * H; i += blockDim.x)
		sh[i] = 0.0f;
	__syncthreads();
	for (int t = blockIdx.x * WARP_ROWS + warp; t < T; t += gridDim.x * WARP_ROWS)
	{
		size_t		row = (size_t) t * H;
		const float *x = in + row,
				   *g = dy + row;
		float		mu = mean[t],
					r = rstd[t],
					sum_g = 0.0f,
					sum_gx = 0.0f;

		/* y = xhat * w + b with xhat = (x - mean) * rstd */
		for (int i = lane; i < H; i += 32)
		{
			float		xhat = (x[i] - mu) * r,
						gi = drop_apply(drop_in, row + i, g[i]),
						gw = gi * w[i];

			sum_g += gw;
			sum_gx += gw * xhat;
			atomicAdd(&sdw[i], gi * xhat);
			atomicAdd(&sdb[i], gi);
		}
		sum_g = warp_sum(sum_g) / H;
		sum_gx = warp_sum(sum_gx) / H;
		/* dx = rstd * (g w - mean(g w) - xhat * mean(g w xhat)) */
		for (int i = lane; i < H; i += 32)
		{
			float		xhat = (x[i] - mu) * r,
						gi = drop_apply(drop_in, row + i, g[i]),
						v = r * (gi * w[i] - sum_g - xhat * sum_gx);

			dx[row + i] = v;
			if (dbr)
			{
				float		bv = drop_apply(drop_br, row + i, v);

				dbr[row + i] = from_float<Tin>(bv);
				if (dbias)
					atomicAdd(&sdbias[i], bv);
			}
		}
	}
	__syncthreads();
	for (int i = threadIdx.x; i < H; i += blockDim.x)
	{
		atomicAdd(dw + i, sdw[i]);
		atomicAdd(db + i, sdb[i]);
		if (dbias)
			atomicAdd(dbias + i, sdbias[i]);
	}
}

/*
 * The column kernels' loop: the thread of column c in block row y adds
 * value(e) over the elements e of rows [y rows_per, (y + 1) rows_per) of
 * that column of a (rows, cols) matrix (value may also write element e),
 * then adds the sum to dst[c].
 */
template <typename Value>
__device__ __forceinline__ void
column_sum_into(float *dst, int rows, int cols, int rows_per, Value value)
{
	int			c = blockIdx.x * blockDim.x + threadIdx.x;
	int			r0 = blockIdx.y * rows_per,
				r1 = min(rows, r0 + rows_per);
	float		sum = 0.0f;

	if (c >= cols)
		return;
	for (int r = r0; r < r1; r++)
		sum += value((size_t) r * cols + c);
	atomicAdd(dst + c, sum);
}

/* A bias gradient: column sums of a (rows, cols) gradient. */
__global__ void
train_colsum_kernel(float *dst, const float *src, int rows, int cols, int rows_per)
{
	column_sum_into(dst, rows, cols, rows_per, [&](size_t e) { return src[e]; });
}

/* TANH a template argument, so that the choice of GELU is made once per launch, not per element. */
template <typename Tin, int TANH>
__global__ void
train_gelu_backward_kernel(Tin *gin, const float *g, const float *ffn, float *dbias, int T, int I, int rows_per)
{
	column_sum_into(dbias, T, I, rows_per, [&](size_t e) {
		float		v = g[e] * gelu_grad(ffn[e], TANH);

		gin[e] = from_float<Tin>(v);
		return v;
	});
}

/* The pooler's backward: its dropout, then tanh', in place. */
__global__ void
train_tanh_backward_kernel(float *g, const float *y, float *dbias, int n, int H, int rows_per, TrainDrop drop)
{
	column_sum_into(dbias, n, H, rows_per, [&](size_t e) {
		float		v = drop_apply(drop, e, g[e]);

		v *= 1.0f - y[e] * y[e];
		g[e] = v;
		return v;
	});
}

/* Grid-stride: puts the [CLS] rows' gradient back at their packed rows. */
__global__ void
train_scatter_rows_kernel(float *dst, const float *src, const int *rows, int n, int H)
{
	size_t		total = (size_t) n * H;

	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < total; i += (size_t) gridDim.x * blockDim.x)
		dst[(size_t) rows[i / H] * H + i % H] = src[i];
}

/* The gathered context's gradient split back by head for the batched products; zeros in padding. */
template <typename Tin>
__global__ void
train_scatter_heads_kernel(Tin *dst, const float *src, const int *slot_token, int P, int H, int NH)
{
	BucketSlot	bs = block_bucket_slot(slot_token, P, H, NH);

	for (int c = threadIdx.x; c < H; c += blockDim.x)
		dst[head_slot_index(bs, c, P, NH)] = from_float<Tin>(bs.tok >= 0 ? src[(size_t) bs.tok * H + c] : 0.0f);
}

/* One warp per row: ds = p (g - sum p g) through the attention dropout, 0 outside the sequence. */
template <typename Tin>
__global__ void
train_softmax_backward_kernel(Tin *ds, float *dp, const float *probs, const int *lens,
							  const unsigned long long *pbase, int B, int NH, int P, TrainDrop drop)
{
	size_t		row = blockIdx.x * (size_t) WARP_ROWS + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;
	size_t		rows = (size_t) B * NH * P;
	int			b,
				h,
				i,
				S;
	const float *pr;
	float	   *gr;
	Tin		   *dr;
	uint64_t	base;
	float		dot = 0.0f;

	if (row >= rows)
		return;
	b = (int) (row / ((size_t) NH * P));
	h = (int) ((row / P) % NH);
	i = (int) (row % P);
	S = lens[b];
	pr = probs + row * P;
	gr = dp + row * P;
	dr = ds + row * P;
	if (i >= S)
	{
		for (int j = lane; j < P; j += 32)
			dr[j] = from_float<Tin>(0.0f);
		return;
	}
	base = pbase[b] + ((uint64_t) h * S + i) * S;
	for (int j = lane; j < S; j += 32)
	{
		float		g = drop_apply(drop, base + j, gr[j]);

		gr[j] = g;
		dot += pr[j] * g;
	}
	dot = warp_sum(dot);
	for (int j = lane; j < P; j += 32)
		dr[j] = from_float<Tin>(j < S ? pr[j] * (gr[j] - dot) : 0.0f);
}

/* The per-head dq, dk, dv back into packed (T, 3H) rows; the Tin copy only when it is another buffer. */
template <typename Tin>
__global__ void
train_gather_qkv_kernel(float *g, Tin *gin, const float *dq, const float *dk, const float *dv,
						const int *slot_token, int P, int H, int NH)
{
	BucketSlot	bs = block_bucket_slot(slot_token, P, H, NH);

	if (bs.tok < 0)
		return;
	for (int e = threadIdx.x; e < 3 * H; e += blockDim.x)
	{
		int			which = e / H;
		const float *src = which == 0 ? dq : which == 1 ? dk : dv;
		float		v = src[head_slot_index(bs, e % H, P, NH)];
		size_t		o = (size_t) bs.tok * 3 * H + e;

		g[o] = v;
		if ((void *) gin != (void *) g)
			gin[o] = from_float<Tin>(v);
	}
}

/* Atomics, since tokens share embedding rows; the padding token's word row gets none (padding_idx). */
__global__ void
train_embed_backward_kernel(float *dword, float *dpos, float *dtype, const float *dx, const int *ids,
							const int *types, const int *pos, int T, int H, int pad_id)
{
	size_t		total = (size_t) T * H;

	for (size_t e = blockIdx.x * (size_t) blockDim.x + threadIdx.x; e < total; e += (size_t) gridDim.x * blockDim.x)
	{
		size_t		t = e / H;
		int			i = (int) (e % H);
		float		v = dx[e];

		atomicAdd(dpos + (size_t) pos[t] * H + i, v);
		atomicAdd(dtype + (size_t) types[t] * H + i, v);
		if (ids[t] != pad_id)
			atomicAdd(dword + (size_t) ids[t] * H + i, v);
	}
}

/* ---- optimizer ---- */

/* Sum over a block (warps, then warp 0), in double for the gradient norm; thread 0 gets it. */
__device__ __forceinline__ double
block_sum_double(double v)
{
	__shared__ double part[32];
	int			lane = threadIdx.x % 32,
				warp = threadIdx.x / 32;

	v = warp_sum(v);
	if (lane == 0)
		part[warp] = v;
	__syncthreads();
	v = 0.0;
	if (warp == 0)
	{
		v = lane < (int) (blockDim.x / 32) ? part[lane] : 0.0;
		v = warp_sum(v);
	}
	return v;					/* valid in thread 0 */
}

/* The norm's first pass: per-block partial sums of squares in double, no atomics (a fixed order). */
__global__ void
train_sumsq_kernel(double *partials, const float *g, size_t n)
{
	double		s = 0.0;

	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
		s += (double) g[i] * g[i];
	s = block_sum_double(s);
	if (threadIdx.x == 0)
		partials[blockIdx.x] = s;
}

/* The norm's second pass: one block adds the partial sums. */
__global__ void
train_sum_partials_kernel(double *out, const double *partials, int n)
{
	double		s = 0.0;

	for (int i = threadIdx.x; i < n; i += blockDim.x)
		s += partials[i];
	s = block_sum_double(s);
	if (threadIdx.x == 0)
		*out = s;
}

/* Grid-stride AdamW over one parameter segment, rounded step by step as train.c's CPU code rounds. */
__global__ void
train_adamw_kernel(float *p, const float *grad, float *m, float *v, size_t n, int clip, float coef, int wd,
				   float decay, float one_minus_b1, float b2, float one_minus_b2, float bc2_sqrt, float eps,
				   float step_size)
{
	for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
	{
		float		g = grad[i],
					pi = p[i],
					mi = m[i],
					vi = v[i],
					denom;

		/* train.c's expressions, each rounded as the CPU rounds it (no contraction into fma) */
		if (clip)
			g = __fmul_rn(g, coef);
		if (wd)
			pi = __fmul_rn(pi, decay);
		mi = __fadd_rn(mi, __fmul_rn(one_minus_b1, __fsub_rn(g, mi)));
		vi = __fadd_rn(__fmul_rn(vi, b2), __fmul_rn(__fmul_rn(one_minus_b2, g), g));
		denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
		pi = __fadd_rn(pi, __fmul_rn(-step_size, __fdiv_rn(mi, denom)));
		p[i] = pi;
		m[i] = mi;
		v[i] = vi;
	}
}

/* ---- launchers ---- */

/* Blocks for the one-warp-per-row kernels (WARP_ROWS rows a block). */
static unsigned int
warp_row_blocks(size_t rows)
{
	return (unsigned int) ((rows + WARP_ROWS - 1) / WARP_ROWS);
}

/* Rows per block of a column kernel: at least COL_ROWS, and few enough blocks in y. */
static int
col_rows_per(int rows)
{
	int			per = (rows + 65534) / 65535;

	return per < COL_ROWS ? COL_ROWS : per;
}

template <typename Tin>
void
launch_train_embed_ln(cudaStream_t s, float *emb, float *mean, float *rstd, float *xs, Tin *xin, const int *ids,
					  const int *types, const int *pos, const float *word, const float *posemb,
					  const float *typeemb, const float *w, const float *b, int T, int H, float eps, TrainDrop drop)
{
	train_embed_ln_kernel<Tin><<<warp_row_blocks(T), 32 * WARP_ROWS, 0, s>>>
		(emb, mean, rstd, xs, xin, ids, types, pos, word, posemb, typeemb, w, b, T, H, eps, drop);
}

template <typename Tin>
void
launch_train_residual_ln(cudaStream_t s, float *res, float *mean, float *rstd, float *xs, Tin *xin, const float *y,
						 const float *bias, const float *w, const float *b, int T, int H, float eps, TrainDrop drop)
{
	train_residual_ln_kernel<Tin><<<warp_row_blocks(T), 32 * WARP_ROWS, 0, s>>>
		(res, mean, rstd, xs, xin, y, bias, w, b, T, H, eps, drop);
}

template <typename Tin>
void
launch_train_gelu(cudaStream_t s, Tin *act, float *ffn, const float *bias, int T, int I, int gelu_tanh)
{
	size_t		n = (size_t) T * I;

	if (gelu_tanh)
		train_gelu_kernel<Tin, 1><<<grid_for(n, 256), 256, 0, s>>>(act, ffn, bias, n, I);
	else
		train_gelu_kernel<Tin, 0><<<grid_for(n, 256), 256, 0, s>>>(act, ffn, bias, n, I);
}

template <typename Tin>
void
launch_train_attn_dropout(cudaStream_t s, Tin *pin, const float *probs, const int *lens,
						  const unsigned long long *pbase, int B, int NH, int P, TrainDrop drop)
{
	size_t		n = (size_t) B * NH * P * P;

	train_attn_dropout_kernel<Tin><<<grid_for(n, 256), 256, 0, s>>>(pin, probs, lens, pbase, NH, P, n, drop);
}

void
launch_train_dropout_copy(cudaStream_t s, float *dst, const float *src, size_t n, TrainDrop drop)
{
	train_dropout_copy_kernel<<<grid_for(n, 256), 256, 0, s>>>(dst, src, n, drop);
}

template <typename Tin>
void
launch_train_ln_backward(cudaStream_t s, float *dx, Tin *dbr, float *dw, float *db, float *dbias, const float *dy,
						 const float *in, const float *mean, const float *rstd, const float *w, int T, int H,
						 TrainDrop drop_in, TrainDrop drop_br)
{
	unsigned int blocks = warp_row_blocks(T);

	if (blocks > 256)
		blocks = 256;			/* each block adds its 3 H partial sums once */
	train_ln_backward_kernel<Tin><<<blocks, 32 * WARP_ROWS, 3 * (size_t) H * sizeof(float), s>>>
		(dx, dbr, dw, db, dbias, dy, in, mean, rstd, w, T, H, drop_in, drop_br);
}

void
launch_train_colsum(cudaStream_t s, float *dst, const float *src, int rows, int cols)
{
	int			per = col_rows_per(rows);
	dim3		grid((cols + COL_THREADS - 1) / COL_THREADS, (rows + per - 1) / per);

	train_colsum_kernel<<<grid, COL_THREADS, 0, s>>>(dst, src, rows, cols, per);
}

template <typename Tin>
void
launch_train_gelu_backward(cudaStream_t s, Tin *gin, const float *g, const float *ffn, float *dbias, int T, int I,
						   int gelu_tanh)
{
	int			per = col_rows_per(T);
	dim3		grid((I + COL_THREADS - 1) / COL_THREADS, (T + per - 1) / per);

	if (gelu_tanh)
		train_gelu_backward_kernel<Tin, 1><<<grid, COL_THREADS, 0, s>>>(gin, g, ffn, dbias, T, I, per);
	else
		train_gelu_backward_kernel<Tin, 0><<<grid, COL_THREADS, 0, s>>>(gin, g, ffn, dbias, T, I, per);
}

void
launch_train_tanh_backward(cudaStream_t s, float *g, const float *y, float *dbias, int n, int H, TrainDrop drop)
{
	int			per = col_rows_per(n);
	dim3		grid((H + COL_THREADS - 1) / COL_THREADS, (n + per - 1) / per);

	train_tanh_backward_kernel<<<grid, COL_THREADS, 0, s>>>(g, y, dbias, n, H, per, drop);
}

void
launch_train_scatter_rows(cudaStream_t s, float *dst, const float *src, const int *rows, int n, int H)
{
	train_scatter_rows_kernel<<<grid_for((size_t) n * H, 256), 256, 0, s>>>(dst, src, rows, n, H);
}

template <typename Tin>
void
launch_train_scatter_heads(cudaStream_t s, Tin *dst, const float *src, const int *slot_token, int B, int P, int H,
						   int NH)
{
	train_scatter_heads_kernel<Tin><<<B * P, 256, 0, s>>>(dst, src, slot_token, P, H, NH);
}

template <typename Tin>
void
launch_train_softmax_backward(cudaStream_t s, Tin *ds, float *dp, const float *probs, const int *lens,
							  const unsigned long long *pbase, int B, int NH, int P, TrainDrop drop)
{
	train_softmax_backward_kernel<Tin><<<warp_row_blocks((size_t) B * NH * P), 32 * WARP_ROWS, 0, s>>>
		(ds, dp, probs, lens, pbase, B, NH, P, drop);
}

template <typename Tin>
void
launch_train_gather_qkv(cudaStream_t s, float *g, Tin *gin, const float *dq, const float *dk, const float *dv,
						const int *slot_token, int B, int P, int H, int NH)
{
	train_gather_qkv_kernel<Tin><<<B * P, 256, 0, s>>>(g, gin, dq, dk, dv, slot_token, P, H, NH);
}

void
launch_train_embed_backward(cudaStream_t s, float *dword, float *dpos, float *dtype, const float *dx, const int *ids,
							const int *types, const int *pos, int T, int H, int pad_id)
{
	train_embed_backward_kernel<<<grid_for((size_t) T * H, 256), 256, 0, s>>>
		(dword, dpos, dtype, dx, ids, types, pos, T, H, pad_id);
}

void
launch_train_sumsq(cudaStream_t s, double *out, double *partials, const float *g, size_t n)
{
	train_sumsq_kernel<<<TRAIN_NORM_BLOCKS, 256, 0, s>>>(partials, g, n);
	train_sum_partials_kernel<<<1, 256, 0, s>>>(out, partials, TRAIN_NORM_BLOCKS);
}

void
launch_train_adamw(cudaStream_t s, float *p, const float *grad, float *m, float *v, size_t n, int clip, float coef,
				   int wd, float decay, float one_minus_b1, float b2, float one_minus_b2, float bc2_sqrt, float eps,
				   float step_size)
{
	train_adamw_kernel<<<grid_for(n, 256), 256, 0, s>>>(p, grad, m, v, n, clip, coef, wd, decay, one_minus_b1, b2,
														one_minus_b2, bc2_sqrt, eps, step_size);
}

#define INSTANTIATE(Tin) \
	template void launch_train_embed_ln<Tin>(cudaStream_t, float *, float *, float *, float *, Tin *, const int *, \
											 const int *, const int *, const float *, const float *, \
											 const float *, const float *, const float *, int, int, float, \
											 TrainDrop); \
	template void launch_train_residual_ln<Tin>(cudaStream_t, float *, float *, float *, float *, Tin *, \
												const float *, const float *, const float *, const float *, \
												int, int, float, TrainDrop); \
	template void launch_train_gelu<Tin>(cudaStream_t, Tin *, float *, const float *, int, int, int); \
	template void launch_train_attn_dropout<Tin>(cudaStream_t, Tin *, const float *, const int *, \
												 const unsigned long long *, int, int, int, TrainDrop); \
	template void launch_train_ln_backward<Tin>(cudaStream_t, float *, Tin *, float *, float *, float *, \
												const float *, const float *, const float *, const float *, \
												const float *, int, int, TrainDrop, TrainDrop); \
	template void launch_train_gelu_backward<Tin>(cudaStream_t, Tin *, const float *, const float *, float *, \
												  int, int, int); \
	template void launch_train_scatter_heads<Tin>(cudaStream_t, Tin *, const float *, const int *, int, int, \
												  int, int); \
	template void launch_train_softmax_backward<Tin>(cudaStream_t, Tin *, float *, const float *, const int *, \
													 const unsigned long long *, int, int, int, TrainDrop); \
	template void launch_train_gather_qkv<Tin>(cudaStream_t, float *, Tin *, const float *, const float *, \
											   const float *, const int *, int, int, int, int);
INSTANTIATE(float)
INSTANTIATE(__nv_bfloat16)
