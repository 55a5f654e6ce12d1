/*
 * serve.h - the engine process and the framed protocol the encoder worker
 * speaks with it over a stream socket.
 *
 * The encoder worker (a PostgreSQL background worker) never runs model code
 * itself: it starts pgbert_engine, a plain program built from the engine, and
 * sends it batches. A crash in model or device code then ends only that
 * program, which PostgreSQL does not know about, instead of a process whose
 * abnormal exit makes the postmaster restart the cluster. PostgreSQL-free.
 *
 * Every message, both ways, is a BtMsgHeader followed by len payload bytes.
 * Requests and replies alternate strictly; the reply carries the request's key.
 */
#ifndef PGBERT_SERVE_H
#define PGBERT_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "train.h"

#define BT_SERVE_MAGIC 0x54524542u	/* "BERT" */
#define BT_SERVE_VERSION 2

typedef enum BtMsgKind
{
	BT_MSG_HELLO = 1,			/* reply only: sent once at start, payload BtHello */
	BT_MSG_LOAD,				/* uint32 config_len, config.json, model.safetensors */
	BT_MSG_FORWARD,				/* BtForwardHead, int32 offsets[n_seq + 1], int32 ids[] */
	BT_MSG_EVICT,				/* no payload */
	BT_MSG_THREADS,				/* uint32 threads */
	/* training: key names a trainer (one per training call), not a model */
	BT_MSG_TRAIN_BEGIN,			/* BtTrainBegin, float class_weights[], config.json, [model.safetensors] */
	BT_MSG_TRAIN_ACCUMULATE,	/* BtTrainBatch, int32 offsets[n_seq + 1], int32 labels[n_seq], int32 ids[] */
	BT_MSG_TRAIN_STEP,			/* no payload; reply BtTrainStepped */
	BT_MSG_TRAIN_FORWARD,		/* BtTrainBatch, offsets, ids (no labels); reply logits, dropout off */
	BT_MSG_TRAIN_SNAPSHOT,		/* keep a copy of the parameters (early stopping's best epoch) */
	BT_MSG_TRAIN_RESTORE,		/* parameters back from the copy */
	BT_MSG_TRAIN_SAVE,			/* reply: the model as model.safetensors */
	BT_MSG_TRAIN_END			/* free the trainer */
} BtMsgKind;

/* What a forward request wants per sequence. */
typedef enum BtWant
{
	BT_WANT_LOGITS = 0,			/* num_classes floats */
	BT_WANT_MEAN,				/* hidden_size floats: mean of the last hidden states */
	BT_WANT_CLS,				/* hidden_size floats: last hidden state of [CLS] */
	BT_WANT_POOLER				/* hidden_size floats: tanh(dense(CLS)) */
} BtWant;

/* Reply status; anything but OK carries a message as payload. */
typedef enum BtServeStatus
{
	BT_SERVE_OK = 0,
	BT_ERR_UNKNOWN_MODEL,		/* the key is not loaded: send LOAD, then retry */
	BT_ERR_NO_CLASSIFIER,		/* logits asked of a model without a head */
	BT_ERR_NO_POOLER,			/* logits or pooler asked of a model without a pooler */
	BT_ERR_BAD_REQUEST,			/* malformed message or ids out of range */
	BT_ERR_MODEL,				/* the checkpoint or config was refused */
	BT_ERR_NO_MEMORY,
	BT_ERR_DEVICE,				/* the requested device is not available */
	BT_ERR_PRECISION			/* the request's precision does not exist on this device */
} BtServeStatus;

typedef struct BtMsgHeader
{
	uint32_t	magic;
	uint16_t	kind;			/* BtMsgKind */
	uint16_t	status;			/* BtServeStatus, replies only */
	uint64_t	key;			/* model the message is about */
	uint64_t	len;			/* payload bytes that follow */
} BtMsgHeader;

typedef struct BtHello
{
	uint32_t	version;		/* BT_SERVE_VERSION */
	uint32_t	pid;
	char		device[32];		/* "cpu" or "cuda" */
} BtHello;

/* LOAD's reply payload. */
typedef struct BtLoaded
{
	uint64_t	param_bytes;
	int32_t		hidden_size;
	int32_t		num_classes;
	int32_t		has_pooler;
	int32_t		pad;
} BtLoaded;

