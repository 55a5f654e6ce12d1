/*
 * kernels/gpu_train.cu
 *     Fine-tuning BertForSequenceClassification on the device (see gpu.h's
 *     training section): the engine's CPU trainer (src/engine/train.c, ops.c)
 *     step for step, over the weights of an uploaded PgbertGpuModel.
 *
 * One accumulate is one host-to-device copy of the batch's integers from
 * pinned memory (ids, types, positions, [CLS] rows, the attention buckets:
 * sequences sorted by length and padded to a multiple of 8, as the forward
 * pass of gpu_model.cu groups them), a training forward pass that keeps what
 * backward needs in one workspace grown to the largest batch seen, the logits
 * copied down for the weighted cross-entropy (n x C floats, computed on the
 * host in double exactly as train.c does), their gradient copied up, and the
 * backward pass adding into one float32 gradient buffer laid out like the
 * trained parameters. Dropout masks are the engine's counter-based hash of
 * (seed, forward passes so far, site, element index), so both trainers drop
 * the same elements; attention dropout indexes the probabilities in the
 * engine's packed layout. A step computes the global norm (double partial
 * sums), clips, runs AdamW per parameter segment with Hugging Face Trainer's
 * decay rule, zeroes the gradients and refreshes the model's bf16 copy.
 *
 * Precision is the model's: FP32 runs every product in float32 (no TF32);
 * BF16 feeds them bf16 copies of weights and activations (fp32 accumulation;
 * the saved activations the products read are kept in bf16), with float32
 * residual stream, statistics, gradients, master weights and moments. The
 * pooler and the classifier run in float32 either way.
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_batch_plan.h"
#include "gpu_internal.h"
#include "gpu_model_internal.h"
#include "gpu_train_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEGMENTS 24

/* Dropout sites of one forward pass, train.c's */
enum
{
	SITE_EMB = 0,
	SITE_CLS = 1,
	SITE_LAYER = 2				/* + 3 l + 0: attention probabilities, + 1: attention output, + 2: FFN output */
};

/* A contiguous run of parameters and whether AdamW's weight decay applies to it. */
typedef struct TSegment
{
	size_t		off;
	size_t		n;
	int			decay;
} TSegment;

/* One attention bucket of a training batch. */
typedef struct TBucket
{
	int			B;				/* sequences */
	int			P;				/* padded length, a multiple of 8 */
	size_t		slots;			/* byte offsets in the staging: B * P slot tokens (int) */
	size_t		lens;			/* B lengths (int) */
	size_t		pbase;			/* B offsets of the sequences' probabilities in the engine's layout (u64) */
	size_t		probs;			/* floats into a layer's saved probabilities */
} TBucket;

/* Where one accumulate's pieces sit in the staging and the workspace (byte offsets). */
typedef struct TPlan
{
	int			T,
				n;
	TBucket    *bk;
	int			nb;
	size_t		probs_layer;	/* floats of saved probabilities per layer */
	size_t		max_qkv,		/* elements of a bucket's (B, NH, P, d) */
				max_scores;		/* elements of a bucket's (B, NH, P, P) */
	/* staging */
	size_t		s_ids,
				s_types,
				s_pos,
				s_cls,
				s_bytes;
	/* per-layer strides of the saved activations */
	size_t		st_in,			/* (T, H) of Tin */
				st_qkv,			/* (T, 3H) float */
				st_probs,
				st_res,			/* (T, H) float */
				st_stat,		/* (T) float */
				st_ffn;			/* (T, I) float */
	/* workspace: saved by the forward */
	size_t		emb,
				emb_mean,
				emb_rstd,
				xin,			/* (L + 1) layer inputs, Tin */
				qkv,
				probs,
				ctx,			/* Tin */
				res1,
				mean1,
				rstd1,
				x1,				/* Tin */
				ffn,
				res2,
				mean2,
				rstd2,
				cls,
				pooled,
				pooled_drop,
				logits,
				dlogits;
	/* workspace: scratch */
	size_t		xs,
				y,
				act,
				q,
				k,
				v,
				ctxp,
				scores,
				pin,
				g_pooled,
				g_cls,
				g_x,
				g_t,
				g_c,
				g_br,
				g_ffn,
				g_ffn_in,
				g_qkv,
				g_qkv_in,
				dcp,
				dq,
				dk,
				dv,
				ds,
				ints,
				total;
} TPlan;

struct PgbertGpuTrainer
{
	PgbertGpuModel *m;
	PgbertGpuTrainOptions o;	/* class_weights points at the copy below */
	float	   *class_weights;	/* (C) host copy, or NULL */
	size_t		train_off,		/* the trained parameters: [train_off, train_off + train_n) */
				train_n;
	TSegment	seg[MAX_SEGMENTS];
	int			n_seg;
	float	   *grads;			/* (train_n) gradient of parameter train_off + i */
	float	   *adam_m,
			   *adam_v;			/* (train_n) */
	size_t		vec_bytes;		/* of each of the three */
	double	   *norm;			/* [0]: the sum of squares, [1..]: partial sums */
	size_t		norm_bytes;
	float	   *snap;			/* (num_params) snapshot, made on first use */
	size_t		snap_bytes;
	char	   *ws;				/* activations, grown to the largest batch */
	size_t		ws_bytes;
	char	   *h_stage;		/* pinned integer staging */
	size_t		h_stage_cap;	/* bytes */
	float	   *h_io;			/* pinned: logits down, their gradient up */
	size_t		h_io_cap;		/* floats */
	double	   *h_norm;			/* pinned */
	int			steps;			/* optimizer steps taken */
	uint64_t	passes;			/* forward passes run (each draws new dropout masks) */
};

/* Workspace offsets on 256 bytes, as cuBLAS and vector loads like. */
static size_t
talign(size_t n)
{
	return (n + 255) & ~(size_t) 255;
}

/* Bytes of one matrix-product input element at the model's precision. */
static size_t
tin_size(const PgbertGpuModel *m)
{
	return m->precision == PGBERT_GPU_BF16 ? sizeof(__nv_bfloat16) : sizeof(float);
}

/* The dropout of probability p at a site of the current forward pass: train.c's dropout_at. */
static TrainDrop
drop_at(const PgbertGpuTrainer *t, float p, uint64_t site)
{
	TrainDrop	d;

	d.key = train_mix64(train_mix64((uint64_t) t->o.seed ^ train_mix64(t->passes + 0x51ed270b27a1f3c9ULL)) + site);
	if (!(p > 0.0f))
	{
		d.threshold = 0;
		d.scale = 1.0f;
	}
	else if (p >= 1.0f)
	{
		d.threshold = (uint64_t) 1 << 32;	/* every 32-bit draw is below it: all dropped */
		d.scale = 0.0f;
	}
	else
	{
		d.threshold = (uint64_t) ((double) p * 4294967296.0);
		d.scale = 1.0f / (1.0f - p);
	}
	return d;
}

static const TrainDrop no_drop = {0, 0, 1.0f};

/* ---- create, free ---- */

/* Options a trainer can run with (train.c's check_options); 0, or -1 + message. */
static int
check_train_options(const PgbertGpuTrainOptions *o, int C, char *errbuf, size_t errlen)
{
	const char *bad = NULL;

	if (!(o->learning_rate >= 0.0f) || !isfinite(o->learning_rate))
		bad = "learning_rate must be a finite number >= 0";
	else if (!(o->weight_decay >= 0.0f) || !isfinite(o->weight_decay))
		bad = "weight_decay must be a finite number >= 0";
	else if (!(o->beta1 >= 0.0f && o->beta1 < 1.0f) || !(o->beta2 >= 0.0f && o->beta2 < 1.0f))
		bad = "beta1 and beta2 must be in [0, 1)";
	else if (!(o->adam_eps >= 0.0f) || !isfinite(o->adam_eps))
		bad = "adam_eps must be a finite number >= 0";
	else if (isnan(o->max_grad_norm))
		bad = "max_grad_norm must be a number";
	else if (o->warmup_steps < 0)
		bad = "warmup_steps must be >= 0";
	else if (!(o->hidden_dropout >= 0.0f && o->hidden_dropout <= 1.0f) ||
			 !(o->attention_dropout >= 0.0f && o->attention_dropout <= 1.0f))
		bad = "dropout probabilities must be in [0, 1]";
	if (bad == NULL && o->class_weights)
		for (int i = 0; i < C; i++)
			if (!(o->class_weights[i] >= 0.0f) || !isfinite(o->class_weights[i]))
				bad = "class weights must be finite numbers >= 0";
	if (bad)
	{
		set_error(errbuf, errlen, "%s", bad);
		return -1;
	}
	return 0;
}

