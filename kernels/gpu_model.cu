/*
 * kernels/gpu_model.cu
 *     A BERT encoder on the device: weights uploaded once, one forward pass
 *     per packed batch, CUDA graphs for repeated shapes (see gpu.h).
 *
 * A forward pass is one host-to-device copy of the batch's integers (ids,
 * types, positions, attention buckets) from pinned memory, then per layer:
 * QKV product; per length bucket scatter, scores product, masked softmax,
 * context product, gather; output product; bias + residual + LayerNorm;
 * FFN-in product; bias + GELU; FFN-out product; bias + residual + LayerNorm.
 * In the bf16 pass the products read and write bf16 (fp32 accumulation, one
 * rounding of each output), which halves the bytes the row kernels move; the
 * residual stream, LayerNorm and softmax statistics stay float32.
 * The heads run in float32 whatever the precision (they are tiny), and one
 * device-to-host copy returns the result into pinned memory. Everything is
 * issued on the context's stream, so that the whole sequence can be captured
 * into a graph and replayed: the second time a batch shape (the want, the
 * sequence lengths) comes, it is captured; from then on it costs one launch.
 * Graph replays read the same pinned and device addresses, so any growth of
 * either buffer invalidates the graphs (a generation number).
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_batch_plan.h"
#include "gpu_flash.h"
#include "gpu_internal.h"
#include "gpu_model_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRAPH_MAX_TOKENS 4096	/* larger batches are not launch-bound */

typedef struct Bucket
{
	int			B;				/* sequences */
	int			P;				/* padded length, a multiple of 8 */
	size_t		slots;			/* offset of its B * P slot tokens in the integer staging */
	size_t		lens;			/* offset of its B lengths */
} Bucket;

/* Where one forward pass's pieces sit in the workspace and the staging. */
typedef struct Plan
{
	int			T,
				n_seq,
				want,
				out_cols;
	Bucket	   *buckets;
	int			n_buckets;
	size_t		n_ints;
	/* integer staging offsets */
	size_t		i_ids,
				i_types,
				i_pos,
				i_cls,
				i_offsets;
	/* workspace byte offsets */
	size_t		x,
				xin,
				qkv,
				ctxin,
				y,
				ffn,
				ffnin,
				q,
				k,
				v,
				scores,
				probs,
				ctxp,
				cls,
				pooled,
				head_out,
				ints,
				total;
	int			max_len;		/* the longest sequence */
} Plan;

/* Workspace offsets on 256 bytes, as cuBLAS and vector loads like. */
static size_t
align256(size_t n)
{
	return (n + 255) & ~(size_t) 255;
}

/* FNV-1a over the want and the sequence lengths: the key of a graph. */
static uint64_t
shape_hash(int want, int n_seq, const int *offsets)
{
	uint64_t	h = 1469598103934665603ULL;

	h = (h ^ (uint64_t) want) * 1099511628211ULL;
	h = (h ^ (uint64_t) n_seq) * 1099511628211ULL;
	for (int i = 0; i <= n_seq; i++)
		h = (h ^ (uint64_t) (uint32_t) offsets[i]) * 1099511628211ULL;
	return h;
}

/* Bytes of one matrix-product input element at the model's precision. */
static size_t
input_size(const PgbertGpuModel *m)
{
	return m->precision == PGBERT_GPU_BF16 ? sizeof(__nv_bfloat16) : sizeof(float);
}

/* ---- upload ---- */

