/*
 * kernels/gpu.h
 *     Plain C interface to pgbert's CUDA/cuBLAS code.
 *
 * This header is shared by the C side of the extension (compiled by gcc
 * against the PostgreSQL headers) and by the .cu files (compiled by nvcc).
 * It therefore must stay plain C: no PostgreSQL headers (their float4
 * typedef clashes with CUDA's float4 vector type) and no CUDA types.
 *
 * Conventions shared by every function here:
 *   - nothing touches CUDA until one of these functions is called;
 *   - functions never abort or exit; failures are reported through the
 *     return value (-1 or NULL) plus a lowercase, NUL-terminated message
 *     written into the caller-provided errbuf (errbuf may be NULL or
 *     errlen 0, in which case no message is written);
 *   - on success errbuf is left untouched.
 */
#ifndef PGBERT_KERNELS_GPU_H
#define PGBERT_KERNELS_GPU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Description of one CUDA device, as filled by pgbert_gpu_device_info(). */
typedef struct PgbertGpuDevice
{
	int			ordinal;			/* CUDA device ordinal */
	char		name[256];			/* NUL-terminated device name */
	int			cc_major;			/* compute capability, major */
	int			cc_minor;			/* compute capability, minor */
	size_t		total_mem;			/* global memory in bytes */
	int			multiprocessors;	/* number of SMs */
} PgbertGpuDevice;

/* Opaque per-device handle: cuBLAS handle plus a dedicated CUDA stream. */
typedef struct PgbertGpuContext PgbertGpuContext;

/* Counts CUDA devices: no driver or no device gives *count = 0 and 0; other failures -1. */
int			pgbert_gpu_device_count(int *count, char *errbuf, size_t errlen);

/* Fills *out with name, compute capability, memory and SM count of a device; 0 or -1. */
int			pgbert_gpu_device_info(int ordinal, PgbertGpuDevice *out,
								   char *errbuf, size_t errlen);

/* Selects a device and creates a cuBLAS handle bound to a new stream; NULL on failure. */
PgbertGpuContext *pgbert_gpu_open(int ordinal, char *errbuf, size_t errlen);

/* Releases everything pgbert_gpu_open() created; NULL is accepted and ignored. */
void		pgbert_gpu_close(PgbertGpuContext *ctx);

/* ---- BERT encoder on the device (gpu_model.cu) ---- */

/* Arithmetic of the encoder's matrix products. */
typedef enum PgbertGpuPrecision
{
	PGBERT_GPU_FP32 = 0,		/* fp32 inputs, fp32 accumulation, no TF32: the parity mode */
	PGBERT_GPU_BF16 = 1			/* bf16 inputs (tensor cores), fp32 accumulation and residual stream */
} PgbertGpuPrecision;

/* What a forward pass returns per sequence (the same codes as the engine's BtWant). */
typedef enum PgbertGpuWant
{
	PGBERT_GPU_WANT_LOGITS = 0, /* num_classes floats */
	PGBERT_GPU_WANT_MEAN = 1,	/* hidden floats: mean of the last hidden states */
	PGBERT_GPU_WANT_CLS = 2,	/* hidden floats: last hidden state of the first token */
	PGBERT_GPU_WANT_POOLER = 3	/* hidden floats: tanh(dense(CLS)) */
} PgbertGpuWant;

/*
 * Shape of a BERT model and where each tensor sits in its one float32
 * parameter allocation (offsets in floats; per-layer tensors stacked over
 * layers, layer first), the layout of the engine's BtBertParams. Offsets of
 * absent tensors (no pooler, no classifier) are ignored.
 */
typedef struct PgbertGpuModelDesc
{
	int			hidden;
	int			layers;
	int			heads;
	int			intermediate;
	int			vocab;
	int			max_position;
	int			type_vocab;
	int			num_classes;	/* rows of the classifier, 0 without one */
	int			has_pooler;
	int			has_classifier;
	int			gelu_tanh;		/* 0: exact erf GELU; 1: the tanh approximation */
	float		layer_norm_eps;
	size_t		num_params;
	size_t		word_emb, pos_emb, type_emb, emb_ln_w, emb_ln_b;
	size_t		qkv_w, qkv_b, attn_out_w, attn_out_b, attn_ln_w, attn_ln_b;
	size_t		ffn_in_w, ffn_in_b, ffn_out_w, ffn_out_b, ffn_ln_w, ffn_ln_b;
	size_t		pool_w, pool_b, cls_w, cls_b;
} PgbertGpuModelDesc;

/* A model's weights on the device, with the activation memory of its last batches. */
typedef struct PgbertGpuModel PgbertGpuModel;

/*
 * Bounds the device memory this context allocates for weights and activations
 * (bytes; 0: no bound other than the card's). A request that would pass it
 * fails with an error, as a failed cudaMalloc does; nothing is evicted.
 */
