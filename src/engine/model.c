/*
 * model.c - BERT parameters in one allocation, checkpoint loading, and the
 * CPU forward pass (OpenBLAS sgemm for the dense layers, or gemm.c's kernel
 * once the weights are packed for it; the loops of ops.c for the rest) over
 * packed variable-length batches, split over threads by sequence, or one
 * sequence's work shared by a team (team.h).
 */
#include "model.h"
#include "blas.h"
#include "cpu.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "gemm_q8.h"
#include "ops.h"
#include "simd.h"
#include "team.h"
#include "arena_guard.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parameter layout ---- */

/* Point every view into params (or just count, when params is NULL); returns the float count. */
static size_t
layout_params(BtBertModel *m, float *params)
{
	const BtBertConfig *c = &m->cfg;
	size_t		H = c->hidden_size,
				I = c->intermediate_size,
				L = c->num_layers;
	size_t		n = 0;
	float	  **slots[] = {
		&m->p.word_emb, &m->p.pos_emb, &m->p.type_emb, &m->p.emb_ln_w, &m->p.emb_ln_b,
		&m->p.qkv_w, &m->p.qkv_b, &m->p.attn_out_w, &m->p.attn_out_b, &m->p.attn_ln_w,
		&m->p.attn_ln_b, &m->p.ffn_in_w, &m->p.ffn_in_b, &m->p.ffn_out_w, &m->p.ffn_out_b,
		&m->p.ffn_ln_w, &m->p.ffn_ln_b, &m->p.pool_w, &m->p.pool_b, &m->p.cls_w, &m->p.cls_b,
	};
	size_t		sizes[] = {
		c->vocab_size * H, c->max_position * H, c->type_vocab_size * H, H, H,
		L * 3 * H * H, L * 3 * H, L * H * H, L * H, L * H,
		L * H, L * I * H, L * I, L * H * I, L * H,
		L * H, L * H, m->has_pooler ? H * H : 0, m->has_pooler ? H : 0,
		m->num_classes * H, (size_t) m->num_classes,
	};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
	{
		*slots[i] = (params && sizes[i]) ? params + n : NULL;
		n += sizes[i];
	}
	return n;
}

int
bt_model_alloc_params(BtBertModel *m)
{
	m->has_classifier = m->num_classes > 0;
	m->num_params = layout_params(m, NULL);
	m->params = aligned_alloc(64, ((m->num_params * sizeof(float)) + 63) & ~(size_t) 63);
	if (m->params == NULL)
		return -1;
	layout_params(m, m->params);
	return 0;
}

/* ---- checkpoint loading ---- */

typedef struct Loader
{
	const BtSafetensors *st;
	const char *prefix;			/* "bert." or "" */
	bool	   *used;			/* per tensor of st */
	char	   *err;
	size_t		errlen;
	int			missing;		/* count of missing tensors */
	size_t		errpos;
} Loader;

/* Find name under the prefix, trying legacy LayerNorm gamma/beta spellings too. */
static const BtTensor *
find_tensor(Loader *ld, const char *name, int prefixed, char *full, size_t fulllen)
{
	const BtTensor *t;
	const char *suffixes[][2] = {{"LayerNorm.weight", "LayerNorm.gamma"}, {"LayerNorm.bias", "LayerNorm.beta"}};

	snprintf(full, fulllen, "%s%s", prefixed ? ld->prefix : "", name);
	if ((t = bt_safetensors_find(ld->st, full)) != NULL)
		return t;
	for (int i = 0; i < 2; i++)
	{
		size_t		nl = strlen(full),
					sl = strlen(suffixes[i][0]);

		if (nl >= sl && strcmp(full + nl - sl, suffixes[i][0]) == 0)
		{
			char		legacy[512];

			snprintf(legacy, sizeof legacy, "%.*s%s", (int) (nl - sl), full, suffixes[i][1]);
			if ((t = bt_safetensors_find(ld->st, legacy)) != NULL)
				return t;
		}
	}
	return NULL;
}

/* Note a missing tensor in the error text (the first few by name). */
static void
note_missing(Loader *ld, const char *full)
{
	if (ld->missing == 0)
		ld->errpos = snprintf(ld->err, ld->errlen, "checkpoint lacks tensor");
	if (ld->missing < 4 && ld->errpos < ld->errlen)
		ld->errpos += snprintf(ld->err + ld->errpos, ld->errlen - ld->errpos, "%s \"%s\"",
							   ld->missing ? "," : "", full);
	else if (ld->missing == 4 && ld->errpos < ld->errlen)
		ld->errpos += snprintf(ld->err + ld->errpos, ld->errlen - ld->errpos, ", ...");
	ld->missing++;
}

/*
 * Load tensor `name` of shape (d0[, d1]) into dst as float32; returns 0, 1
 * when it is missing (recorded), -1 on a hard error (shape, dtype, NaN).
 */
static int
load(Loader *ld, const char *name, int prefixed, float *dst, int64_t d0, int64_t d1)
{
	char		full[512];
	const BtTensor *t = find_tensor(ld, name, prefixed, full, sizeof full);
	size_t		n = (size_t) d0 * (size_t) (d1 > 0 ? d1 : 1);

	if (t == NULL)
	{
		note_missing(ld, full);
		return 1;
	}
	if (ld->missing)
		return 0;				/* only collecting names now */
	if (t->ndim != (d1 > 0 ? 2 : 1) || t->shape[0] != d0 || (d1 > 0 && t->shape[1] != d1))
	{
		char		got[128] = "";

		for (int i = 0; i < t->ndim && i < 8; i++)
			snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "",
					 (long long) t->shape[i]);
		if (d1 > 0)
			snprintf(ld->err, ld->errlen, "tensor \"%s\" has shape [%s], expected [%lld, %lld]",
					 t->name, got, (long long) d0, (long long) d1);
		else
			snprintf(ld->err, ld->errlen, "tensor \"%s\" has shape [%s], expected [%lld]",
					 t->name, got, (long long) d0);
		return -1;
	}
	if (bt_safetensors_read_f32(ld->st, t, dst, n, ld->err, ld->errlen) != 0)
		return -1;
	for (size_t i = 0; i < n; i++)
	{
		if (!isfinite(dst[i]))
		{
			snprintf(ld->err, ld->errlen, "tensor \"%s\" holds a non-finite value at element %zu",
					 t->name, i);
			return -1;
		}
	}
	ld->used[t - ld->st->tensors] = true;
	return 0;
}