/* Every tensor of the description lies inside the parameters. */
static int
check_desc(const PgbertGpuModelDesc *d, char *errbuf, size_t errlen)
{
	size_t		H = d->hidden,
				L = d->layers,
				I = d->intermediate;
	struct
	{
		const char *name;
		size_t		off,
					len;
		int			present;
	}			t[] = {
		{"word embeddings", d->word_emb, (size_t) d->vocab * H, 1},
		{"position embeddings", d->pos_emb, (size_t) d->max_position * H, 1},
		{"token type embeddings", d->type_emb, (size_t) d->type_vocab * H, 1},
		{"embedding layernorm", d->emb_ln_w, H, 1}, {"embedding layernorm", d->emb_ln_b, H, 1},
		{"qkv", d->qkv_w, L * 3 * H * H, 1}, {"qkv bias", d->qkv_b, L * 3 * H, 1},
		{"attention output", d->attn_out_w, L * H * H, 1}, {"attention output bias", d->attn_out_b, L * H, 1},
		{"attention layernorm", d->attn_ln_w, L * H, 1}, {"attention layernorm", d->attn_ln_b, L * H, 1},
		{"intermediate", d->ffn_in_w, L * I * H, 1}, {"intermediate bias", d->ffn_in_b, L * I, 1},
		{"output", d->ffn_out_w, L * H * I, 1}, {"output bias", d->ffn_out_b, L * H, 1},
		{"output layernorm", d->ffn_ln_w, L * H, 1}, {"output layernorm", d->ffn_ln_b, L * H, 1},
		{"pooler", d->pool_w, H * H, d->has_pooler}, {"pooler bias", d->pool_b, H, d->has_pooler},
		{"classifier", d->cls_w, (size_t) d->num_classes * H, d->has_classifier},
		{"classifier bias", d->cls_b, (size_t) d->num_classes, d->has_classifier},
	};

	if (d->hidden < 1 || d->layers < 1 || d->heads < 1 || d->hidden % d->heads != 0 || d->intermediate < 1 ||
		d->vocab < 1 || d->max_position < 1 || d->type_vocab < 1 ||
		(d->has_classifier && (d->num_classes < 1 || !d->has_pooler)))
	{
		set_error(errbuf, errlen, "invalid model shape for the gpu (hidden %d, heads %d, layers %d)",
				  d->hidden, d->heads, d->layers);
		return -1;
	}
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].present && (t[i].off > d->num_params || t[i].len > d->num_params - t[i].off))
		{
			set_error(errbuf, errlen, "the %s tensor lies outside the parameters", t[i].name);
			return -1;
		}
	return 0;
}

/*
 * Whether the bf16 pass uses the fused attention kernel for this shape. On by
 * default where gpu_flash.cu supports the shape, but only once the kernel has
 * passed its self-test on this device in this process (against a plain fp32
 * reference, through a captured graph too): a kernel that disagrees is logged
 * and the cuBLAS buckets are used. PGBERT_GPU_ATTENTION=buckets or =fused
 * forces the choice (tests and benchmarks compare both); fused still needs
 * the shape supported.
 */
static int
fused_attention_wanted(int H, int NH, int max_position)
{
	static struct
	{
		int			H,
					NH,
					n,
					passed;
	}			tested[16];		/* per process, shape and lengths tested */
	static int	n_tested = 0;
	static const int lengths[] = {1, 7, 64, 65, 128, 129, 300, 512};
	const char *force = getenv("PGBERT_GPU_ATTENTION");
	int			n = 0,
				rc;
	double		err = INFINITY;
	char		why[256] = "";

	if (!flash_attention_supported(H, NH, max_position) || (force && strcmp(force, "buckets") == 0))
		return 0;
	if (force && strcmp(force, "fused") == 0)
		return flash_attention_prepare() == cudaSuccess;
	while (n < (int) (sizeof(lengths) / sizeof(lengths[0])) && lengths[n] <= max_position)
		n++;
	/* a pass at a shorter max_position tested fewer lengths: it does not vouch for longer ones */
	for (int i = 0; i < n_tested; i++)
		if (tested[i].H == H && tested[i].NH == NH && tested[i].n == n)
			return tested[i].passed;
	rc = flash_attention_prepare() == cudaSuccess ?
		pgbert_gpu_flash_selftest(n, lengths, H, NH, 42, &err, why, sizeof(why)) : -1;
	(void) cudaGetLastError();
	if (n_tested == 16)
		n_tested = 0;
	tested[n_tested].H = H;
	tested[n_tested].NH = NH;
	tested[n_tested].n = n;
	tested[n_tested].passed = rc == 0 && err <= 2e-2;
	if (!tested[n_tested].passed)
		fprintf(stderr, "pgbert gpu: the fused attention kernel failed its self-test for hidden %d, %d heads "
				"(%s%serror %.3g): using cuBLAS on length buckets\n", H, NH, why, why[0] ? ", " : "", err);
	return tested[n_tested++].passed;
}

