/*
 * test_train.c - engine fine-tuning against torch + transformers, and the
 * trainer's other promises.
 *
 *   test_train TRAIN_DIR MODELS_DIR [SAVE_DIR]
 *
 * Each subdirectory of TRAIN_DIR (test/fixtures/train, made by
 * test/oracle/gen_train_fixtures.py) holds a tiny BertForSequenceClassification
 * checkpoint, packed batches with labels, and what torch computed: the loss and
 * every gradient of one step (engine layout), then the losses, learning rates,
 * gradient norms and final weights of 20 AdamW steps. The engine must match
 * the gradients and the loss within float32 rounding bounds derived in
 * test/engine/tolerance.h (per tensor), the loss curve within 1e-3 relative and
 * the final weights within 1e-4 (see the comment above LOSS_REL).
 * Also: gradient accumulation, freeze_encoder (encoder bit-identical),
 * save -> parse -> load round trips, random initialization statistics,
 * replacing a head (MODELS_DIR: test/fixtures/models), finite-difference
 * gradient checks with and without dropout, and errors on bad input.
 * With SAVE_DIR, the trained models are written to SAVE_DIR/<name>/model.safetensors
 * for gen_train_fixtures.py --check-saved.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blas.h"
#include "config.h"
#include "cpu.h"
#include "gemm_bf16.h"
#include "model.h"
#include "ops.h"
#include "safetensors.h"
#include "sgemm_bf16.h"
#include "simd.h"
#include "team.h"
#include "testing.h"
#include "tolerance.h"
#include "train.h"

/*
 * After 20 AdamW steps. One step moves a weight by lr m/(sqrt v + eps), a
 * ratio in which a relative gradient error r cancels to first order except
 * where it changes m and sqrt v differently: at most 2 r lr per step. With r
 * the gradients' bound relative to their tensor's scale (grad_tolerance: about
 * 7e-5 for these models) and lr = 1e-3, 20 steps give 20 * 2 * 7e-5 * 1e-3 =
 * 2.8e-6, before those weight differences feed back into the gradients, which
 * no a-priori bound follows well. WEIGHT_ABS leaves a factor 36 for that; the
 * losses, which change by at most |d loss / d w|_1 times the weights' error,
 * get LOSS_REL. A wrong update rule (decay on biases, bias correction off, a
 * wrong beta) moves weights by about lr per step: 2e-2 here.
 */
#define LOSS_REL 1e-3
#define WEIGHT_ABS 1e-4


/* Worst results over all fixtures, for the summary line (docs/engine.md quotes it). */
static double worst_grad_rel,
			worst_grad_abs,
			worst_loss_rel,
			worst_weight_abs;

/* Whole file dir/name, or exit: the fixtures must be there. */
static uint8_t *
slurp(const char *dir, const char *name, size_t *len)
{
	uint8_t    *buf = read_file(dir, name, len);

	if (buf == NULL)
	{
		fprintf(stderr, "test_train: cannot read %s/%s\n", dir, name);
		exit(2);
	}
	return buf;
}

/* A reference file: the blob and its parse. */
typedef struct Ref
{
	uint8_t    *buf;
	BtSafetensors *st;
} Ref;

/* A float tensor of the reference as a malloc'd array of n floats (or exit); *n may be NULL. */
static float *
ref_f32(const Ref *r, const char *name, size_t *n)
{
	const BtTensor *t = bt_safetensors_find(r->st, name);
	size_t		count;
	float	   *v;
	char		err[256];

	if (!t)
	{
		fprintf(stderr, "test_train: reference lacks tensor %s\n", name);
		exit(2);
	}
	count = bt_tensor_numel(t);
	v = malloc(count * sizeof(float) + 1);
	if (bt_safetensors_read_f32(r->st, t, v, count, err, sizeof err) != 0)
	{
		fprintf(stderr, "test_train: %s: %s\n", name, err);
		exit(2);
	}
	if (n)
		*n = count;
	return v;
}

/* An int32 tensor of the reference (raw little-endian data). */
static const int32_t *
ref_i32(const Ref *r, const char *name, size_t *n)
{
	const BtTensor *t = bt_safetensors_find(r->st, name);

	if (!t || t->dtype != BT_I32)
	{
		fprintf(stderr, "test_train: reference lacks int32 tensor %s\n", name);
		exit(2);
	}
	*n = t->nbytes / 4;
	return (const int32_t *) (r->st->data + t->offset);
}

/* Batch j of the reference and its labels. */
static BtBatch
ref_batch(const Ref *r, int j, const int32_t **labels)
{
	BtBatch		b;
	char		name[64];
	size_t		n;

	snprintf(name, sizeof name, "batch%d.ids", j);
	b.ids = ref_i32(r, name, &n);
	snprintf(name, sizeof name, "batch%d.type_ids", j);
	b.type_ids = ref_i32(r, name, &n);
	snprintf(name, sizeof name, "batch%d.offsets", j);
	b.offsets = ref_i32(r, name, &n);
	b.n_seq = (int) n - 1;
	snprintf(name, sizeof name, "batch%d.labels", j);
	*labels = ref_i32(r, name, &n);
	return b;
}

static void
ref_open(Ref *r, const char *dir)
{
	size_t		len;
	char		err[256];

	r->buf = slurp(dir, "reference.safetensors", &len);
	r->st = bt_safetensors_parse(r->buf, len, err, sizeof err);
	if (!r->st)
	{
		fprintf(stderr, "test_train: %s/reference.safetensors: %s\n", dir, err);
		exit(2);
	}
}

static void
ref_close(Ref *r)
{
	bt_safetensors_free(r->st);
	free(r->buf);
}

/* Model of a fixture directory (config.json + model.safetensors), or exit. */
static BtBertModel *
load_dir(const char *dir)
{
	size_t		clen,
				wlen;
	uint8_t    *cjson = slurp(dir, "config.json", &clen),
			   *weights = slurp(dir, "model.safetensors", &wlen);
	BtBertConfig cfg;
	BtSafetensors *st;
	BtBertModel *m = NULL;
	char		err[512];

	st = bt_safetensors_parse(weights, wlen, err, sizeof err);
	if (st && bt_config_parse((const char *) cjson, clen, &cfg, err, sizeof err) == 0)
		m = bt_model_load(&cfg, st, NULL, 0, err, sizeof err);
	if (!m)
	{
		fprintf(stderr, "test_train: %s: %s\n", dir, err);
		exit(2);
	}
	bt_safetensors_free(st);
	free(cjson);
	free(weights);
	return m;
}

/* A model from a config.json text (init_random), or exit. */
static BtBertModel *
random_model(const char *json, int classes, uint64_t seed)
{
	BtBertConfig cfg;
	BtBertModel *m;
	char		err[256];

	if (bt_config_parse(json, strlen(json), &cfg, err, sizeof err) != 0 ||
		(m = bt_model_init_random(&cfg, classes, seed, err, sizeof err)) == NULL)
	{
		fprintf(stderr, "test_train: random model: %s\n", err);
		exit(2);
	}
	return m;
}

/* The engine's parameter views by name, for reports. */
typedef struct View
{
	const char *name;
	size_t		off,
				n;
} View;

static int
param_views(const BtBertModel *m, View *v)
{
	const BtBertConfig *c = &m->cfg;
	const BtBertParams *p = &m->p;
	size_t		H = c->hidden_size,
				I = c->intermediate_size,
				L = c->num_layers,
				C = m->num_classes;
	struct
	{
		const char *name;
		const float *ptr;
		size_t		n;
	}			all[] = {
		{"word_emb", p->word_emb, c->vocab_size * H}, {"pos_emb", p->pos_emb, c->max_position * H},
		{"type_emb", p->type_emb, c->type_vocab_size * H}, {"emb_ln_w", p->emb_ln_w, H},
		{"emb_ln_b", p->emb_ln_b, H}, {"qkv_w", p->qkv_w, L * 3 * H * H}, {"qkv_b", p->qkv_b, L * 3 * H},
		{"attn_out_w", p->attn_out_w, L * H * H}, {"attn_out_b", p->attn_out_b, L * H},
		{"attn_ln_w", p->attn_ln_w, L * H}, {"attn_ln_b", p->attn_ln_b, L * H},
		{"ffn_in_w", p->ffn_in_w, L * I * H}, {"ffn_in_b", p->ffn_in_b, L * I},
		{"ffn_out_w", p->ffn_out_w, L * H * I}, {"ffn_out_b", p->ffn_out_b, L * H},
		{"ffn_ln_w", p->ffn_ln_w, L * H}, {"ffn_ln_b", p->ffn_ln_b, L * H},
		{"pool_w", p->pool_w, H * H}, {"pool_b", p->pool_b, H}, {"cls_w", p->cls_w, C * H}, {"cls_b", p->cls_b, C},
	};
	int			k = 0;

	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (all[i].ptr)
		{
			v[k].name = all[i].name;
			v[k].off = (size_t) (all[i].ptr - m->params);
			v[k].n = all[i].n;
			k++;
		}
	return k;
}