/* Load every parameter; returns 0, or -1 with ld->err set. */
static int
load_all(BtBertModel *m, Loader *ld)
{
	const BtBertConfig *c = &m->cfg;
	int64_t		H = c->hidden_size,
				I = c->intermediate_size;
	BtBertParams *p = &m->p;
	char		name[256];
	int			rc = 0;

#define LOAD(nm, pre, dst, a, b) \
	do { if ((rc = load(ld, nm, pre, dst, a, b)) < 0) return -1; } while (0)

	LOAD("embeddings.word_embeddings.weight", 1, p->word_emb, c->vocab_size, H);
	LOAD("embeddings.position_embeddings.weight", 1, p->pos_emb, c->max_position, H);
	LOAD("embeddings.token_type_embeddings.weight", 1, p->type_emb, c->type_vocab_size, H);
	LOAD("embeddings.LayerNorm.weight", 1, p->emb_ln_w, H, 0);
	LOAD("embeddings.LayerNorm.bias", 1, p->emb_ln_b, H, 0);
	for (int l = 0; l < c->num_layers; l++)
	{
		static const char *const qkv[] = {"query", "key", "value"};

		for (int j = 0; j < 3; j++)
		{
			snprintf(name, sizeof name, "encoder.layer.%d.attention.self.%s.weight", l, qkv[j]);
			LOAD(name, 1, p->qkv_w + ((size_t) l * 3 + j) * H * H, H, H);
			snprintf(name, sizeof name, "encoder.layer.%d.attention.self.%s.bias", l, qkv[j]);
			LOAD(name, 1, p->qkv_b + ((size_t) l * 3 + j) * H, H, 0);
		}
		snprintf(name, sizeof name, "encoder.layer.%d.attention.output.dense.weight", l);
		LOAD(name, 1, p->attn_out_w + (size_t) l * H * H, H, H);
		snprintf(name, sizeof name, "encoder.layer.%d.attention.output.dense.bias", l);
		LOAD(name, 1, p->attn_out_b + (size_t) l * H, H, 0);
		snprintf(name, sizeof name, "encoder.layer.%d.attention.output.LayerNorm.weight", l);
		LOAD(name, 1, p->attn_ln_w + (size_t) l * H, H, 0);
		snprintf(name, sizeof name, "encoder.layer.%d.attention.output.LayerNorm.bias", l);
		LOAD(name, 1, p->attn_ln_b + (size_t) l * H, H, 0);
		snprintf(name, sizeof name, "encoder.layer.%d.intermediate.dense.weight", l);
		LOAD(name, 1, p->ffn_in_w + (size_t) l * I * H, I, H);
		snprintf(name, sizeof name, "encoder.layer.%d.intermediate.dense.bias", l);
		LOAD(name, 1, p->ffn_in_b + (size_t) l * I, I, 0);
		snprintf(name, sizeof name, "encoder.layer.%d.output.dense.weight", l);
		LOAD(name, 1, p->ffn_out_w + (size_t) l * H * I, H, I);
		snprintf(name, sizeof name, "encoder.layer.%d.output.dense.bias", l);
		LOAD(name, 1, p->ffn_out_b + (size_t) l * H, H, 0);
		snprintf(name, sizeof name, "encoder.layer.%d.output.LayerNorm.weight", l);
		LOAD(name, 1, p->ffn_ln_w + (size_t) l * H, H, 0);
		snprintf(name, sizeof name, "encoder.layer.%d.output.LayerNorm.bias", l);
		LOAD(name, 1, p->ffn_ln_b + (size_t) l * H, H, 0);
	}
	if (m->has_pooler)
	{
		LOAD("pooler.dense.weight", 1, p->pool_w, H, H);
		LOAD("pooler.dense.bias", 1, p->pool_b, H, 0);
	}
	if (m->has_classifier)
	{
		LOAD("classifier.weight", 0, p->cls_w, m->num_classes, H);
		LOAD("classifier.bias", 0, p->cls_b, m->num_classes, 0);
	}
#undef LOAD
	return ld->missing ? -1 : 0;
}

BtBertModel *
bt_model_load(BtBertConfig *cfg, const BtSafetensors *st, char *notes, size_t noteslen,
			  char *err, size_t errlen)
{
	BtBertModel *m = calloc(1, sizeof(BtBertModel));
	Loader		ld;
	const BtTensor *cls;
	char		full[512];

	if (notes && noteslen)
		notes[0] = '\0';
	if (m == NULL)
	{
		bt_config_free(cfg);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));

	memset(&ld, 0, sizeof ld);
	ld.st = st;
	ld.err = err;
	ld.errlen = errlen;
	ld.prefix = bt_safetensors_find(st, "bert.embeddings.word_embeddings.weight") ? "bert." : "";
	ld.used = calloc(st->n_tensors + 1, sizeof(bool));
	if (ld.used == NULL)
		goto oom;

	/* optional parts: a pooler (absent in sentence-transformers exports), a classifier */
	m->has_pooler = find_tensor(&ld, "pooler.dense.weight", 1, full, sizeof full) != NULL;
	cls = find_tensor(&ld, "classifier.weight", 0, full, sizeof full);
	if (cls != NULL)
	{
		if (cls->ndim != 2 || cls->shape[0] < 1 || cls->shape[0] > 100000)
		{
			snprintf(err, errlen, "tensor \"classifier.weight\" has an unusable shape");
			goto fail;
		}
		m->has_classifier = true;
		m->num_classes = (int) cls->shape[0];
		if (m->cfg.num_labels > 0 && m->cfg.num_labels != m->num_classes)
		{
			snprintf(err, errlen, "classifier has %d outputs but config id2label names %d labels",
					 m->num_classes, m->cfg.num_labels);
			goto fail;
		}
	}

	if (bt_model_alloc_params(m) != 0)
		goto oom;
	if (load_all(m, &ld) != 0)
		goto fail;

	/* report what the model does not use (buffers like position_ids are expected) */
	if (notes && noteslen)
	{
		size_t		pos = 0;
		int			unused = 0;

		for (int i = 0; i < st->n_tensors; i++)
		{
			const char *nm = st->tensors[i].name;
			size_t		nl = strlen(nm);

			if (ld.used[i] || (nl >= 12 && strcmp(nm + nl - 12, "position_ids") == 0))
				continue;
			if (unused++ < 8 && pos < noteslen)
				pos += snprintf(notes + pos, noteslen - pos, "%s%s",
								pos ? ", " : "unused tensors: ", nm);
		}
		if (unused > 8 && pos < noteslen)
			snprintf(notes + pos, noteslen - pos, " and %d more", unused - 8);
	}
	free(ld.used);
	return m;

oom:
	snprintf(err, errlen, "out of memory loading the model");
fail:
	free(ld.used);
	bt_model_free(m);
	return NULL;
}