extern "C" PgbertGpuModel *
pgbert_gpu_model_upload(PgbertGpuContext *ctx, const PgbertGpuModelDesc *desc, const float *params,
						PgbertGpuPrecision precision, char *errbuf, size_t errlen)
{
	PgbertGpuModel *m;
	cudaError_t err;

	if (ctx == NULL || desc == NULL || params == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_model_upload: null argument");
		return NULL;
	}
	if (precision != PGBERT_GPU_FP32 && precision != PGBERT_GPU_BF16)
	{
		set_error(errbuf, errlen, "unknown gpu precision %d", (int) precision);
		return NULL;
	}
	if (check_desc(desc, errbuf, errlen) != 0)
		return NULL;
	m = static_cast<PgbertGpuModel *>(calloc(1, sizeof(PgbertGpuModel)));
	if (m == NULL)
	{
		set_error(errbuf, errlen, "out of host memory for a gpu model");
		return NULL;
	}
	m->ctx = ctx;
	m->d = *desc;
	m->precision = precision;
	m->use_graphs = 1;
	if ((err = cudaSetDevice(ctx->ordinal)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaSetDevice", err);
		goto fail;
	}
	m->params_bytes = desc->num_params * sizeof(float);
	if (gpu_alloc(ctx, (void **) &m->params, m->params_bytes, "the model's weights", errbuf, errlen) != 0)
	{
		m->params_bytes = 0;
		goto fail;
	}
	err = cudaMemcpyAsync(m->params, params, m->params_bytes, cudaMemcpyHostToDevice, ctx->stream);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "copying the weights to the gpu", err);
		goto fail;
	}
	if (precision == PGBERT_GPU_BF16)
	{
		m->params_bf16_bytes = desc->num_params * sizeof(__nv_bfloat16);
		if (gpu_alloc(ctx, (void **) &m->params_bf16, m->params_bf16_bytes, "the model's bf16 weights",
					  errbuf, errlen) != 0)
		{
			m->params_bf16_bytes = 0;
			goto fail;
		}
		launch_convert<__nv_bfloat16>(ctx->stream, m->params_bf16, m->params, desc->num_params);
	}
	err = cudaStreamSynchronize(ctx->stream);
	if (err == cudaSuccess)
		err = cudaGetLastError();
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "uploading the weights", err);
		goto fail;
	}
	m->fused_attention = precision == PGBERT_GPU_BF16 && fused_attention_wanted(desc->hidden, desc->heads,
																			   desc->max_position);
	/*
	 * A self-test that faulted leaves the context unusable (a sticky error,
	 * which cudaGetLastError does not clear): fail here, as a device error,
	 * rather than later as a misleading "out of gpu memory" from cudaMalloc.
	 */
	err = cudaStreamSynchronize(ctx->stream);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "the device after the fused attention self-test "
					   "(PGBERT_GPU_ATTENTION=buckets skips it)", err);
		goto fail;
	}
	return m;

fail:
	pgbert_gpu_model_free(m);
	return NULL;
}

/* Destroys the captured graphs and forgets the shapes seen (on free, graphs off, or buffers moving). */
static void
drop_graphs(PgbertGpuModel *m)
{
	for (int i = 0; i < m->n_graphs; i++)
	{
		(void) cudaGraphExecDestroy(m->graphs[i].exec);
		free(m->graphs[i].offsets);
	}
	m->n_graphs = 0;
	m->n_seen = 0;
}

extern "C" void
pgbert_gpu_model_free(PgbertGpuModel *m)
{
	if (m == NULL)
		return;
	(void) cudaSetDevice(m->ctx->ordinal);
	(void) cudaStreamSynchronize(m->ctx->stream);
	drop_graphs(m);
	gpu_free(m->ctx, m->params, m->params_bytes);
	gpu_free(m->ctx, m->params_bf16, m->params_bf16_bytes);
	gpu_free(m->ctx, m->ws, m->ws_bytes);
	if (m->h_ints)
		(void) cudaFreeHost(m->h_ints);
	if (m->h_out)
		(void) cudaFreeHost(m->h_out);
	(void) cudaGetLastError();
	free(m);
}

extern "C" void
pgbert_gpu_model_use_graphs(PgbertGpuModel *m, int on)
{
	m->use_graphs = on;
	if (!on)
		drop_graphs(m);
}

/* ---- planning ---- */

/* Padded attention bytes of one sequence of padded length P. */
static size_t
attention_bytes_per_seq(const PgbertGpuModel *m, int P)
{
	size_t		NH = m->d.heads,
				dh = m->d.hidden / m->d.heads,
				sz = input_size(m);

	return NH * (size_t) P * (4 * dh * sz + (size_t) P * (sizeof(float) + sz));
}