/* Mean cross-entropy in double from logits (n, C), weighted as torch does (w may be NULL). */
static double
ce_loss(const float *logits, const int32_t *labels, const float *w, int n, int C)
{
	double		loss = 0.0,
				wsum = 0.0;

	for (int i = 0; i < n; i++)
	{
		const float *z = logits + (size_t) i * C;
		double		max = z[0],
					sum = 0.0,
					wi = w ? w[labels[i]] : 1.0;

		for (int j = 1; j < C; j++)
			max = z[j] > max ? z[j] : max;
		for (int j = 0; j < C; j++)
			sum += exp(z[j] - max);
		loss += wi * (max + log(sum) - z[labels[i]]);
		wsum += wi;
	}
	return loss / wsum;
}

/* The loss of the inference forward pass (bt_model_forward) on a batch. */
static double
inference_loss(const BtBertModel *m, const BtBatch *b, const int32_t *labels, const float *w)
{
	BtForwardOut out;
	char		err[256];
	double		loss;

	memset(&out, 0, sizeof out);
	out.logits = malloc((size_t) b->n_seq * m->num_classes * sizeof(float));
	if (bt_model_forward(m, b, &out, err, sizeof err) != 0)
	{
		fprintf(stderr, "test_train: forward: %s\n", err);
		exit(2);
	}
	loss = ce_loss(out.logits, labels, w, b->n_seq, m->num_classes);
	free(out.logits);
	return loss;
}

/* The longest dot product of a model's layers: hidden or intermediate terms. */
static int
longest_sum(const BtBertModel *m)
{
	return m->cfg.hidden_size > m->cfg.intermediate_size ? m->cfg.hidden_size : m->cfg.intermediate_size;
}

/*
 * How far two float32 implementations' losses of one batch may be apart: the
 * logits carry encoder_tolerance at their scale (taken as 1 + |loss|: the
 * loss is a log-sum-exp of them), d loss / d logits sums to at most 2 in
 * magnitude, and the loss's own log-sum-exp and mean add gamma(C + n) of it.
 */
static double
loss_tolerance(const BtBertModel *m, const BtBatch *b, double loss)
{
	return 2.0 * encoder_tolerance(m->cfg.num_layers, longest_sum(m), 1.0 + fabs(loss)) +
		2.0 * gamma32(m->num_classes + b->n_seq) * fabs(loss);
}

/*
 * How far two float32 implementations' gradients of one tensor may be apart:
 * the backward pass runs the layers' sums again in reverse and adds the sums
 * over the batch's tokens (weight gradients), so the encoder budget for
 * 2 layers + 1 passes, with sums of max(k, tokens) terms, at the scale of the
 * tensor's largest gradient.
 */
static double
grad_tolerance(const BtBertModel *m, const BtBatch *b, const float *want, size_t n)
{
	double		scale = 0.0;
	int			k = longest_sum(m),
				tokens = b->offsets[b->n_seq];

	for (size_t j = 0; j < n; j++)
		scale = fmax(scale, fabs(want[j]));
	return encoder_tolerance(2 * m->cfg.num_layers + 1, k > tokens ? k : tokens, scale);
}

/* Options with dropout off (parity runs) and the reference's class weights. */
static BtTrainOptions
parity_options(const BtBertModel *m, const float *class_weights)
{
	BtTrainOptions o = bt_train_default_options(&m->cfg);

	o.hidden_dropout = 0.0f;
	o.attention_dropout = 0.0f;
	o.class_weights = class_weights;
	return o;
}

static BtTrainer *
trainer_or_exit(BtBertModel *m, const BtTrainOptions *o)
{
	char		err[256];
	BtTrainer  *t = bt_trainer_create(m, o, err, sizeof err);

	if (!t)
	{
		fprintf(stderr, "test_train: trainer: %s\n", err);
		exit(2);
	}
	return t;
}

static float
accumulate_or_exit(BtTrainer *t, const BtBatch *b, const int32_t *labels, float scale)
{
	char		err[256];
	float		loss;

	if (bt_trainer_accumulate(t, b, labels, scale, &loss, err, sizeof err) != 0)
	{
		fprintf(stderr, "test_train: accumulate: %s\n", err);
		exit(2);
	}
	return loss;
}

/* save -> parse -> load gives back the same model, bit for bit; optionally writes the file to dir. */
static void
check_round_trip(const BtBertModel *m, const char *what, const char *dir)
{
	uint8_t    *buf;
	size_t		len;
	char		err[256];
	BtSafetensors *st;
	BtBertConfig cfg = m->cfg;
	BtBertModel *back;
	const char *pre = m->has_classifier ? "bert." : "";
	char		name[128];

	if (bt_model_save_safetensors(m, &buf, &len, err, sizeof err) != 0)
	{
		check(0, "%s: saves (%s)", what, err);
		return;
	}
	st = bt_safetensors_parse(buf, len, err, sizeof err);
	if (!st)
	{
		check(0, "%s: the saved file parses (%s)", what, err);
		free(buf);
		return;
	}
	snprintf(name, sizeof name, "%sencoder.layer.0.attention.self.key.weight", pre);
	check(bt_safetensors_find(st, name) != NULL && (len - 8 - st->data_len) % 8 == 0 &&
		  (bt_safetensors_find(st, "classifier.weight") != NULL) == m->has_classifier &&
		  (bt_safetensors_find(st, m->has_classifier ? "bert.pooler.dense.weight" : "pooler.dense.weight") != NULL) ==
		  m->has_pooler,
		  "%s: saved as %d tensors named like %s, header padded to 8 bytes", what, st->n_tensors, name);
	cfg.labels = NULL;			/* the copy must not own m's labels */
	cfg.num_labels = 0;
	back = bt_model_load(&cfg, st, NULL, 0, err, sizeof err);
	check(back && back->num_params == m->num_params && back->has_pooler == m->has_pooler &&
		  back->has_classifier == m->has_classifier && back->num_classes == m->num_classes &&
		  memcmp(back->params, m->params, m->num_params * sizeof(float)) == 0,
		  "%s: save -> parse -> load gives identical parameters (%zu floats, %zu bytes)", what,
		  m->num_params, len);
	if (dir)
	{
		char		path[1024];
		FILE	   *f;

		mkdir(dir, 0777);
		snprintf(path, sizeof path, "%s/model.safetensors", dir);
		f = fopen(path, "wb");
		check(f && fwrite(buf, 1, len, f) == len && fclose(f) == 0, "%s: written to %s", what, path);
	}
	bt_model_free(back);
	bt_safetensors_free(st);
	free(buf);
}