void
bt_model_free(BtBertModel *m)
{
	if (m == NULL)
		return;
	bt_config_free(&m->cfg);
	free(m->params);
	free(m->q8);
	free(m->q8_mem);
	free(m->bf16);
	free(m->bf16_mem);
	for (int i = 0; i < BT_SPARE_ARENAS; i++)
		free(m->spare_arenas[i]);
	free(m);
}

/* ---- inference ---- */

/*
 * Sequences of a batch are independent until the pooler, so with a thread
 * budget of two or more (OpenBLAS's thread count) a batch of several sequences
 * is cut into contiguous chunks of similar cost, and that many engine threads
 * each run whole chunks through the layer stack with single-threaded sgemm
 * calls. Everything then runs in parallel, not only the GEMMs, and no BLAS
 * thread spins waiting while the softmax, GELU or LayerNorm run alone.
 * OpenBLAS's pthreads build runs a call with one thread on the calling
 * thread, so concurrent calls only share its locked buffer allocator.
 * Workers run engine code only (never PostgreSQL's), with every signal blocked,
 * and are joined before the forward pass returns.
 */

#define MAX_THREADS 64

/* Rough cost of one sequence of S tokens, per layer: 2 S H (4 H + 2 I + 2 S) flops. */
static double
seq_cost(const BtBertConfig *c, int S)
{
	return (double) S * (4.0 * c->hidden_size + 2.0 * c->intermediate_size + 2.0 * S);
}

/* ---- the layers' work, on one thread or shared by a team ---- */

/* Arguments of one team job; each job reads the members it needs. */
typedef struct Job
{
	float	   *out;
	const float *in,
			   *w,
			   *b;
	int			T,
				O,
				K,
				ldo,			/* dense: out's row stride */
				p0,				/* dense: its panels p0 .. p1 - 1 */
				p1;
	float		eps;
	const BtActivation *gelu;	/* dense: NULL, or the GELU to apply to its outputs */
	const BtQ8Weight *q8;		/* dense: w in 8 bits, or NULL */
	const BtBf16Weight *bf16;	/* dense: w in bf16, or NULL */
	bool		bf16_products;	/* attention: multiply in bf16 (the model runs in bf16) */
	float	   *scratch;		/* attention: (max S, max S) per member */
	size_t		scratch_each;
	const BtBatch *batch;
	int			NH;
} Job;

/* Member's share of n items, [*from, *to). */
static void
share(int n, int member, int members, int *from, int *to)
{
	*from = (int) ((int64_t) n * member / members);
	*to = (int) ((int64_t) n * (member + 1) / members);
}

/* A packed dense layer: this member's panels. */
static void
dense_job(void *arg, int member, int members)
{
	Job		   *j = arg;
	int			p0,
				p1;

	share(j->p1 - j->p0, member, members, &p0, &p1);
	if (j->bf16)
		bt_gemm_bf16(j->out, j->ldo, j->in, j->T, j->bf16, j->b, j->p0 + p0, j->p0 + p1, j->gelu);
	else if (j->q8)
		bt_gemm_q8(j->out, j->ldo, j->in, j->T, j->q8, j->b, j->p0 + p0, j->p0 + p1, j->gelu);
	else
		bt_gemm_packed(j->out, j->ldo, j->in, j->T, j->w, j->b, j->O, j->K, j->p0 + p0, j->p0 + p1, j->gelu);
}

/* Residual and LayerNorm over this member's rows: out (T, O) = LN(out + in). */
static void
residual_layernorm_job(void *arg, int member, int members)
{
	Job		   *j = arg;
	int			r0,
				r1;

	share(j->T, member, members, &r0, &r1);
	if (r1 > r0)
		bt_residual_layernorm_forward(j->out + (size_t) r0 * j->O, j->in + (size_t) r0 * j->O, j->w, j->b,
									  r1 - r0, j->O, j->eps);
}

/* This member's (sequence, head) pairs of attention: out = ctx, in = qkv. */
static void
attention_job(void *arg, int member, int members)
{
	Job		   *j = arg;

	bt_attention_forward_part(j->out, j->scratch + member * j->scratch_each, j->in, j->batch, j->O, j->NH,
							  member, members, j->bf16_products);
}

/*
 * Panels p0 .. p1 - 1 of out (T rows, stride ldo) = in (T, K) @ w^T + b, w a
 * packed (O, K) weight, then gelu (NULL or the activation); shared by the team
 * when there is one.
 */
static void
layer_dense_panels(const BtBertModel *m, BtTeam *team, float *out, int ldo, const float *in, const float *w,
				   const float *b, int T, int O, int K, int p0, int p1, const BtActivation *gelu)
{
	Job			j = {.out = out, .ldo = ldo, .in = in, .w = w, .b = b, .T = T, .O = O, .K = K,
	.p0 = p0, .p1 = p1, .gelu = gelu};

	for (int i = 0; m->use_q8 && i < m->n_q8; i++)
		if (m->q8[i].source == w)
			j.q8 = &m->q8[i];
	for (int i = 0; m->use_bf16 && i < m->n_bf16; i++)
		if (m->bf16[i].source == w)
			j.bf16 = &m->bf16[i];

	if (team)
		bt_team_run(team, dense_job, &j);
	else
		dense_job(&j, 0, 1);
}

/* out (T, O) = in (T, K) @ w^T + b of an encoder layer: packed weights through gemm.c, else OpenBLAS. */
static void
layer_dense(const BtBertModel *m, BtTeam *team, float *out, const float *in, const float *w, const float *b,
			int T, int O, int K)
{
	if (m->packed)
		layer_dense_panels(m, team, out, O, in, w, b, T, O, K, 0, bt_gemm_panels(O), NULL);
	else
		bt_dense_forward(NULL, out, in, w, b, T, O, K);
}

/*
 * Sequences s0 .. s1 - 1 of b as a batch of their own: offsets (s1 - s0 + 1
 * entries, the caller's) rebased to 0, ids and type ids pointing into b's.
 */
static BtBatch
sub_batch(const BtBatch *b, int s0, int s1, int32_t *offsets)
{
	int			t0 = b->offsets[s0];
	BtBatch		sub = {s1 - s0, offsets, b->ids + t0, b->type_ids ? b->type_ids + t0 : NULL};

	for (int s = s0; s <= s1; s++)
		offsets[s - s0] = b->offsets[s] - t0;
	return sub;
}

/*
 * Rows of sequences whose queries, keys and values one thread computes and
 * then attends over before going on to the next sequences: a product over
 * the whole batch leaves most of q, k and v in L3 by the time their heads
 * come (1152 floats a row in MiniLM, 2304 in bert-base), and the heads wait
 * on them. On Zen 4, MiniLM at batch 32 and 128 tokens ran 1-6% faster,
 * and at most 3% elsewhere (docs/benchmarks.md; bert-base within noise);
 * the weights are read once more per group, from L3, which costs less.
 * The same bits: each row's product does not depend on its group.
 */