void		pgbert_gpu_set_memory_limit(PgbertGpuContext *ctx, size_t bytes);

/* Device bytes this context holds now (weights, activations, cuBLAS workspace). */
size_t		pgbert_gpu_memory_used(PgbertGpuContext *ctx);

/*
 * Copies a model's parameters (desc->num_params floats, laid out as desc says)
 * to the device once, plus a bf16 copy of them with PGBERT_GPU_BF16. The host
 * copy is not kept or referenced afterwards. NULL + message on failure
 * (bad description, out of device memory, a CUDA error).
 */
PgbertGpuModel *pgbert_gpu_model_upload(PgbertGpuContext *ctx, const PgbertGpuModelDesc *desc,
										const float *params, PgbertGpuPrecision precision,
										char *errbuf, size_t errlen);

/* Frees a model's device memory (weights, activations, captured graphs); NULL is ignored. */
void		pgbert_gpu_model_free(PgbertGpuModel *model);

/*
 * Forward pass over a packed batch: sequence s is tokens offsets[s] ..
 * offsets[s+1]-1 of ids (and type_ids, or all type 0 when NULL). Writes
 * n_seq rows of what want asks for into out (host memory). The caller has
 * checked ids and lengths against the model (ids < vocab, 1 <= length <=
 * max_position); the function checks them again and refuses bad ones.
 * Repeated batch shapes replay a captured CUDA graph (see gpu_model.cu).
 * 0, or -1 + message (out of device memory is an error of this call only).
 */
int			pgbert_gpu_forward(PgbertGpuModel *model, int n_seq, const int *offsets,
							   const int *ids, const int *type_ids, PgbertGpuWant want,
							   float *out, char *errbuf, size_t errlen);

/* Turns CUDA graph capture of repeated shapes on (default) or off, for tests and benchmarks. */
void		pgbert_gpu_model_use_graphs(PgbertGpuModel *model, int on);

/* declared in the training section at the end */
struct PgbertGpuTrainer;
struct PgbertGpuTrainOptions;

/*
 * Every function above, for a process that opens pgbert_gpu.so with dlopen
 * and looks up one symbol, pgbert_gpu_api, instead of each function.
 */
#define PGBERT_GPU_API_VERSION 2
typedef struct PgbertGpuApi
{
	int			version;
	int			(*device_count) (int *count, char *errbuf, size_t errlen);
	int			(*device_info) (int ordinal, PgbertGpuDevice *out, char *errbuf, size_t errlen);
	PgbertGpuContext *(*open) (int ordinal, char *errbuf, size_t errlen);
	void		(*close) (PgbertGpuContext *ctx);
	void		(*set_memory_limit) (PgbertGpuContext *ctx, size_t bytes);
	size_t		(*memory_used) (PgbertGpuContext *ctx);
	PgbertGpuModel *(*model_upload) (PgbertGpuContext *ctx, const PgbertGpuModelDesc *desc,
									 const float *params, PgbertGpuPrecision precision,
									 char *errbuf, size_t errlen);
	void		(*model_free) (PgbertGpuModel *model);
	int			(*forward) (PgbertGpuModel *model, int n_seq, const int *offsets, const int *ids,
							const int *type_ids, PgbertGpuWant want, float *out,
							char *errbuf, size_t errlen);
	void		(*model_use_graphs) (PgbertGpuModel *model, int on);
	/* version 2: fine-tuning (the training section below) */
	struct PgbertGpuTrainer *(*trainer_create) (PgbertGpuModel *model, const struct PgbertGpuTrainOptions *opts,
												char *errbuf, size_t errlen);
	void		(*trainer_free) (struct PgbertGpuTrainer *trainer);
	int			(*trainer_accumulate) (struct PgbertGpuTrainer *trainer, int n_seq, const int *offsets,
									   const int *ids, const int *type_ids, const int *labels, float scale,
									   float *loss, char *errbuf, size_t errlen);
	int			(*trainer_step) (struct PgbertGpuTrainer *trainer, float *lr, float *grad_norm,
								 char *errbuf, size_t errlen);
	int			(*trainer_steps) (const struct PgbertGpuTrainer *trainer);
	int			(*trainer_download_params) (struct PgbertGpuTrainer *trainer, float *params,
											char *errbuf, size_t errlen);
	int			(*trainer_download_grads) (struct PgbertGpuTrainer *trainer, float *grads,
										   char *errbuf, size_t errlen);
	int			(*trainer_snapshot) (struct PgbertGpuTrainer *trainer, char *errbuf, size_t errlen);
	int			(*trainer_restore) (struct PgbertGpuTrainer *trainer, char *errbuf, size_t errlen);
} PgbertGpuApi;

/* The table above, filled; one static instance. */
const PgbertGpuApi *pgbert_gpu_api(void);