/* One step: the loss and every gradient of batch0 against torch. */
static void
test_gradients(const char *dir, const char *name)
{
	BtBertModel *m = load_dir(dir);
	Ref			r;
	const int32_t *labels;
	BtBatch		b;
	float	   *want,
			   *weights = NULL,
			   *loss0;
	size_t		n;
	BtTrainOptions o;
	BtTrainer  *t;
	const float *got;
	View		v[32];
	int			nv = param_views(m, v),
				bad = 0;
	double		rel_worst = 0.0,
				abs_worst = 0.0,
				worst_ratio = 0.0;
	float		loss;

	ref_open(&r, dir);
	b = ref_batch(&r, 0, &labels);
	if (bt_safetensors_find(r.st, "class_weights"))
		weights = ref_f32(&r, "class_weights", NULL);
	want = ref_f32(&r, "grads", &n);
	loss0 = ref_f32(&r, "loss0", NULL);
	o = parity_options(m, weights);
	t = trainer_or_exit(m, &o);
	loss = accumulate_or_exit(t, &b, labels, 1.0f);
	got = bt_trainer_grads(t);

	check(fabs(loss - loss0[0]) <= loss_tolerance(m, &b, loss0[0]), "%s: loss of one batch %.7f, torch %.7f%s", name,
		  loss, loss0[0], weights ? " (class weights)" : "");
	check(fabs(loss - inference_loss(m, &b, labels, weights)) <= loss_tolerance(m, &b, loss),
		  "%s: the training forward pass gives the inference forward pass's loss", name);
	check(n == m->num_params, "%s: reference holds %zu gradients for %zu parameters", name, n, m->num_params);
	if (n != m->num_params)
		goto out;
	for (int i = 0; i < nv; i++)
	{
		double		vrel = 0.0,
					vabs = 0.0,
					vtol = grad_tolerance(m, &b, want + v[i].off, v[i].n);
		int			vbad = 0;

		for (size_t j = v[i].off; j < v[i].off + v[i].n; j++)
		{
			double		d = fabs((double) got[j] - want[j]);

			vabs = d > vabs ? d : vabs;
			if (fabs(want[j]) >= 1e-3)	/* relative error where it means something */
				vrel = d / fabs(want[j]) > vrel ? d / fabs(want[j]) : vrel;
			if (!(d <= vtol))
				vbad++;
		}
		worst_ratio = fmax(worst_ratio, vabs / vtol);
		if (vbad)
			printf("     %s: %d elements off, max |diff| %.2e, max rel %.2e\n", v[i].name, vbad, vabs, vrel);
		bad += vbad;
		rel_worst = vrel > rel_worst ? vrel : rel_worst;
		abs_worst = vabs > abs_worst ? vabs : abs_worst;
	}
	check(bad == 0, "%s: all %zu gradients within their tensor's rounding bound of torch "
		  "(max |diff| %.2e, %.3f of the bound at worst; max relative %.2e where |grad| >= 1e-3)", name, n,
		  abs_worst, worst_ratio, rel_worst);
	check(got[m->p.word_emb - m->params] == 0.0f && want[m->p.word_emb - m->params] == 0.0f,
		  "%s: the [PAD] row of the word embeddings gets no gradient (padding_idx)", name);
	worst_grad_rel = rel_worst > worst_grad_rel ? rel_worst : worst_grad_rel;
	worst_grad_abs = abs_worst > worst_grad_abs ? abs_worst : worst_grad_abs;

	/* accumulating two halves at scale 1/2 gives the whole batch's gradient (equal counts, no weights) */
	if (!weights && b.n_seq % 2 == 0)
	{
		BtTrainer  *t2 = trainer_or_exit(m, &o);
		int			half = b.n_seq / 2,
					mid = b.offsets[half];
		int32_t    *off2 = malloc((half + 1) * sizeof(int32_t));
		BtBatch		b1 = b,
					b2 = b;
		const float *g2;
		double		worst = 0.0,
					scale = 0.0;
		float		l1,
					l2;

		for (int s = 0; s <= half; s++)
			off2[s] = b.offsets[half + s] - mid;
		b1.n_seq = half;
		b2.n_seq = half;
		b2.offsets = off2;
		b2.ids = b.ids + mid;
		b2.type_ids = b.type_ids + mid;
		l1 = accumulate_or_exit(t2, &b1, labels, 0.5f);
		l2 = accumulate_or_exit(t2, &b2, labels + half, 0.5f);
		g2 = bt_trainer_grads(t2);
		for (size_t j = 0; j < n; j++)
		{
			double		d = fabs((double) g2[j] - got[j]);

			worst = d > worst ? d : worst;
			scale = fabs(got[j]) > scale ? fabs(got[j]) : scale;
		}
		/* the same sums in two parts: one more rounding per sum, within the gradient and loss bounds */
		check(worst <= grad_tolerance(m, &b, got, n) && fabs(0.5 * (l1 + l2) - loss) <= loss_tolerance(m, &b, loss),
			  "%s: two half batches at scale 0.5 accumulate to the whole batch's gradient (max |diff| %.1e)",
			  name, worst);
		free(off2);
		bt_trainer_free(t2);
	}

out:
	bt_trainer_free(t);
	free(want);
	free(weights);
	free(loss0);
	ref_close(&r);
	bt_model_free(m);
}

/* 20 AdamW steps: loss curve, learning rates, gradient norms and final weights against torch. */
static void
test_training(const char *dir, const char *name, const char *save_root)
{
	BtBertModel *m = load_dir(dir);
	Ref			r;
	float	   *opt,
			   *losses,
			   *lrs,
			   *norms,
			   *final,
			   *weights = NULL;
	size_t		steps,
				n;
	BtTrainOptions o;
	BtTrainer  *t;
	double		loss_rel = 0.0,
				lr_rel = 0.0,
				norm_rel = 0.0,
				w_abs = 0.0,
				key_abs = 0.0;
	int			clipped = 0;
	char		save_dir[1024];

	ref_open(&r, dir);
	opt = ref_f32(&r, "options", NULL);
	losses = ref_f32(&r, "losses", &steps);
	lrs = ref_f32(&r, "lrs", NULL);
	norms = ref_f32(&r, "grad_norms", NULL);
	final = ref_f32(&r, "final", &n);
	if (bt_safetensors_find(r.st, "class_weights"))
		weights = ref_f32(&r, "class_weights", NULL);
	o = parity_options(m, weights);
	o.learning_rate = opt[0];
	o.weight_decay = opt[1];
	o.beta1 = opt[2];
	o.beta2 = opt[3];
	o.adam_eps = opt[4];
	o.max_grad_norm = opt[5];
	o.warmup_steps = (int) opt[6];
	o.total_steps = (int) opt[7];
	t = trainer_or_exit(m, &o);

	for (size_t k = 0; k < steps; k++)
	{
		const int32_t *labels;
		BtBatch		b = ref_batch(&r, (int) (k % 5), &labels);
		float		loss = accumulate_or_exit(t, &b, labels, 1.0f),
					lr,
					norm;
		double		e;

		bt_trainer_step(t, &lr, &norm);
		e = fabs(loss - losses[k]) / fabs(losses[k]);
		loss_rel = e > loss_rel ? e : loss_rel;
		e = lrs[k] == 0.0f ? fabs(lr) : fabs(lr - lrs[k]) / lrs[k];
		lr_rel = e > lr_rel ? e : lr_rel;
		e = fabs(norm - norms[k]) / norms[k];
		norm_rel = e > norm_rel ? e : norm_rel;
		clipped += norm > o.max_grad_norm;
	}
	/* the schedule's division, subtraction and product in float32, and torch's value rounded to float32 */
	check(bt_trainer_steps(t) == (int) steps && lrs[0] == 0.0f && lr_rel <= gamma32(3) + F32_U,
		  "%s: %zu steps at transformers' linear warm-up/decay rates (first rate 0; max relative diff %.1e)",
		  name, steps, lr_rel);
	/* the norm of gradients each within r of their scale (see LOSS_REL) is within r; 1e-3 covers 20 steps' drift */
	check(norm_rel <= LOSS_REL && clipped > 0,
		  "%s: gradient norms before clipping match torch's (max relative diff %.2e; %d of %zu steps clipped)",
		  name, norm_rel, clipped, steps);
	check(loss_rel <= LOSS_REL, "%s: loss curve %.4f -> %.4f, max relative diff from torch %.2e", name,
		  losses[0], losses[steps - 1], loss_rel);
	if (n == m->num_params)
	{
		View		v[32];
		int			nv = param_views(m, v);

		size_t		H = m->cfg.hidden_size,
					qkv_b = (size_t) (m->p.qkv_b - m->params);

		for (int i = 0; i < nv; i++)
		{
			double		vabs = 0.0;

			for (size_t j = v[i].off; j < v[i].off + v[i].n; j++)
			{
				double		d = fabs((double) m->params[j] - final[j]);

				if (j >= qkv_b && j < qkv_b + m->cfg.num_layers * 3 * H && (j - qkv_b) / H % 3 == 1)
				{
					key_abs = d > key_abs ? d : key_abs;	/* a key bias: see below */
					continue;
				}
				vabs = d > vabs ? d : vabs;
			}
			if (vabs > WEIGHT_ABS)
				printf("     %s: max |diff| %.2e\n", v[i].name, vabs);
			w_abs = vabs > w_abs ? vabs : w_abs;
		}
	}
	check(n == m->num_params && w_abs <= WEIGHT_ABS, "%s: weights after %zu AdamW steps, max |diff| from torch %.2e",
		  name, steps, w_abs);

	/*
	 * The key biases' gradient is 0 in exact arithmetic (softmax ignores the
	 * q.b_k it adds to a whole row of scores), so both sides compute rounding
	 * noise of ~1e-8, which Adam (eps 1e-8) turns into steps of up to about
	 * lr in random directions. They have no effect on any output; they only
	 * have to stay within what that noise can move them.
	 */
	check(key_abs <= steps * o.learning_rate, "%s: key biases (zero gradient up to rounding) within steps x lr = %.0e"
		  " of torch's: max |diff| %.2e", name, steps * o.learning_rate, key_abs);
	worst_loss_rel = loss_rel > worst_loss_rel ? loss_rel : worst_loss_rel;
	worst_weight_abs = w_abs > worst_weight_abs ? w_abs : worst_weight_abs;

	if (save_root)
	{
		mkdir(save_root, 0777);
		snprintf(save_dir, sizeof save_dir, "%s/%s", save_root, name);
	}
	check_round_trip(m, name, save_root ? save_dir : NULL);

	bt_trainer_free(t);
	free(opt);
	free(losses);
	free(lrs);
	free(norms);
	free(final);
	free(weights);
	ref_close(&r);
	bt_model_free(m);
}

