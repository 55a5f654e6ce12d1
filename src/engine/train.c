/*
 * train.c - fine-tuning BertForSequenceClassification on the CPU: a training
 * forward pass that saves what backward needs in one arena, the backward
 * pass (ops.c holds each layer's forward/backward pair), weighted
 * cross-entropy, gradient clipping, AdamW on a linear warm-up/decay schedule,
 * Hugging Face initialization, and writing a model.safetensors.
 *
 * Shapes in comments: T tokens of the packed batch, n sequences, H hidden,
 * I intermediate, L layers, NH heads, C classes.
 */
#include "train.h"
#include "blas.h"
#include "cpu.h"
#include "ops.h"
#include "arena_guard.h"
#include "sgemm_bf16.h"
#include "team.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parameter views ---- */

/* A contiguous run of parameters (one stacked view of BtBertParams). */
typedef struct Segment
{
	size_t		off;			/* into params */
	size_t		n;
	bool		decay;			/* AdamW weight decay applies (not biases, not LayerNorm) */
} Segment;

#define MAX_SEGMENTS 24

/* The views of m->p in layout order, with HF Trainer's decay rule; returns their count. */
static int
param_segments(const BtBertModel *m, Segment *seg)
{
	const BtBertConfig *c = &m->cfg;
	const BtBertParams *p = &m->p;
	size_t		H = c->hidden_size,
				I = c->intermediate_size,
				L = c->num_layers;
	struct
	{
		const float *ptr;
		size_t		n;
		bool		decay;
	}			v[] = {
		{p->word_emb, c->vocab_size * H, true}, {p->pos_emb, c->max_position * H, true},
		{p->type_emb, c->type_vocab_size * H, true}, {p->emb_ln_w, H, false}, {p->emb_ln_b, H, false},
		{p->qkv_w, L * 3 * H * H, true}, {p->qkv_b, L * 3 * H, false},
		{p->attn_out_w, L * H * H, true}, {p->attn_out_b, L * H, false},
		{p->attn_ln_w, L * H, false}, {p->attn_ln_b, L * H, false},
		{p->ffn_in_w, L * I * H, true}, {p->ffn_in_b, L * I, false},
		{p->ffn_out_w, L * H * I, true}, {p->ffn_out_b, L * H, false},
		{p->ffn_ln_w, L * H, false}, {p->ffn_ln_b, L * H, false},
		{p->pool_w, H * H, true}, {p->pool_b, H, false},
		{p->cls_w, (size_t) m->num_classes * H, true}, {p->cls_b, (size_t) m->num_classes, false},
	};
	int			k = 0;

	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
		if (v[i].ptr != NULL && v[i].n > 0)
		{
			seg[k].off = (size_t) (v[i].ptr - m->params);
			seg[k].n = v[i].n;
			seg[k].decay = v[i].decay;
			k++;
		}
	return k;
}

/* Point g's views into buf at the offsets m->p has in m->params (a gradient laid out like the parameters). */
static void
views_like(BtBertParams *g, const BtBertModel *m, float *buf)
{
	static const size_t members[] = {
		offsetof(BtBertParams, word_emb), offsetof(BtBertParams, pos_emb), offsetof(BtBertParams, type_emb),
		offsetof(BtBertParams, emb_ln_w), offsetof(BtBertParams, emb_ln_b), offsetof(BtBertParams, qkv_w),
		offsetof(BtBertParams, qkv_b), offsetof(BtBertParams, attn_out_w), offsetof(BtBertParams, attn_out_b),
		offsetof(BtBertParams, attn_ln_w), offsetof(BtBertParams, attn_ln_b), offsetof(BtBertParams, ffn_in_w),
		offsetof(BtBertParams, ffn_in_b), offsetof(BtBertParams, ffn_out_w), offsetof(BtBertParams, ffn_out_b),
		offsetof(BtBertParams, ffn_ln_w), offsetof(BtBertParams, ffn_ln_b), offsetof(BtBertParams, pool_w),
		offsetof(BtBertParams, pool_b), offsetof(BtBertParams, cls_w), offsetof(BtBertParams, cls_b),
	};

	for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
	{
		float	   *src = *(float *const *) ((const char *) &m->p + members[i]);

		*(float **) ((char *) g + members[i]) = src ? buf + (src - m->params) : NULL;
	}
}

/* ---- activations ---- */

/* What one training forward pass keeps for backward, and the scratch of both passes (views into one arena). */
typedef struct Acts
{
	float	   *emb;			/* (T, H) word + position + type: the embedding LayerNorm's input */
	float	   *emb_mean,
			   *emb_rstd;		/* (T) */
	float	   *x;				/* (L + 1, T, H) each layer's input; the last is the final hidden state */
	float	   *qkv;			/* (L, T, 3H) */
	float	   *probs;			/* (L, NH * sum S^2) attention probabilities before dropout */
	float	   *ctx;			/* (L, T, H) attention output before its dense layer */
	float	   *res1;			/* (L, T, H) x + dropout(attention dense): the LayerNorm's input */
	float	   *mean1,
			   *rstd1;			/* (L, T) */
	float	   *x1;				/* (L, T, H) after the attention LayerNorm */
	float	   *ffn;			/* (L, T, I) intermediate dense output, before GELU */
	float	   *res2;			/* (L, T, H) x1 + dropout(output dense): the LayerNorm's input */
	float	   *mean2,
			   *rstd2;			/* (L, T) */
	float	   *cls;			/* (n, H) final hidden state of each [CLS] */
	float	   *pooled;			/* (n, H) tanh(dense(cls)) */
	float	   *pooled_drop;	/* (n, H) dropout(pooled): the classifier's input */
	float	   *logits;			/* (n, C) */
	/* scratch */
	float	   *act;			/* (T, I) GELU output */
	float	   *tmp;			/* (T, H) */
	float	   *pd,
			   *dp;				/* (max S, max S) */
	/* activation gradients */
	float	   *g_x,
			   *g_t,
			   *g_c;			/* (T, H) */
	float	   *g_ffn;			/* (T, I) */
	float	   *g_qkv;			/* (T, 3H) */
	float	   *g_logits;		/* (n, C) */
	float	   *g_pooled,
			   *g_cls;			/* (n, H) */
} Acts;