/*
 * Groups the sequences into buckets of similar length (longest first; a
 * sequence joins the open bucket while its padded length wastes at most a
 * quarter of the bucket's, and while the bucket's scratch fits the budget),
 * and lays out the staging and the workspace. order receives the sequence
 * order. 0, or -1 when out of host memory.
 */
static int
make_plan(const PgbertGpuModel *m, int n_seq, const int *offsets, int want, Plan *pl, int *order)
{
	/* the fused kernel reads the packed rows directly: no buckets, no padded scratch */
	int			bucketed = !m->fused_attention;
	const PgbertGpuModelDesc *d = &m->d;
	size_t		H = d->hidden,
				I = d->intermediate,
				NH = d->heads,
				dh = d->hidden / d->heads,
				sz = input_size(m);
	size_t		max_qkv = 0,
				max_scores = 0;
	size_t		o;

	memset(pl, 0, sizeof(*pl));
	pl->T = offsets[n_seq];
	pl->n_seq = n_seq;
	pl->want = want;
	pl->out_cols = want == PGBERT_GPU_WANT_LOGITS ? d->num_classes : d->hidden;
	pl->buckets = static_cast<Bucket *>(malloc(sizeof(Bucket) * n_seq));
	if (pl->buckets == NULL)
		return -1;
	sort_longest_first(n_seq, offsets, order);
	pl->max_len = offsets[order[0] + 1] - offsets[order[0]];

	o = 0;
	pl->i_ids = o;
	o += pl->T;
	pl->i_types = o;
	o += pl->T;
	pl->i_pos = o;
	o += pl->T;
	pl->i_cls = o;
	o += n_seq;
	pl->i_offsets = o;
	o += n_seq + 1;
	for (int s = 0; s < n_seq && bucketed;)
	{
		int			P = bucket_padded_len(offsets[order[s] + 1] - offsets[order[s]]);
		int			B = bucket_take(n_seq, offsets, order, s, P, attention_bytes_per_seq(m, P));
		Bucket	   *bk = &pl->buckets[pl->n_buckets++];

		bk->B = B;
		bk->P = P;
		bk->slots = o;
		o += (size_t) B * P;
		bk->lens = o;
		o += B;
		if ((size_t) B * NH * P * dh * sz > max_qkv)
			max_qkv = (size_t) B * NH * P * dh * sz;
		if ((size_t) B * NH * P * P > max_scores)
			max_scores = (size_t) B * NH * P * P;
		s += B;
	}
	pl->n_ints = o;

	o = 0;
#define TAKE(field, bytes) do { pl->field = o; o += align256(bytes); } while (0)
	TAKE(x, pl->T * H * sizeof(float));
	TAKE(xin, pl->T * H * sz);
	TAKE(qkv, pl->T * 3 * H * sz);	/* the products' outputs: bf16 in the bf16 pass */
	TAKE(ctxin, pl->T * H * sz);
	TAKE(y, pl->T * H * sz);
	TAKE(ffn, pl->T * I * sz);
	TAKE(ffnin, pl->T * I * sz);
	TAKE(q, max_qkv);
	TAKE(k, max_qkv);
	TAKE(v, max_qkv);
	TAKE(ctxp, max_qkv);
	TAKE(scores, max_scores * sizeof(float));
	TAKE(probs, max_scores * sz);
	TAKE(cls, (size_t) n_seq * H * sizeof(float));
	TAKE(pooled, (size_t) n_seq * H * sizeof(float));
	TAKE(head_out, (size_t) n_seq * (H > (size_t) d->num_classes ? H : (size_t) d->num_classes) * sizeof(float));
	TAKE(ints, pl->n_ints * sizeof(int));
#undef TAKE
	pl->total = o;
	return 0;
}

/* Writes the batch's integers into the pinned staging as the plan lays them out. */
static void
fill_staging(PgbertGpuModel *m, const Plan *pl, const int *order, const int *offsets, const int *ids,
			 const int *type_ids)
{
	int		   *st = m->h_ints;
	int			s0 = 0;

	stage_tokens(pl->n_seq, offsets, ids, type_ids, st + pl->i_ids, st + pl->i_types, st + pl->i_pos,
				 st + pl->i_cls);
	memcpy(st + pl->i_offsets, offsets, sizeof(int) * (pl->n_seq + 1));
	for (int bi = 0; bi < pl->n_buckets; bi++)
	{
		const Bucket *bk = &pl->buckets[bi];

		stage_bucket(bk->B, bk->P, order + s0, offsets, st + bk->slots, st + bk->lens);
		s0 += bk->B;
	}
}