/* bt_gelu_backward (AVX2 where the CPU has it) against the exact GELU's slope in double. */
static void
test_gelu_slope(void)
{
	enum
	{
		N = 4001
	};
	static float x[N],
				dx[N];
	double		worst = 0.0;

	for (int i = 0; i < N; i++)
	{
		x[i] = -10.0f + 20.0f * i / (N - 1);
		dx[i] = 1.0f - 0.25f * (i % 5);
	}
	bt_gelu_backward(dx, x, N, BT_ACT_GELU);
	for (int i = 0; i < N; i++)
	{
		double		xi = x[i],
					slope = 0.5 * (1.0 + erf(xi / sqrt(2.0))) + xi * exp(-0.5 * xi * xi) / sqrt(2.0 * M_PI),
					err = fabs(dx[i] - (1.0 - 0.25 * (i % 5)) * slope);

		worst = err > worst ? err : worst;
	}
	/* the slope lies in [-0.17, 1.13]: a few float ulps of 1 */
	check(worst <= 1e-6, "gelu backward on %d points in [-10, 10] within %.1e of the slope in double (at most 1e-6)",
		  N, worst);

	/*
	 * the AVX-512 slope does the AVX2 slope's arithmetic lane for lane: the
	 * same bits, tails included (the forward GELUs differ: test_model's
	 * test_gelu_forward holds each to GELU in double)
	 */
	if (bt_cpu_path() >= BT_CPU_AVX512)
	{
		static float wide[N],
					narrow[N];

		for (int i = 0; i < N; i++)
			wide[i] = narrow[i] = 1.0f - 0.25f * (i % 5);
		bt_avx512_gelu_backward(wide, x, N - 3);
		bt_avx2_gelu_backward(narrow, x, N - 3);
		check(memcmp(wide, narrow, sizeof wide) == 0, "gelu backward: AVX-512 the same bits as AVX2 (%d points)", N - 3);
	}
}

/* bt_adamw_update against torch's AdamW written out here in float, bit for bit, with and without clip and decay. */
static void
test_adamw_update(void)
{
	enum
	{
		N = 1003				/* 125 vectors of eight and a tail of three */
	};
	static float p[N],
				g[N],
				m[N],
				v[N],
				rp[N],
				rm[N],
				rv[N];
	unsigned	seed = 7;
	int			cases = 0,
				same = 0;

	for (int c = 0; c < 4; c++)
	{
		BtAdamStep	s = {.clip = c & 1, .decay_on = c & 2, .grad_scale = 0.37f, .decay = 0.99995f,
		.one_minus_b1 = 0.1f, .one_minus_b2 = 0.001f, .b2 = 0.999f, .bc2_sqrt = 0.0447101f, .eps = 1e-8f,
		.step_size = 2e-5f / 0.271f};
		bool		zeroed = true;

		for (int i = 0; i < N; i++)
		{
			seed = seed * 1103515245u + 12345u;
			p[i] = rp[i] = ((int) (seed >> 9) % 2001 - 1000) * 1e-3f;
			g[i] = ((int) (seed >> 3) % 201 - 100) * (i % 7 == 0 ? 1e-6f : 1e-3f);
			m[i] = rm[i] = g[i] * 0.5f;
			v[i] = rv[i] = g[i] * g[i] * (i % 3);
		}
		for (int i = 0; i < N; i++)
		{
			float		gi = s.clip ? g[i] * s.grad_scale : g[i],
						denom;

			if (s.decay_on)
				rp[i] *= s.decay;
			rm[i] += s.one_minus_b1 * (gi - rm[i]);
			rv[i] = rv[i] * s.b2 + s.one_minus_b2 * gi * gi;
			denom = sqrtf(rv[i]) / s.bc2_sqrt + s.eps;
			rp[i] += -s.step_size * (rm[i] / denom);
		}
		bt_adamw_update(p, g, m, v, N, &s);
		for (int i = 0; i < N; i++)
			zeroed &= g[i] == 0.0f;
		cases++;
		same += zeroed && memcmp(p, rp, sizeof p) == 0 && memcmp(m, rm, sizeof m) == 0 &&
			memcmp(v, rv, sizeof v) == 0;
	}
	check(same == cases, "adamw update (%s): %d of %d cases (clip, decay) the plain loop's bits, gradients zeroed",
		  bt_simd_avx2() ? "AVX2" : "plain", same, cases);
}

/* The value bf16 rounding leaves of x. */
static double
bf16_of(float x)
{
	uint32_t	u = (uint32_t) bt_bf16_round(x) << 16;
	float		f;

	memcpy(&f, &u, sizeof f);
	return f;
}