/* The trained segments in layout order with HF Trainer's decay rule (train.c's param_segments). */
static void
make_segments(PgbertGpuTrainer *t)
{
	const PgbertGpuModelDesc *d = &t->m->d;
	size_t		H = d->hidden,
				I = d->intermediate,
				L = d->layers;
	struct
	{
		size_t		off,
					n;
		int			decay;
	}			v[] = {
		{d->word_emb, (size_t) d->vocab * H, 1}, {d->pos_emb, (size_t) d->max_position * H, 1},
		{d->type_emb, (size_t) d->type_vocab * H, 1}, {d->emb_ln_w, H, 0}, {d->emb_ln_b, H, 0},
		{d->qkv_w, L * 3 * H * H, 1}, {d->qkv_b, L * 3 * H, 0},
		{d->attn_out_w, L * H * H, 1}, {d->attn_out_b, L * H, 0},
		{d->attn_ln_w, L * H, 0}, {d->attn_ln_b, L * H, 0},
		{d->ffn_in_w, L * I * H, 1}, {d->ffn_in_b, L * I, 0},
		{d->ffn_out_w, L * H * I, 1}, {d->ffn_out_b, L * H, 0},
		{d->ffn_ln_w, L * H, 0}, {d->ffn_ln_b, L * H, 0},
		{d->pool_w, H * H, 1}, {d->pool_b, H, 0},
		{d->cls_w, (size_t) d->num_classes * H, 1}, {d->cls_b, (size_t) d->num_classes, 0},
	};

	t->n_seg = 0;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (v[i].n > 0 && v[i].off >= t->train_off)
		{
			t->seg[t->n_seg].off = v[i].off;
			t->seg[t->n_seg].n = v[i].n;
			t->seg[t->n_seg].decay = v[i].decay;
			t->n_seg++;
		}
}

extern "C" void
pgbert_gpu_trainer_free(PgbertGpuTrainer *t)
{
	PgbertGpuContext *ctx;

	if (t == NULL)
		return;
	ctx = t->m->ctx;
	(void) cudaSetDevice(ctx->ordinal);
	(void) cudaStreamSynchronize(ctx->stream);
	gpu_free(ctx, t->grads, t->vec_bytes);
	gpu_free(ctx, t->adam_m, t->vec_bytes);
	gpu_free(ctx, t->adam_v, t->vec_bytes);
	gpu_free(ctx, t->norm, t->norm_bytes);
	gpu_free(ctx, t->snap, t->snap_bytes);
	gpu_free(ctx, t->ws, t->ws_bytes);
	if (t->h_stage)
		(void) cudaFreeHost(t->h_stage);
	if (t->h_io)
		(void) cudaFreeHost(t->h_io);
	if (t->h_norm)
		(void) cudaFreeHost(t->h_norm);
	(void) cudaGetLastError();
	free(t->class_weights);
	free(t);
}