/* Before a buffer the graphs read moves: they are dropped, and the generation says so. */
static void
forget_graphs(PgbertGpuModel *m)
{
	(void) cudaStreamSynchronize(m->ctx->stream);
	drop_graphs(m);
	m->generation++;
}

/* Grows the workspace and the pinned buffers to the plan; moving any invalidates the graphs. */
static int
reserve(PgbertGpuModel *m, const Plan *pl, char *errbuf, size_t errlen)
{
	size_t		out_floats = (size_t) pl->n_seq * pl->out_cols;

	if (pl->total > m->ws_bytes)
	{
		forget_graphs(m);
		if (grow_workspace(m->ctx, &m->ws, &m->ws_bytes, pl->total, "a batch's activations", errbuf, errlen) != 0)
			return -1;
	}
	if (pl->n_ints > m->h_ints_cap)
	{
		forget_graphs(m);
		if (grow_pinned((void **) &m->h_ints, &m->h_ints_cap, pl->n_ints, sizeof(int), 1024, "the batch staging",
						errbuf, errlen) != 0)
			return -1;
	}
	if (out_floats > m->h_out_cap)
	{
		forget_graphs(m);
		if (grow_pinned((void **) &m->h_out, &m->h_out_cap, out_floats, sizeof(float), 1024, "the result staging",
						errbuf, errlen) != 0)
			return -1;
	}
	return 0;
}

/* ---- the pass ---- */