#define ATTENTION_GROUP_ROWS 192

/*
 * ctx (T, H) = self-attention of layer l over x (T, H), qkv as scratch, on
 * this thread: the qkv product and the heads for one group of whole
 * sequences (up to ATTENTION_GROUP_ROWS rows, or one longer sequence) at a
 * time.
 */
static void
layer_attention_grouped(const BtBertModel *m, const BtBatch *b, int l, const float *x, float *qkv, float *ctx,
						float *scores)
{
	const BtBertConfig *c = &m->cfg;
	int			H = c->hidden_size;
	const float *w = m->p.qkv_w + (size_t) l * 3 * H * H,
			   *bias = m->p.qkv_b + (size_t) l * 3 * H;
	int32_t		offsets[ATTENTION_GROUP_ROWS + 1];	/* a group has up to ATTENTION_GROUP_ROWS sequences */

	if (!m->packed)
	{
		/* OpenBLAS may share this product among its threads: keep it whole */
		layer_dense(m, NULL, qkv, x, w, bias, b->offsets[b->n_seq], 3 * H, H);
		bt_attention_forward_part(ctx, scores, qkv, b, H, c->num_heads, 0, 1, m->use_bf16);
		return;
	}
	for (int s0 = 0, s1; s0 < b->n_seq; s0 = s1)
	{
		int			t0 = b->offsets[s0];
		BtBatch		group;

		for (s1 = s0 + 1; s1 < b->n_seq && s1 - s0 < ATTENTION_GROUP_ROWS &&
			 b->offsets[s1 + 1] - t0 <= ATTENTION_GROUP_ROWS; s1++)
			;
		group = sub_batch(b, s0, s1, offsets);
		layer_dense(m, NULL, qkv + (size_t) t0 * 3 * H, x + (size_t) t0 * H, w, bias, b->offsets[s1] - t0, 3 * H, H);
		bt_attention_forward_part(ctx + (size_t) t0 * H, scores, qkv + (size_t) t0 * 3 * H, &group, H,
								  c->num_heads, 0, 1, m->use_bf16);
	}
}

/* ffn (T, I) = GELU(x (T, H) @ w^T + b), the GELU inside the GEMM when the weights are packed. */
static void
layer_ffn_in(const BtBertModel *m, BtTeam *team, float *ffn, const float *x, const float *w, const float *b, int T)
{
	int			H = m->cfg.hidden_size,
				I = m->cfg.intermediate_size;

	if (m->packed)
		layer_dense_panels(m, team, ffn, I, x, w, b, T, I, H, 0, bt_gemm_panels(I), &m->cfg.activation);
	else
	{
		/* no team: teams run packed models only */
		bt_dense_forward(NULL, ffn, x, w, b, T, I, H);
		bt_gelu_forward(ffn, ffn, (size_t) T * I, m->cfg.activation);
	}
}

/*
 * Rows that one thread takes through both products of the feed-forward
 * before going on to the next rows: the intermediate (48 x 1536 floats in
 * MiniLM, 48 x 3072 in bert-base) then stays in L2 for the second product,
 * where a whole batch's goes out to L3 and comes back. Each group reads the
 * layer's two weight matrices again, from L3, so it pays only where they are
 * small. On Zen 4's avx512 path, one thread (docs/benchmarks.md), MiniLM
 * ran 2-4% faster in float32 and 5-13% in bf16, bert-base 2% in bf16;
 * bert-base in float32 (19 MB of weights a layer) ran 3-7% slower, and int8
 * and the avx2 kernels moved either way: those keep the whole batch. The
 * same bits: each row's products do not depend on its group.
 */
#define FFN_GROUP_ROWS 48
#define FFN_GROUP_MAX_WEIGHT_BYTES ((size_t) 10 << 20)

/* Rows per group of layer_feed_forward on this thread: FFN_GROUP_ROWS where that pays, else all T. */
static int
feed_forward_group_rows(const BtBertModel *m, BtTeam *team, int T)
{
	size_t		weight_bytes = (size_t) 2 * m->cfg.hidden_size * m->cfg.intermediate_size *
		(m->use_bf16 ? sizeof(uint16_t) : sizeof(float));

	if (team || !m->packed || m->use_q8 || bt_cpu_path() != BT_CPU_AVX512 ||
		weight_bytes > FFN_GROUP_MAX_WEIGHT_BYTES)
		return T;
	return FFN_GROUP_ROWS;
}

/* out (T, H) = the feed-forward of layer l over x (T, H), ffn (T, I) as scratch; a group of rows at a time. */
static void
layer_feed_forward(const BtBertModel *m, BtTeam *team, int l, const float *x, float *ffn, float *out, int T)
{
	const BtBertParams *p = &m->p;
	int			H = m->cfg.hidden_size,
				I = m->cfg.intermediate_size,
				G = feed_forward_group_rows(m, team, T);
	const float *w_in = p->ffn_in_w + (size_t) l * I * H,
			   *w_out = p->ffn_out_w + (size_t) l * H * I;

	for (int r0 = 0; r0 < T; r0 += G)
	{
		int			n = T - r0 < G ? T - r0 : G;

		layer_ffn_in(m, team, ffn, x + (size_t) r0 * H, w_in, p->ffn_in_b + (size_t) l * I, n);
		layer_dense(m, team, out + (size_t) r0 * H, ffn, w_out, p->ffn_out_b + (size_t) l * H, n, H, I);
	}
}

/* x (T, H) = LayerNorm(x + add) * w + b, shared by the team when there is one. */
static void
layer_residual_norm(const BtBertModel *m, BtTeam *team, float *x, const float *add, const float *w,
					const float *b, int T)
{
	Job			j = {.out = x, .in = add, .w = w, .b = b, .T = T, .O = m->cfg.hidden_size,
	.eps = m->cfg.layer_norm_eps};

	if (team)
		bt_team_run(team, residual_layernorm_job, &j);
	else
		residual_layernorm_job(&j, 0, 1);
}

/*
 * The last layer l for the first token ([CLS]) of each sequence only, when
 * nothing but the pooler reads its output: keys and values still come from
 * every token, but the attention output, both LayerNorms and the
 * feed-forward run on n_seq rows instead of T (and so do the queries, unless
 * the weights are packed and H is not a whole number of panels: then the
 * whole QKV GEMM runs). The [CLS] rows of x get the result; the other rows
 * keep the layer's input. work: 3 n_seq H floats.
 */
