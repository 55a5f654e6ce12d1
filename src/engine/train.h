/*
 * train.h - fine-tuning a BertModel with a classification head on the CPU:
 * forward with saved activations, backward for every op, AdamW with HF
 * Trainer's defaults, and writing the result as a Hugging Face checkpoint.
 *
 * Gradients accumulate into one flat buffer laid out like the parameters
 * (llm.c style), so clipping, AdamW and a device copy are single loops.
 * Numerics follow transformers' BertForSequenceClassification + torch.optim.AdamW
 * + get_linear_schedule_with_warmup + clip_grad_norm_. PostgreSQL-free.
 */
#ifndef PGBERT_TRAIN_H
#define PGBERT_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct BtTrainOptions
{
	float		learning_rate;	/* peak, default 5e-5 */
	float		weight_decay;	/* decoupled; not on biases or LayerNorm weights; default 0 */
	float		beta1;			/* 0.9 */
	float		beta2;			/* 0.999 */
	float		adam_eps;		/* 1e-8 */
	float		max_grad_norm;	/* clip the global L2 norm; <= 0: no clipping; default 1.0 */
	int			warmup_steps;	/* linear warm-up from 0, then linear decay to 0 at total_steps */
	int			total_steps;	/* optimizer steps planned (for the schedule); <= 0: no decay after warm-up */
	float		hidden_dropout; /* from the config by default; 0 disables; also the classifier's dropout */
	float		attention_dropout;
	uint64_t	seed;			/* dropout generator (default 42) */
	bool		freeze_encoder; /* train only classifier.* (the pooler belongs to model.bert, as in transformers) */
	bool		bf16;			/* the encoder's dense layers in bf16 products, float32 sums (needs AVX512-BF16);
								 * weights, gradients and AdamW state stay float32 */
	const float *class_weights; /* num_classes weights >= 0 for cross-entropy, or NULL; copied */
} BtTrainOptions;

/* HF Trainer's defaults (lr 5e-5, no decay, betas 0.9/0.999, eps 1e-8, clip 1.0), dropout from cfg. */
extern BtTrainOptions bt_train_default_options(const BtBertConfig *cfg);

typedef struct BtTrainer BtTrainer;

/*
 * Start training m (which must have a pooler and a classifier of at least 2
 * outputs; transformers trains one output as regression). The trainer updates
 * m->params in place and does not own m: m must outlive it, and must not be
 * given a new head meanwhile. Invalid options are errors. 0 steps taken,
 * gradients zero. Memory: the gradient (m->num_params floats) and AdamW's two
 * moments (the trained parameters), plus an activation arena sized by the
 * largest batch seen. NULL + err on failure.
 */
extern BtTrainer *bt_trainer_create(BtBertModel *m, const BtTrainOptions *opts, char *err, size_t errlen);

extern void bt_trainer_free(BtTrainer *t);

/*
 * The checks bt_trainer_accumulate (and the GPU trainer's) make of a batch
 * before any work: bt_check_batch's, labels in 0..num_classes-1, a finite
 * scale, and class weights (NULL: none) of the batch's labels summing above
 * 0. 0, or -1 with err.
 */
extern int	bt_check_training_batch(const BtBertModel *m, const float *class_weights, const BtBatch *batch,
									const int32_t *labels, float scale, char *err, size_t errlen);

/*
 * Forward (dropout on) and backward over a packed batch with one label per
 * sequence; adds d(loss)/d(params) * scale to the gradient buffer (scale =
 * 1 / accumulation steps). loss_out gets the batch's mean cross-entropy
 * (weighted as torch's CrossEntropyLoss(weight=...) does), unscaled; it may
 * be NULL. Each call draws new dropout masks (a function of the seed and the
 * number of calls so far). As with torch's padding_idx, tokens equal to
 * pad_token_id give the word embeddings no gradient. With freeze_encoder
 * only the classifier's gradient is computed. Bad batches (as for
 * bt_model_forward), labels outside 0..num_classes-1 and class weights of
 * the batch's labels summing to 0 are errors. 0, or -1 with err.
 */
extern int	bt_trainer_accumulate(BtTrainer *t, const BtBatch *batch, const int32_t *labels,
								  float scale, float *loss_out, char *err, size_t errlen);

/*
 * One optimizer step: clip the gradient's global norm (over the trained
 * parameters: coefficient max_norm / (norm + 1e-6) when below 1), AdamW at
 * the scheduled learning rate (step k, counting from 0, uses the schedule's
 * multiplier for k, so with warm-up the first step's rate is 0, as in
 * transformers' Trainer), zero the gradients. Reports the rate used and the
 * norm before clipping (either may be NULL).
 */
extern void bt_trainer_step(BtTrainer *t, float *lr_out, float *grad_norm_out);

/* Optimizer steps taken so far. */
extern int	bt_trainer_steps(const BtTrainer *t);

/* The flat gradient buffer (m->num_params floats, laid out like m->params; zero outside the trained part), for tests. */
extern const float *bt_trainer_grads(const BtTrainer *t);

/*
 * A model initialized as transformers does for BertForSequenceClassification
 * (normal(0, initializer_range) weights, zero biases, LayerNorm weight 1 and
 * bias 0, padding row of the word embeddings zero) from a config (taken
 * over) with num_classes outputs (0: a BertModel with pooler and no head),
 * from a seeded generator (its own, not torch's). A config whose id2label
 * names another number of labels is an error. NULL + err on failure.
 */
extern BtBertModel *bt_model_init_random(BtBertConfig *cfg, int num_classes, uint64_t seed,
										 char *err, size_t errlen);

/*
 * Give a model a fresh classification head of num_classes (>= 1) outputs
 * (and a pooler if it has none), initialized as transformers does, replacing
 * any head it had; the encoder and an existing pooler are kept. The model is
 * changed in place (*m stays the same pointer); label names of the config
 * that do not match the new head's size are dropped. Not while a trainer
 * uses the model. 0, or -1 with err (then the model is unchanged).
 */
extern int	bt_model_reset_head(BtBertModel **m, int num_classes, uint64_t seed, char *err, size_t errlen);

/*
 * Serialize a model as a Hugging Face BertForSequenceClassification
 * model.safetensors (F32 little-endian, "bert." prefix, classifier.*; without
 * a head: BertModel names; QKV split back into query/key/value; tensors in
 * state_dict order; "__metadata__": {"format": "pt"}; header padded with
 * spaces to a multiple of 8 bytes). bt_safetensors_parse + bt_model_load
 * give back identical parameters. *out is malloc'd. 0, or -1 with err.
 */
extern int	bt_model_save_safetensors(const BtBertModel *m, uint8_t **out, size_t *len,
									  char *err, size_t errlen);

#endif