/* Point a's views into base for this batch (or only count, when base is NULL); returns the float count. */
static size_t
layout_acts(Acts *a, float *base, const BtBertModel *m, const BtBatch *b, int members)
{
	const BtBertConfig *c = &m->cfg;
	size_t		T = b->offsets[b->n_seq],
				n = b->n_seq,
				H = c->hidden_size,
				I = c->intermediate_size,
				L = c->num_layers,
				C = m->num_classes,
				S = bt_batch_max_len(b),
				P = bt_batch_probs_size(b, c->num_heads);
	float	  **slots[] = {
		&a->emb, &a->emb_mean, &a->emb_rstd, &a->x, &a->qkv, &a->probs, &a->ctx, &a->res1,
		&a->mean1, &a->rstd1, &a->x1, &a->ffn, &a->res2, &a->mean2, &a->rstd2, &a->cls,
		&a->pooled, &a->pooled_drop, &a->logits, &a->act, &a->tmp, &a->pd, &a->dp,
		&a->g_x, &a->g_t, &a->g_c, &a->g_ffn, &a->g_qkv, &a->g_logits, &a->g_pooled, &a->g_cls,
	};
	size_t		sizes[] = {
		T * H, T, T, (L + 1) * T * H, L * T * 3 * H, L * P, L * T * H, L * T * H,
		L * T, L * T, L * T * H, L * T * I, L * T * H, L * T, L * T, n * H,
		n * H, n * H, n * C, T * I, T * H, members * S * S, members * S * S,
		T * H, T * H, T * H, T * I, T * 3 * H, n * C, n * H, n * H,
	};
	size_t		total = 0;

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
	{
		size_t		view = (sizes[i] + 15) & ~(size_t) 15;	/* keep each view 64-byte aligned */

		*slots[i] = base ? base + total : NULL;
		/* a red zone after each view under ASan (arena_guard.h), poisoned as laid out */
		if (base)
			bt_guard_poison(base + total + view, BT_GUARD_FLOATS);
		total += view + BT_GUARD_FLOATS;
	}
	return total;
}

/* ---- the trainer ---- */

struct BtTrainer
{
	BtBertModel *m;
	BtTrainOptions opts;
	float	   *class_weights;	/* (C) copy, or NULL */
	float	   *grads;			/* (num_params) laid out like m->params */
	BtBertParams g;				/* views into grads */
	size_t		train_off,		/* the trained parameters: [train_off, train_off + train_n) */
				train_n;
	float	   *adam_m,			/* (train_n) first and second moments */
			   *adam_v;
	Segment		seg[MAX_SEGMENTS];	/* the trained views */
	int			n_seg;
	int			steps;			/* optimizer steps taken */
	uint64_t	passes;			/* forward passes run (each draws new dropout masks) */
	float	   *arena;
	size_t		arena_cap;		/* floats */
	Acts		a;
	BtDenseMode dense;			/* the encoder's dense layers: float32, or bf16 on the team */
};

BtTrainOptions
bt_train_default_options(const BtBertConfig *cfg)
{
	BtTrainOptions o;

	memset(&o, 0, sizeof o);
	o.learning_rate = 5e-5f;
	o.weight_decay = 0.0f;
	o.beta1 = 0.9f;
	o.beta2 = 0.999f;
	o.adam_eps = 1e-8f;
	o.max_grad_norm = 1.0f;
	o.warmup_steps = 0;
	o.total_steps = 0;
	o.hidden_dropout = cfg ? cfg->hidden_dropout : 0.1f;
	o.attention_dropout = cfg ? cfg->attention_dropout : 0.1f;
	o.seed = 42;
	o.freeze_encoder = false;
	o.class_weights = NULL;
	return o;
}

/* Options a trainer can run with; 0, or -1 with err. */
static int
check_options(const BtTrainOptions *o, int C, char *err, size_t errlen)
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
		snprintf(err, errlen, "%s", bad);
		return -1;
	}
	return 0;
}

BtTrainer *
bt_trainer_create(BtBertModel *m, const BtTrainOptions *opts, char *err, size_t errlen)
{
	BtTrainer  *t;
	Segment		all[MAX_SEGMENTS];
	int			n_all;

	if (m->packed)
	{
		snprintf(err, errlen, "the model's weights are packed for inference (bt_model_pack): it cannot be trained");
		return NULL;
	}
	if (!m->has_pooler || !m->has_classifier)
	{
		snprintf(err, errlen, "the model has no %s; give it one with bt_model_reset_head",
				 m->has_classifier ? "pooler" : "classification head");
		return NULL;
	}
	if (m->num_classes < 2)
	{
		snprintf(err, errlen, "a classification head of %d output cannot be trained with cross-entropy (transformers treats one label as regression)",
				 m->num_classes);
		return NULL;
	}
	if (check_options(opts, m->num_classes, err, errlen) != 0)
		return NULL;
	if (opts->bf16 && !bt_cpu_bf16())
	{
		snprintf(err, errlen, "bf16 training needs a CPU with AVX512-BF16; this one's path is %s",
				 bt_cpu_path_name(bt_cpu_path()));
		return NULL;
	}
	t = calloc(1, sizeof(BtTrainer));
	if (t == NULL)
		goto oom;
	t->m = m;
	t->opts = *opts;
	t->opts.class_weights = NULL;
	if (opts->class_weights)
	{
		t->class_weights = malloc(m->num_classes * sizeof(float));
		if (t->class_weights == NULL)
			goto oom;
		memcpy(t->class_weights, opts->class_weights, m->num_classes * sizeof(float));
	}

	/* trained parameters: all, or classifier.* only */
	n_all = param_segments(m, all);
	t->train_off = opts->freeze_encoder ? (size_t) (m->p.cls_w - m->params) : 0;
	t->train_n = m->num_params - t->train_off;
	for (int i = 0; i < n_all; i++)
		if (all[i].off >= t->train_off)
			t->seg[t->n_seg++] = all[i];

	t->grads = aligned_alloc(64, ((m->num_params * sizeof(float)) + 63) & ~(size_t) 63);
	t->adam_m = calloc(t->train_n, sizeof(float));
	t->adam_v = calloc(t->train_n, sizeof(float));
	if (t->grads == NULL || t->adam_m == NULL || t->adam_v == NULL)
		goto oom;
	memset(t->grads, 0, m->num_params * sizeof(float));
	views_like(&t->g, m, t->grads);
	/* bf16: the products, attention and the GELU run on the engine's own threads (OpenBLAS on one) */
	t->dense.gemm = opts->bf16 ? bt_sgemm_bf16 : NULL;
	t->dense.team = opts->bf16 ? bt_team_start(bt_blas_threads()) : NULL;
	return t;

oom:
	snprintf(err, errlen, "out of memory for the optimizer state of %zu parameters", m->num_params);
	bt_trainer_free(t);
	return NULL;
}