extern "C" PgbertGpuTrainer *
pgbert_gpu_trainer_create(PgbertGpuModel *m, const PgbertGpuTrainOptions *opts, char *errbuf, size_t errlen)
{
	PgbertGpuTrainer *t;
	const PgbertGpuModelDesc *d;
	PgbertGpuContext *ctx;
	cudaError_t err;

	if (m == NULL || opts == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_trainer_create: null argument");
		return NULL;
	}
	d = &m->d;
	ctx = m->ctx;
	if (!d->has_pooler || !d->has_classifier)
	{
		set_error(errbuf, errlen, "the model has no %s; give it one before training",
				  d->has_classifier ? "pooler" : "classification head");
		return NULL;
	}
	if (d->num_classes < 2)
	{
		set_error(errbuf, errlen, "a classification head of %d output cannot be trained with cross-entropy",
				  d->num_classes);
		return NULL;
	}
	if (d->hidden > 4096)
	{
		set_error(errbuf, errlen, "the gpu trainer takes hidden sizes up to 4096, not %d", d->hidden);
		return NULL;
	}
	if (check_train_options(opts, d->num_classes, errbuf, errlen) != 0)
		return NULL;
	t = static_cast<PgbertGpuTrainer *>(calloc(1, sizeof(PgbertGpuTrainer)));
	if (t == NULL)
	{
		set_error(errbuf, errlen, "out of host memory for a gpu trainer");
		return NULL;
	}
	t->m = m;
	t->o = *opts;
	t->o.class_weights = NULL;
	if (opts->class_weights)
	{
		t->class_weights = static_cast<float *>(malloc(sizeof(float) * d->num_classes));
		if (t->class_weights == NULL)
		{
			set_error(errbuf, errlen, "out of host memory for a gpu trainer");
			goto fail;
		}
		memcpy(t->class_weights, opts->class_weights, sizeof(float) * d->num_classes);
		t->o.class_weights = t->class_weights;
	}
	t->train_off = opts->freeze_encoder ? d->cls_w : 0;
	t->train_n = d->num_params - t->train_off;
	make_segments(t);

	if ((err = cudaSetDevice(ctx->ordinal)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaSetDevice", err);
		goto fail;
	}
	t->vec_bytes = t->train_n * sizeof(float);
	if (gpu_alloc(ctx, (void **) &t->grads, t->vec_bytes, "the gradients", errbuf, errlen) != 0 ||
		gpu_alloc(ctx, (void **) &t->adam_m, t->vec_bytes, "adamw's first moments", errbuf, errlen) != 0 ||
		gpu_alloc(ctx, (void **) &t->adam_v, t->vec_bytes, "adamw's second moments", errbuf, errlen) != 0)
		goto fail;
	t->norm_bytes = (TRAIN_NORM_BLOCKS + 1) * sizeof(double);
	if (gpu_alloc(ctx, (void **) &t->norm, t->norm_bytes, "the gradient norm", errbuf, errlen) != 0)
	{
		t->norm = NULL;
		goto fail;
	}
	if ((err = cudaHostAlloc((void **) &t->h_norm, sizeof(double), cudaHostAllocDefault)) != cudaSuccess)
	{
		t->h_norm = NULL;
		set_cuda_error(errbuf, errlen, "cudaHostAlloc of the gradient norm", err);
		goto fail;
	}
	if ((err = cudaMemsetAsync(t->grads, 0, t->vec_bytes, ctx->stream)) != cudaSuccess ||
		(err = cudaMemsetAsync(t->adam_m, 0, t->vec_bytes, ctx->stream)) != cudaSuccess ||
		(err = cudaMemsetAsync(t->adam_v, 0, t->vec_bytes, ctx->stream)) != cudaSuccess ||
		(err = cudaStreamSynchronize(ctx->stream)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "zeroing the optimizer state", err);
		goto fail;
	}
	return t;

fail:
	/* gpu_alloc leaves NULL behind on failure, so the sizes of what was not allocated do not matter */
	pgbert_gpu_trainer_free(t);
	return NULL;
}

extern "C" int
pgbert_gpu_trainer_steps(const PgbertGpuTrainer *t)
{
	return t ? t->steps : 0;
}

/* ---- planning ---- */

/*
 * Buckets (gpu_batch_plan.cu's rule, as the inference pass's), the staging
 * and the workspace. order receives the sequence order. 0, or -1 when out
 * of host memory.
 */
static int
make_train_plan(const PgbertGpuTrainer *t, int n_seq, const int *offsets, TPlan *pl, int *order)
{
	const PgbertGpuModelDesc *d = &t->m->d;
	size_t		H = d->hidden,
				I = d->intermediate,
				L = d->layers,
				NH = d->heads,
				dh = d->hidden / d->heads,
				C = d->num_classes,
				sz = tin_size(t->m),
				T,
				n = n_seq,
				o;

	memset(pl, 0, sizeof(*pl));
	pl->T = offsets[n_seq];
	pl->n = n_seq;
	T = pl->T;
	pl->bk = static_cast<TBucket *>(malloc(sizeof(TBucket) * n_seq));
	if (pl->bk == NULL)
		return -1;
	sort_longest_first(n_seq, offsets, order);

	o = 0;
	pl->s_ids = o;
	o += T * sizeof(int);
	pl->s_types = o;
	o += T * sizeof(int);
	pl->s_pos = o;
	o += T * sizeof(int);
	pl->s_cls = o;
	o += n * sizeof(int);
	for (int s = 0; s < n_seq;)
	{
		int			P = bucket_padded_len(offsets[order[s] + 1] - offsets[order[s]]);
		size_t		per_seq = NH * (size_t) P * (dh * (5 * sz + 3 * sizeof(float)) +
												 (size_t) P * (sizeof(float) + 2 * sz));
		int			B = bucket_take(n_seq, offsets, order, s, P, per_seq);
		TBucket    *bk = &pl->bk[pl->nb++];

		bk->B = B;
		bk->P = P;
		bk->slots = o;
		o += (size_t) B * P * sizeof(int);
		bk->lens = o;
		o += (size_t) B * sizeof(int);
		o = (o + 7) & ~(size_t) 7;
		bk->pbase = o;
		o += (size_t) B * sizeof(unsigned long long);
		bk->probs = pl->probs_layer;
		pl->probs_layer += (size_t) B * NH * P * P;
		if ((size_t) B * NH * P * dh > pl->max_qkv)
			pl->max_qkv = (size_t) B * NH * P * dh;
		if ((size_t) B * NH * P * P > pl->max_scores)
			pl->max_scores = (size_t) B * NH * P * P;
		s += B;
	}
	pl->s_bytes = o;

	pl->st_in = talign(T * H * sz);
	pl->st_qkv = talign(T * 3 * H * sizeof(float));
	pl->st_probs = talign(pl->probs_layer * sizeof(float));
	pl->st_res = talign(T * H * sizeof(float));
	pl->st_stat = talign(T * sizeof(float));
	pl->st_ffn = talign(T * I * sizeof(float));

	o = 0;
#define TAKE(field, bytes) do { pl->field = o; o += talign(bytes); } while (0)
	TAKE(emb, T * H * sizeof(float));
	TAKE(emb_mean, T * sizeof(float));
	TAKE(emb_rstd, T * sizeof(float));
	TAKE(xin, (L + 1) * pl->st_in);
	TAKE(qkv, L * pl->st_qkv);
	TAKE(probs, L * pl->st_probs);
	TAKE(ctx, L * pl->st_in);
	TAKE(res1, L * pl->st_res);
	TAKE(mean1, L * pl->st_stat);
	TAKE(rstd1, L * pl->st_stat);
	TAKE(x1, L * pl->st_in);
	TAKE(ffn, L * pl->st_ffn);
	TAKE(res2, L * pl->st_res);
	TAKE(mean2, L * pl->st_stat);
	TAKE(rstd2, L * pl->st_stat);
	TAKE(cls, n * H * sizeof(float));
	TAKE(pooled, n * H * sizeof(float));
	TAKE(pooled_drop, n * H * sizeof(float));
	TAKE(logits, n * C * sizeof(float));
	TAKE(dlogits, n * C * sizeof(float));
	TAKE(xs, T * H * sizeof(float));
	TAKE(y, T * H * sizeof(float));
	TAKE(act, T * I * sz);
	TAKE(q, pl->max_qkv * sz);
	TAKE(k, pl->max_qkv * sz);
	TAKE(v, pl->max_qkv * sz);
	TAKE(ctxp, pl->max_qkv * sz);
	TAKE(scores, pl->max_scores * sizeof(float));
	TAKE(pin, pl->max_scores * sz);
	TAKE(g_pooled, n * H * sizeof(float));
	TAKE(g_cls, n * H * sizeof(float));
	TAKE(g_x, T * H * sizeof(float));
	TAKE(g_t, T * H * sizeof(float));
	TAKE(g_c, T * H * sizeof(float));
	TAKE(g_br, T * H * sz);
	TAKE(g_ffn, T * I * sizeof(float));
	TAKE(g_ffn_in, T * I * sz);
	TAKE(g_qkv, T * 3 * H * sizeof(float));
	TAKE(g_qkv_in, T * 3 * H * sz);
	TAKE(dcp, pl->max_qkv * sz);
	TAKE(dq, pl->max_qkv * sizeof(float));
	TAKE(dk, pl->max_qkv * sizeof(float));
	TAKE(dv, pl->max_qkv * sizeof(float));
	TAKE(ds, pl->max_scores * sz);
	TAKE(ints, pl->s_bytes);
#undef TAKE
	pl->total = o;
	return 0;
}

/* Writes the batch's integers into the pinned staging as the plan lays them out. */
static void
fill_train_staging(PgbertGpuTrainer *t, const TPlan *pl, const int *order, const int *offsets, const int *ids,
				   const int *type_ids, const unsigned long long *prefix)
{
	char	   *st = t->h_stage;
	int		   *s_ids = (int *) (st + pl->s_ids),
			   *s_types = (int *) (st + pl->s_types),
			   *s_pos = (int *) (st + pl->s_pos),
			   *s_cls = (int *) (st + pl->s_cls);
	int			s0 = 0;

	stage_tokens(pl->n, offsets, ids, type_ids, s_ids, s_types, s_pos, s_cls);
	for (int bi = 0; bi < pl->nb; bi++)
	{
		const TBucket *bk = &pl->bk[bi];
		unsigned long long *pbase = (unsigned long long *) (st + bk->pbase);

		stage_bucket(bk->B, bk->P, order + s0, offsets, (int *) (st + bk->slots), (int *) (st + bk->lens));
		for (int b = 0; b < bk->B; b++)
			pbase[b] = prefix[order[s0 + b]];
		s0 += bk->B;
	}
}

/* Grows the workspace and the pinned buffers to the plan. 0, or -1 + message. */
static int
reserve_train(PgbertGpuTrainer *t, const TPlan *pl, char *errbuf, size_t errlen)
{
	PgbertGpuContext *ctx = t->m->ctx;
	size_t		io = 2 * (size_t) pl->n * t->m->d.num_classes;

	if (pl->total > t->ws_bytes)
	{
		(void) cudaStreamSynchronize(ctx->stream);
		if (grow_workspace(ctx, &t->ws, &t->ws_bytes, pl->total, "a training batch's activations", errbuf,
						   errlen) != 0)
			return -1;
	}
	if (pl->s_bytes > t->h_stage_cap)
	{
		(void) cudaStreamSynchronize(ctx->stream);
		if (grow_pinned((void **) &t->h_stage, &t->h_stage_cap, pl->s_bytes, 1, 4096, "the training batch staging",
						errbuf, errlen) != 0)
			return -1;
	}
	if (io > t->h_io_cap)
	{
		(void) cudaStreamSynchronize(ctx->stream);
		if (grow_pinned((void **) &t->h_io, &t->h_io_cap, io, sizeof(float), 1024, "the logits staging", errbuf,
						errlen) != 0)
			return -1;
	}
	return 0;
}

/* ---- the products, row-major ---- */

/* dx (rows, K) = dy (rows, O) @ w (O, K), plus beta dx */
static cublasStatus_t
mm_dx(cublasHandle_t h, cudaDataType_t t, float *dx, const void *dy, const void *w, int rows, int O, int K,
	  float beta)
{
	const float one = 1.0f;

	return cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, K, rows, O, &one, w, t, K, dy, t, O, &beta,
						dx, CUDA_R_32F, K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

/* dw (O, K) += dy (rows, O)^T @ x (rows, K) */
static cublasStatus_t
mm_dw(cublasHandle_t h, cudaDataType_t t, float *dw, const void *dy, const void *x, int rows, int O, int K)
{
	const float one = 1.0f;

	return cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, K, O, rows, &one, x, t, K, dy, t, O, &one,
						dw, CUDA_R_32F, K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

/* Per (sequence, head) of a bucket, col-major views of row-major (P, d) and (P, P) blocks. */
static cublasStatus_t
mm_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
		   const void *a, cudaDataType_t at, int lda, long long sa, const void *b, cudaDataType_t bt, int ldb,
		   long long sb, void *c, cudaDataType_t ct, int ldc, long long sc, int count)
{
	const float zero = 0.0f;

	return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &alpha, a, at, lda, sa, b, bt, ldb, sb, &zero,
									  c, ct, ldc, sc, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

#define BLAS(call) do { cublasStatus_t st_ = (call); if (st_ != CUBLAS_STATUS_SUCCESS) { \
		set_cublas_error(errbuf, errlen, #call, st_); return -1; } } while (0)

/* Views of one plan's workspace. */
#define WS(T_, field) ((T_ *) (t->ws + pl->field))

/* ---- what both passes of a batch read ---- */

/* The sizes, the stream and handle, and the batch's integers that the forward and the backward both use. */
typedef struct TrainPass
{
	const PgbertGpuModelDesc *d;
	const float *fp;			/* the float32 parameters */
	cudaStream_t s;
	cublasHandle_t h;
	cudaDataType_t tin;			/* the products' input type */
	int			T,
				n,
				H,
				I,
				NH,
				dh,
				C;
	size_t		HH;
	float		scale;			/* of the attention scores: 1 / sqrt(dh) */
	const char *ints;			/* the batch's integers in the workspace */
	const int  *ids,
			   *types,
			   *pos,
			   *clsrows;
} TrainPass;

/* A batch's TrainPass, for products fed Tin. */
template <typename Tin>
static TrainPass
train_pass(const PgbertGpuTrainer *t, const TPlan *pl)
{
	const PgbertGpuModel *m = t->m;
	TrainPass	tp;

	tp.d = &m->d;
	tp.fp = m->params;
	tp.s = m->ctx->stream;
	tp.h = m->ctx->handle;
	tp.tin = sizeof(Tin) == 2 ? CUDA_R_16BF : CUDA_R_32F;
	tp.T = pl->T;
	tp.n = pl->n;
	tp.H = m->d.hidden;
	tp.I = m->d.intermediate;
	tp.NH = m->d.heads;
	tp.dh = tp.H / tp.NH;
	tp.C = m->d.num_classes;
	tp.HH = (size_t) tp.H * tp.H;
	tp.scale = 1.0f / sqrtf((float) tp.dh);
	tp.ints = t->ws + pl->ints;
	tp.ids = (const int *) (tp.ints + pl->s_ids);
	tp.types = (const int *) (tp.ints + pl->s_types);
	tp.pos = (const int *) (tp.ints + pl->s_pos);
	tp.clsrows = (const int *) (tp.ints + pl->s_cls);
	return tp;
}

/* One layer's activations that the forward saves for the backward, and its output (the next layer's input). */
template <typename Tin>
struct TLayerSaved
{
	Tin		   *xin,
			   *xout,
			   *ctx,
			   *x1;
	float	   *qkv,
			   *probs,
			   *res1,
			   *res2,
			   *ffn,
			   *mean1,
			   *rstd1,
			   *mean2,
			   *rstd2;
};

/* Where layer l's saved activations sit in the plan's workspace. */
template <typename Tin>
static TLayerSaved<Tin>
layer_saved(const PgbertGpuTrainer *t, const TPlan *pl, int l)
{
	TLayerSaved<Tin> a;

	a.xin = (Tin *) (t->ws + pl->xin + l * pl->st_in);
	a.xout = (Tin *) (t->ws + pl->xin + (l + 1) * pl->st_in);
	a.ctx = (Tin *) (t->ws + pl->ctx + l * pl->st_in);
	a.x1 = (Tin *) (t->ws + pl->x1 + l * pl->st_in);
	a.qkv = (float *) (t->ws + pl->qkv + l * pl->st_qkv);
	a.probs = (float *) (t->ws + pl->probs + l * pl->st_probs);
	a.res1 = (float *) (t->ws + pl->res1 + l * pl->st_res);
	a.res2 = (float *) (t->ws + pl->res2 + l * pl->st_res);
	a.ffn = (float *) (t->ws + pl->ffn + l * pl->st_ffn);
	a.mean1 = (float *) (t->ws + pl->mean1 + l * pl->st_stat);
	a.rstd1 = (float *) (t->ws + pl->rstd1 + l * pl->st_stat);
	a.mean2 = (float *) (t->ws + pl->mean2 + l * pl->st_stat);
	a.rstd2 = (float *) (t->ws + pl->rstd2 + l * pl->st_stat);
	return a;
}

/* A bucket's integers in the workspace: slot tokens, lengths, probability offsets in the engine's layout. */
typedef struct TBucketInts
{
	const int  *slots,
			   *lens;
	const unsigned long long *pbase;
} TBucketInts;

/* Where a bucket's integers sit in the workspace. */
static TBucketInts
bucket_ints(const TrainPass *tp, const TBucket *bk)
{
	TBucketInts bi;

	bi.slots = (const int *) (tp->ints + bk->slots);
	bi.lens = (const int *) (tp->ints + bk->lens);
	bi.pbase = (const unsigned long long *) (tp->ints + bk->pbase);
	return bi;
}

/* ---- training forward ---- */

/* Encoder layer l of the training forward, x[l] to x[l + 1], saving what the backward reads. */
template <typename Tin>
static int
train_forward_layer(PgbertGpuTrainer *t, const TPlan *pl, const Tin *wp, const TrainPass *tp, int l,
					char *errbuf, size_t errlen)
{
	const PgbertGpuModelDesc *d = tp->d;
	const float *fp = tp->fp;
	cudaStream_t s = tp->s;
	cublasHandle_t h = tp->h;
	cudaDataType_t tin = tp->tin;
	int			T = tp->T,
				H = tp->H,
				I = tp->I,
				NH = tp->NH,
				dh = tp->dh;
	size_t		HH = tp->HH;
	float		eps = d->layer_norm_eps;
	TLayerSaved<Tin> a = layer_saved<Tin>(t, pl, l);
	float	   *xs = WS(float, xs),
			   *y = WS(float, y),
			   *scores = WS(float, scores);
	Tin		   *act = WS(Tin, act),
			   *q = WS(Tin, q),
			   *k = WS(Tin, k),
			   *v = WS(Tin, v),
			   *ctxp = WS(Tin, ctxp),
			   *pin = WS(Tin, pin);
	TrainDrop	ad = drop_at(t, t->o.attention_dropout, SITE_LAYER + 3 * l);

	/* attention block: x1 = LayerNorm(x + dropout(dense(attention(qkv(x))))) */
	BLAS(gemm_dense(h, tin, CUDA_R_32F, a.qkv, a.xin, wp + d->qkv_w + (size_t) l * 3 * HH, T, 3 * H, H));
	for (int bi = 0; bi < pl->nb; bi++)
	{
		const TBucket *bk = &pl->bk[bi];
		TBucketInts bki = bucket_ints(tp, bk);
		int			P = bk->P,
					nb = bk->B * NH;

		launch_scatter_qkv<Tin>(s, q, k, v, a.qkv, fp + d->qkv_b + (size_t) l * 3 * H, bki.slots, bk->B, P, H, NH);
		/* scores (P, P) = scale q k^T, as col-major scores^T = k q^T */
		BLAS(mm_batched(h, CUBLAS_OP_T, CUBLAS_OP_N, P, P, dh, tp->scale, k, tin, dh, (long long) P * dh,
						q, tin, dh, (long long) P * dh, scores, CUDA_R_32F, P, (long long) P * P, nb));
		launch_masked_softmax<float>(s, a.probs + bk->probs, scores, bki.lens, bk->B, NH, P);
		launch_train_attn_dropout<Tin>(s, pin, a.probs + bk->probs, bki.lens, bki.pbase, bk->B, NH, P, ad);
		/* ctx (P, d) = dropout(probs) v */
		BLAS(mm_batched(h, CUBLAS_OP_N, CUBLAS_OP_N, dh, P, P, 1.0f, v, tin, dh, (long long) P * dh,
						pin, tin, P, (long long) P * P, ctxp, tin, dh, (long long) P * dh, nb));
		launch_gather_ctx<Tin>(s, a.ctx, ctxp, bki.slots, bk->B, P, H, NH);
	}
	BLAS(gemm_dense(h, tin, CUDA_R_32F, y, a.ctx, wp + d->attn_out_w + (size_t) l * HH, T, H, H));
	launch_train_residual_ln<Tin>(s, a.res1, a.mean1, a.rstd1, xs, a.x1, y, fp + d->attn_out_b + (size_t) l * H,
								  fp + d->attn_ln_w + (size_t) l * H, fp + d->attn_ln_b + (size_t) l * H,
								  T, H, eps, drop_at(t, t->o.hidden_dropout, SITE_LAYER + 3 * l + 1));

	/* feed-forward block: x[l + 1] = LayerNorm(x1 + dropout(dense(gelu(dense(x1))))) */
	BLAS(gemm_dense(h, tin, CUDA_R_32F, a.ffn, a.x1, wp + d->ffn_in_w + (size_t) l * I * H, T, I, H));
	launch_train_gelu<Tin>(s, act, a.ffn, fp + d->ffn_in_b + (size_t) l * I, T, I, d->gelu_tanh);
	BLAS(gemm_dense(h, tin, CUDA_R_32F, y, act, wp + d->ffn_out_w + (size_t) l * H * I, T, H, I));
	launch_train_residual_ln<Tin>(s, a.res2, a.mean2, a.rstd2, xs, a.xout, y, fp + d->ffn_out_b + (size_t) l * H,
								  fp + d->ffn_ln_w + (size_t) l * H, fp + d->ffn_ln_b + (size_t) l * H,
								  T, H, eps, drop_at(t, t->o.hidden_dropout, SITE_LAYER + 3 * l + 2));
	return 0;
}

/* The training forward of a staged batch, from its copy to the device to the logits. */
template <typename Tin>
static int
train_forward(PgbertGpuTrainer *t, const TPlan *pl, const Tin *wp, char *errbuf, size_t errlen)
{
	const TrainPass tp = train_pass<Tin>(t, pl);
	const PgbertGpuModelDesc *d = tp.d;
	const float *fp = tp.fp;
	cudaStream_t s = tp.s;
	cublasHandle_t h = tp.h;
	int			n = tp.n,
				H = tp.H;
	cudaError_t err;

	err = cudaMemcpyAsync(t->ws + pl->ints, t->h_stage, pl->s_bytes, cudaMemcpyHostToDevice, s);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "copying the training batch to the gpu", err);
		return -1;
	}

	/* embeddings: x[0] = dropout(LayerNorm(word + position + type)) */
	launch_train_embed_ln<Tin>(s, WS(float, emb), WS(float, emb_mean), WS(float, emb_rstd), WS(float, xs),
							   WS(Tin, xin), tp.ids, tp.types, tp.pos, fp + d->word_emb, fp + d->pos_emb,
							   fp + d->type_emb, fp + d->emb_ln_w, fp + d->emb_ln_b, tp.T, H, d->layer_norm_eps,
							   drop_at(t, t->o.hidden_dropout, SITE_EMB));
	for (int l = 0; l < d->layers; l++)
		if (train_forward_layer<Tin>(t, pl, wp, &tp, l, errbuf, errlen) != 0)
			return -1;

	/* head, in float32: logits = classifier(dropout(tanh(pooler(hidden state of [CLS])))) */
	launch_gather_rows(s, WS(float, cls), WS(float, xs), tp.clsrows, n, H);
	BLAS(gemm_dense(h, CUDA_R_32F, CUDA_R_32F, WS(float, pooled), WS(float, cls), fp + d->pool_w, n, H, H));
	launch_bias_act(s, WS(float, pooled), fp + d->pool_b, n, H, 1);
	launch_train_dropout_copy(s, WS(float, pooled_drop), WS(float, pooled), (size_t) n * H,
							  drop_at(t, t->o.hidden_dropout, SITE_CLS));
	BLAS(gemm_dense(h, CUDA_R_32F, CUDA_R_32F, WS(float, logits), WS(float, pooled_drop), fp + d->cls_w, n, tp.C,
					H));
	launch_bias_act(s, WS(float, logits), fp + d->cls_b, n, tp.C, 0);
	err = cudaGetLastError();
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "launching the training forward pass", err);
		return -1;
	}
	return 0;
}

