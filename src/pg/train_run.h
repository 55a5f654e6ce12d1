/*
 * train_run.h - where a training run's model and optimizer live: in this
 * backend, or in the encoder worker's engine process (so the device has one
 * owner). train_sql.c drives both the same way: it reads the rows, packs the
 * batches, reports progress and handles cancellation; these calls do the math.
 */
#ifndef PGBERT_TRAIN_RUN_H
#define PGBERT_TRAIN_RUN_H

#include "model_store.h"
#include "train.h"

typedef struct TrainRun TrainRun;

/*
 * Start a run on a new head of num_classes: on base (a stored model's copy:
 * its model when run here, its checkpoint bytes when in the worker), or from
 * config_json initialized at random when base is NULL. in_worker: in the
 * encoder worker. Freed with the current memory context, also on error.
 */
extern TrainRun *train_run_begin(PgbertBaseModel *base, const char *config_json, int num_classes,
								 const BtTrainOptions *opts, bool in_worker);

/* A run that only evaluates an existing model here (evaluate_classifier). */
extern TrainRun *train_run_wrap(BtBertModel *m);

extern bool train_run_in_worker(const TrainRun *run);
extern int	train_run_classes(const TrainRun *run);

/* Forward and backward over a batch; the batch loss. */
extern float train_run_accumulate(TrainRun *run, const BtBatch *batch, const int32 *labels, float scale);

/* One optimizer step; the learning rate used and the gradient norm before clipping. */
extern void train_run_step(TrainRun *run, float *lr, float *norm);

extern int	train_run_steps(const TrainRun *run);

/* Logits of a batch (dropout off), num_classes per sequence. */
extern void train_run_forward(TrainRun *run, const BtBatch *batch, float *logits);

/* Keep a copy of the parameters; put them back (early stopping's best epoch). */
extern void train_run_snapshot(TrainRun *run);
extern void train_run_restore(TrainRun *run);

/* The trained model as model.safetensors, palloc'd. */
extern char *train_run_save(TrainRun *run, Size *len);

/* End the run (frees the engine's side now rather than at memory context reset). */
extern void train_run_end(TrainRun *run);

#endif