void
bt_trainer_free(BtTrainer *t)
{
	if (t == NULL)
		return;
	free(t->class_weights);
	free(t->grads);
	free(t->adam_m);
	free(t->adam_v);
	bt_team_stop(t->dense.team);
	if (t->arena)
		bt_guard_unpoison(t->arena, t->arena_cap);
	free(t->arena);
	free(t);
}

int
bt_trainer_steps(const BtTrainer *t)
{
	return t->steps;
}

const float *
bt_trainer_grads(const BtTrainer *t)
{
	return t->grads;
}

/* ---- training forward and backward ---- */

/* Dropout sites of one forward pass (each draws its own mask). */
enum
{
	SITE_EMB = 0,
	SITE_CLS = 1,
	SITE_LAYER = 2				/* + 3 l + 0: attention probabilities, + 1: attention output, + 2: FFN output */
};

/* The dropout of probability p at a site of the current forward pass. */
static BtDropout
dropout_at(const BtTrainer *t, float p, uint64_t site)
{
	BtDropout	d;

	d.p = p;
	d.key = bt_mix64(bt_mix64(t->opts.seed ^ bt_mix64(t->passes + 0x51ed270b27a1f3c9ULL)) + site);
	return d;
}

/* Batch b's sizes against the model's config, as train_forward and train_backward index their activations. */
typedef struct TrainShape
{
	size_t		T,				/* tokens */
				n,				/* sequences */
				H,				/* hidden size */
				I,				/* intermediate size */
				TH,				/* T H: one layer's hidden states */
				P,				/* one layer's attention probabilities (bt_batch_probs_size) */
				square;			/* (max S, max S): one thread's attention scratch */
} TrainShape;

static TrainShape
train_shape(const BtBertConfig *c, const BtBatch *b)
{
	TrainShape	sh;

	sh.T = b->offsets[b->n_seq];
	sh.n = b->n_seq;
	sh.H = c->hidden_size;
	sh.I = c->intermediate_size;
	sh.TH = sh.T * sh.H;
	sh.P = bt_batch_probs_size(b, c->num_heads);
	sh.square = (size_t) bt_batch_max_len(b) * bt_batch_max_len(b);
	return sh;
}

/* ---- attention and the GELU, on the trainer's team when it has one ---- */

/* Threads sharing the work: the team's members, or this thread alone. */
static int
team_members(const BtTrainer *t)
{
	return t->dense.team ? bt_team_size(t->dense.team) : 1;
}

/* What a layer job reads; each job uses its own fields. */
typedef struct LayerJob
{
	const BtBatch *b;
	int			H,
				NH;
	size_t		square;			/* floats of one member's (max S, max S) scratch */
	const BtDropout *drop;
	const float *qkv,
			   *dctx;
	float	   *ctx,
			   *probs,
			   *dqkv,
			   *pd,
			   *dp;
	float	   *gelu_out;		/* GELU: out (n) from in (n), or in's gradient in place */
	const float *gelu_in;
	size_t		n;
	BtActivation act;
	bool		backward;		/* GELU: its backward */
} LayerJob;

/* Run job on every member of the trainer's team, or here alone. */
static void
run_layer_job(BtTrainer *t, BtTeamJob job, LayerJob *j)
{
	if (t->dense.team)
		bt_team_run(t->dense.team, job, j);
	else
		job(j, 0, 1);
}

/* A member's share of attention's (sequence, head) pairs, saving the probabilities. */
static void
attention_forward_job(void *arg, int member, int members)
{
	LayerJob   *j = arg;

	bt_attention_forward(j->ctx, j->probs, true, j->pd + member * j->square, j->drop, j->qkv, j->b, j->H, j->NH,
						 member, members);
}

/* A member's share of attention's backward. */
static void
attention_backward_job(void *arg, int member, int members)
{
	LayerJob   *j = arg;

	bt_attention_backward(j->dqkv, j->dp + member * j->square, j->pd + member * j->square, j->dctx, j->qkv,
						  j->probs, j->drop, j->b, j->H, j->NH, member, members);
}

/* [lo, hi) of n elements for a member, in whole cache lines. */
static void
member_range(size_t n, int member, int members, size_t *lo, size_t *hi)
{
	size_t		lines = (n + 15) / 16;

	*lo = lines * member / members * 16;
	*hi = lines * (member + 1) / members * 16;
	*lo = *lo < n ? *lo : n;
	*hi = *hi < n ? *hi : n;
}

/* A member's share of the GELU, or of its backward (gelu_out: the gradient, in place). */
static void
gelu_job(void *arg, int member, int members)
{
	LayerJob   *j = arg;
	size_t		lo,
				hi;

	member_range(j->n, member, members, &lo, &hi);
	if (j->backward)
		bt_gelu_backward(j->gelu_out + lo, j->gelu_in + lo, hi - lo, j->act);
	else
		bt_gelu_forward(j->gelu_out + lo, j->gelu_in + lo, hi - lo, j->act);
}

/* out (n) = GELU(in), on the team. */
static void
team_gelu_forward(BtTrainer *t, float *out, const float *in, size_t n, BtActivation act)
{
	LayerJob	j = {.gelu_out = out, .gelu_in = in, .n = n, .act = act};

	run_layer_job(t, gelu_job, &j);
}