static void
last_layer_first_only(const BtBertModel *m, BtTeam *team, int l, const BtBatch *b, float *x, float *kv,
					  float *scores, float *ffn, float *work)
{
	const BtBertConfig *c = &m->cfg;
	const BtBertParams *p = &m->p;
	int			H = c->hidden_size,
				I = c->intermediate_size,
				n = b->n_seq,
				T = b->offsets[n];
	const float *qkv_w = p->qkv_w + (size_t) l * 3 * H * H,
			   *qkv_b = p->qkv_b + (size_t) l * 3 * H;
	float	   *first = work,
			   *q = first + (size_t) n * H,
			   *ctx = q + (size_t) n * H,
			   *tmp = q;		/* q is spent once ctx is computed */

	for (int s = 0; s < n; s++)
		memcpy(first + (size_t) s * H, x + (size_t) b->offsets[s] * H, H * sizeof(float));
	if (m->packed && H % BT_GEMM_PANEL == 0)
	{
		/* the panels of keys and values over every row, those of the queries over the first rows */
		layer_dense_panels(m, team, kv, 3 * H, x, qkv_w, qkv_b, T, 3 * H, H, H / BT_GEMM_PANEL,
						   bt_gemm_panels(3 * H), NULL);
		layer_dense_panels(m, team, q, H, first, qkv_w, qkv_b, n, 3 * H, H, 0, H / BT_GEMM_PANEL, NULL);
	}
	else if (m->packed)
	{
		layer_dense(m, team, kv, x, qkv_w, qkv_b, T, 3 * H, H);
		for (int s = 0; s < n; s++)
			memcpy(q + (size_t) s * H, kv + (size_t) b->offsets[s] * 3 * H, H * sizeof(float));
	}
	else
	{
		/* keys and values (T, 2H) into columns H.. of kv (T, 3H), bias first as in bt_dense_forward */
		for (int t = 0; t < T; t++)
			memcpy(kv + (size_t) t * 3 * H + H, qkv_b + H, 2 * (size_t) H * sizeof(float));
		bt_sgemm(BT_ROW_MAJOR, BT_NO_TRANS, BT_TRANS, T, 2 * H, H, 1.0f, x, H, qkv_w + (size_t) H * H, H,
				 1.0f, kv + H, 3 * H);
		bt_dense_forward(NULL, q, first, qkv_w, qkv_b, n, H, H);
	}
	bt_attention_first_forward(ctx, scores, q, kv, b, H, c->num_heads);
	layer_dense(m, team, tmp, ctx, p->attn_out_w + (size_t) l * H * H, p->attn_out_b + (size_t) l * H, n, H, H);
	layer_residual_norm(m, team, first, tmp, p->attn_ln_w + (size_t) l * H, p->attn_ln_b + (size_t) l * H, n);
	layer_ffn_in(m, team, ffn, first, p->ffn_in_w + (size_t) l * I * H, p->ffn_in_b + (size_t) l * I, n);
	layer_dense(m, team, tmp, ffn, p->ffn_out_w + (size_t) l * H * I, p->ffn_out_b + (size_t) l * H, n, H, I);
	layer_residual_norm(m, team, first, tmp, p->ffn_ln_w + (size_t) l * H, p->ffn_ln_b + (size_t) l * H, n);
	for (int s = 0; s < n; s++)
		memcpy(x + (size_t) b->offsets[s] * H, first + (size_t) s * H, H * sizeof(float));
}

/* An arena: its usable bytes, then (64 bytes in) the floats. */
typedef struct Arena
{
	size_t		bytes;
} Arena;

#define ARENA_HEADER 64

/* The model's spare arenas, locked: a spin lock, held for a few loads and stores (never across malloc or free). */
static Arena **
spares_lock(const BtBertModel *m)
{
	while (__atomic_test_and_set((void *) &m->spare_lock, __ATOMIC_ACQUIRE))
		;
	return (Arena **) m->spare_arenas;
}

static void
spares_unlock(const BtBertModel *m)
{
	__atomic_clear((void *) &m->spare_lock, __ATOMIC_RELEASE);
}

/*
 * Scratch of at least `bytes` for a forward pass: the smallest spare the model
 * kept from earlier passes that is big enough, else a new one (NULL when out
 * of memory). A pass over 4096 tokens needs about 60 MB; fresh from malloc
 * (glibc maps blocks that big anew each time), every page of it faults in and
 * is cleared on every pass.
 */
static float *
arena_take(const BtBertModel *m, size_t bytes)
{
	Arena	  **spares = spares_lock(m),
			   *a = NULL;
	int			best = -1;

	for (int i = 0; i < BT_SPARE_ARENAS; i++)
		if (spares[i] && spares[i]->bytes >= bytes && (best < 0 || spares[i]->bytes < spares[best]->bytes))
			best = i;
	if (best >= 0)
	{
		a = spares[best];
		spares[best] = NULL;
	}
	spares_unlock(m);
	if (a == NULL && (a = aligned_alloc(64, ARENA_HEADER + (bytes + 63) / 64 * 64)) != NULL)
		a->bytes = bytes;
	return a ? (float *) ((char *) a + ARENA_HEADER) : NULL;
}

/*
 * Hand an arena from arena_take back to the model's spares: into an empty
 * slot, else in place of the smallest spare if that is smaller (so that a
 * batch grown for good stops allocating), else it is freed.
 */
static void
arena_give(const BtBertModel *m, float *data)
{
	Arena	  **spares = spares_lock(m),
			   *a = (Arena *) ((char *) data - ARENA_HEADER),
			   *out = a;
	int			smallest = 0;

	for (int i = 0; i < BT_SPARE_ARENAS && out; i++)
		if (spares[i] == NULL)
			spares[i] = a, out = NULL;
		else if (spares[i]->bytes < spares[smallest]->bytes)
			smallest = i;
	if (out && spares[smallest]->bytes < a->bytes)
	{
		out = spares[smallest];
		spares[smallest] = a;
	}
	spares_unlock(m);
	free(out);
}

/*
 * Run the embeddings and every layer over a checked batch: x (T, H). With
 * first_only, only each sequence's first row is right after the last layer
 * (see last_layer_first_only). team: threads sharing each step, or NULL for
 * this thread alone (OpenBLAS's threads share the GEMMs of an unpacked model
 * then). 0, or -1 out of memory.
 */