/* Uniform in [-1, 1) from a small LCG. */
static float
uniform_pm1(uint64_t *state)
{
	*state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float) ((double) (*state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* One bt_sgemm_bf16 case against its definition; adds to the counts of exact and bounded results. */
static void
sgemm_bf16_case(BtTeam *team, bool ta, bool tb, int M, int N, int K, float alpha, float beta, bool with_bias,
				int *cases, int *exact, int *bounded, double *worst)
{
	int			lda = (ta ? M : K) + 3,
				ldb = (tb ? K : N) + 1,
				ldc = N + 5;
	size_t		na = (size_t) (ta ? K : M) * lda,
				nb = (size_t) (tb ? N : K) * ldb,
				nc = (size_t) M * ldc;
	float	   *A = malloc(na * sizeof(float)),
			   *B = malloc(nb * sizeof(float)),
			   *C = malloc(nc * sizeof(float)),
			   *C0 = malloc(nc * sizeof(float)),
			   *bias = malloc(N * sizeof(float));
	uint64_t	st = (uint64_t) (M * 131 + N * 17 + K) * 2654435761u + ta * 2 + tb;
	bool		direct = alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && N % 16 == 0;
	bool		all_exact = true,
				all_bounded = true;

	for (size_t i = 0; i < na; i++)
		A[i] = uniform_pm1(&st);
	for (size_t i = 0; i < nb; i++)
		B[i] = uniform_pm1(&st);
	for (int n = 0; n < N; n++)
		bias[n] = uniform_pm1(&st);
	for (size_t i = 0; i < nc; i++)
		C0[i] = beta == 0.0f ? NAN : uniform_pm1(&st);	/* beta 0: C must not be read */
	memcpy(C, C0, nc * sizeof(float));
	if (bt_sgemm_bf16(team, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, with_bias ? bias : NULL) != 0)
		all_exact = all_bounded = false;
	for (int m = 0; m < M && all_bounded; m++)
		for (int n = 0; n < N; n++)
		{
			double		exact_sum = 0.0,
						scale = 0.0;
			float		acc = direct && beta == 1.0f ? C0[(size_t) m * ldc + n] :
				direct && with_bias ? bias[n] : 0.0f,
						want;
			double		start = beta == 0.0f ? 0.0 : (double) beta * C0[(size_t) m * ldc + n];
			float		got = C[(size_t) m * ldc + n];

			/* what vdpbf16ps adds: both products of a pair of k in float, the odd one first */
			for (int k = 0; k < K; k += 2)
			{
				for (int q = 1; q >= 0; q--)
				{
					float		a,
								b;

					if (k + q >= K)
						continue;
					a = ta ? A[(size_t) (k + q) * lda + m] : A[(size_t) m * lda + k + q];
					b = tb ? B[(size_t) n * ldb + k + q] : B[(size_t) (k + q) * ldb + n];
					acc += (float) (bf16_of(a) * bf16_of(b));
					exact_sum += (double) a * b;
					scale += fabs((double) a * b);
				}
			}
			want = direct ? acc : alpha * acc + (beta == 0.0f ? 0.0f : beta * C0[(size_t) m * ldc + n]) +
				(with_bias ? bias[n] : 0.0f);
			all_exact = all_exact && got == want;
			/* each operand within 2^-8 of itself in bf16 (8 significant bits), float32 sums of K terms */
			{
				double		err = fabs(got - (alpha * exact_sum + start + (with_bias ? bias[n] : 0.0)));
				double		bound = fabs(alpha) * scale * (2.0 / 256 + K * 6e-8) + 1e-6 * (1.0 + fabs(start));

				*worst = scale > 0 && err / scale > *worst ? err / scale : *worst;
				all_bounded = all_bounded && err <= bound;
			}
		}
	for (int m = 0; m < M && all_bounded; m++)	/* the padding of C's rows is left alone */
		for (int n = N; n < ldc; n++)
			all_bounded = all_bounded && (isnan(C0[(size_t) m * ldc + n]) ? isnan(C[(size_t) m * ldc + n]) :
										  C[(size_t) m * ldc + n] == C0[(size_t) m * ldc + n]);
	(*cases)++;
	*exact += all_exact;
	*bounded += all_bounded;
	if (!all_bounded)
		printf("     bt_sgemm_bf16 off: trans %d%d, M %d N %d K %d, alpha %g beta %g%s%s\n", ta, tb, M, N, K,
			   alpha, beta, with_bias ? ", bias" : "", team ? ", team" : "");
	free(A);
	free(B);
	free(C);
	free(C0);
	free(bias);
}

/*
 * bt_sgemm_bf16, training's bf16 product: every transpose, shapes with odd K,
 * N off the panels, K and M past the kernel's blocks, alpha/beta/bias, alone
 * and on a team of two. Within bf16's rounding of the float product always;
 * bit for bit what vdpbf16ps sums unless AMX tiles (another order) took it.
 */
static void
test_sgemm_bf16(void)
{
	static const int shapes[][3] = {{37, 48, 64}, {5, 100, 33}, {130, 32, 1100}, {1, 16, 1}, {300, 64, 40}, {7, 16, 0}};
	static const float ab[][3] = {{1, 0, 1}, {1, 0, 0}, {1, 1, 0}, {0.5f, 0.25f, 0}, {-1, 0, 0}};
	BtTeam	   *team = bt_team_start(2);
	int			cases = 0,
				exact = 0,
				bounded = 0;
	double		worst = 0.0;

	for (int t = 0; t < 2; t++)
		for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
			for (int ta = 0; ta < 2; ta++)
				for (int tb = 0; tb < 2; tb++)
					for (size_t c = 0; c < sizeof ab / sizeof ab[0]; c++)
						sgemm_bf16_case(t ? team : NULL, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], ab[c][0],
										ab[c][1], ab[c][2] != 0, &cases, &exact, &bounded, &worst);
	check(bounded == cases, "bt_sgemm_bf16: %d of %d cases (4 transposes, alpha/beta/bias, 1 and 2 threads) within "
		  "bf16's rounding of the float product (worst error %.2e of sum |a b|)", bounded, cases, worst);
	check(exact == cases || bt_cpu_amx(), "bt_sgemm_bf16: %d of %d cases bit for bit the sums vdpbf16ps makes%s",
		  exact, cases, bt_cpu_amx() ? " (AMX tiles sum in another order here)" : "");
	bt_team_stop(team);
}

/* Norm of a - b over the norm of b, over n floats. */
static double
relative_diff(const float *a, const float *b, size_t n)
{
	double		d = 0.0,
				r = 0.0;

	for (size_t i = 0; i < n; i++)
	{
		d += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
		r += (double) b[i] * b[i];
	}
	return r > 0 ? sqrt(d / r) : sqrt(d);
}

/*
 * Training with bf16 products: its gradients near float32's (and not equal:
 * bf16 did run; a misplaced operand would be off by the gradient's own
 * size), the same loss curve over 20 AdamW steps; refused with a message
 * where the CPU has no AVX512-BF16. The tiny models' random weights make
 * bf16's 8 significant bits show more than a trained model's do.
 */
static void
test_bf16_training(const char *dir, const char *name)
{
	BtBertModel *m16 = load_dir(dir),
			   *m32 = load_dir(dir);
	Ref			r;
	BtTrainOptions o16 = parity_options(m16, NULL),
				o32 = parity_options(m32, NULL);
	BtTrainer  *t16,
			   *t32;
	char		err[256];
	double		grad_rel,
				loss_rel = 0.0;
	float		first16 = 0.0f,
				last16 = 0.0f;

	o16.bf16 = true;
	o16.learning_rate = o32.learning_rate = 1e-3f;
	t16 = bt_trainer_create(m16, &o16, err, sizeof err);
	if (!bt_cpu_bf16())
	{
		check(t16 == NULL && strstr(err, "AVX512-BF16") != NULL, "%s: bf16 training refused on the %s path: %s",
			  name, bt_cpu_path_name(bt_cpu_path()), t16 ? "(not refused)" : err);
		bt_trainer_free(t16);
		bt_model_free(m16);
		bt_model_free(m32);
		return;
	}
	check(t16 != NULL, "%s: bf16 trainer created", name);
	if (t16 == NULL)
		return;
	t32 = trainer_or_exit(m32, &o32);
	ref_open(&r, dir);
	for (int k = 0; k < 20; k++)
	{
		const int32_t *labels;
		BtBatch		b = ref_batch(&r, k % 5, &labels);
		float		l16 = accumulate_or_exit(t16, &b, labels, 1.0f),
					l32 = accumulate_or_exit(t32, &b, labels, 1.0f);

		if (k == 0)
		{
			int			threads = bt_blas_threads();
			BtTrainer  *alone;

			grad_rel = relative_diff(bt_trainer_grads(t16), bt_trainer_grads(t32), m32->num_params);
			check(grad_rel > 0.0 && grad_rel <= 0.05, "%s: bf16 gradients of one batch off float32's by %.2e "
				  "(norm of the difference over the norm; at most 0.05, and not 0)", name, grad_rel);
			/* every output is summed by one thread in one order: one thread gives the same bits */
			bt_blas_set_threads(1);
			alone = trainer_or_exit(m16, &o16);
			accumulate_or_exit(alone, &b, labels, 1.0f);
			check(memcmp(bt_trainer_grads(alone), bt_trainer_grads(t16), m16->num_params * sizeof(float)) == 0,
				  "%s: bf16 gradients on one thread equal those on %d, bit for bit", name, threads);
			bt_trainer_free(alone);
			bt_blas_set_threads(threads);
			first16 = l16;
		}
		last16 = l16;
		loss_rel = fmax(loss_rel, fabs(l16 - l32) / fabs(l32));
		bt_trainer_step(t16, NULL, NULL);
		bt_trainer_step(t32, NULL, NULL);
	}
	check(loss_rel <= 0.05 && last16 < first16, "%s: bf16 loss curve %.4f -> %.4f over 20 steps, within %.2e of "
		  "float32's (relative; at most 0.05)", name, first16, last16, loss_rel);
	bt_trainer_free(t16);
	bt_trainer_free(t32);
	ref_close(&r);
	bt_model_free(m16);
	bt_model_free(m32);
}

/* freeze_encoder: only classifier.* moves, with torch's classifier gradients. */
static void
test_freeze(const char *dir, const char *name)
{
	BtBertModel *m = load_dir(dir);
	Ref			r;
	float	   *want,
			   *weights = NULL,
			   *before = malloc(m->num_params * sizeof(float));
	size_t		cls = (size_t) (m->p.cls_w - m->params),
				zero = 0;
	BtTrainOptions o;
	BtTrainer  *t;
	const float *g;
	double		worst = 0.0,
				head_tol = 0.0;
	bool		moved = false;

	ref_open(&r, dir);
	want = ref_f32(&r, "grads", NULL);
	if (bt_safetensors_find(r.st, "class_weights"))
		weights = ref_f32(&r, "class_weights", NULL);
	memcpy(before, m->params, m->num_params * sizeof(float));
	o = parity_options(m, weights);
	o.freeze_encoder = true;
	o.learning_rate = 1e-2f;
	o.weight_decay = 0.1f;
	o.hidden_dropout = 0.1f;		/* dropout stays on in the frozen encoder; it must not matter */
	o.attention_dropout = 0.1f;
	t = trainer_or_exit(m, &o);
	for (int k = 0; k < 3; k++)
	{
		const int32_t *labels;
		BtBatch		b = ref_batch(&r, k, &labels);

		accumulate_or_exit(t, &b, labels, 1.0f);
		g = bt_trainer_grads(t);
		for (size_t j = 0; j < cls; j++)
			zero += g[j] != 0.0f;
		bt_trainer_step(t, NULL, NULL);
	}
	for (size_t j = cls; j < m->num_params; j++)
		moved |= m->params[j] != before[j];
	check(memcmp(m->params, before, cls * sizeof(float)) == 0 && zero == 0 && moved,
		  "%s: freeze_encoder leaves the encoder and pooler bit-identical (no gradient there) and trains the classifier",
		  name);
	bt_trainer_free(t);

	/* without dropout the classifier's gradient is torch's */
	memcpy(m->params, before, m->num_params * sizeof(float));
	o.hidden_dropout = o.attention_dropout = 0.0f;
	t = trainer_or_exit(m, &o);
	{
		const int32_t *labels;
		BtBatch		b = ref_batch(&r, 0, &labels);

		accumulate_or_exit(t, &b, labels, 1.0f);
		head_tol = grad_tolerance(m, &b, want + cls, m->num_params - cls);
	}
	g = bt_trainer_grads(t);
	for (size_t j = cls; j < m->num_params; j++)
		worst = fmax(worst, fabs(g[j] - want[j]));
	check(worst <= head_tol, "%s: frozen encoder: classifier gradients as torch's (max |diff| %.1e <= %.1e)", name,
		  worst, head_tol);
	bt_trainer_free(t);
	free(before);
	free(want);
	free(weights);
	ref_close(&r);
	bt_model_free(m);
}

static const char *tiny_config =
"{\"vocab_size\": 20, \"hidden_size\": 8, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
" \"intermediate_size\": 12, \"max_position_embeddings\": 10, \"type_vocab_size\": 2,"
" \"hidden_act\": \"%s\", \"layer_norm_eps\": 1e-12, \"initializer_range\": 0.5}";

/* Random initialization: transformers' scheme, reproducible from the seed. */
static void
test_init_random(void)
{
	const char *json = "{\"vocab_size\": 1000, \"hidden_size\": 64, \"num_hidden_layers\": 2,"
		" \"num_attention_heads\": 4, \"intermediate_size\": 96, \"pad_token_id\": 3,"
		" \"initializer_range\": 0.05}";
	BtBertModel *m = random_model(json, 3, 7),
			   *same = random_model(json, 3, 7),
			   *other = random_model(json, 3, 8);
	View		v[32];
	int			nv = param_views(m, v),
				finite = 1,
				exact = 1;
	double		sum = 0.0,
				sumsq = 0.0,
				mean,
				std;
	size_t		count = 0;
	const size_t H = 64;

	for (size_t j = 0; j < m->num_params; j++)
		finite &= isfinite(m->params[j]) != 0;
	for (int i = 0; i < nv; i++)
	{
		size_t		len = strlen(v[i].name);
		bool		norm_w = strstr(v[i].name, "ln_w") != NULL,
					bias = len > 2 && strcmp(v[i].name + len - 2, "_b") == 0;

		for (size_t j = v[i].off; j < v[i].off + v[i].n; j++)
		{
			float		x = m->params[j];

			if (norm_w)
				exact &= x == 1.0f;
			else if (bias)
				exact &= x == 0.0f;
			else if (!(strcmp(v[i].name, "word_emb") == 0 && (j - v[i].off) / H == 3))
			{
				sum += x;
				sumsq += (double) x * x;
				count++;
			}
		}
	}
	for (size_t i = 0; i < H; i++)
		exact &= m->p.word_emb[3 * H + i] == 0.0f;
	mean = sum / count;
	std = sqrt(sumsq / count - mean * mean);
	check(finite && m->has_pooler && m->has_classifier && m->num_classes == 3,
		  "init_random: %zu finite parameters, pooler and a 3-class head", m->num_params);
	check(exact, "init_random: LayerNorm weights 1, biases 0, padding row (pad_token_id 3) 0, exactly");
	check(fabs(mean) < 0.002 && fabs(std - 0.05) < 0.001,
		  "init_random: other weights ~ normal(0, initializer_range 0.05): mean %.5f, std %.5f over %zu", mean, std,
		  count);
	check(memcmp(m->params, same->params, m->num_params * sizeof(float)) == 0 &&
		  memcmp(m->params, other->params, m->num_params * sizeof(float)) != 0,
		  "init_random: the same seed gives the same model, another seed another");
	check_round_trip(m, "init_random model", NULL);
	bt_model_free(m);
	bt_model_free(same);
	bt_model_free(other);

	/* a model without head saves with BertModel names */
	m = random_model(json, 0, 7);
	check(!m->has_classifier && m->has_pooler && m->num_classes == 0, "init_random: 0 classes: no head");
	check_round_trip(m, "init_random model without head", NULL);
	bt_model_free(m);
}

/* bt_model_reset_head on a BertModel without pooler, and on a classifier. */
static void
test_reset_head(const char *train_dir, const char *models_dir)
{
	char		dir[1024],
				err[256];
	BtBertModel *m,
			   *orig;
	BtTrainer  *t;
	BtTrainOptions o;
	size_t		encoder;
	float		loss;
	int32_t		offsets[] = {0, 3, 8},
				ids[] = {5, 6, 7, 8, 9, 10, 11, 12},
				labels[] = {0, 3};
	BtBatch		b = {2, offsets, ids, NULL};

	snprintf(dir, sizeof dir, "%s/tiny_nopool_bf16", models_dir);
	m = load_dir(dir);
	orig = load_dir(dir);
	check_round_trip(m, "BertModel without pooler", NULL);
	o = bt_train_default_options(&m->cfg);
	err[0] = '\0';
	check(bt_trainer_create(m, &o, err, sizeof err) == NULL && strstr(err, "no classification head"),
		  "a model without a head cannot be trained: %s", err);
	encoder = (size_t) (m->p.ffn_ln_b - m->params) + (size_t) m->cfg.num_layers * m->cfg.hidden_size;
	check(bt_model_reset_head(&m, 4, 1, err, sizeof err) == 0 && m->has_pooler && m->has_classifier &&
		  m->num_classes == 4 && memcmp(m->params, orig->params, encoder * sizeof(float)) == 0 &&
		  m->p.cls_b[0] == 0.0f && m->p.pool_b[0] == 0.0f,
		  "reset_head: a BertModel gets a pooler and a 4-class head; the encoder is untouched");
	t = bt_trainer_create(m, &o, err, sizeof err);
	loss = NAN;
	if (t && bt_trainer_accumulate(t, &b, labels, 1.0f, &loss, err, sizeof err) != 0)
		loss = NAN;
	check(isfinite(loss) && loss > 0.0f,
		  "reset_head: the new head trains (first loss %.4f)", loss);
	bt_trainer_free(t);
	check_round_trip(m, "BertModel with a new head", NULL);
	bt_model_free(m);
	bt_model_free(orig);

	snprintf(dir, sizeof dir, "%s/tiny_cls", train_dir);
	m = load_dir(dir);
	orig = load_dir(dir);
	check(m->cfg.num_labels == 3 && bt_model_reset_head(&m, 2, 1, err, sizeof err) == 0 &&
		  m->num_classes == 2 && m->cfg.num_labels == 0 &&
		  memcmp(m->params, orig->params, (size_t) (orig->p.cls_w - orig->params) * sizeof(float)) == 0,
		  "reset_head: a 3-class classifier becomes 2-class; pooler kept, old label names dropped");
	err[0] = '\0';
	check(bt_model_reset_head(&m, 0, 1, err, sizeof err) != 0 && err[0], "reset_head: 0 classes refused: %s", err);
	bt_model_free(m);
	bt_model_free(orig);
}

/* Loss at the current parameters: the trainer's first pass (same seed: same dropout masks), or inference's. */
static double
loss_now(BtBertModel *m, const BtTrainOptions *o, const BtBatch *b, const int32_t *labels, bool inference)
{
	BtTrainer  *t;
	double		loss;

	if (inference)
		return inference_loss(m, b, labels, NULL);
	t = trainer_or_exit(m, o);
	loss = accumulate_or_exit(t, b, labels, 0.0f);
	bt_trainer_free(t);
	return loss;
}

/*
 * Steps of the finite differences. Against the analytic gradient: small, for
 * the truncation error, yet large enough for the float32 losses' rounding.
 * Between the two forward paths, which compute the same function and so have
 * the same truncation error, the step only divides the rounding noise: larger.
 */
#define FD_STEP 1e-2f
#define FD_PATHS_STEP 1e-1f

/* d loss / d params[j] by central differences, Richardson-extrapolated: (4 D(h/2) - D(h)) / 3. */
static double
finite_difference(BtBertModel *m, size_t j, const BtTrainOptions *o, const BtBatch *b, const int32_t *labels,
				  bool inference, float h)
{
	float		keep = m->params[j];
	double		d[2];

	for (int k = 0; k < 2; k++)
	{
		float		step = k == 0 ? h : h / 2;
		double		lp,
					lm;

		m->params[j] = keep + step;
		lp = loss_now(m, o, b, labels, inference);
		m->params[j] = keep - step;
		lm = loss_now(m, o, b, labels, inference);
		d[k] = (lp - lm) / (2.0 * step);
	}
	m->params[j] = keep;
	return (4.0 * d[1] - d[0]) / 3.0;
}

/*
 * How far the two forward paths' losses may be apart at one point. Each path
 * computes the loss of the same float32 operations in its own order: the
 * encoder's dot products (at most max(hidden, intermediate) terms), the
 * classifier's, then the log-sum-exp over C classes and the mean over n
 * sequences. Rounding carried from the logits reaches the loss attenuated
 * (d loss / d logits sums to at most 2 in magnitude per sequence, and
 * LayerNorm keeps hidden errors relative to the unit scale), so each path's
 * loss is within a small number of roundings of the exact one: we allow
 * gamma(k + C + n) relative to |loss| per path, both paths rounding
 * independently.
 */
static double
loss_paths_tolerance(const BtBertModel *m, int n_seq, double loss)
{
	int			k = m->cfg.hidden_size > m->cfg.intermediate_size ? m->cfg.hidden_size : m->cfg.intermediate_size;

	return 2.0 * gamma32(k + m->num_classes + n_seq) * fabs(loss);
}

/*
 * Gradients by finite differences on a tiny model, against the trainer's; with
 * dropout off, also through the inference forward pass, whose estimates must
 * equal the training pass's up to rounding noise. A mutated inference pass (the
 * tanh GELU in place of the erf one, a classic parity slip) must not.
 */
static void
test_finite_differences(const char *act, float dropout)
{
	char		json[512];
	BtBertModel *m;
	BtTrainOptions o;
	BtTrainer  *t;
	int32_t		offsets[] = {0, 4, 5, 11},
				ids[] = {2, 7, 0, 13, 19, 1, 4, 4, 9, 0, 17},
				types[] = {0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0},
				labels[] = {2, 0, 1};
	BtBatch		b = {3, offsets, ids, types};
	float	   *grads;
	View		v[32];
	int			nv,
				checked = 0,
				bad = 0;
	double		worst = 0.0,
				worst_paths = 0.0,
				worst_mutant = 0.0,
				loss_tol,
				paths_tol,
				fd_tol;

	snprintf(json, sizeof json, tiny_config, act);
	m = random_model(json, 3, 11);
	nv = param_views(m, v);
	o = bt_train_default_options(&m->cfg);
	o.hidden_dropout = dropout;
	o.attention_dropout = dropout;
	o.seed = 5;
	t = trainer_or_exit(m, &o);
	accumulate_or_exit(t, &b, labels, 1.0f);
	grads = malloc(m->num_params * sizeof(float));
	memcpy(grads, bt_trainer_grads(t), m->num_params * sizeof(float));
	bt_trainer_free(t);
	/* each estimate combines four losses (central_difference_noise), all near this one */
	loss_tol = loss_paths_tolerance(m, b.n_seq, inference_loss(m, &b, labels, NULL));
	paths_tol = central_difference_noise(loss_tol, FD_PATHS_STEP);
	fd_tol = central_difference_noise(loss_tol / 2, FD_STEP);	/* one path's rounding */

	/* a few elements of every view: first, middle, last */
	for (int i = 0; i < nv; i++)
		for (int k = 0; k < 3; k++)
		{
			size_t		j = v[i].off + (k == 0 ? 0 : k == 1 ? v[i].n / 2 : v[i].n - 1);
			double		fd,
						d;

			/* word embeddings: rows the batch uses, not [PAD] (id 0, which gets no gradient) */
			if (strcmp(v[i].name, "word_emb") == 0)
				j = v[i].off + (k == 0 ? 1 * 8 : k == 1 ? 13 * 8 + 5 : 19 * 8 + 7);
			fd = finite_difference(m, j, &o, &b, labels, false, FD_STEP);
			if (dropout == 0.0f)
			{
				BtActivation act_was = m->cfg.activation;
				double		fd_train = finite_difference(m, j, &o, &b, labels, false, FD_PATHS_STEP);

				/* and, independently, through the inference forward pass */
				d = fabs(finite_difference(m, j, &o, &b, labels, true, FD_PATHS_STEP) - fd_train);
				worst_paths = d > worst_paths ? d : worst_paths;
				/* the mutant: inference with the other GELU */
				m->cfg.activation = act_was == BT_ACT_GELU ? BT_ACT_GELU_TANH : BT_ACT_GELU;
				d = fabs(finite_difference(m, j, &o, &b, labels, true, FD_PATHS_STEP) - fd_train);
				worst_mutant = d > worst_mutant ? d : worst_mutant;
				m->cfg.activation = act_was;
			}

			/*
			 * Against the analytic gradient: the estimate's rounding noise (fd_tol)
			 * plus 1% for its truncation error, which the extrapolation leaves at
			 * h^4 times the fifth derivative; a wrong gradient term is far above.
			 */
			d = fabs(fd - grads[j]);
			if (!(d <= fd_tol + 1e-2 * fabs(fd)))
			{
				printf("     %s[%zu]: analytic %.6f, finite differences %.6f\n", v[i].name, j - v[i].off,
					   grads[j], fd);
				bad++;
			}
			worst = d > worst ? d : worst;
			checked++;
		}
	check(bad == 0, "finite differences (%s, dropout %.1f): %d gradients of every tensor agree, max |diff| %.1e "
		  "(noise bound %.1e)", act, dropout, checked, worst, fd_tol);
	if (dropout == 0.0f)
	{
		check(worst_paths <= paths_tol,
			  "finite differences (%s): through the inference pass as through the training pass, max |diff| %.2e "
			  "<= %.2e (rounding noise)", act, worst_paths, paths_tol);
		check(worst_mutant > paths_tol,
			  "finite differences (%s): an inference pass with the other GELU is caught, max |diff| %.2e > %.2e",
			  act, worst_mutant, paths_tol);
	}
	free(grads);
	bt_model_free(m);
}

/* Dropout: reproducible from the seed, different per pass and per seed. */
static void
test_dropout(void)
{
	char		json[512];
	BtBertModel *m;
	BtTrainOptions o;
	BtTrainer  *t1,
			   *t2,
			   *t3;
	int32_t		offsets[] = {0, 6},
				ids[] = {1, 2, 3, 4, 5, 6},
				labels[] = {1};
	BtBatch		b = {1, offsets, ids, NULL};
	float		a1,
				a2,
				b1,
				c1,
				z;

	snprintf(json, sizeof json, tiny_config, "gelu");
	m = random_model(json, 2, 3);
	o = bt_train_default_options(&m->cfg);
	check(o.hidden_dropout == 0.1f && o.attention_dropout == 0.1f && o.learning_rate == 5e-5f &&
		  o.max_grad_norm == 1.0f && o.weight_decay == 0.0f && o.adam_eps == 1e-8f,
		  "default options: HF Trainer's, dropout from the config");
	o.hidden_dropout = 0.3f;
	t1 = trainer_or_exit(m, &o);
	t2 = trainer_or_exit(m, &o);
	o.seed++;
	t3 = trainer_or_exit(m, &o);
	a1 = accumulate_or_exit(t1, &b, labels, 0.0f);
	a2 = accumulate_or_exit(t1, &b, labels, 0.0f);
	b1 = accumulate_or_exit(t2, &b, labels, 0.0f);
	c1 = accumulate_or_exit(t3, &b, labels, 0.0f);
	z = (float) inference_loss(m, &b, labels, NULL);
	check(a1 == b1 && a1 != a2 && a1 != c1 && a1 != z,
		  "dropout: same seed same masks (%.6f), new masks each pass (%.6f) and per seed (%.6f); without: %.6f",
		  a1, a2, c1, z);
	bt_trainer_free(t1);
	bt_trainer_free(t2);
	bt_trainer_free(t3);
	bt_model_free(m);

	/* the mask itself: rate p, survivors scaled by 1 / (1 - p), a function of (key, index) */
	{
		const size_t n = 1000000;
		float	   *x = malloc(n * sizeof(float)),
				   *y = malloc(n * sizeof(float));
		BtDropout	d = {0.1f, 12345};
		size_t		zeros = 0,
					scaled = 0;

		for (size_t i = 0; i < n; i++)
			x[i] = y[i] = 1.0f;
		bt_dropout_apply(x, n, &d, 0);
		bt_dropout_apply(y + 777, n - 777, &d, 777);
		for (size_t i = 0; i < n; i++)
		{
			zeros += x[i] == 0.0f;
			scaled += x[i] == 1.0f / 0.9f;
		}
		check(fabs(zeros / (double) n - 0.1) < 0.002 && zeros + scaled == n &&
			  memcmp(x + 777, y + 777, (n - 777) * sizeof(float)) == 0,
			  "dropout mask: %.4f of %zu dropped at p 0.1, the rest scaled by 1/0.9; element i depends only on (key, i)",
			  zeros / (double) n, n);
		free(x);
		free(y);
	}
}

/* Bad input fails with a message. */
static void
test_errors(void)
{
	char		json[512],
				err[256];
	BtBertModel *m;
	BtBertConfig cfg;
	BtTrainOptions o;
	BtTrainer  *t;
	int32_t		offsets[] = {0, 3, 5},
				ids[] = {1, 2, 3, 4, 5},
				bad_ids[] = {1, 2, 99, 4, 5},
				labels[] = {0, 1},
				bad_labels[] = {0, 2},
				neg_labels[] = {-1, 0};
	BtBatch		b = {2, offsets, ids, NULL},
				bb = {2, offsets, bad_ids, NULL};
	float		zero_w[] = {1.0f, 0.0f},
				loss;
	const char *labelled = "{\"vocab_size\": 20, \"hidden_size\": 8, \"num_attention_heads\": 2,"
		" \"id2label\": {\"0\": \"a\", \"1\": \"b\"}}";

	snprintf(json, sizeof json, tiny_config, "gelu");
	m = random_model(json, 2, 3);
	o = bt_train_default_options(&m->cfg);
	t = trainer_or_exit(m, &o);
	err[0] = '\0';
	check(bt_trainer_accumulate(t, &b, bad_labels, 1.0f, &loss, err, sizeof err) != 0 && strstr(err, "label 2"),
		  "label out of range: %s", err);
	err[0] = '\0';
	check(bt_trainer_accumulate(t, &b, neg_labels, 1.0f, &loss, err, sizeof err) != 0 && strstr(err, "label -1"),
		  "negative label: %s", err);
	err[0] = '\0';
	check(bt_trainer_accumulate(t, &bb, labels, 1.0f, &loss, err, sizeof err) != 0 && strstr(err, "token id 99"),
		  "token id outside the vocabulary: %s", err);
	bt_trainer_free(t);

	o.class_weights = zero_w;
	t = trainer_or_exit(m, &o);
	err[0] = '\0';
	check(bt_trainer_accumulate(t, &b, (int32_t[]) {1, 1}, 1.0f, &loss, err, sizeof err) != 0 &&
		  strstr(err, "sum to 0"), "class weights of the batch summing to 0: %s", err);
	bt_trainer_free(t);

	o = bt_train_default_options(&m->cfg);
	o.beta1 = 1.0f;
	err[0] = '\0';
	check(bt_trainer_create(m, &o, err, sizeof err) == NULL && strstr(err, "beta1"), "beta1 = 1 refused: %s", err);
	o = bt_train_default_options(&m->cfg);
	o.learning_rate = NAN;
	err[0] = '\0';
	check(bt_trainer_create(m, &o, err, sizeof err) == NULL && strstr(err, "learning_rate"),
		  "NaN learning rate refused: %s", err);
	o = bt_train_default_options(&m->cfg);
	o.class_weights = (float[]) {1.0f, -1.0f};
	err[0] = '\0';
	check(bt_trainer_create(m, &o, err, sizeof err) == NULL && strstr(err, "class weights"),
		  "negative class weight refused: %s", err);
	bt_model_free(m);

	m = random_model(json, 1, 3);
	o = bt_train_default_options(&m->cfg);
	err[0] = '\0';
	check(bt_trainer_create(m, &o, err, sizeof err) == NULL && strstr(err, "regression"),
		  "a 1-output head is refused: %s", err);
	bt_model_free(m);

	err[0] = '\0';
	check(bt_config_parse(labelled, strlen(labelled), &cfg, err, sizeof err) == 0 &&
		  bt_model_init_random(&cfg, 3, 1, err, sizeof err) == NULL && strstr(err, "id2label"),
		  "init_random: head size against id2label: %s", err);
}

int
main(int argc, char **argv)
{
	const char *names[] = {"tiny_cls", "tiny_odd_cls"};
	char		dir[1024];

	if (argc < 3)
	{
		fprintf(stderr, "usage: test_train TRAIN_DIR MODELS_DIR [SAVE_DIR]\n");
		return 2;
	}
	for (int i = 0; i < 2; i++)
	{
		snprintf(dir, sizeof dir, "%s/%s", argv[1], names[i]);
		test_gradients(dir, names[i]);
		test_training(dir, names[i], argc > 3 ? argv[3] : NULL);
		test_freeze(dir, names[i]);
		test_bf16_training(dir, names[i]);
	}
	printf("     parity: max relative gradient error %.2e (|grad| >= 1e-3), max |gradient diff| %.2e, "
		   "max relative loss-curve error %.2e, max |weight diff| %.2e (key biases aside)\n",
		   worst_grad_rel, worst_grad_abs, worst_loss_rel, worst_weight_abs);
	test_finite_differences("gelu", 0.0f);
	test_finite_differences("gelu_new", 0.2f);
	test_dropout();
	test_gelu_slope();
	test_adamw_update();
	test_sgemm_bf16();
	test_init_random();
	test_reset_head(argv[1], argv[2]);
	test_errors();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