/* Issues the whole forward pass of a plan on the stream (eagerly, or into a capture). */
template <typename Tin>
static int
record_forward(PgbertGpuModel *m, const Plan *pl, const Tin *wp, char *errbuf, size_t errlen)
{
	const PgbertGpuModelDesc *d = &m->d;
	PgbertGpuContext *ctx = m->ctx;
	cudaStream_t s = ctx->stream;
	cublasHandle_t h = ctx->handle;
	cudaDataType_t tin = sizeof(Tin) == 2 ? CUDA_R_16BF : CUDA_R_32F;
	char	   *ws = m->ws;
	int			T = pl->T,
				H = d->hidden,
				I = d->intermediate,
				NH = d->heads,
				dh = H / NH;
	float	   *x = (float *) (ws + pl->x),
			   *scores = (float *) (ws + pl->scores);
	Tin		   *qkv = (Tin *) (ws + pl->qkv),
			   *y = (Tin *) (ws + pl->y),
			   *ffn = (Tin *) (ws + pl->ffn);
	Tin		   *xin = (Tin *) (ws + pl->xin),
			   *ctxin = (Tin *) (ws + pl->ctxin),
			   *ffnin = (Tin *) (ws + pl->ffnin),
			   *q = (Tin *) (ws + pl->q),
			   *k = (Tin *) (ws + pl->k),
			   *v = (Tin *) (ws + pl->v),
			   *probs = (Tin *) (ws + pl->probs),
			   *ctxp = (Tin *) (ws + pl->ctxp);
	int		   *ints = (int *) (ws + pl->ints);
	const float *fp = m->params;
	float		scale = 1.0f / sqrtf((float) dh);
	const float one = 1.0f,
				zero = 0.0f;
	cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
	cudaError_t err;

#define BLAS(call) do { if ((st = (call)) != CUBLAS_STATUS_SUCCESS) { \
		set_cublas_error(errbuf, errlen, #call, st); return -1; } } while (0)

	err = cudaMemcpyAsync(ints, m->h_ints, pl->n_ints * sizeof(int), cudaMemcpyHostToDevice, s);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "copying the batch to the gpu", err);
		return -1;
	}
	launch_embed_ln<Tin>(s, x, xin, ints + pl->i_ids, ints + pl->i_types, ints + pl->i_pos,
						 fp + d->word_emb, fp + d->pos_emb, fp + d->type_emb,
						 fp + d->emb_ln_w, fp + d->emb_ln_b, T, H, d->layer_norm_eps);
	for (int l = 0; l < d->layers; l++)
	{
		size_t		HH = (size_t) H * H;

		BLAS(gemm_dense(h, tin, tin, qkv, xin, wp + d->qkv_w + (size_t) l * 3 * HH, T, 3 * H, H));
		if constexpr (sizeof(Tin) == sizeof(__nv_bfloat16))
		{
			if (m->fused_attention)
			{
				err = launch_flash_attention(s, ctxin, qkv, fp + d->qkv_b + (size_t) l * 3 * H, ints + pl->i_offsets,
											 pl->n_seq, pl->max_len, H, NH, scale);
				if (err != cudaSuccess)
				{
					set_cuda_error(errbuf, errlen, "launching the fused attention", err);
					return -1;
				}
			}
		}
		for (int bi = 0; bi < pl->n_buckets; bi++)
		{
			const Bucket *bk = &pl->buckets[bi];
			int			P = bk->P,
						nb = bk->B * NH;

			launch_scatter_qkv<Tin, Tin>(s, q, k, v, qkv, fp + d->qkv_b + (size_t) l * 3 * H, ints + bk->slots,
									bk->B, P, H, NH);
			/* scores^T (col-major P x P) = K (P x d) . Q^T, per (sequence, head) */
			BLAS(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, P, P, dh, &scale,
											k, tin, dh, (long long) P * dh, q, tin, dh, (long long) P * dh,
											&zero, scores, CUDA_R_32F, P, (long long) P * P, nb,
											CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
			launch_masked_softmax<Tin>(s, probs, scores, ints + bk->lens, bk->B, NH, P);
			/* ctx^T (col-major d x P) = V^T (d x P) . probs^T (P x P) */
			BLAS(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, dh, P, P, &one,
											v, tin, dh, (long long) P * dh, probs, tin, P, (long long) P * P,
											&zero, ctxp, tin, dh, (long long) P * dh, nb,
											CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
			launch_gather_ctx<Tin>(s, ctxin, ctxp, ints + bk->slots, bk->B, P, H, NH);
		}
		BLAS(gemm_dense(h, tin, tin, y, ctxin, wp + d->attn_out_w + (size_t) l * HH, T, H, H));
		launch_bias_residual_ln<Tin, Tin>(s, x, xin, y, fp + d->attn_out_b + (size_t) l * H,
									 fp + d->attn_ln_w + (size_t) l * H, fp + d->attn_ln_b + (size_t) l * H,
									 T, H, d->layer_norm_eps);
		BLAS(gemm_dense(h, tin, tin, ffn, xin, wp + d->ffn_in_w + (size_t) l * I * H, T, I, H));
		launch_bias_gelu<Tin, Tin>(s, ffnin, ffn, fp + d->ffn_in_b + (size_t) l * I, T, I, d->gelu_tanh);
		BLAS(gemm_dense(h, tin, tin, y, ffnin, wp + d->ffn_out_w + (size_t) l * H * I, T, H, I));
		launch_bias_residual_ln<Tin, Tin>(s, x, xin, y, fp + d->ffn_out_b + (size_t) l * H,
									 fp + d->ffn_ln_w + (size_t) l * H, fp + d->ffn_ln_b + (size_t) l * H,
									 T, H, d->layer_norm_eps);
	}

	/* heads, in float32 */
	{
		float	   *cls = (float *) (ws + pl->cls),
				   *pooled = (float *) (ws + pl->pooled),
				   *out = (float *) (ws + pl->head_out);
		int			n = pl->n_seq;

		switch (pl->want)
		{
			case PGBERT_GPU_WANT_MEAN:
				launch_mean_rows(s, out, x, ints + pl->i_offsets, n, H);
				break;
			case PGBERT_GPU_WANT_CLS:
				launch_gather_rows(s, out, x, ints + pl->i_cls, n, H);
				break;
			case PGBERT_GPU_WANT_POOLER:
			case PGBERT_GPU_WANT_LOGITS:
				launch_gather_rows(s, cls, x, ints + pl->i_cls, n, H);
				if (pl->want == PGBERT_GPU_WANT_POOLER)
					pooled = out;
				BLAS(gemm_dense(h, CUDA_R_32F, CUDA_R_32F, pooled, cls, fp + d->pool_w, n, H, H));
				launch_bias_act(s, pooled, fp + d->pool_b, n, H, 1);
				if (pl->want == PGBERT_GPU_WANT_LOGITS)
				{
					BLAS(gemm_dense(h, CUDA_R_32F, CUDA_R_32F, out, pooled, fp + d->cls_w, n, d->num_classes, H));
					launch_bias_act(s, out, fp + d->cls_b, n, d->num_classes, 0);
				}
				break;
		}
		err = cudaMemcpyAsync(m->h_out, out, (size_t) n * pl->out_cols * sizeof(float),
							  cudaMemcpyDeviceToHost, s);
		if (err != cudaSuccess)
		{
			set_cuda_error(errbuf, errlen, "copying the result from the gpu", err);
			return -1;
		}
	}
#undef BLAS
	err = cudaGetLastError();
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "launching the forward pass", err);
		return -1;
	}
	return 0;
}