static int
encode(const BtBertModel *m, const BtBatch *b, float *x, bool first_only, BtTeam *team)
{
	const BtBertConfig *c = &m->cfg;
	const BtBertParams *p = &m->p;
	int			H = c->hidden_size,
				I = c->intermediate_size,
				T = b->offsets[b->n_seq],
				max_len = bt_batch_max_len(b),
				members = bt_team_size(team);
	size_t		G = BT_GUARD_FLOATS,	/* red zone after each view: 0 but under ASan */
				square = (size_t) max_len * max_len,
				square_each = square + G,
				work = first_only ? 3 * (size_t) b->n_seq * H : 0,
				need = (size_t) T * (3 * H + H + H + I) + 4 * G + members * square_each + work + G;
	float	   *arena = arena_take(m, need * sizeof(float)),
			   *qkv,
			   *ctx,
			   *tmp,
			   *ffn,
			   *scores;

	if (arena == NULL)
		return -1;
	qkv = arena;
	ctx = qkv + (size_t) T * 3 * H + G;
	tmp = ctx + (size_t) T * H + G;
	ffn = tmp + (size_t) T * H + G;
	scores = ffn + (size_t) T * I + G;
	if (G)
	{
		bt_guard_poison(ctx - G, G);
		bt_guard_poison(tmp - G, G);
		bt_guard_poison(ffn - G, G);
		bt_guard_poison(scores - G, G);
		for (int i = 0; i < members; i++)
			bt_guard_poison(scores + i * square_each + square, G);
		bt_guard_poison(scores + members * square_each + work, G);
	}

	bt_embeddings_forward(x, m, b);
	bt_layernorm_forward(x, NULL, NULL, x, p->emb_ln_w, p->emb_ln_b, T, H, c->layer_norm_eps);
	for (int l = 0; l < c->num_layers; l++)
	{
		if (first_only && l == c->num_layers - 1)
		{
			last_layer_first_only(m, team, l, b, x, qkv, scores, ffn, scores + members * square_each);
			break;
		}
		if (team)
		{
			Job			j = {.out = ctx, .in = qkv, .O = H, .NH = c->num_heads, .batch = b,
			.scratch = scores, .scratch_each = square_each, .bf16_products = m->use_bf16};

			layer_dense(m, team, qkv, x, p->qkv_w + (size_t) l * 3 * H * H, p->qkv_b + (size_t) l * 3 * H, T, 3 * H, H);
			bt_team_run(team, attention_job, &j);
		}
		else
			layer_attention_grouped(m, b, l, x, qkv, ctx, scores);
		layer_dense(m, team, tmp, ctx, p->attn_out_w + (size_t) l * H * H, p->attn_out_b + (size_t) l * H, T, H, H);
		layer_residual_norm(m, team, x, tmp, p->attn_ln_w + (size_t) l * H, p->attn_ln_b + (size_t) l * H, T);
		layer_feed_forward(m, team, l, x, ffn, tmp, T);
		layer_residual_norm(m, team, x, tmp, p->ffn_ln_w + (size_t) l * H, p->ffn_ln_b + (size_t) l * H, T);
	}
	bt_guard_unpoison(arena, need);
	arena_give(m, arena);
	return 0;
}

/* The chunks of one parallel forward pass, and which one is handed out next. */
typedef struct Chunks
{
	const BtBertModel *m;
	const BtBatch *b;
	float	   *x;				/* (T, H) of the whole batch */
	int			n;				/* chunks */
	const int  *first;			/* n + 1 entries: chunk i holds sequences first[i] .. first[i+1]-1 */
	int32_t    *offsets;		/* scratch: n_seq + n entries of rebased offsets */
	int			next;			/* next chunk to take (atomic) */
	int			failed;			/* a chunk ran out of memory (atomic) */
	bool		first_only;		/* encode()'s first_only */
} Chunks;

/* Encode chunk i: its sequences as a batch of their own, rows of the shared x. */
static int
encode_chunk(Chunks *ch, int i)
{
	const BtBatch *b = ch->b;
	int			s0 = ch->first[i],
				s1 = ch->first[i + 1],
				t0 = b->offsets[s0];
	BtBatch		sub = sub_batch(b, s0, s1, ch->offsets + s0 + i);	/* s1 - s0 + 1 offsets of its own */

	return encode(ch->m, &sub, ch->x + (size_t) t0 * ch->m->cfg.hidden_size, ch->first_only, NULL);
}

/* Thread body: take chunks until none is left. */
static void *
chunk_worker(void *arg)
{
	Chunks	   *ch = arg;
	int			i;

	while ((i = __atomic_fetch_add(&ch->next, 1, __ATOMIC_RELAXED)) < ch->n)
		if (encode_chunk(ch, i) != 0)
			__atomic_store_n(&ch->failed, 1, __ATOMIC_RELAXED);
	return NULL;
}

/*
 * Cut sequences into n contiguous chunks of about equal cost: chunk i ends
 * at the sequence whose running cost is nearest to (i + 1) / n of the total,
 * keeping at least one sequence per chunk. first gets n + 1 entries.
 */
static void
cut_chunks(const BtBertConfig *c, const BtBatch *b, int n, int *first)
{
	double		total = 0.0,
				run = 0.0;
	int			s = 0;

	for (int k = 0; k < b->n_seq; k++)
		total += seq_cost(c, b->offsets[k + 1] - b->offsets[k]);
	first[0] = 0;
	for (int i = 0; i < n - 1; i++)
	{
		double		target = total * (i + 1) / n;

		/* take at least one; stop early enough to leave one for each later chunk */
		do
		{
			double		cost = seq_cost(c, b->offsets[s + 1] - b->offsets[s]);

			/* stop before s when that lands nearer the target than after it */
			if (s > first[i] && run + cost - target > target - run)
				break;
			run += cost;
			s++;
		} while (s < b->n_seq - (n - 1 - i) && run < target);
		first[i + 1] = s;
	}
	first[n] = b->n_seq;
}

/*
 * Would chunks of whole sequences keep `threads` threads busy? Not when one
 * sequence is most of the work (a long one among short ones): then
 * OpenBLAS's threads sharing every GEMM do better.
 */
static bool
chunks_balance(const BtBertConfig *c, const BtBatch *b, int threads)
{
	double		total = 0.0,
				longest = 0.0;

	for (int s = 0; s < b->n_seq; s++)
	{
		double		cost = seq_cost(c, b->offsets[s + 1] - b->offsets[s]);

		total += cost;
		longest = cost > longest ? cost : longest;
	}
	/* the pass takes at least the longest sequence's time: ask for 3/4 of the ideal speedup */
	return longest <= total / (0.75 * threads);
}

#define CHUNKS_PER_THREAD 4
#define CHUNK_MIN_TOKENS 128

/*
 * How many chunks a pass on `threads` threads cuts the batch into: up to
 * CHUNKS_PER_THREAD per thread, taken one at a time, so that a thread slowed
 * by other work on its core (a database server always has some) takes fewer
 * of them instead of holding the pass up by a whole share; but none under
 * CHUNK_MIN_TOKENS tokens, whose products would stream the weights for too
 * few rows.
 */
