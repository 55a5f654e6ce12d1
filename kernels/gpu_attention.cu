/*
 * kernels/gpu_attention.cu
 *     Self-attention over packed variable-length sequences, one length
 *     bucket at a time, forward and backward: the bucket's sequences are
 *     scattered into a padded (B, heads, P, d) layout (adding the QKV bias on
 *     the way), cuBLAS runs the two strided-batched products on tensor cores
 *     (gpu_model.cu, gpu_train.cu), a masked softmax sits between them, and
 *     the context is gathered back into packed rows. Buckets keep the padding
 *     small (gpu_model.cu groups sequences of similar length); the key mask
 *     is exact: padded keys get probability 0, as transformers' additive mask
 *     gives after exp. The training forward drops probabilities as the
 *     engine does; the backward splits the context's gradient by head, runs
 *     the softmax backward through that dropout and gathers dq, dk, dv back
 *     into packed rows. The fused forward is gpu_flash.cu's.
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_device_helpers.cuh"
#include "gpu_layer_helpers.cuh"

/*
 * q/k/v[b, h, p, :] = qkv[token of slot (b, p)] + bias, split by head; zeros
 * in the padding slots (so that the products read no garbage). One block per slot.
 */
template <typename Tin, typename Ty>
__global__ void
scatter_qkv_kernel(Tin *q, Tin *k, Tin *v, const Ty *qkv, const float *bias,
				   const int *slot_token, int P, int H, int NH)
{
	BucketSlot	bs = block_bucket_slot(slot_token, P, H, NH);

	for (int e = threadIdx.x; e < 3 * H; e += blockDim.x)
	{
		int			which = e / H;
		float		val = bs.tok >= 0 ? to_float(qkv[(size_t) bs.tok * 3 * H + e]) + bias[e] : 0.0f;
		Tin		   *dst = which == 0 ? q : which == 1 ? k : v;

		dst[head_slot_index(bs, e % H, P, NH)] = from_float<Tin>(val);
	}
}

/*
 * probs row (b, h, i) = softmax over the sequence's keys j < lens[b] of the
 * scores row (already scaled by 1/sqrt(d)); 0 for padded keys, and a row of
 * zeros for padded queries. One warp per row.
 */
template <typename Tin>
__global__ void
masked_softmax_kernel(Tin *probs, const float *scores, const int *lens, int B, int NH, int P)
{
	size_t		row = blockIdx.x * (size_t) (blockDim.x / 32) + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;
	size_t		rows = (size_t) B * NH * P;
	int			b,
				i,
				len;
	const float *sr;
	Tin		   *pr;
	float		max = -INFINITY,
				sum = 0.0f,
				inv;

	if (row >= rows)
		return;
	b = (int) (row / ((size_t) NH * P));
	i = (int) (row % P);
	len = lens[b];
	sr = scores + row * P;
	pr = probs + row * P;
	if (i >= len)
	{
		for (int j = lane; j < P; j += 32)
			pr[j] = from_float<Tin>(0.0f);
		return;
	}
	for (int j = lane; j < len; j += 32)
		max = fmaxf(max, sr[j]);
	max = warp_max(max);
	for (int j = lane; j < len; j += 32)
		sum += expf(sr[j] - max);
	sum = warp_sum(sum);
	inv = 1.0f / sum;
	for (int j = lane; j < P; j += 32)
		pr[j] = from_float<Tin>(j < len ? expf(sr[j] - max) * inv : 0.0f);
}

/* ctx_packed[token of slot (b, p), h * d + dd] = ctx[b, h, p, dd] for real slots. One block per slot. */
template <typename Tin>
__global__ void
gather_ctx_kernel(Tin *ctx_packed, const Tin *ctx, const int *slot_token, int P, int H, int NH)
{
	BucketSlot	bs = block_bucket_slot(slot_token, P, H, NH);

	if (bs.tok < 0)
		return;
	for (int c = threadIdx.x; c < H; c += blockDim.x)
		ctx_packed[(size_t) bs.tok * H + c] = ctx[head_slot_index(bs, c, P, NH)];
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

/* ---- launchers ---- */

template <typename Tin, typename Ty>
void
launch_scatter_qkv(cudaStream_t s, Tin *q, Tin *k, Tin *v, const Ty *qkv, const float *bias,
				   const int *slot_token, int B, int P, int H, int NH)
{
	scatter_qkv_kernel<Tin, Ty><<<B * P, 256, 0, s>>>(q, k, v, qkv, bias, slot_token, P, H, NH);
}

template <typename Tin>
void
launch_masked_softmax(cudaStream_t s, Tin *probs, const float *scores, const int *lens, int B, int NH, int P)
{
	size_t		rows = (size_t) B * NH * P;

	masked_softmax_kernel<Tin><<<(unsigned int) ((rows + 7) / 8), 256, 0, s>>>(probs, scores, lens, B, NH, P);
}

template <typename Tin>
void
launch_gather_ctx(cudaStream_t s, Tin *ctx_packed, const Tin *ctx, const int *slot_token, int B, int P, int H,
				  int NH)
{
	gather_ctx_kernel<Tin><<<B * P, 256, 0, s>>>(ctx_packed, ctx, slot_token, P, H, NH);
}

template <typename Tin>
void
launch_train_attn_dropout(cudaStream_t s, Tin *pin, const float *probs, const int *lens,
						  const unsigned long long *pbase, int B, int NH, int P, TrainDrop drop)
{
	size_t		n = (size_t) B * NH * P * P;

	train_attn_dropout_kernel<Tin><<<grid_for(n, 256), 256, 0, s>>>(pin, probs, lens, pbase, NH, P, n, drop);
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

#define INSTANTIATE(Tin) \
	template void launch_scatter_qkv<Tin, float>(cudaStream_t, Tin *, Tin *, Tin *, const float *, const float *, \
												 const int *, int, int, int, int); \
	template void launch_masked_softmax<Tin>(cudaStream_t, Tin *, const float *, const int *, int, int, int); \
	template void launch_gather_ctx<Tin>(cudaStream_t, Tin *, const Tin *, const int *, int, int, int, int); \
	template void launch_train_attn_dropout<Tin>(cudaStream_t, Tin *, const float *, const int *, \
												 const unsigned long long *, int, int, int, TrainDrop); \
	template void launch_train_scatter_heads<Tin>(cudaStream_t, Tin *, const float *, const int *, int, int, \
												  int, int); \
	template void launch_train_softmax_backward<Tin>(cudaStream_t, Tin *, float *, const float *, const int *, \
													 const unsigned long long *, int, int, int, TrainDrop); \
	template void launch_train_gather_qkv<Tin>(cudaStream_t, float *, Tin *, const float *, const float *, \
											   const float *, const int *, int, int, int, int);
INSTANTIATE(float)
INSTANTIATE(__nv_bfloat16)
/* the bf16 forward pass keeps the QKV product in bf16 */
template void launch_scatter_qkv<__nv_bfloat16, __nv_bfloat16>(cudaStream_t, __nv_bfloat16 *, __nv_bfloat16 *,
															   __nv_bfloat16 *, const __nv_bfloat16 *,
															   const float *, const int *, int, int, int, int);
