/*
 * gpu_train_backend.h - fine-tuning on the GPU through pgbert_gpu.so (the
 * training section of kernels/gpu.h), with the engine's types: the device
 * twin of train.h's BtTrainer, over a device copy of a host model.
 *
 * The trainer uploads its own copy of the model (in the GPU's precision),
 * draws the CPU trainer's dropout masks (same seed, same masks) and updates
 * the device weights in place; bt_gpu_trainer_download brings them back into
 * the host model (for saving). PostgreSQL-free.
 */
#ifndef PGBERT_GPU_TRAIN_BACKEND_H
#define PGBERT_GPU_TRAIN_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpu_backend.h"
#include "model.h"
#include "train.h"

typedef struct BtGpuTrainer BtGpuTrainer;

/* Return codes of the calls below besides 0. */
#define BT_GPU_TRAIN_BAD_INPUT (-1)	/* the request was refused before the device saw it */
#define BT_GPU_TRAIN_DEVICE (-2)	/* the device failed; bt_gpu_out_of_memory(err) tells out of memory */

/*
 * Upload m and start training the device copy with opts (as bt_trainer_create;
 * torch's padding_idx is m's pad_token_id). m must have a pooler and a
 * classifier of at least 2 outputs, and must outlive the trainer (it is read
 * for checks and written by bt_gpu_trainer_download only). NULL + err
 * (bt_gpu_out_of_memory(err) when the device memory ran out).
 */
extern BtGpuTrainer *bt_gpu_trainer_create(BtGpu *g, const BtBertModel *m, const BtTrainOptions *opts,
										   char *err, size_t errlen);

/* Frees the trainer and its device copy of the model; NULL is ignored. */
extern void bt_gpu_trainer_free(BtGpuTrainer *t);

/* bt_trainer_accumulate on the device: 0, BT_GPU_TRAIN_BAD_INPUT or BT_GPU_TRAIN_DEVICE, with err. */
extern int	bt_gpu_trainer_accumulate(BtGpuTrainer *t, const BtBatch *batch, const int32_t *labels, float scale,
									  float *loss_out, char *err, size_t errlen);

/* bt_trainer_step on the device: 0 or BT_GPU_TRAIN_DEVICE with err. */
extern int	bt_gpu_trainer_step(BtGpuTrainer *t, float *lr_out, float *grad_norm_out, char *err, size_t errlen);

extern int	bt_gpu_trainer_steps(const BtGpuTrainer *t);

/* Logits (n_seq, C) of the current weights, dropout off (the inference forward pass); codes as accumulate. */
extern int	bt_gpu_trainer_forward(BtGpuTrainer *t, const BtBatch *batch, float *logits, char *err, size_t errlen);

/* The device weights into the host model given at create (m->params). 0 or BT_GPU_TRAIN_DEVICE. */
extern int	bt_gpu_trainer_download(BtGpuTrainer *t, char *err, size_t errlen);

/* The gradient buffer (m->num_params floats laid out like m->params; 0 outside the trained part), for tests. */
extern int	bt_gpu_trainer_grads(BtGpuTrainer *t, float *grads, char *err, size_t errlen);

/* Keep a device copy of the weights / put it back (BT_GPU_TRAIN_BAD_INPUT when there is none). */
extern int	bt_gpu_trainer_snapshot(BtGpuTrainer *t, char *err, size_t errlen);
extern int	bt_gpu_trainer_restore(BtGpuTrainer *t, char *err, size_t errlen);

/* The device copy of the model (for pgbert_gpu_forward through bt_gpu_forward). */
extern PgbertGpuModel *bt_gpu_trainer_model(BtGpuTrainer *t);

#endif