/* ---- backward ---- */

/* The gradient of the parameter at offset off (a trained one). */
#define GRAD(off) (t->grads + ((off) - t->train_off))

/*
 * The classifier's gradients and, unless the encoder is frozen, the
 * pooler's, leaving in g_x the gradient of the final hidden state.
 */
static int
train_backward_head(PgbertGpuTrainer *t, const TPlan *pl, const TrainPass *tp, char *errbuf, size_t errlen)
{
	const PgbertGpuModelDesc *d = tp->d;
	cudaStream_t s = tp->s;
	cublasHandle_t h = tp->h;
	int			n = tp->n,
				H = tp->H,
				C = tp->C;
	float	   *dlogits = WS(float, dlogits),
			   *g_pooled = WS(float, g_pooled),
			   *g_cls = WS(float, g_cls),
			   *g_x = WS(float, g_x);
	cudaError_t err;

	/* classifier: logits = pooled_drop @ cls_w^T + cls_b */
	BLAS(mm_dw(h, CUDA_R_32F, GRAD(d->cls_w), dlogits, WS(float, pooled_drop), n, C, H));
	launch_train_colsum(s, GRAD(d->cls_b), dlogits, n, C);
	if (t->o.freeze_encoder)
		return 0;

	/* pooler: pooled = tanh(cls @ pool_w^T + pool_b), then the classifier's dropout */
	BLAS(mm_dx(h, CUDA_R_32F, g_pooled, dlogits, tp->fp + d->cls_w, n, C, H, 0.0f));
	launch_train_tanh_backward(s, g_pooled, WS(float, pooled), GRAD(d->pool_b), n, H,
							   drop_at(t, t->o.hidden_dropout, SITE_CLS));
	BLAS(mm_dw(h, CUDA_R_32F, GRAD(d->pool_w), g_pooled, WS(float, cls), n, H, H));
	BLAS(mm_dx(h, CUDA_R_32F, g_cls, g_pooled, tp->fp + d->pool_w, n, H, H, 0.0f));

	/* g_x = gradient of the final hidden state: nonzero on the [CLS] rows only */
	if ((err = cudaMemsetAsync(g_x, 0, (size_t) tp->T * H * sizeof(float), s)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaMemsetAsync", err);
		return -1;
	}
	launch_train_scatter_rows(s, g_x, g_cls, tp->clsrows, n, H);
	return 0;
}

/*
 * The backward of attention's buckets in layer l: from g_c, the gradient of
 * the gathered context, to g_qkv (float) and g_qkv_in (Tin), the gradient
 * of the QKV product's output.
 */
template <typename Tin>
static int
train_backward_attention(PgbertGpuTrainer *t, const TPlan *pl, const TrainPass *tp, const TLayerSaved<Tin> *a,
						 int l, char *errbuf, size_t errlen)
{
	const PgbertGpuModelDesc *d = tp->d;
	cudaStream_t s = tp->s;
	cublasHandle_t h = tp->h;
	cudaDataType_t tin = tp->tin;
	int			H = tp->H,
				NH = tp->NH,
				dh = tp->dh;
	float		scale = tp->scale;
	float	   *g_c = WS(float, g_c),
			   *g_qkv = WS(float, g_qkv),
			   *dq = WS(float, dq),
			   *dk = WS(float, dk),
			   *dv = WS(float, dv),
			   *dp = WS(float, scores);
	Tin		   *g_qkv_in = WS(Tin, g_qkv_in),
			   *q = WS(Tin, q),
			   *k = WS(Tin, k),
			   *v = WS(Tin, v),
			   *pv = WS(Tin, pin),
			   *dcp = WS(Tin, dcp),
			   *ds = WS(Tin, ds);
	TrainDrop	ad = drop_at(t, t->o.attention_dropout, SITE_LAYER + 3 * l);

	for (int bi = 0; bi < pl->nb; bi++)
	{
		const TBucket *bk = &pl->bk[bi];
		TBucketInts bki = bucket_ints(tp, bk);
		int			P = bk->P,
					nb = bk->B * NH;
		long long	sq = (long long) P * dh,
					ss = (long long) P * P;
		const float *pb = a->probs + bk->probs;

		launch_scatter_qkv<Tin>(s, q, k, v, a->qkv, tp->fp + d->qkv_b + (size_t) l * 3 * H, bki.slots, bk->B, P,
								H, NH);
		launch_train_scatter_heads<Tin>(s, dcp, g_c, bki.slots, bk->B, P, H, NH);
		launch_train_attn_dropout<Tin>(s, pv, pb, bki.lens, bki.pbase, bk->B, NH, P, ad);
		/* dv (P, d) = pv^T dctx */
		BLAS(mm_batched(h, CUBLAS_OP_N, CUBLAS_OP_T, dh, P, P, 1.0f, dcp, tin, dh, sq, pv, tin, P, ss,
						dv, CUDA_R_32F, dh, sq, nb));
		/* dpv (P, P) = dctx v^T */
		BLAS(mm_batched(h, CUBLAS_OP_T, CUBLAS_OP_N, P, P, dh, 1.0f, v, tin, dh, sq, dcp, tin, dh, sq,
						dp, CUDA_R_32F, P, ss, nb));
		launch_train_softmax_backward<Tin>(s, ds, dp, pb, bki.lens, bki.pbase, bk->B, NH, P, ad);
		/* dq (P, d) = scale ds k; dk (P, d) = scale ds^T q */
		BLAS(mm_batched(h, CUBLAS_OP_N, CUBLAS_OP_N, dh, P, P, scale, k, tin, dh, sq, ds, tin, P, ss,
						dq, CUDA_R_32F, dh, sq, nb));
		BLAS(mm_batched(h, CUBLAS_OP_N, CUBLAS_OP_T, dh, P, P, scale, q, tin, dh, sq, ds, tin, P, ss,
						dk, CUDA_R_32F, dh, sq, nb));
		launch_train_gather_qkv<Tin>(s, g_qkv, g_qkv_in, dq, dk, dv, bki.slots, bk->B, P, H, NH);
	}
	return 0;
}

/* The backward of encoder layer l: g_x holds d x[l + 1] on entry and d x[l] on return. */
template <typename Tin>
static int
train_backward_layer(PgbertGpuTrainer *t, const TPlan *pl, const Tin *wp, const TrainPass *tp, int l,
					 char *errbuf, size_t errlen)
{
	const PgbertGpuModelDesc *d = tp->d;
	int			T = tp->T,
				H = tp->H,
				I = tp->I;
	size_t		HH = tp->HH,
				lH = (size_t) l * H;
	const TLayerSaved<Tin> a = layer_saved<Tin>(t, pl, l);
	float	   *g_x = WS(float, g_x),
			   *g_t = WS(float, g_t),
			   *g_c = WS(float, g_c),
			   *g_ffn = WS(float, g_ffn);
	Tin		   *act = WS(Tin, act),
			   *g_br = WS(Tin, g_br),
			   *g_ffn_in = WS(Tin, g_ffn_in);

	/* feed-forward block; g_x holds d x[l + 1]; g_t gets d x1 through the residual */
	launch_train_ln_backward<Tin>(tp->s, g_t, g_br, GRAD(d->ffn_ln_w) + lH, GRAD(d->ffn_ln_b) + lH,
								  GRAD(d->ffn_out_b) + lH, g_x, a.res2, a.mean2, a.rstd2, tp->fp + d->ffn_ln_w + lH,
								  T, H, no_drop, drop_at(t, t->o.hidden_dropout, SITE_LAYER + 3 * l + 2));
	launch_train_gelu<Tin>(tp->s, act, a.ffn, NULL, T, I, d->gelu_tanh);	/* recomputed, not saved */
	BLAS(mm_dx(tp->h, tp->tin, g_ffn, g_br, wp + d->ffn_out_w + (size_t) l * H * I, T, H, I, 0.0f));
	BLAS(mm_dw(tp->h, tp->tin, GRAD(d->ffn_out_w) + (size_t) l * H * I, g_br, act, T, H, I));
	launch_train_gelu_backward<Tin>(tp->s, g_ffn_in, g_ffn, a.ffn, GRAD(d->ffn_in_b) + (size_t) l * I, T, I,
									d->gelu_tanh);
	BLAS(mm_dx(tp->h, tp->tin, g_t, g_ffn_in, wp + d->ffn_in_w + (size_t) l * I * H, T, I, H, 1.0f));
	BLAS(mm_dw(tp->h, tp->tin, GRAD(d->ffn_in_w) + (size_t) l * I * H, g_ffn_in, a.x1, T, I, H));

	/* attention block; g_t holds d x1; g_x gets d x through the residual */
	launch_train_ln_backward<Tin>(tp->s, g_x, g_br, GRAD(d->attn_ln_w) + lH, GRAD(d->attn_ln_b) + lH,
								  GRAD(d->attn_out_b) + lH, g_t, a.res1, a.mean1, a.rstd1,
								  tp->fp + d->attn_ln_w + lH, T, H, no_drop,
								  drop_at(t, t->o.hidden_dropout, SITE_LAYER + 3 * l + 1));
	BLAS(mm_dx(tp->h, tp->tin, g_c, g_br, wp + d->attn_out_w + (size_t) l * HH, T, H, H, 0.0f));
	BLAS(mm_dw(tp->h, tp->tin, GRAD(d->attn_out_w) + (size_t) l * HH, g_br, a.ctx, T, H, H));
	if (train_backward_attention<Tin>(t, pl, tp, &a, l, errbuf, errlen) != 0)
		return -1;
	launch_train_colsum(tp->s, GRAD(d->qkv_b) + (size_t) l * 3 * H, WS(float, g_qkv), T, 3 * H);
	BLAS(mm_dx(tp->h, tp->tin, g_x, WS(Tin, g_qkv_in), wp + d->qkv_w + (size_t) l * 3 * HH, T, 3 * H, H, 1.0f));
	BLAS(mm_dw(tp->h, tp->tin, GRAD(d->qkv_w) + (size_t) l * 3 * HH, WS(Tin, g_qkv_in), a.xin, T, 3 * H, H));
	return 0;
}

/* The embeddings' gradients; g_x holds d x[0], the dropout after their LayerNorm comes first. */
template <typename Tin>
static void
train_backward_embeddings(PgbertGpuTrainer *t, const TPlan *pl, const TrainPass *tp)
{
	const PgbertGpuModelDesc *d = tp->d;
	float	   *g_t = WS(float, g_t);

	launch_train_ln_backward<Tin>(tp->s, g_t, (Tin *) NULL, GRAD(d->emb_ln_w), GRAD(d->emb_ln_b), NULL,
								  WS(float, g_x), WS(float, emb), WS(float, emb_mean), WS(float, emb_rstd),
								  tp->fp + d->emb_ln_w, tp->T, tp->H, drop_at(t, t->o.hidden_dropout, SITE_EMB),
								  no_drop);
	launch_train_embed_backward(tp->s, GRAD(d->word_emb), GRAD(d->pos_emb), GRAD(d->type_emb), g_t, tp->ids,
								tp->types, tp->pos, tp->T, tp->H, t->o.pad_token_id);
}

/* The backward of a batch whose dlogits are set: gradients added into t->grads. */
template <typename Tin>
static int
train_backward(PgbertGpuTrainer *t, const TPlan *pl, const Tin *wp, char *errbuf, size_t errlen)
{
	const TrainPass tp = train_pass<Tin>(t, pl);
	cudaError_t err;

	if (train_backward_head(t, pl, &tp, errbuf, errlen) != 0)
		return -1;
	if (!t->o.freeze_encoder)
	{
		for (int l = tp.d->layers - 1; l >= 0; l--)
			if (train_backward_layer<Tin>(t, pl, wp, &tp, l, errbuf, errlen) != 0)
				return -1;
		train_backward_embeddings<Tin>(t, pl, &tp);
	}
	err = cudaGetLastError();
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "launching the backward pass", err);
		return -1;
	}
	return 0;
}