/* Arithmetic of a forward request's dense layers (the session's pgbert.cpu_precision). */
typedef enum BtPrecision
{
	BT_PRECISION_FP32 = 0,
	BT_PRECISION_INT8,			/* 8-bit dense layers (bt_model_quantize); CPUs only */
	BT_PRECISION_BF16			/* bf16 products (bt_model_to_bf16); CPUs with AVX512-BF16 only */
} BtPrecision;

typedef struct BtForwardHead
{
	uint32_t	want;			/* BtWant */
	uint32_t	n_seq;
	uint32_t	precision;		/* BtPrecision: each request's own, the same model serves both */
	uint32_t	pad;
} BtForwardHead;

/* TRAIN_BEGIN's fixed part: the options without their pointer, and where the model comes from. */
typedef struct BtTrainBegin
{
	float		learning_rate;
	float		weight_decay;
	float		beta1;
	float		beta2;
	float		adam_eps;
	float		max_grad_norm;
	int32_t		warmup_steps;
	int32_t		total_steps;
	float		hidden_dropout;
	float		attention_dropout;
	uint64_t	seed;
	int32_t		freeze_encoder;
	int32_t		num_classes;	/* the head to train */
	int32_t		n_class_weights;	/* 0 or num_classes floats follow */
	int32_t		from_checkpoint;	/* 1: a checkpoint follows the config (new head on it); 0: random init */
	uint32_t	config_len;
	uint32_t	bf16;			/* 1: bf16 products (BtTrainOptions.bf16); a GPU engine refuses it */
} BtTrainBegin;

/* TRAIN_BEGIN's options from training options (all but class_weights), and back. */
extern void bt_train_begin_set_options(BtTrainBegin *b, const BtTrainOptions *o);
extern BtTrainOptions bt_train_begin_options(const BtTrainBegin *b, const float *class_weights);

/* TRAIN_BEGIN's reply. */
typedef struct BtTrainStarted
{
	uint64_t	num_params;
} BtTrainStarted;

typedef struct BtTrainBatch
{
	float		scale;			/* ACCUMULATE: 1 / accumulation steps */
	uint32_t	n_seq;
} BtTrainBatch;

/* ACCUMULATE's reply is one float, the batch loss; STEP's is this. */
typedef struct BtTrainStepped
{
	float		lr;
	float		grad_norm;
	int32_t		steps;
	int32_t		pad;
} BtTrainStepped;

/* Largest payload either side accepts (a checkpoint of a few GB fits). */
#define BT_SERVE_MAX_PAYLOAD ((uint64_t) 16 << 30)

/* Write all of buf; 0, or -1 (errno set; EPIPE when the peer is gone). */
extern int	bt_io_write_all(int fd, const void *buf, size_t len);

/* Read exactly len bytes; 0, 1 at end of stream before any byte, or -1 (errno set). */
extern int	bt_io_read_all(int fd, void *buf, size_t len);

/* Send a header and its payload given in up to three pieces (NULL pieces skipped). */
extern int	bt_msg_send(int fd, uint16_t kind, uint16_t status, uint64_t key,
						const void *p1, size_t n1, const void *p2, size_t n2,
						const void *p3, size_t n3);

/* How the engine uses a GPU (src/engine/gpu_backend.h). */
typedef struct BtServeGpuOptions
{
	const char *precision;		/* "bf16" (default) or "fp32" */
	size_t		memory_limit;	/* device bytes for weights and activations; 0: the card's */
} BtServeGpuOptions;

/*
 * The engine process's loop: answer requests on fd until the peer closes it.
 * device is "auto" (the GPU when there is one, else the CPU), "cpu" or
 * "cuda" (the GPU, or refuse to start); threads sizes OpenBLAS; gpu may be
 * NULL for the defaults. Training runs on the CPU either way. Returns the
 * exit status for main.
 */
extern int	bt_serve(int fd, const char *device, int threads, const BtServeGpuOptions *gpu);

/* Free every model and training run bt_serve holds (tests and the protocol fuzzer run it in-process). */
extern void bt_serve_reset(void);

#endif