/* record_forward at the model's precision. */
static int
record(PgbertGpuModel *m, const Plan *pl, char *errbuf, size_t errlen)
{
	if (m->precision == PGBERT_GPU_BF16)
		return record_forward<__nv_bfloat16>(m, pl, m->params_bf16, errbuf, errlen);
	return record_forward<float>(m, pl, m->params, errbuf, errlen);
}

/* The graph captured for this exact shape, if current. */
static Graph *
find_graph(PgbertGpuModel *m, uint64_t hash, int want, int n_seq, const int *offsets)
{
	for (int i = 0; i < m->n_graphs; i++)
	{
		Graph	   *g = &m->graphs[i];

		if (g->hash == hash && g->want == want && g->n_seq == n_seq && g->generation == m->generation &&
			memcmp(g->offsets, offsets, sizeof(int) * (n_seq + 1)) == 0)
			return g;
	}
	return NULL;
}

/* Notes a shape; true when it was seen before (so it is worth capturing now). */
static bool
seen_before(PgbertGpuModel *m, uint64_t hash)
{
	for (int i = 0; i < m->n_seen; i++)
		if (m->seen[i] == hash)
			return true;
	if (m->n_seen == MAX_SEEN)
		m->n_seen = 0;			/* forget them all: cheap, and a shape that repeats comes back */
	m->seen[m->n_seen++] = hash;
	return false;
}

/* Captures the plan's pass into a new graph (evicting the least recently used). NULL + message on failure. */
static Graph *
capture(PgbertGpuModel *m, const Plan *pl, uint64_t hash, const int *offsets, char *errbuf, size_t errlen)
{
	cudaStream_t s = m->ctx->stream;
	cudaGraph_t graph = NULL;
	cudaGraphExec_t exec = NULL;
	cudaError_t err;
	Graph	   *g;
	int		   *copy;
	int			rc;

	copy = static_cast<int *>(malloc(sizeof(int) * (pl->n_seq + 1)));
	if (copy == NULL)
	{
		set_error(errbuf, errlen, "out of host memory");
		return NULL;
	}
	memcpy(copy, offsets, sizeof(int) * (pl->n_seq + 1));
	if ((err = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal)) != cudaSuccess)
	{
		free(copy);
		set_cuda_error(errbuf, errlen, "cudaStreamBeginCapture", err);
		return NULL;
	}
	rc = record(m, pl, errbuf, errlen);
	err = cudaStreamEndCapture(s, &graph);
	if (rc != 0 || err != cudaSuccess)
	{
		if (rc == 0)
			set_cuda_error(errbuf, errlen, "cudaStreamEndCapture", err);
		if (graph)
			(void) cudaGraphDestroy(graph);
		(void) cudaGetLastError();
		free(copy);
		return NULL;
	}
	err = cudaGraphInstantiate(&exec, graph, 0);
	(void) cudaGraphDestroy(graph);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaGraphInstantiate", err);
		free(copy);
		return NULL;
	}
	if (m->n_graphs == MAX_GRAPHS)
	{
		int			lru = 0;

		for (int i = 1; i < m->n_graphs; i++)
			if (m->graphs[i].last_used < m->graphs[lru].last_used)
				lru = i;
		(void) cudaGraphExecDestroy(m->graphs[lru].exec);
		free(m->graphs[lru].offsets);
		m->graphs[lru] = m->graphs[--m->n_graphs];
	}
	g = &m->graphs[m->n_graphs++];
	g->hash = hash;
	g->want = pl->want;
	g->n_seq = pl->n_seq;
	g->offsets = copy;
	g->generation = m->generation;
	g->exec = exec;
	return g;
}