/*
 * Mean cross-entropy of logits (n, C) against labels, weighted as torch's
 * CrossEntropyLoss(weight=w): train.c's cross_entropy, in double. dlogits
 * (n, C) = scale * d(loss)/d(logits). Returns the loss.
 */
static double
train_cross_entropy(float *dlogits, const float *logits, const int *labels, const float *w, int n, int C,
					float scale)
{
	double		loss = 0.0,
				wsum = 0.0;

	for (int i = 0; i < n; i++)
		wsum += w ? w[labels[i]] : 1.0;
	for (int i = 0; i < n; i++)
	{
		const float *z = logits + (size_t) i * C;
		float	   *dz = dlogits + (size_t) i * C;
		double		max = z[0],
					sum = 0.0,
					wi = (w ? w[labels[i]] : 1.0) / wsum;

		for (int j = 1; j < C; j++)
			max = z[j] > max ? z[j] : max;
		for (int j = 0; j < C; j++)
			sum += exp(z[j] - max);
		loss += wi * (max + log(sum) - z[labels[i]]);
		for (int j = 0; j < C; j++)
			dz[j] = (float) (scale * wi * (exp(z[j] - max) / sum - (j == labels[i] ? 1.0 : 0.0)));
	}
	return loss;
}

/* The batch and labels are what the model and trainer accept (the CPU trainer's checks). */
static int
check_train_batch(const PgbertGpuTrainer *t, int n_seq, const int *offsets, const int *ids, const int *type_ids,
				  const int *labels, float scale, char *errbuf, size_t errlen)
{
	const PgbertGpuModelDesc *d = &t->m->d;

	if (n_seq < 1 || offsets == NULL || ids == NULL || labels == NULL || offsets[0] != 0)
	{
		set_error(errbuf, errlen, "batch has no sequences");
		return -1;
	}
	if (check_sequence_lengths(n_seq, offsets, d->max_position, errbuf, errlen) != 0)
		return -1;
	for (int i = 0; i < offsets[n_seq]; i++)
	{
		if (ids[i] < 0 || ids[i] >= d->vocab)
		{
			set_error(errbuf, errlen, "token id %d at position %d is outside the vocabulary of %d", ids[i], i,
					  d->vocab);
			return -1;
		}
		if (type_ids && (type_ids[i] < 0 || type_ids[i] >= d->type_vocab))
		{
			set_error(errbuf, errlen, "token type id %d at position %d is outside 0 to %d", type_ids[i], i,
					  d->type_vocab - 1);
			return -1;
		}
	}
	for (int s = 0; s < n_seq; s++)
		if (labels[s] < 0 || labels[s] >= d->num_classes)
		{
			set_error(errbuf, errlen, "label %d of sequence %d is outside 0 to %d", labels[s], s,
					  d->num_classes - 1);
			return -1;
		}
	if (!isfinite(scale))
	{
		set_error(errbuf, errlen, "gradient scale must be finite");
		return -1;
	}
	if (t->class_weights)
	{
		double		wsum = 0.0;

		for (int s = 0; s < n_seq; s++)
			wsum += t->class_weights[labels[s]];
		if (!(wsum > 0.0))
		{
			set_error(errbuf, errlen, "the class weights of the batch's labels sum to 0");
			return -1;
		}
	}
	return 0;
}