static int
chunk_count(const BtBatch *b, int threads)
{
	int			n = threads * CHUNKS_PER_THREAD,
				by_tokens = b->offsets[b->n_seq] / CHUNK_MIN_TOKENS;

	n = n < by_tokens ? n : by_tokens;
	n = n > threads ? n : threads;
	return n < b->n_seq ? n : b->n_seq;
}

/*
 * encode() over the batch on `threads` threads (this one included), each
 * taking the next chunk until none is left; the caller sets OpenBLAS to one
 * thread meanwhile. 0, or -1 when out of memory.
 */
static int
encode_parallel(const BtBertModel *m, const BtBatch *b, float *x, int threads, bool first_only)
{
	pthread_t	tid[MAX_THREADS];
	bool		started[MAX_THREADS] = {false};
	int			n = chunk_count(b, threads);
	int		   *first = malloc((n + 1) * sizeof(int));
	int32_t    *offsets = malloc(((size_t) b->n_seq + n) * sizeof(int32_t));
	Chunks		ch = {m, b, x, n, first, offsets, 0, 0, first_only};
	sigset_t	all,
				old;

	if (first == NULL || offsets == NULL)
	{
		free(first);
		free(offsets);
		return -1;
	}
	cut_chunks(&m->cfg, b, n, first);
	if (threads > n)
		threads = n;

	/* workers inherit the blocked mask: the host's signal handlers stay on this thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int t = 1; t < threads; t++)
		started[t] = pthread_create(&tid[t], NULL, chunk_worker, &ch) == 0;	/* if not: fewer threads */
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	chunk_worker(&ch);
	for (int t = 1; t < threads; t++)
		if (started[t])
			pthread_join(tid[t], NULL);

	free(first);
	free(offsets);
	return ch.failed ? -1 : 0;
}

int
bt_model_forward(const BtBertModel *m, const BtBatch *b, BtForwardOut *out, char *err, size_t errlen)
{
	const BtBertConfig *c = &m->cfg;
	const BtBertParams *p = &m->p;
	int			H = c->hidden_size,
				T,
				threads,
				blas_threads,
				rc;
	bool		first_only,
				parallel;
	BtTeam	   *team;
	float	   *x;

	if (bt_check_batch(m, b, err, errlen) != 0)
		return -1;
	if (bt_sgemm == NULL && bt_blas_load(NULL, 0, err, errlen) != 0)
		return -1;
	if ((out->pooled || out->logits) && !m->has_pooler)
	{
		snprintf(err, errlen, "the model has no pooler");
		return -1;
	}
	if (out->logits && !m->has_classifier)
	{
		snprintf(err, errlen, "the model has no classification head");
		return -1;
	}
	T = b->offsets[b->n_seq];

	/* the last hidden state, then room for the pooler's input and output: (n_seq, H) each */
	x = arena_take(m, ((size_t) T + 2 * (size_t) b->n_seq) * H * sizeof(float));
	if (x == NULL)
	{
		snprintf(err, errlen, "out of memory for a batch of %d tokens", T);
		return -1;
	}
	blas_threads = threads = bt_blas_threads();
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	/* only the pooler reads the last layer: run it for [CLS] rows alone */
	first_only = out->hidden == NULL && out->mean == NULL;
	parallel = threads >= 2 && b->n_seq >= 2 && chunks_balance(c, b, threads);
	if (parallel)
	{
		/*
		 * One OpenBLAS thread until the head is done too: its GEMMs are small,
		 * and OpenBLAS's workers, once woken, spin for a while and would take
		 * cores from the chunk threads of the next forward pass.
		 */
		bt_blas_set_threads(1);
		rc = encode_parallel(m, b, x, threads, first_only);
	}
	else if (threads >= 2 && m->packed && (team = bt_team_start(threads)) != NULL)
	{
		/* one sequence, or one that dominates: the team shares every step of it */
		parallel = true;
		bt_blas_set_threads(1);
		rc = encode(m, b, x, first_only, team);
		bt_team_stop(team);
	}
	else
		rc = encode(m, b, x, first_only, NULL);	/* OpenBLAS's threads share the GEMMs (or one thread) */
	if (rc != 0)
	{
		if (parallel)
			bt_blas_set_threads(blas_threads);
		snprintf(err, errlen, "out of memory for a batch of %d tokens", T);
		arena_give(m, x);
		return -1;
	}

	if (out->hidden)
		memcpy(out->hidden, x, (size_t) T * H * sizeof(float));
	if (out->mean)
		for (int s = 0; s < b->n_seq; s++)
		{
			float	   *row = out->mean + (size_t) s * H;
			int			len = b->offsets[s + 1] - b->offsets[s];

			for (int i = 0; i < H; i++)
			{
				float		sum = 0.0f;

				for (int t = b->offsets[s]; t < b->offsets[s + 1]; t++)
					sum += x[(size_t) t * H + i];
				row[i] = sum / len;
			}
		}
	if (out->pooled || out->logits)
	{
		/* pooled (n_seq, H) = tanh(dense(hidden state of each [CLS])) */
		float	   *cls = x + (size_t) T * H;
		float	   *pooled = out->pooled ? out->pooled : cls + (size_t) b->n_seq * H;

		for (int s = 0; s < b->n_seq; s++)
			memcpy(cls + (size_t) s * H, x + (size_t) b->offsets[s] * H, H * sizeof(float));
		bt_dense_forward(NULL, pooled, cls, p->pool_w, p->pool_b, b->n_seq, H, H);
		bt_tanh_forward(pooled, (size_t) b->n_seq * H);
		if (out->logits)
			bt_dense_forward(NULL, out->logits, pooled, p->cls_w, p->cls_b, b->n_seq, m->num_classes, H);
	}
	if (parallel)
		bt_blas_set_threads(blas_threads);
	arena_give(m, x);
	return 0;
}

int
bt_model_pack(BtBertModel *m, char *err, size_t errlen)
{
	const BtBertConfig *c = &m->cfg;
	BtBertParams *p = &m->p;
	int			H = c->hidden_size,
				I = c->intermediate_size;
	float	   *scratch;

	if (m->packed || !bt_simd_avx2())
		return 0;
	/* room for the largest one weight matrix: QKV (3H, H) or the feed-forward's (I, H) */
	scratch = malloc((size_t) H * (3 * H > I ? 3 * H : I) * sizeof(float));
	if (scratch == NULL)
	{
		snprintf(err, errlen, "out of memory packing the weights");
		return -1;
	}
	for (int l = 0; l < c->num_layers; l++)
	{
		bt_gemm_pack(p->qkv_w + (size_t) l * 3 * H * H, 3 * H, H, scratch);
		bt_gemm_pack(p->attn_out_w + (size_t) l * H * H, H, H, scratch);
		bt_gemm_pack(p->ffn_in_w + (size_t) l * I * H, I, H, scratch);
		bt_gemm_pack(p->ffn_out_w + (size_t) l * H * I, H, I, scratch);
	}
	free(scratch);
	m->packed = true;
	return 0;
}