/* Forward over batch b, keeping what backward needs in t->a; logits in t->a.logits (n, C). */
static void
train_forward(BtTrainer *t, const BtBatch *b)
{
	const BtBertModel *m = t->m;
	const BtBertConfig *c = &m->cfg;
	const BtBertParams *p = &m->p;
	Acts	   *a = &t->a;
	TrainShape	sh = train_shape(c, b);
	float		eps = c->layer_norm_eps;
	BtDropout	d;
	LayerJob	attn = {.b = b, .H = sh.H, .NH = c->num_heads, .square = sh.square, .pd = a->pd};

	/* embeddings: x[0] = dropout(LayerNorm(word + position + type)) */
	bt_embeddings_forward(a->emb, m, b);
	bt_layernorm_forward(a->x, a->emb_mean, a->emb_rstd, a->emb, p->emb_ln_w, p->emb_ln_b, sh.T, sh.H, eps);
	d = dropout_at(t, t->opts.hidden_dropout, SITE_EMB);
	bt_dropout_apply(a->x, sh.TH, &d, 0);

	for (int l = 0; l < c->num_layers; l++)
	{
		const float *x = a->x + l * sh.TH;
		float	   *qkv = a->qkv + l * 3 * sh.TH,
				   *ctx = a->ctx + l * sh.TH,
				   *res1 = a->res1 + l * sh.TH,
				   *x1 = a->x1 + l * sh.TH,
				   *ffn = a->ffn + l * sh.T * sh.I,
				   *res2 = a->res2 + l * sh.TH;

		/* attention block: x1 = LayerNorm(x + dropout(dense(attention(qkv(x))))) */
		bt_dense_forward(&t->dense, qkv, x, p->qkv_w + l * 3 * sh.H * sh.H, p->qkv_b + l * 3 * sh.H, sh.T,
						 3 * sh.H, sh.H);
		d = dropout_at(t, t->opts.attention_dropout, SITE_LAYER + 3 * l);
		attn.drop = &d;
		attn.qkv = qkv;
		attn.ctx = ctx;
		attn.probs = a->probs + l * sh.P;
		run_layer_job(t, attention_forward_job, &attn);
		bt_dense_forward(&t->dense, a->tmp, ctx, p->attn_out_w + l * sh.H * sh.H, p->attn_out_b + l * sh.H, sh.T,
						 sh.H, sh.H);
		d = dropout_at(t, t->opts.hidden_dropout, SITE_LAYER + 3 * l + 1);
		bt_dropout_apply(a->tmp, sh.TH, &d, 0);
		memcpy(res1, x, sh.TH * sizeof(float));
		bt_residual_forward(res1, a->tmp, sh.TH);
		bt_layernorm_forward(x1, a->mean1 + l * sh.T, a->rstd1 + l * sh.T, res1, p->attn_ln_w + l * sh.H,
							 p->attn_ln_b + l * sh.H, sh.T, sh.H, eps);

		/* feed-forward block: x[l + 1] = LayerNorm(x1 + dropout(dense(gelu(dense(x1))))) */
		bt_dense_forward(&t->dense, ffn, x1, p->ffn_in_w + l * sh.I * sh.H, p->ffn_in_b + l * sh.I, sh.T, sh.I,
						 sh.H);
		team_gelu_forward(t, a->act, ffn, sh.T * sh.I, c->activation);
		bt_dense_forward(&t->dense, a->tmp, a->act, p->ffn_out_w + l * sh.H * sh.I, p->ffn_out_b + l * sh.H, sh.T,
						 sh.H, sh.I);
		d = dropout_at(t, t->opts.hidden_dropout, SITE_LAYER + 3 * l + 2);
		bt_dropout_apply(a->tmp, sh.TH, &d, 0);
		memcpy(res2, x1, sh.TH * sizeof(float));
		bt_residual_forward(res2, a->tmp, sh.TH);
		bt_layernorm_forward(a->x + (l + 1) * sh.TH, a->mean2 + l * sh.T, a->rstd2 + l * sh.T, res2,
							 p->ffn_ln_w + l * sh.H, p->ffn_ln_b + l * sh.H, sh.T, sh.H, eps);
	}

	/* head: logits = classifier(dropout(tanh(pooler(hidden state of [CLS])))) */
	for (size_t s = 0; s < sh.n; s++)
		memcpy(a->cls + s * sh.H, a->x + c->num_layers * sh.TH + (size_t) b->offsets[s] * sh.H,
			   sh.H * sizeof(float));
	bt_dense_forward(NULL, a->pooled, a->cls, p->pool_w, p->pool_b, (int) sh.n, sh.H, sh.H);
	bt_tanh_forward(a->pooled, sh.n * sh.H);
	memcpy(a->pooled_drop, a->pooled, sh.n * sh.H * sizeof(float));
	d = dropout_at(t, t->opts.hidden_dropout, SITE_CLS);
	bt_dropout_apply(a->pooled_drop, sh.n * sh.H, &d, 0);
	bt_dense_forward(NULL, a->logits, a->pooled_drop, p->cls_w, p->cls_b, (int) sh.n, m->num_classes, sh.H);
}

/*
 * Mean cross-entropy of logits (n, C) against labels, weighted as torch's
 * CrossEntropyLoss(weight=w): sum_i w[y_i] nll_i / sum_i w[y_i] (w NULL: all
 * 1; the labels' weights must not sum to 0). dlogits (n, C) = scale *
 * d(loss)/d(logits). Returns the loss.
 */
static double
cross_entropy(float *dlogits, const float *logits, const int32_t *labels, const float *w, int n, int C,
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
		/* d nll / d z_j = softmax_j - [j == y] */
		for (int j = 0; j < C; j++)
			dz[j] = (float) (scale * wi * (exp(z[j] - max) / sum - (j == labels[i] ? 1.0 : 0.0)));
	}
	return loss;
}