/* Waits for the stream and reports any error of the work queued on it. */
static int
sync_check(PgbertGpuContext *ctx, const char *what, char *errbuf, size_t errlen)
{
	cudaError_t err = cudaStreamSynchronize(ctx->stream);

	if (err == cudaSuccess)
		err = cudaGetLastError();
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, what, err);
		return -1;
	}
	return 0;
}

extern "C" int
pgbert_gpu_trainer_accumulate(PgbertGpuTrainer *t, int n_seq, const int *offsets, const int *ids,
							  const int *type_ids, const int *labels, float scale, float *loss_out,
							  char *errbuf, size_t errlen)
{
	PgbertGpuModel *m;
	PgbertGpuContext *ctx;
	TPlan		pl;
	int		   *order = NULL;
	unsigned long long *prefix = NULL;
	int			C,
				rc = -1;
	double		loss;
	cudaError_t err;

	if (t == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_trainer_accumulate: null trainer");
		return -1;
	}
	m = t->m;
	ctx = m->ctx;
	C = m->d.num_classes;
	memset(&pl, 0, sizeof(pl));
	if (check_train_batch(t, n_seq, offsets, ids, type_ids, labels, scale, errbuf, errlen) != 0)
		return -1;
	if ((err = cudaSetDevice(ctx->ordinal)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaSetDevice", err);
		return -1;
	}
	order = static_cast<int *>(malloc(sizeof(int) * n_seq));
	prefix = static_cast<unsigned long long *>(malloc(sizeof(unsigned long long) * n_seq));
	if (order == NULL || prefix == NULL || make_train_plan(t, n_seq, offsets, &pl, order) != 0)
	{
		set_error(errbuf, errlen, "out of host memory planning a training batch of %d sequences", n_seq);
		goto done;
	}
	/* where each sequence's (S, S) blocks start in the engine's packed probabilities */
	{
		unsigned long long acc = 0;

		for (int s = 0; s < n_seq; s++)
		{
			unsigned long long S = (unsigned long long) (offsets[s + 1] - offsets[s]);

			prefix[s] = acc;
			acc += (unsigned long long) m->d.heads * S * S;
		}
	}
	if (reserve_train(t, &pl, errbuf, errlen) != 0)
		goto done;
	fill_train_staging(t, &pl, order, offsets, ids, type_ids, prefix);

	if (m->precision == PGBERT_GPU_BF16)
	{
		if (train_forward<__nv_bfloat16>(t, &pl, m->params_bf16, errbuf, errlen) != 0)
			goto done;
	}
	else if (train_forward<float>(t, &pl, m->params, errbuf, errlen) != 0)
		goto done;
	err = cudaMemcpyAsync(t->h_io, t->ws + pl.logits, sizeof(float) * (size_t) n_seq * C, cudaMemcpyDeviceToHost,
						  ctx->stream);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "copying the logits from the gpu", err);
		goto done;
	}
	if (sync_check(ctx, "the training forward pass", errbuf, errlen) != 0)
		goto done;

	loss = train_cross_entropy(t->h_io + (size_t) n_seq * C, t->h_io, labels, t->class_weights, n_seq, C, scale);
	err = cudaMemcpyAsync(t->ws + pl.dlogits, t->h_io + (size_t) n_seq * C, sizeof(float) * (size_t) n_seq * C,
						  cudaMemcpyHostToDevice, ctx->stream);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "copying the logits' gradient to the gpu", err);
		goto done;
	}
	if (m->precision == PGBERT_GPU_BF16)
	{
		if (train_backward<__nv_bfloat16>(t, &pl, m->params_bf16, errbuf, errlen) != 0)
			goto done;
	}
	else if (train_backward<float>(t, &pl, m->params, errbuf, errlen) != 0)
		goto done;
	if (sync_check(ctx, "the backward pass", errbuf, errlen) != 0)
		goto done;
	t->passes++;
	if (loss_out)
		*loss_out = (float) loss;
	rc = 0;