/* Encoder weight i (0 .. 4 L - 1: per layer QKV, attention output, feed-forward in and out) and its shape. */
static const float *
encoder_weight(const BtBertModel *m, int i, int *O, int *K)
{
	const BtBertParams *p = &m->p;
	size_t		H = m->cfg.hidden_size,
				I = m->cfg.intermediate_size,
				l = i / 4;

	switch (i % 4)
	{
		case 0:
			*O = 3 * H;
			*K = H;
			return p->qkv_w + l * 3 * H * H;
		case 1:
			*O = H;
			*K = H;
			return p->attn_out_w + l * H * H;
		case 2:
			*O = I;
			*K = H;
			return p->ffn_in_w + l * I * H;
		default:
			*O = H;
			*K = I;
			return p->ffn_out_w + l * H * I;
	}
}

/* A form the encoder's weights can also be held in beside float32: 8-bit codes or bf16. */
typedef struct WeightFormat
{
	int			(*fits) (int O, int K);
	size_t		(*bytes) (int O, int K);
	void		(*convert) (void *weight, void *mem, const float *w, int O, int K);
	void		(*keep) (BtBertModel *m, void *weights, void *mem, int n);	/* into the model's fields */
	size_t		weight_size;	/* of its BtQ8Weight or BtBf16Weight */
	const char *oom;			/* the error when memory runs out */
} WeightFormat;

/* WeightFormat.convert and .keep for each format: the converters take their own weight type. */
static void
quantize_q8(void *weight, void *mem, const float *w, int O, int K)
{
	bt_q8_quantize(weight, mem, w, O, K, 1);
}

static void
convert_bf16(void *weight, void *mem, const float *w, int O, int K)
{
	bt_bf16_convert(weight, mem, w, O, K, 1);
}

static void
keep_q8(BtBertModel *m, void *weights, void *mem, int n)
{
	m->q8 = weights;
	m->q8_mem = mem;
	m->n_q8 = n;
}

static void
keep_bf16(BtBertModel *m, void *weights, void *mem, int n)
{
	m->bf16 = weights;
	m->bf16_mem = mem;
	m->n_bf16 = n;
}

static const WeightFormat q8_format = {bt_q8_fits, bt_q8_bytes, quantize_q8, keep_q8, sizeof(BtQ8Weight),
"out of memory quantizing the weights"};
static const WeightFormat bf16_format = {bt_bf16_fits, bt_bf16_bytes, convert_bf16, keep_bf16, sizeof(BtBf16Weight),
"out of memory converting the weights to bf16"};

/* The bytes of format f's arrays for the encoder weights that fit it, *n of them. */
static size_t
fitting_bytes(const BtBertModel *m, const WeightFormat *f, int *n)
{
	size_t		bytes = 0;
	int			O,
				K;

	*n = 0;
	for (int i = 0; i < 4 * m->cfg.num_layers; i++)
	{
		encoder_weight(m, i, &O, &K);
		if (f->fits(O, K))
		{
			bytes += f->bytes(O, K);
			(*n)++;
		}
	}
	return bytes;
}

/* What format f's held weights take, their structs included: 0 before any are held, else all that fit. */
static size_t
held_bytes(const BtBertModel *m, const WeightFormat *f, int held)
{
	int			n;
	size_t		bytes;

	if (held == 0)
		return 0;
	bytes = fitting_bytes(m, f, &n);
	return bytes + (size_t) n * f->weight_size;
}

/*
 * The encoder weights that fit format f, converted and kept in m (f->keep):
 * an array of them, in encoder_weight's order, over one 64-byte aligned
 * allocation. 0 (m unchanged and nothing allocated when none fits), or -1
 * with err (m unchanged).
 */
static int
convert_encoder_weights(BtBertModel *m, const WeightFormat *f, char *err, size_t errlen)
{
	int			n,
				count = 0,
				O,
				K;
	size_t		bytes = fitting_bytes(m, f, &n);	/* one pass to size the allocation, one to fill it */
	char	   *weights,
			   *mem,
			   *at;

	if (n == 0)
		return 0;
	weights = calloc(n, f->weight_size);
	at = mem = aligned_alloc(64, bytes);
	if (weights == NULL || mem == NULL)
	{
		free(weights);
		free(mem);
		snprintf(err, errlen, "%s", f->oom);
		return -1;
	}
	for (int i = 0; i < 4 * m->cfg.num_layers; i++)
	{
		const float *w = encoder_weight(m, i, &O, &K);

		if (!f->fits(O, K))
			continue;
		f->convert(weights + (size_t) count++ * f->weight_size, at, w, O, K);
		at += f->bytes(O, K);
	}
	f->keep(m, weights, mem, count);
	return 0;
}

int
bt_model_quantize(BtBertModel *m, char *err, size_t errlen)
{
	if (m->q8 != NULL)
	{
		m->use_q8 = true;
		m->use_bf16 = false;
		return 0;
	}
	if (bt_model_pack(m, err, errlen) != 0)
		return -1;
	if (!m->packed)
		return 0;				/* no AVX2: float32 stays */
	if (convert_encoder_weights(m, &q8_format, err, errlen) != 0)
		return -1;
	if (m->n_q8 == 0)
		return 0;
	m->use_q8 = true;
	m->use_bf16 = false;
	return 0;
}

int
bt_model_to_bf16(BtBertModel *m, char *err, size_t errlen)
{
	if (!bt_cpu_bf16())
	{
		char		path[128];

		bt_cpu_describe(path, sizeof(path));
		snprintf(err, errlen, "bf16 needs a CPU with AVX512-BF16 on the avx512 path; this one runs %s", path);
		return -2;
	}
	if (m->bf16 == NULL)
	{
		if (bt_model_pack(m, err, errlen) != 0)
			return -1;
		if (convert_encoder_weights(m, &bf16_format, err, errlen) != 0)
			return -1;
		if (m->n_bf16 == 0)
			return 0;			/* nothing fits: float32 stays */
	}
	m->use_bf16 = true;
	m->use_q8 = false;
	return 0;
}

size_t
bt_model_q8_bytes(const BtBertModel *m)
{
	return held_bytes(m, &q8_format, m->n_q8);
}

size_t
bt_model_bf16_bytes(const BtBertModel *m)
{
	return held_bytes(m, &bf16_format, m->n_bf16);
}