/* Backward from t->a.g_logits (n, C): add every trained parameter's gradient into t->grads. */
static void
train_backward(BtTrainer *t, const BtBatch *b)
{
	const BtBertModel *m = t->m;
	const BtBertConfig *c = &m->cfg;
	const BtBertParams *p = &m->p;
	const BtBertParams *g = &t->g;
	Acts	   *a = &t->a;
	TrainShape	sh = train_shape(c, b);
	BtDropout	d;
	LayerJob	attn = {.b = b, .H = sh.H, .NH = c->num_heads, .square = sh.square, .dctx = a->g_c,
						.dqkv = a->g_qkv, .pd = a->pd, .dp = a->dp},
				gelu = {.n = sh.T * sh.I, .act = c->activation, .backward = true};

	/* classifier: logits = pooled_drop @ cls_w^T + cls_b */
	bt_dense_backward(NULL, t->opts.freeze_encoder ? NULL : a->g_pooled, false, g->cls_w, g->cls_b,
					  a->g_logits, a->pooled_drop, p->cls_w, (int) sh.n, m->num_classes, sh.H);
	if (t->opts.freeze_encoder)
		return;

	/* pooler: pooled = tanh(cls @ pool_w^T + pool_b), after the classifier's dropout */
	d = dropout_at(t, t->opts.hidden_dropout, SITE_CLS);
	bt_dropout_apply(a->g_pooled, sh.n * sh.H, &d, 0);
	bt_tanh_backward(a->g_pooled, a->pooled, sh.n * sh.H);
	bt_dense_backward(NULL, a->g_cls, false, g->pool_w, g->pool_b, a->g_pooled, a->cls, p->pool_w, (int) sh.n,
					  sh.H, sh.H);

	/* g_x = gradient of the final hidden state: nonzero on the [CLS] rows only */
	memset(a->g_x, 0, sh.TH * sizeof(float));
	for (size_t s = 0; s < sh.n; s++)
		memcpy(a->g_x + (size_t) b->offsets[s] * sh.H, a->g_cls + s * sh.H, sh.H * sizeof(float));

	for (int l = c->num_layers - 1; l >= 0; l--)
	{
		const float *x = a->x + l * sh.TH,
				   *qkv = a->qkv + l * 3 * sh.TH,
				   *ctx = a->ctx + l * sh.TH,
				   *x1 = a->x1 + l * sh.TH,
				   *ffn = a->ffn + l * sh.T * sh.I;

		/* feed-forward block; g_x holds d x[l + 1] */
		bt_layernorm_backward(a->g_t, g->ffn_ln_w + l * sh.H, g->ffn_ln_b + l * sh.H, a->g_x,
							  a->res2 + l * sh.TH,
							  a->mean2 + l * sh.T, a->rstd2 + l * sh.T, p->ffn_ln_w + l * sh.H, sh.T, sh.H);
		memcpy(a->g_x, a->g_t, sh.TH * sizeof(float));	/* g_t: residual into x1; g_x: the branch */
		d = dropout_at(t, t->opts.hidden_dropout, SITE_LAYER + 3 * l + 2);
		bt_dropout_apply(a->g_x, sh.TH, &d, 0);
		team_gelu_forward(t, a->act, ffn, sh.T * sh.I, c->activation);	/* recomputed, not saved */
		bt_dense_backward(&t->dense, a->g_ffn, false, g->ffn_out_w + l * sh.H * sh.I, g->ffn_out_b + l * sh.H,
						  a->g_x, a->act, p->ffn_out_w + l * sh.H * sh.I, sh.T, sh.H, sh.I);
		gelu.gelu_out = a->g_ffn;
		gelu.gelu_in = ffn;
		run_layer_job(t, gelu_job, &gelu);
		bt_dense_backward(&t->dense, a->g_t, true, g->ffn_in_w + l * sh.I * sh.H, g->ffn_in_b + l * sh.I,
						  a->g_ffn, x1, p->ffn_in_w + l * sh.I * sh.H, sh.T, sh.I, sh.H);

		/* attention block; g_t holds d x1 */
		bt_layernorm_backward(a->g_x, g->attn_ln_w + l * sh.H, g->attn_ln_b + l * sh.H, a->g_t,
							  a->res1 + l * sh.TH,
							  a->mean1 + l * sh.T, a->rstd1 + l * sh.T, p->attn_ln_w + l * sh.H, sh.T, sh.H);
		memcpy(a->g_t, a->g_x, sh.TH * sizeof(float));	/* g_x: residual into x; g_t: the branch */
		d = dropout_at(t, t->opts.hidden_dropout, SITE_LAYER + 3 * l + 1);
		bt_dropout_apply(a->g_t, sh.TH, &d, 0);
		bt_dense_backward(&t->dense, a->g_c, false, g->attn_out_w + l * sh.H * sh.H, g->attn_out_b + l * sh.H,
						  a->g_t, ctx, p->attn_out_w + l * sh.H * sh.H, sh.T, sh.H, sh.H);
		d = dropout_at(t, t->opts.attention_dropout, SITE_LAYER + 3 * l);
		attn.drop = &d;
		attn.qkv = qkv;
		attn.probs = a->probs + l * sh.P;
		run_layer_job(t, attention_backward_job, &attn);
		bt_dense_backward(&t->dense, a->g_x, true, g->qkv_w + l * 3 * sh.H * sh.H, g->qkv_b + l * 3 * sh.H,
						  a->g_qkv, x, p->qkv_w + l * 3 * sh.H * sh.H, sh.T, 3 * sh.H, sh.H);
	}

	/* embeddings; g_x holds d x[0] */
	d = dropout_at(t, t->opts.hidden_dropout, SITE_EMB);
	bt_dropout_apply(a->g_x, sh.TH, &d, 0);
	bt_layernorm_backward(a->g_t, g->emb_ln_w, g->emb_ln_b, a->g_x, a->emb, a->emb_mean, a->emb_rstd,
						  p->emb_ln_w, sh.T, sh.H);
	bt_embeddings_backward(g->word_emb, g->pos_emb, g->type_emb, a->g_t, b, sh.H, c->pad_token_id);
}