done:
	free(pl.bk);
	free(order);
	free(prefix);
	return rc;
}

/* ---- optimizer ---- */

/* transformers' get_linear_schedule_with_warmup multiplier after `step` scheduler steps (train.c's). */
static double
lr_multiplier(const PgbertGpuTrainOptions *o, int step)
{
	if (step < o->warmup_steps)
		return (double) step / (double) (o->warmup_steps > 1 ? o->warmup_steps : 1);
	if (o->total_steps <= 0)
		return 1.0;
	return fmax(0.0, (double) (o->total_steps - step) /
				(double) (o->total_steps - o->warmup_steps > 1 ? o->total_steps - o->warmup_steps : 1));
}

extern "C" int
pgbert_gpu_trainer_step(PgbertGpuTrainer *t, float *lr_out, float *grad_norm_out, char *errbuf, size_t errlen)
{
	const PgbertGpuTrainOptions *o;
	PgbertGpuModel *m;
	PgbertGpuContext *ctx;
	double		lr,
				b1,
				b2;
	int			step;
	float		norm,
				coef = 1.0f,
				decay,
				step_size,
				bc2_sqrt;
	int			clip = 0;
	cudaError_t err;

	if (t == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_trainer_step: null trainer");
		return -1;
	}
	o = &t->o;
	m = t->m;
	ctx = m->ctx;
	lr = o->learning_rate * lr_multiplier(o, t->steps);
	b1 = o->beta1;
	b2 = o->beta2;
	step = t->steps + 1;
	decay = (float) (1.0 - lr * o->weight_decay);
	step_size = (float) (lr / (1.0 - pow(b1, step)));
	bc2_sqrt = (float) sqrt(1.0 - pow(b2, step));
	if ((err = cudaSetDevice(ctx->ordinal)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaSetDevice", err);
		return -1;
	}

	/* clip_grad_norm_: the global L2 norm over the trained parameters */
	launch_train_sumsq(ctx->stream, t->norm, t->norm + 1, t->grads, t->train_n);
	err = cudaMemcpyAsync(t->h_norm, t->norm, sizeof(double), cudaMemcpyDeviceToHost, ctx->stream);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "copying the gradient norm from the gpu", err);
		return -1;
	}
	if (sync_check(ctx, "the gradient norm", errbuf, errlen) != 0)
		return -1;
	norm = (float) sqrt(*t->h_norm);
	if (o->max_grad_norm > 0.0f)
	{
		coef = o->max_grad_norm / (norm + 1e-6f);
		clip = coef < 1.0f;
	}

	/* torch.optim.AdamW: decoupled decay, then the bias-corrected Adam update */
	for (int i = 0; i < t->n_seg; i++)
	{
		const TSegment *sg = &t->seg[i];
		size_t		r = sg->off - t->train_off;

		launch_train_adamw(ctx->stream, m->params + sg->off, t->grads + r, t->adam_m + r, t->adam_v + r, sg->n,
						   clip, coef, sg->decay && o->weight_decay != 0.0f, decay, (float) (1.0 - b1), (float) b2,
						   (float) (1.0 - b2), bc2_sqrt, o->adam_eps, step_size);
	}
	if ((err = cudaMemsetAsync(t->grads, 0, t->vec_bytes, ctx->stream)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "zeroing the gradients", err);
		return -1;
	}
	if (m->precision == PGBERT_GPU_BF16)
		launch_convert<__nv_bfloat16>(ctx->stream, m->params_bf16 + t->train_off, m->params + t->train_off,
									  t->train_n);
	if (sync_check(ctx, "the optimizer step", errbuf, errlen) != 0)
		return -1;
	t->steps++;
	if (lr_out)
		*lr_out = (float) lr;
	if (grad_norm_out)
		*grad_norm_out = norm;
	return 0;
}