/* The batch's integers and lengths are what the model accepts. */
static int
check_batch(const PgbertGpuModel *m, int n_seq, const int *offsets, const int *ids, const int *type_ids,
			PgbertGpuWant want, char *errbuf, size_t errlen)
{
	const PgbertGpuModelDesc *d = &m->d;

	if (n_seq < 1 || offsets == NULL || ids == NULL || offsets[0] != 0)
	{
		set_error(errbuf, errlen, "empty or malformed batch");
		return -1;
	}
	if (check_sequence_lengths(n_seq, offsets, d->max_position, errbuf, errlen) != 0)
		return -1;
	for (int t = 0; t < offsets[n_seq]; t++)
		if (ids[t] < 0 || ids[t] >= d->vocab || (type_ids && (type_ids[t] < 0 || type_ids[t] >= d->type_vocab)))
		{
			set_error(errbuf, errlen, "token %d is outside the model's vocabulary", t);
			return -1;
		}
	if ((want == PGBERT_GPU_WANT_LOGITS && !d->has_classifier) ||
		(want == PGBERT_GPU_WANT_POOLER && !d->has_pooler) ||
		want < PGBERT_GPU_WANT_LOGITS || want > PGBERT_GPU_WANT_POOLER)
	{
		set_error(errbuf, errlen, "the model cannot give output %d", (int) want);
		return -1;
	}
	return 0;
}

extern "C" int
pgbert_gpu_forward(PgbertGpuModel *m, int n_seq, const int *offsets, const int *ids, const int *type_ids,
				   PgbertGpuWant want, float *out, char *errbuf, size_t errlen)
{
	Plan		pl;
	int		   *order;
	int			rc = -1;
	cudaError_t err;

	if (m == NULL || out == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_forward: null argument");
		return -1;
	}
	if (check_batch(m, n_seq, offsets, ids, type_ids, want, errbuf, errlen) != 0)
		return -1;
	if ((err = cudaSetDevice(m->ctx->ordinal)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaSetDevice", err);
		return -1;
	}
	order = static_cast<int *>(malloc(sizeof(int) * n_seq));
	if (order == NULL || make_plan(m, n_seq, offsets, want, &pl, order) != 0)
	{
		free(order);
		set_error(errbuf, errlen, "out of host memory planning a batch of %d sequences", n_seq);
		return -1;
	}
	if (reserve(m, &pl, errbuf, errlen) != 0)
		goto done;
	fill_staging(m, &pl, order, offsets, ids, type_ids);

	if (m->use_graphs && pl.T <= GRAPH_MAX_TOKENS)
	{
		uint64_t	hash = shape_hash(want, n_seq, offsets);
		Graph	   *g = find_graph(m, hash, want, n_seq, offsets);

		if (g == NULL && seen_before(m, hash))
		{
			char		why[256];

			g = capture(m, &pl, hash, offsets, why, sizeof(why));
			if (g == NULL)
			{
				/* run eagerly from now on (the eager run below reports real errors); say so once */
				m->use_graphs = 0;
				fprintf(stderr, "pgbert gpu: cuda graph capture failed, running without graphs: %s\n", why);
			}
		}
		if (g != NULL)
		{
			g->last_used = ++m->tick;
			if ((err = cudaGraphLaunch(g->exec, m->ctx->stream)) != cudaSuccess)
			{
				set_cuda_error(errbuf, errlen, "cudaGraphLaunch", err);
				goto done;
			}
		}
		else if (record(m, &pl, errbuf, errlen) != 0)
			goto done;
	}
	else if (record(m, &pl, errbuf, errlen) != 0)
		goto done;

	err = cudaStreamSynchronize(m->ctx->stream);
	if (err == cudaSuccess)
		err = cudaGetLastError();
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "the forward pass", err);
		goto done;
	}
	memcpy(out, m->h_out, sizeof(float) * (size_t) n_seq * pl.out_cols);
	rc = 0;

done:
	free(pl.buckets);
	free(order);
	return rc;
}

static const PgbertGpuApi api = {
	PGBERT_GPU_API_VERSION,
	pgbert_gpu_device_count,
	pgbert_gpu_device_info,
	pgbert_gpu_open,
	pgbert_gpu_close,
	pgbert_gpu_set_memory_limit,
	pgbert_gpu_memory_used,
	pgbert_gpu_model_upload,
	pgbert_gpu_model_free,
	pgbert_gpu_forward,
	pgbert_gpu_model_use_graphs,
	pgbert_gpu_trainer_create,
	pgbert_gpu_trainer_free,
	pgbert_gpu_trainer_accumulate,
	pgbert_gpu_trainer_step,
	pgbert_gpu_trainer_steps,
	pgbert_gpu_trainer_download_params,
	pgbert_gpu_trainer_download_grads,
	pgbert_gpu_trainer_snapshot,
	pgbert_gpu_trainer_restore,
};

extern "C" const PgbertGpuApi *
pgbert_gpu_api(void)
{
	return &api;
}