int
bt_check_training_batch(const BtBertModel *m, const float *class_weights, const BtBatch *batch,
						const int32_t *labels, float scale, char *err, size_t errlen)
{
	if (bt_check_batch(m, batch, err, errlen) != 0)
		return -1;
	for (int s = 0; s < batch->n_seq; s++)
		if (labels[s] < 0 || labels[s] >= m->num_classes)
		{
			snprintf(err, errlen, "label %d of sequence %d is outside 0 to %d", labels[s], s,
					 m->num_classes - 1);
			return -1;
		}
	if (!isfinite(scale))
	{
		snprintf(err, errlen, "gradient scale must be finite");
		return -1;
	}
	if (class_weights)
	{
		double		wsum = 0.0;

		for (int s = 0; s < batch->n_seq; s++)
			wsum += class_weights[labels[s]];
		if (!(wsum > 0.0))
		{
			snprintf(err, errlen, "the class weights of the batch's labels sum to 0");
			return -1;
		}
	}
	return 0;
}

int
bt_trainer_accumulate(BtTrainer *t, const BtBatch *batch, const int32_t *labels, float scale,
					  float *loss_out, char *err, size_t errlen)
{
	const BtBertModel *m = t->m;
	size_t		need;
	double		loss;
	int			blas_threads;

	if (bt_check_training_batch(m, t->class_weights, batch, labels, scale, err, errlen) != 0)
		return -1;
	if (bt_sgemm == NULL && bt_blas_load(NULL, 0, err, errlen) != 0)
		return -1;

	/* one arena for the activations, grown when a batch needs more */
	need = layout_acts(&t->a, NULL, m, batch, team_members(t));
	if (need > t->arena_cap)
	{
		if (t->arena)
			bt_guard_unpoison(t->arena, t->arena_cap);
		free(t->arena);
		t->arena = aligned_alloc(64, need * sizeof(float));
		t->arena_cap = t->arena ? need : 0;
		if (t->arena == NULL)
		{
			snprintf(err, errlen, "out of memory for the activations of a batch of %d tokens",
					 batch->offsets[batch->n_seq]);
			return -1;
		}
	}
	/* the red zones of the last batch's layout are somewhere else in this one */
	bt_guard_unpoison(t->arena, t->arena_cap);
	layout_acts(&t->a, t->arena, m, batch, team_members(t));

	/* with a team, its members run attention's many small products: OpenBLAS on one thread each */
	blas_threads = bt_blas_threads();
	if (t->dense.team)
		bt_blas_set_threads(1);
	train_forward(t, batch);
	loss = cross_entropy(t->a.g_logits, t->a.logits, labels, t->class_weights, batch->n_seq,
						 m->num_classes, scale);
	train_backward(t, batch);
	if (t->dense.team)
		bt_blas_set_threads(blas_threads);
	t->passes++;
	if (loss_out)
		*loss_out = (float) loss;
	return 0;
}

/* ---- optimizer ---- */

/* transformers' get_linear_schedule_with_warmup multiplier after `step` scheduler steps (total <= 0: no decay). */
static double
lr_multiplier(const BtTrainOptions *o, int step)
{
	if (step < o->warmup_steps)
		return (double) step / (double) (o->warmup_steps > 1 ? o->warmup_steps : 1);
	if (o->total_steps <= 0)
		return 1.0;
	return fmax(0.0, (double) (o->total_steps - step) /
				(double) (o->total_steps - o->warmup_steps > 1 ? o->total_steps - o->warmup_steps : 1));
}

void
bt_trainer_step(BtTrainer *t, float *lr_out, float *grad_norm_out)
{
	const BtTrainOptions *o = &t->opts;
	float	   *params = t->m->params,
			   *grads = t->grads;
	double		lr = o->learning_rate * lr_multiplier(o, t->steps),
				b1 = o->beta1,
				b2 = o->beta2;
	int			step = t->steps + 1;
	float		norm,
				coef;
	BtAdamStep	as;

	/* clip_grad_norm_: the global L2 norm over the trained parameters, applied inside the update */
	norm = (float) sqrt(bt_sumsq(grads + t->train_off, t->train_n));
	coef = o->max_grad_norm / (norm + 1e-6f);
	as.clip = o->max_grad_norm > 0.0f && coef < 1.0f;
	as.grad_scale = coef;

	/* torch.optim.AdamW: decoupled decay, then the bias-corrected Adam update */
	as.decay = (float) (1.0 - lr * o->weight_decay);
	as.step_size = (float) (lr / (1.0 - pow(b1, step)));
	as.bc2_sqrt = (float) sqrt(1.0 - pow(b2, step));
	as.one_minus_b1 = (float) (1.0 - b1);
	as.one_minus_b2 = (float) (1.0 - b2);
	as.b2 = (float) b2;
	as.eps = o->adam_eps;
	for (int s = 0; s < t->n_seg; s++)
	{
		const Segment *sg = &t->seg[s];

		as.decay_on = sg->decay && o->weight_decay != 0.0f;
		bt_adamw_update(params + sg->off, grads + sg->off, t->adam_m + (sg->off - t->train_off),
						t->adam_v + (sg->off - t->train_off), sg->n, &as);
	}
	/* bt_adamw_update zeroed the segments' gradients; clear anything between them too */
	for (int s = 0; s <= t->n_seg; s++)
	{
		size_t		from = s == 0 ? t->train_off : t->seg[s - 1].off + t->seg[s - 1].n,
					to = s == t->n_seg ? t->train_off + t->train_n : t->seg[s].off;

		if (to > from)
			memset(grads + from, 0, (to - from) * sizeof(float));
	}
	t->steps++;
	if (lr_out)
		*lr_out = (float) lr;
	if (grad_norm_out)
		*grad_norm_out = norm;
}

/* ---- initialization ---- */

/* A seeded generator of normal deviates (splitmix64 + Box-Muller). */
typedef struct Rng
{
	uint64_t	state;
	bool		has_spare;
	double		spare;
} Rng;

static void
rng_init(Rng *r, uint64_t seed)
{
	r->state = seed;
	r->has_spare = false;
}