/* ---- fine-tuning on the device (gpu_train.cu and the layers' .cu files) ---- */

/*
 * BertForSequenceClassification fine-tuning over an uploaded model, with the
 * numerics of the engine's CPU trainer (src/engine/train.c): the same
 * counter-based dropout masks (so a CPU and a GPU trainer with the same seed
 * draw the same masks), weighted cross-entropy, backward of every layer,
 * global-norm clipping, torch's AdamW with Hugging Face Trainer's decay rule
 * (none on biases and LayerNorm weights), a linear warm-up/decay schedule.
 * The model's precision decides the products' arithmetic: PGBERT_GPU_FP32
 * is the parity mode (test/gpu/test_gpu_train.c holds its gradients to the
 * CPU trainer's within 1e-4 of the largest); PGBERT_GPU_BF16
 * feeds the products bf16 copies (fp32 accumulation) and keeps fp32 master
 * weights, gradients and moments. Every step updates the model's weights in
 * place (and its bf16 copy), so pgbert_gpu_forward on the same model sees
 * them. Memory: gradients and two moments of the trained parameters, plus
 * activations sized by the largest batch seen, all under the context's bound.
 */
typedef struct PgbertGpuTrainOptions
{
	float		learning_rate;	/* peak */
	float		weight_decay;	/* decoupled; not on biases or LayerNorm weights */
	float		beta1;
	float		beta2;
	float		adam_eps;
	float		max_grad_norm;	/* <= 0: no clipping */
	int			warmup_steps;
	int			total_steps;	/* <= 0: no decay after warm-up */
	float		hidden_dropout; /* also the classifier's dropout */
	float		attention_dropout;
	unsigned long long seed;	/* dropout masks (as BtTrainOptions.seed) */
	int			freeze_encoder; /* train classifier.* only */
	int			pad_token_id;	/* tokens with this id give the word embeddings no gradient */
	const float *class_weights; /* num_classes weights >= 0, or NULL; copied */
} PgbertGpuTrainOptions;

typedef struct PgbertGpuTrainer PgbertGpuTrainer;

/*
 * A trainer over model (which must have a pooler and a classifier of at least
 * 2 outputs, and must outlive the trainer). Invalid options are errors.
 * NULL + message on failure (out of gpu memory included).
 */
PgbertGpuTrainer *pgbert_gpu_trainer_create(PgbertGpuModel *model, const PgbertGpuTrainOptions *opts,
											char *errbuf, size_t errlen);

/* Frees the trainer's device memory; the model stays. NULL is ignored. */
void		pgbert_gpu_trainer_free(PgbertGpuTrainer *trainer);

/*
 * Training forward (dropout on) and backward over a packed batch (as for
 * pgbert_gpu_forward) with one label per sequence: adds scale * d(loss)/d(params)
 * into the gradients; *loss (may be NULL) gets the batch's mean weighted
 * cross-entropy. Each call draws new dropout masks. Bad batches, labels
 * outside 0..num_classes-1, class weights of the batch summing to 0 and a
 * non-finite scale are errors that change nothing; so is running out of gpu
 * memory (the message starts "out of gpu memory"). 0, or -1 + message.
 */
int			pgbert_gpu_trainer_accumulate(PgbertGpuTrainer *trainer, int n_seq, const int *offsets,
										  const int *ids, const int *type_ids, const int *labels,
										  float scale, float *loss, char *errbuf, size_t errlen);

/*
 * One optimizer step: clip the global norm of the trained gradients, AdamW at
 * the scheduled rate, zero the gradients. *lr and *grad_norm (either may be
 * NULL) get the rate used and the norm before clipping. 0, or -1 + message.
 */
int			pgbert_gpu_trainer_step(PgbertGpuTrainer *trainer, float *lr, float *grad_norm,
									char *errbuf, size_t errlen);

/* Optimizer steps taken. */
int			pgbert_gpu_trainer_steps(const PgbertGpuTrainer *trainer);

/* Copies the model's float32 parameters (num_params floats, the description's layout) to host memory. */
int			pgbert_gpu_trainer_download_params(PgbertGpuTrainer *trainer, float *params,
											   char *errbuf, size_t errlen);

/* Copies the gradients (num_params floats laid out like the parameters; 0 outside the trained part). */
int			pgbert_gpu_trainer_download_grads(PgbertGpuTrainer *trainer, float *grads,
											  char *errbuf, size_t errlen);

/* Keeps a device copy of the parameters (early stopping's best epoch); restore puts it back. */
int			pgbert_gpu_trainer_snapshot(PgbertGpuTrainer *trainer, char *errbuf, size_t errlen);
int			pgbert_gpu_trainer_restore(PgbertGpuTrainer *trainer, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif							/* PGBERT_KERNELS_GPU_H */
