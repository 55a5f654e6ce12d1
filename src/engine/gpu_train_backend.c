/*
 * gpu_train_backend.c - fine-tuning through pgbert_gpu.so (see gpu_train_backend.h).
 *
 * The training functions are reached through the function table of the
 * library bt_gpu_open loaded (bt_gpu_api); the trainer lives no longer than
 * its BtGpu.
 */
#include "gpu_train_backend.h"
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct BtGpuTrainer
{
	BtGpu	   *g;
	const PgbertGpuApi *api;
	const BtBertModel *m;		/* the host model (checks; download target) */
	PgbertGpuModel *gm;			/* its device copy */
	PgbertGpuTrainer *t;
	float	   *class_weights;	/* (C) copy, or NULL */
	bool		has_snapshot;
};

BtGpuTrainer *
bt_gpu_trainer_create(BtGpu *g, const BtBertModel *m, const BtTrainOptions *opts, char *err, size_t errlen)
{
	BtGpuTrainer *t;
	PgbertGpuTrainOptions o;

	if (!m->has_pooler || !m->has_classifier)
	{
		snprintf(err, errlen, "the model has no %s; give it one with bt_model_reset_head",
				 m->has_classifier ? "pooler" : "classification head");
		return NULL;
	}
	t = calloc(1, sizeof(BtGpuTrainer));
	if (t == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->g = g;
	t->m = m;
	t->api = bt_gpu_api(g);
	if (opts->class_weights)
	{
		t->class_weights = malloc(sizeof(float) * m->num_classes);
		if (t->class_weights == NULL)
		{
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		memcpy(t->class_weights, opts->class_weights, sizeof(float) * m->num_classes);
	}
	if ((t->gm = bt_gpu_upload(g, m, err, errlen)) == NULL)
		goto fail;
	memset(&o, 0, sizeof(o));
	o.learning_rate = opts->learning_rate;
	o.weight_decay = opts->weight_decay;
	o.beta1 = opts->beta1;
	o.beta2 = opts->beta2;
	o.adam_eps = opts->adam_eps;
	o.max_grad_norm = opts->max_grad_norm;
	o.warmup_steps = opts->warmup_steps;
	o.total_steps = opts->total_steps;
	o.hidden_dropout = opts->hidden_dropout;
	o.attention_dropout = opts->attention_dropout;
	o.seed = opts->seed;
	o.freeze_encoder = opts->freeze_encoder ? 1 : 0;
	o.pad_token_id = m->cfg.pad_token_id;
	o.class_weights = opts->class_weights;
	if ((t->t = t->api->trainer_create(t->gm, &o, err, errlen)) == NULL)
		goto fail;
	return t;

fail:
	bt_gpu_trainer_free(t);
	return NULL;
}

void
bt_gpu_trainer_free(BtGpuTrainer *t)
{
	if (t == NULL)
		return;
	if (t->t)
		t->api->trainer_free(t->t);
	if (t->gm)
		bt_gpu_free_model(t->g, t->gm);
	free(t->class_weights);
	free(t);
}

int
bt_gpu_trainer_accumulate(BtGpuTrainer *t, const BtBatch *batch, const int32_t *labels, float scale,
						  float *loss_out, char *err, size_t errlen)
{
	if (bt_check_training_batch(t->m, t->class_weights, batch, labels, scale, err, errlen) != 0)
		return BT_GPU_TRAIN_BAD_INPUT;
	if (t->api->trainer_accumulate(t->t, batch->n_seq, batch->offsets, batch->ids, batch->type_ids, labels, scale,
								   loss_out, err, errlen) != 0)
		return BT_GPU_TRAIN_DEVICE;
	return 0;
}

int
bt_gpu_trainer_step(BtGpuTrainer *t, float *lr_out, float *grad_norm_out, char *err, size_t errlen)
{
	return t->api->trainer_step(t->t, lr_out, grad_norm_out, err, errlen) == 0 ? 0 : BT_GPU_TRAIN_DEVICE;
}

int
bt_gpu_trainer_steps(const BtGpuTrainer *t)
{
	return t->api->trainer_steps(t->t);
}

int
bt_gpu_trainer_forward(BtGpuTrainer *t, const BtBatch *batch, float *logits, char *err, size_t errlen)
{
	if (bt_check_batch(t->m, batch, err, errlen) != 0)
		return BT_GPU_TRAIN_BAD_INPUT;
	if (bt_gpu_forward(t->g, t->gm, batch, PGBERT_GPU_WANT_LOGITS, logits, err, errlen) != 0)
		return BT_GPU_TRAIN_DEVICE;
	return 0;
}

int
bt_gpu_trainer_download(BtGpuTrainer *t, char *err, size_t errlen)
{
	/* the host model is the trainer's to write while it trains (train.h's contract for the CPU trainer too) */
	float	   *params = t->m->params;

	return t->api->trainer_download_params(t->t, params, err, errlen) == 0 ? 0 : BT_GPU_TRAIN_DEVICE;
}

int
bt_gpu_trainer_grads(BtGpuTrainer *t, float *grads, char *err, size_t errlen)
{
	return t->api->trainer_download_grads(t->t, grads, err, errlen) == 0 ? 0 : BT_GPU_TRAIN_DEVICE;
}

int
bt_gpu_trainer_snapshot(BtGpuTrainer *t, char *err, size_t errlen)
{
	if (t->api->trainer_snapshot(t->t, err, errlen) != 0)
		return BT_GPU_TRAIN_DEVICE;
	t->has_snapshot = true;
	return 0;
}

int
bt_gpu_trainer_restore(BtGpuTrainer *t, char *err, size_t errlen)
{
	if (!t->has_snapshot)
	{
		snprintf(err, errlen, "no copy of the weights to restore");
		return BT_GPU_TRAIN_BAD_INPUT;
	}
	return t->api->trainer_restore(t->t, err, errlen) == 0 ? 0 : BT_GPU_TRAIN_DEVICE;
}

PgbertGpuModel *
bt_gpu_trainer_model(BtGpuTrainer *t)
{
	return t->gm;
}