/* Uniform in (0, 1). */
static double
rng_uniform(Rng *r)
{
	r->state += 0x9e3779b97f4a7c15ULL;
	return ((bt_mix64(r->state) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal. */
static double
rng_normal(Rng *r)
{
	double		u,
				v;

	if (r->has_spare)
	{
		r->has_spare = false;
		return r->spare;
	}
	u = sqrt(-2.0 * log(rng_uniform(r)));
	v = 2.0 * M_PI * rng_uniform(r);
	r->spare = u * sin(v);
	r->has_spare = true;
	return u * cos(v);
}

/* x (n) ~ normal(0, std) */
static void
init_normal(float *x, size_t n, float std, Rng *r)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float) (rng_normal(r) * std);
}

/* x (n) = v */
static void
init_const(float *x, size_t n, float v)
{
	for (size_t i = 0; i < n; i++)
		x[i] = v;
}

/* transformers' _init_weights standard deviation: initializer_range, or 0.02 when it is 0. */
static float
init_std(const BtBertConfig *c)
{
	return c->initializer_range > 0.0f ? c->initializer_range : 0.02f;
}

/* Pooler (H, H) + (H) as an nn.Linear: normal weights, zero bias. */
static void
init_pooler(BtBertModel *m, Rng *r)
{
	size_t		H = m->cfg.hidden_size;

	init_normal(m->p.pool_w, H * H, init_std(&m->cfg), r);
	init_const(m->p.pool_b, H, 0.0f);
}

/* Classifier (C, H) + (C) as an nn.Linear. */
static void
init_classifier(BtBertModel *m, Rng *r)
{
	size_t		H = m->cfg.hidden_size;

	init_normal(m->p.cls_w, (size_t) m->num_classes * H, init_std(&m->cfg), r);
	init_const(m->p.cls_b, (size_t) m->num_classes, 0.0f);
}

/* Every parameter as BertPreTrainedModel._init_weights does it. */
static void
init_all(BtBertModel *m, Rng *r)
{
	const BtBertConfig *c = &m->cfg;
	BtBertParams *p = &m->p;
	size_t		H = c->hidden_size,
				I = c->intermediate_size,
				L = c->num_layers;
	float		std = init_std(c);

	init_normal(p->word_emb, c->vocab_size * H, std, r);
	init_const(p->word_emb + (size_t) c->pad_token_id * H, H, 0.0f);	/* padding_idx row */
	init_normal(p->pos_emb, c->max_position * H, std, r);
	init_normal(p->type_emb, c->type_vocab_size * H, std, r);
	init_const(p->emb_ln_w, H, 1.0f);
	init_const(p->emb_ln_b, H, 0.0f);
	init_normal(p->qkv_w, L * 3 * H * H, std, r);
	init_const(p->qkv_b, L * 3 * H, 0.0f);
	init_normal(p->attn_out_w, L * H * H, std, r);
	init_const(p->attn_out_b, L * H, 0.0f);
	init_const(p->attn_ln_w, L * H, 1.0f);
	init_const(p->attn_ln_b, L * H, 0.0f);
	init_normal(p->ffn_in_w, L * I * H, std, r);
	init_const(p->ffn_in_b, L * I, 0.0f);
	init_normal(p->ffn_out_w, L * H * I, std, r);
	init_const(p->ffn_out_b, L * H, 0.0f);
	init_const(p->ffn_ln_w, L * H, 1.0f);
	init_const(p->ffn_ln_b, L * H, 0.0f);
	if (m->has_pooler)
		init_pooler(m, r);
	if (m->has_classifier)
		init_classifier(m, r);
}

BtBertModel *
bt_model_init_random(BtBertConfig *cfg, int num_classes, uint64_t seed, char *err, size_t errlen)
{
	BtBertModel *m = calloc(1, sizeof(BtBertModel));
	Rng			r;

	if (m == NULL)
	{
		bt_config_free(cfg);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	if (num_classes < 0 || num_classes > 100000)
	{
		snprintf(err, errlen, "num_classes %d is outside 0 to 100000", num_classes);
		goto fail;
	}
	if (m->cfg.num_labels > 0 && m->cfg.num_labels != num_classes)
	{
		snprintf(err, errlen, "config id2label names %d labels but the head has %d outputs",
				 m->cfg.num_labels, num_classes);
		goto fail;
	}
	m->has_pooler = true;
	m->num_classes = num_classes;
	if (bt_model_alloc_params(m) != 0)
	{
		snprintf(err, errlen, "out of memory for the parameters");
		goto fail;
	}
	rng_init(&r, seed);
	init_all(m, &r);
	return m;

fail:
	bt_model_free(m);
	return NULL;
}

int
bt_model_reset_head(BtBertModel **mp, int num_classes, uint64_t seed, char *err, size_t errlen)
{
	BtBertModel *m = *mp;
	BtBertModel n = *m;			/* the new layout, sharing m's config */
	size_t		encoder = (size_t) (m->p.ffn_ln_b - m->params) + (size_t) m->cfg.num_layers * m->cfg.hidden_size;
	size_t		H = m->cfg.hidden_size;
	Rng			r;

	if (num_classes < 1 || num_classes > 100000)
	{
		snprintf(err, errlen, "num_classes %d is outside 1 to 100000", num_classes);
		return -1;
	}
	n.has_pooler = true;
	n.num_classes = num_classes;
	if (bt_model_alloc_params(&n) != 0)
	{
		snprintf(err, errlen, "out of memory for the parameters");
		return -1;
	}
	rng_init(&r, seed);
	memcpy(n.params, m->params, encoder * sizeof(float));
	if (m->has_pooler)
	{
		memcpy(n.p.pool_w, m->p.pool_w, H * H * sizeof(float));
		memcpy(n.p.pool_b, m->p.pool_b, H * sizeof(float));
	}
	else
		init_pooler(&n, &r);
	init_classifier(&n, &r);

	free(m->params);
	m->params = n.params;
	m->p = n.p;
	m->num_params = n.num_params;
	m->has_pooler = true;
	m->has_classifier = true;
	m->num_classes = num_classes;
	if (m->cfg.num_labels != num_classes)
		bt_config_free(&m->cfg);	/* the label names belonged to the old head */
	return 0;
}

/* ---- writing a checkpoint ---- */

/* One tensor of the checkpoint: name, data, shape (d1 = 0 for a vector). */
typedef struct SaveTensor
{
	char		name[96];
	const float *data;
	int64_t		d0,
				d1;
} SaveTensor;

/* The Hugging Face tensors of m in state_dict order; returns their count (at most 7 + 16 L + 2). */
static int
save_tensors(const BtBertModel *m, SaveTensor *st)
{
	const BtBertConfig *c = &m->cfg;
	const BtBertParams *p = &m->p;
	const char *pre = m->has_classifier ? "bert." : "";
	int64_t		H = c->hidden_size,
				I = c->intermediate_size;
	int			k = 0;

#define ADD(dat, a, b, ...) \
	do { snprintf(st[k].name, sizeof st[k].name, __VA_ARGS__); \
		 st[k].data = (dat); st[k].d0 = (a); st[k].d1 = (b); k++; } while (0)

	ADD(p->word_emb, c->vocab_size, H, "%sembeddings.word_embeddings.weight", pre);
	ADD(p->pos_emb, c->max_position, H, "%sembeddings.position_embeddings.weight", pre);
	ADD(p->type_emb, c->type_vocab_size, H, "%sembeddings.token_type_embeddings.weight", pre);
	ADD(p->emb_ln_w, H, 0, "%sembeddings.LayerNorm.weight", pre);
	ADD(p->emb_ln_b, H, 0, "%sembeddings.LayerNorm.bias", pre);
	for (int l = 0; l < c->num_layers; l++)
	{
		static const char *const qkv[] = {"query", "key", "value"};

		for (int j = 0; j < 3; j++)
		{
			ADD(p->qkv_w + ((size_t) l * 3 + j) * H * H, H, H, "%sencoder.layer.%d.attention.self.%s.weight",
				pre, l, qkv[j]);
			ADD(p->qkv_b + ((size_t) l * 3 + j) * H, H, 0, "%sencoder.layer.%d.attention.self.%s.bias",
				pre, l, qkv[j]);
		}
		ADD(p->attn_out_w + (size_t) l * H * H, H, H, "%sencoder.layer.%d.attention.output.dense.weight", pre, l);
		ADD(p->attn_out_b + (size_t) l * H, H, 0, "%sencoder.layer.%d.attention.output.dense.bias", pre, l);
		ADD(p->attn_ln_w + (size_t) l * H, H, 0, "%sencoder.layer.%d.attention.output.LayerNorm.weight", pre, l);
		ADD(p->attn_ln_b + (size_t) l * H, H, 0, "%sencoder.layer.%d.attention.output.LayerNorm.bias", pre, l);
		ADD(p->ffn_in_w + (size_t) l * I * H, I, H, "%sencoder.layer.%d.intermediate.dense.weight", pre, l);
		ADD(p->ffn_in_b + (size_t) l * I, I, 0, "%sencoder.layer.%d.intermediate.dense.bias", pre, l);
		ADD(p->ffn_out_w + (size_t) l * H * I, H, I, "%sencoder.layer.%d.output.dense.weight", pre, l);
		ADD(p->ffn_out_b + (size_t) l * H, H, 0, "%sencoder.layer.%d.output.dense.bias", pre, l);
		ADD(p->ffn_ln_w + (size_t) l * H, H, 0, "%sencoder.layer.%d.output.LayerNorm.weight", pre, l);
		ADD(p->ffn_ln_b + (size_t) l * H, H, 0, "%sencoder.layer.%d.output.LayerNorm.bias", pre, l);
	}
	if (m->has_pooler)
	{
		ADD(p->pool_w, H, H, "%spooler.dense.weight", pre);
		ADD(p->pool_b, H, 0, "%spooler.dense.bias", pre);
	}
	if (m->has_classifier)
	{
		ADD(p->cls_w, m->num_classes, H, "classifier.weight");
		ADD(p->cls_b, m->num_classes, 0, "classifier.bias");
	}
#undef ADD
	return k;
}

int
bt_model_save_safetensors(const BtBertModel *m, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	int			cap = 9 + 16 * m->cfg.num_layers,
				nt;
	SaveTensor *st = malloc(cap * sizeof(SaveTensor));
	char	   *hdr = NULL;
	size_t		hcap = 64 + (size_t) cap * 256,
				hlen = 0,
				data = 0;
	uint8_t    *buf,
			   *dst;

	*out = NULL;
	*len = 0;
	if (st == NULL || (hdr = malloc(hcap)) == NULL)
		goto oom;
	nt = save_tensors(m, st);

	/* header: JSON, then spaces up to a multiple of 8 bytes */
	hlen = snprintf(hdr, hcap, "{\"__metadata__\":{\"format\":\"pt\"}");
	for (int i = 0; i < nt; i++)
	{
		size_t		bytes = (size_t) st[i].d0 * (st[i].d1 > 0 ? st[i].d1 : 1) * sizeof(float);

		if (st[i].d1 > 0)
			hlen += snprintf(hdr + hlen, hcap - hlen,
							 ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
							 st[i].name, (long long) st[i].d0, (long long) st[i].d1, data, data + bytes);
		else
			hlen += snprintf(hdr + hlen, hcap - hlen,
							 ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
							 st[i].name, (long long) st[i].d0, data, data + bytes);
		data += bytes;
	}
	hdr[hlen++] = '}';
	while (hlen % 8 != 0)
		hdr[hlen++] = ' ';

	buf = malloc(8 + hlen + data);
	if (buf == NULL)
		goto oom;
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t) ((uint64_t) hlen >> (8 * i));
	memcpy(buf + 8, hdr, hlen);
	dst = buf + 8 + hlen;
	for (int i = 0; i < nt; i++)
	{
		size_t		n = (size_t) st[i].d0 * (st[i].d1 > 0 ? st[i].d1 : 1);

		/* little-endian float32, whatever the host's byte order */
		for (size_t j = 0; j < n; j++, dst += 4)
		{
			uint32_t	bits;

			memcpy(&bits, &st[i].data[j], sizeof bits);
			dst[0] = (uint8_t) bits;
			dst[1] = (uint8_t) (bits >> 8);
			dst[2] = (uint8_t) (bits >> 16);
			dst[3] = (uint8_t) (bits >> 24);
		}
	}
	free(st);
	free(hdr);
	*out = buf;
	*len = 8 + hlen + data;
	return 0;

oom:
	free(st);
	free(hdr);
	snprintf(err, errlen, "out of memory writing the checkpoint");
	return -1;
}