/* ---- parameters in and out ---- */

/* Bytes from the device into host memory on the context's stream, waited for: 0, or -1 + message naming what. */
static int
copy_down(PgbertGpuContext *ctx, void *dst, const void *src, size_t bytes, const char *what, char *errbuf,
		  size_t errlen)
{
	cudaError_t err;

	if ((err = cudaSetDevice(ctx->ordinal)) != cudaSuccess ||
		(err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, what, err);
		return -1;
	}
	return sync_check(ctx, what, errbuf, errlen);
}

extern "C" int
pgbert_gpu_trainer_download_params(PgbertGpuTrainer *t, float *params, char *errbuf, size_t errlen)
{
	if (t == NULL || params == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_trainer_download_params: null argument");
		return -1;
	}
	return copy_down(t->m->ctx, params, t->m->params, t->m->d.num_params * sizeof(float),
					 "copying the weights from the gpu", errbuf, errlen);
}

extern "C" int
pgbert_gpu_trainer_download_grads(PgbertGpuTrainer *t, float *grads, char *errbuf, size_t errlen)
{
	if (t == NULL || grads == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_trainer_download_grads: null argument");
		return -1;
	}
	memset(grads, 0, t->train_off * sizeof(float));
	return copy_down(t->m->ctx, grads + t->train_off, t->grads, t->vec_bytes, "copying the gradients from the gpu",
					 errbuf, errlen);
}

extern "C" int
pgbert_gpu_trainer_snapshot(PgbertGpuTrainer *t, char *errbuf, size_t errlen)
{
	PgbertGpuContext *ctx;
	size_t		bytes;
	cudaError_t err;

	if (t == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_trainer_snapshot: null trainer");
		return -1;
	}
	ctx = t->m->ctx;
	bytes = t->m->d.num_params * sizeof(float);
	if ((err = cudaSetDevice(ctx->ordinal)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "cudaSetDevice", err);
		return -1;
	}
	if (t->snap == NULL)
	{
		if (gpu_alloc(ctx, (void **) &t->snap, bytes, "a copy of the weights", errbuf, errlen) != 0)
			return -1;
		t->snap_bytes = bytes;
	}
	err = cudaMemcpyAsync(t->snap, t->m->params, bytes, cudaMemcpyDeviceToDevice, ctx->stream);
	if (err != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "copying the weights on the gpu", err);
		return -1;
	}
	return sync_check(ctx, "copying the weights on the gpu", errbuf, errlen);
}

extern "C" int
pgbert_gpu_trainer_restore(PgbertGpuTrainer *t, char *errbuf, size_t errlen)
{
	PgbertGpuContext *ctx;
	cudaError_t err;

	if (t == NULL)
	{
		set_error(errbuf, errlen, "pgbert_gpu_trainer_restore: null trainer");
		return -1;
	}
	if (t->snap == NULL)
	{
		set_error(errbuf, errlen, "no copy of the weights to restore");
		return -1;
	}
	ctx = t->m->ctx;
	if ((err = cudaSetDevice(ctx->ordinal)) != cudaSuccess ||
		(err = cudaMemcpyAsync(t->m->params, t->snap, t->snap_bytes, cudaMemcpyDeviceToDevice,
							   ctx->stream)) != cudaSuccess)
	{
		set_cuda_error(errbuf, errlen, "copying the weights on the gpu", err);
		return -1;
	}
	if (t->m->precision == PGBERT_GPU_BF16)
		launch_convert<__nv_bfloat16>(ctx->stream, t->m->params_bf16, t->m->params, t->m->d.num_params);
	return sync_check(ctx, "restoring the weights", errbuf, errlen);
}
