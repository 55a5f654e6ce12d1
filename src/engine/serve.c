/*
 * serve.c - the engine process's request loop (see serve.h): load checkpoints
 * sent by the encoder worker, run packed forward passes, evict on request.
 * PostgreSQL-free; runs in its own process, so a fault here ends only it.
 */
#include "serve.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas.h"
#include "config.h"
#include "cpu.h"
#include "gpu_backend.h"
#include "gpu_train_backend.h"
#include "model.h"
#include "ops.h"
#include "safetensors.h"
#include "train.h"

#define MAX_MODELS 256
#define MAX_TRAINERS 64

typedef struct ServedModel
{
	uint64_t	key;
	BtBertModel *model;
	PgbertGpuModel *gpu;		/* its device copy when the engine runs on the GPU */
} ServedModel;

static ServedModel served[MAX_MODELS];
static int	n_served = 0;

/* The GPU this engine serves on, or NULL for the CPU. */
static BtGpu *gpu = NULL;

/* A device failure other than exhausted memory happened: end after its reply (see gpu_status). */
static bool gpu_failed = false;

/*
 * The reply status of a failed GPU call. Exhausted device memory is the
 * request's error; any other device failure (a faulted kernel, say) leaves
 * the CUDA context unusable, so the engine ends after replying and the
 * encoder worker starts a fresh one.
 */
static BtServeStatus
gpu_status(const char *err)
{
	if (bt_gpu_out_of_memory(err))
		return BT_ERR_NO_MEMORY;
	gpu_failed = true;
	return BT_ERR_DEVICE;
}

/*
 * A training run: the model it updates, its optimizer, early stopping's copy.
 * On the GPU, gpu trains a device copy of model (the host model receives the
 * weights only to be saved) and trainer and best stay NULL.
 */
typedef struct ServedTrainer
{
	uint64_t	key;
	BtBertModel *model;
	BtTrainer  *trainer;
	float	   *best;
	BtGpuTrainer *gpu;
} ServedTrainer;

static ServedTrainer trainers[MAX_TRAINERS];
static int	n_trainers = 0;

int
bt_io_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0)
	{
		ssize_t		n = write(fd, p, len);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t) n;
	}
	return 0;
}

int
bt_io_read_all(int fd, void *buf, size_t len)
{
	char	   *p = buf;
	size_t		done = 0;

	while (done < len)
	{
		ssize_t		n = read(fd, p + done, len - done);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
		{
			if (done == 0)
				return 1;
			errno = ECONNRESET;
			return -1;
		}
		done += (size_t) n;
	}
	return 0;
}

int
bt_msg_send(int fd, uint16_t kind, uint16_t status, uint64_t key,
			const void *p1, size_t n1, const void *p2, size_t n2, const void *p3, size_t n3)
{
	BtMsgHeader h;

	memset(&h, 0, sizeof(h));
	h.magic = BT_SERVE_MAGIC;
	h.kind = kind;
	h.status = status;
	h.key = key;
	h.len = (p1 ? n1 : 0) + (p2 ? n2 : 0) + (p3 ? n3 : 0);
	if (bt_io_write_all(fd, &h, sizeof(h)) != 0)
		return -1;
	if (p1 && n1 && bt_io_write_all(fd, p1, n1) != 0)
		return -1;
	if (p2 && n2 && bt_io_write_all(fd, p2, n2) != 0)
		return -1;
	if (p3 && n3 && bt_io_write_all(fd, p3, n3) != 0)
		return -1;
	return 0;
}

/* Send an error reply with a printf-style message. */
static int	reply_error(int fd, uint16_t kind, BtServeStatus status, uint64_t key, const char *fmt,...)
			__attribute__((format(printf, 5, 6)));

/* Answer a request with an error status and its message (printf-style), the payload empty. */
static int
reply_error(int fd, uint16_t kind, BtServeStatus status, uint64_t key, const char *fmt,...)
{
	char		msg[512];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return bt_msg_send(fd, kind, (uint16_t) status, key, msg, strlen(msg), NULL, 0, NULL, 0);
}

/* Index of a loaded model, or -1. */
static int
find_model(uint64_t key)
{
	for (int i = 0; i < n_served; i++)
		if (served[i].key == key)
			return i;
	return -1;
}

/* Free a served model and its device copy (replaced, evicted by the backend, or at reset); no-op when not loaded. */
static void
evict_model(uint64_t key)
{
	int			i = find_model(key);

	if (i < 0)
		return;
	bt_gpu_free_model(gpu, served[i].gpu);
	bt_model_free(served[i].model);
	served[i] = served[--n_served];
}

/*
 * A model from config.json and model.safetensors bytes; NULL with err (the
 * message says which of the two was refused).
 */
static BtBertModel *
model_from_bytes(const char *config, size_t config_len, const uint8_t *blob, size_t blob_len,
				 char *err, size_t errlen)
{
	char		why[400];
	BtBertConfig cfg;
	BtSafetensors *st;
	BtBertModel *m;

	if (bt_config_parse(config, config_len, &cfg, why, sizeof(why)) != 0)
	{
		snprintf(err, errlen, "config.json: %s", why);
		return NULL;
	}
	st = bt_safetensors_parse(blob, blob_len, why, sizeof(why));
	if (st == NULL)
	{
		bt_config_free(&cfg);
		snprintf(err, errlen, "not a valid safetensors checkpoint: %s", why);
		return NULL;
	}
	m = bt_model_load(&cfg, st, NULL, 0, why, sizeof(why));
	bt_safetensors_free(st);
	if (m == NULL)
		snprintf(err, errlen, "checkpoint does not fit its config: %s", why);
	return m;
}

/* LOAD: payload is uint32 config length, config.json, model.safetensors. */
static int
handle_load(int fd, uint64_t key, const uint8_t *payload, uint64_t len)
{
	char		err[512];
	uint32_t	config_len;
	BtBertModel *m;
	BtLoaded info;

	if (len < 4)
		return reply_error(fd, BT_MSG_LOAD, BT_ERR_BAD_REQUEST, key, "load request too short");
	memcpy(&config_len, payload, 4);
	if (config_len > len - 4)
		return reply_error(fd, BT_MSG_LOAD, BT_ERR_BAD_REQUEST, key, "config length past the message");
	if (n_served == MAX_MODELS && find_model(key) < 0)
		return reply_error(fd, BT_MSG_LOAD, BT_ERR_NO_MEMORY, key, "the engine holds %d models already",
						   MAX_MODELS);
	m = model_from_bytes((const char *) payload + 4, config_len, payload + 4 + config_len, len - 4 - config_len,
						 err, sizeof(err));
	if (m == NULL)
		return reply_error(fd, BT_MSG_LOAD, BT_ERR_MODEL, key, "%s", err);
	evict_model(key);
	served[n_served].gpu = NULL;
	if (gpu != NULL && (served[n_served].gpu = bt_gpu_upload(gpu, m, err, sizeof(err))) == NULL)
	{
		bt_model_free(m);
		return reply_error(fd, BT_MSG_LOAD, gpu_status(err), key, "%s", err);
	}
	if (gpu == NULL && bt_model_pack(m, err, sizeof(err)) != 0)
	{
		bt_model_free(m);
		return reply_error(fd, BT_MSG_LOAD, BT_ERR_NO_MEMORY, key, "%s", err);
	}
	served[n_served].key = key;
	served[n_served].model = m;
	n_served++;
	memset(&info, 0, sizeof(info));
	info.param_bytes = (uint64_t) m->num_params * sizeof(float);
	info.hidden_size = m->cfg.hidden_size;
	info.num_classes = m->num_classes;
	info.has_pooler = m->has_pooler;
	return bt_msg_send(fd, BT_MSG_LOAD, BT_SERVE_OK, key, &info, sizeof(info), NULL, 0, NULL, 0);
}

/* FORWARD: BtForwardHead, offsets, ids; the reply holds n_seq rows of floats. */
static int
handle_forward(int fd, uint64_t key, const uint8_t *payload, uint64_t len)
{
	char		err[512];
	BtForwardHead head;
	const int32_t *offsets,
			   *ids;
	uint64_t	n_tokens;
	BtBertModel *m;
	int			i = find_model(key);
	int			width;
	BtForwardOut out;
	float	   *rows,
			   *hidden = NULL;
	BtBatch		batch;
	int			rc;

	if (i < 0)
		return reply_error(fd, BT_MSG_FORWARD, BT_ERR_UNKNOWN_MODEL, key, "model not loaded");
	m = served[i].model;
	if (len < sizeof(head))
		return reply_error(fd, BT_MSG_FORWARD, BT_ERR_BAD_REQUEST, key, "forward request too short");
	memcpy(&head, payload, sizeof(head));
	if (head.n_seq == 0 || head.want > BT_WANT_POOLER ||
		len < sizeof(head) + ((uint64_t) head.n_seq + 1) * 4)
		return reply_error(fd, BT_MSG_FORWARD, BT_ERR_BAD_REQUEST, key, "malformed forward request");
	offsets = (const int32_t *) (payload + sizeof(head));
	ids = offsets + head.n_seq + 1;
	n_tokens = (len - sizeof(head)) / 4 - (head.n_seq + 1);
	if (offsets[0] != 0 || (uint64_t) offsets[head.n_seq] != n_tokens)
		return reply_error(fd, BT_MSG_FORWARD, BT_ERR_BAD_REQUEST, key, "offsets do not match the ids");
	if (head.want == BT_WANT_LOGITS && m->num_classes == 0)
		return reply_error(fd, BT_MSG_FORWARD, BT_ERR_NO_CLASSIFIER, key, "the model has no classification head");
	if ((head.want == BT_WANT_LOGITS || head.want == BT_WANT_POOLER) && !m->has_pooler)
		return reply_error(fd, BT_MSG_FORWARD, BT_ERR_NO_POOLER, key, "the model has no pooler");
	if (head.precision > BT_PRECISION_BF16)
		return reply_error(fd, BT_MSG_FORWARD, BT_ERR_BAD_REQUEST, key, "unknown precision %u", head.precision);
	if (head.precision != BT_PRECISION_FP32 && served[i].gpu != NULL)
		return reply_error(fd, BT_MSG_FORWARD, BT_ERR_PRECISION, key,
						   "the engine runs on the GPU, whose precision is pgbert.gpu_precision");
	if (served[i].gpu == NULL)
	{
		/* the request's precision: converted on its first request, every form kept */
		if (head.precision == BT_PRECISION_BF16)
		{
			int			converted = bt_model_to_bf16(m, err, sizeof(err));

			if (converted != 0)
				return reply_error(fd, BT_MSG_FORWARD, converted == -2 ? BT_ERR_PRECISION : BT_ERR_NO_MEMORY, key,
								   "%s", err);
		}
		else
		{
			if (head.precision == BT_PRECISION_INT8 && m->n_q8 == 0 && m->packed &&
				bt_model_quantize(m, err, sizeof(err)) != 0)
				return reply_error(fd, BT_MSG_FORWARD, BT_ERR_NO_MEMORY, key, "%s", err);
			m->use_q8 = head.precision == BT_PRECISION_INT8 && m->n_q8 > 0;
			m->use_bf16 = false;
		}
	}

	width = head.want == BT_WANT_LOGITS ? m->num_classes : m->cfg.hidden_size;
	rows = malloc(sizeof(float) * (size_t) head.n_seq * width);
	if (head.want == BT_WANT_CLS && served[i].gpu == NULL)
		hidden = malloc(sizeof(float) * (size_t) n_tokens * m->cfg.hidden_size);
	if (rows == NULL || (head.want == BT_WANT_CLS && served[i].gpu == NULL && hidden == NULL))
	{
		free(rows);
		free(hidden);
		return reply_error(fd, BT_MSG_FORWARD, BT_ERR_NO_MEMORY, key, "out of memory for %u sequences",
						   head.n_seq);
	}
	memset(&out, 0, sizeof(out));
	if (head.want == BT_WANT_LOGITS)
		out.logits = rows;
	else if (head.want == BT_WANT_MEAN)
		out.mean = rows;
	else if (head.want == BT_WANT_POOLER)
		out.pooled = rows;
	else
		out.hidden = hidden;
	batch.n_seq = (int) head.n_seq;
	batch.offsets = offsets;
	batch.ids = ids;
	batch.type_ids = NULL;
	if (served[i].gpu != NULL)
	{
		/* the device computes every output itself, [CLS] rows included; bad input is refused first */
		if (bt_check_batch(m, &batch, err, sizeof(err)) != 0)
		{
			free(rows);
			return reply_error(fd, BT_MSG_FORWARD, BT_ERR_BAD_REQUEST, key, "%s", err);
		}
		if (bt_gpu_forward(gpu, served[i].gpu, &batch, (int) head.want, rows, err, sizeof(err)) != 0)
		{
			free(rows);
			return reply_error(fd, BT_MSG_FORWARD, gpu_status(err), key, "%s", err);
		}
	}
	else if (bt_model_forward(m, &batch, &out, err, sizeof(err)) != 0)
	{
		free(rows);
		free(hidden);
		return reply_error(fd, BT_MSG_FORWARD, BT_ERR_BAD_REQUEST, key, "%s", err);
	}
	if (head.want == BT_WANT_CLS && served[i].gpu == NULL)
	{
		int			H = m->cfg.hidden_size;

		for (uint32_t s = 0; s < head.n_seq; s++)
			memcpy(rows + (size_t) s * H, hidden + (size_t) offsets[s] * H, sizeof(float) * H);
		free(hidden);
	}
	rc = bt_msg_send(fd, BT_MSG_FORWARD, BT_SERVE_OK, key, rows, sizeof(float) * (size_t) head.n_seq * width,
					 NULL, 0, NULL, 0);
	free(rows);
	return rc;
}

void
bt_train_begin_set_options(BtTrainBegin *b, const BtTrainOptions *o)
{
	b->learning_rate = o->learning_rate;
	b->weight_decay = o->weight_decay;
	b->beta1 = o->beta1;
	b->beta2 = o->beta2;
	b->adam_eps = o->adam_eps;
	b->max_grad_norm = o->max_grad_norm;
	b->warmup_steps = o->warmup_steps;
	b->total_steps = o->total_steps;
	b->hidden_dropout = o->hidden_dropout;
	b->attention_dropout = o->attention_dropout;
	b->seed = o->seed;
	b->freeze_encoder = o->freeze_encoder;
	b->bf16 = o->bf16;
}

BtTrainOptions
bt_train_begin_options(const BtTrainBegin *b, const float *class_weights)
{
	BtTrainOptions o;

	memset(&o, 0, sizeof(o));
	o.learning_rate = b->learning_rate;
	o.weight_decay = b->weight_decay;
	o.beta1 = b->beta1;
	o.beta2 = b->beta2;
	o.adam_eps = b->adam_eps;
	o.max_grad_norm = b->max_grad_norm;
	o.warmup_steps = b->warmup_steps;
	o.total_steps = b->total_steps;
	o.hidden_dropout = b->hidden_dropout;
	o.attention_dropout = b->attention_dropout;
	o.seed = b->seed;
	o.freeze_encoder = b->freeze_encoder != 0;
	o.bf16 = b->bf16 != 0;
	o.class_weights = class_weights;
	return o;
}

/* ---- training ---- */

/* Index of a running training, or -1. */
static int
find_trainer(uint64_t key)
{
	for (int i = 0; i < n_trainers; i++)
		if (trainers[i].key == key)
			return i;
	return -1;
}

/* Free a training (its trainer, GPU trainer and model copy); no-op when there is none. */
static void
end_trainer(uint64_t key)
{
	int			i = find_trainer(key);

	if (i < 0)
		return;
	bt_trainer_free(trainers[i].trainer);
	bt_gpu_trainer_free(trainers[i].gpu);
	bt_model_free(trainers[i].model);
	free(trainers[i].best);
	trainers[i] = trainers[--n_trainers];
}

/* TRAIN_BEGIN: build the model (new head on a checkpoint, or random) and its trainer. */
static int
handle_train_begin(int fd, uint64_t key, const uint8_t *payload, uint64_t len)
{
	char		err[512];
	BtTrainBegin b;
	const float *weights;
	const char *config;
	BtBertConfig cfg;
	BtBertModel *m;
	BtTrainOptions opts;
	BtTrainer  *t = NULL;
	BtGpuTrainer *gt = NULL;
	BtTrainStarted started;
	uint64_t	fixed;

	if (len < sizeof(b))
		return reply_error(fd, BT_MSG_TRAIN_BEGIN, BT_ERR_BAD_REQUEST, key, "train request too short");
	memcpy(&b, payload, sizeof(b));
	fixed = sizeof(b) + (uint64_t) b.n_class_weights * sizeof(float) + b.config_len;
	if (b.n_class_weights < 0 || b.num_classes < 1 || fixed > len ||
		(b.n_class_weights != 0 && b.n_class_weights != b.num_classes))
		return reply_error(fd, BT_MSG_TRAIN_BEGIN, BT_ERR_BAD_REQUEST, key, "malformed train request");
	end_trainer(key);
	if (n_trainers == MAX_TRAINERS)
		return reply_error(fd, BT_MSG_TRAIN_BEGIN, BT_ERR_NO_MEMORY, key, "the engine runs %d trainings already",
						   MAX_TRAINERS);
	weights = (const float *) (payload + sizeof(b));
	config = (const char *) (payload + sizeof(b) + (size_t) b.n_class_weights * sizeof(float));
	if (b.from_checkpoint)
	{
		m = model_from_bytes(config, b.config_len, payload + fixed, len - fixed, err, sizeof(err));
		if (m == NULL)
			return reply_error(fd, BT_MSG_TRAIN_BEGIN, BT_ERR_MODEL, key, "%s", err);
		if (bt_model_reset_head(&m, b.num_classes, b.seed, err, sizeof(err)) != 0)
		{
			bt_model_free(m);
			return reply_error(fd, BT_MSG_TRAIN_BEGIN, BT_ERR_MODEL, key, "could not add a classification head: %s",
							   err);
		}
	}
	else
	{
		if (bt_config_parse(config, b.config_len, &cfg, err, sizeof(err)) != 0)
			return reply_error(fd, BT_MSG_TRAIN_BEGIN, BT_ERR_MODEL, key, "config.json: %s", err);
		m = bt_model_init_random(&cfg, b.num_classes, b.seed, err, sizeof(err));
		if (m == NULL)
			return reply_error(fd, BT_MSG_TRAIN_BEGIN, BT_ERR_NO_MEMORY, key, "could not create a model: %s", err);
	}
	opts = bt_train_begin_options(&b, b.n_class_weights ? weights : NULL);
	if (opts.bf16 && (gpu != NULL || !bt_cpu_bf16()))
	{
		bt_model_free(m);
		if (gpu != NULL)
			return reply_error(fd, BT_MSG_TRAIN_BEGIN, BT_ERR_PRECISION, key,
							   "bf16 training runs on the CPU engine, and this engine trains on a GPU");
		return reply_error(fd, BT_MSG_TRAIN_BEGIN, BT_ERR_PRECISION, key,
						   "bf16 training needs a CPU with AVX512-BF16; the engine's path is %s",
						   bt_cpu_path_name(bt_cpu_path()));
	}
	if (gpu != NULL)
	{
		gt = bt_gpu_trainer_create(gpu, m, &opts, err, sizeof(err));
		if (gt == NULL)
		{
			bt_model_free(m);
			return reply_error(fd, BT_MSG_TRAIN_BEGIN, bt_gpu_out_of_memory(err) ? BT_ERR_NO_MEMORY : BT_ERR_MODEL,
							   key, "could not start training: %s", err);
		}
	}
	else if ((t = bt_trainer_create(m, &opts, err, sizeof(err))) == NULL)
	{
		bt_model_free(m);
		return reply_error(fd, BT_MSG_TRAIN_BEGIN, BT_ERR_MODEL, key, "could not start training: %s", err);
	}
	trainers[n_trainers].key = key;
	trainers[n_trainers].model = m;
	trainers[n_trainers].trainer = t;
	trainers[n_trainers].best = NULL;
	trainers[n_trainers].gpu = gt;
	n_trainers++;
	started.num_params = m->num_params;
	return bt_msg_send(fd, BT_MSG_TRAIN_BEGIN, BT_SERVE_OK, key, &started, sizeof(started), NULL, 0, NULL, 0);
}

/* Unpack a training batch: head, offsets, [labels,] ids. NULL + err when malformed. */
static const int32_t *
train_batch(const uint8_t *payload, uint64_t len, bool with_labels, BtTrainBatch *head, BtBatch *batch,
			const int32_t **labels)
{
	const int32_t *offsets;
	uint64_t	words;

	if (len < sizeof(*head))
		return NULL;
	memcpy(head, payload, sizeof(*head));
	words = (len - sizeof(*head)) / 4;
	if (head->n_seq == 0 || words < (uint64_t) head->n_seq * (with_labels ? 2 : 1) + 1)
		return NULL;
	offsets = (const int32_t *) (payload + sizeof(*head));
	*labels = with_labels ? offsets + head->n_seq + 1 : NULL;
	batch->n_seq = (int) head->n_seq;
	batch->offsets = offsets;
	batch->ids = offsets + head->n_seq + 1 + (with_labels ? head->n_seq : 0);
	batch->type_ids = NULL;
	if (offsets[0] != 0 ||
		(uint64_t) offsets[head->n_seq] != words - head->n_seq - 1 - (with_labels ? head->n_seq : 0))
		return NULL;
	return offsets;
}

/* The reply status of a failed GPU training call (gpu_train_backend.h's codes). */
static BtServeStatus
gpu_train_status(int rc, const char *err)
{
	if (rc == BT_GPU_TRAIN_BAD_INPUT)
		return BT_ERR_BAD_REQUEST;
	return gpu_status(err);
}

/* The training messages other than BEGIN. */
static int
handle_train(int fd, uint16_t kind, uint64_t key, const uint8_t *payload, uint64_t len)
{
	char		err[512];
	int			i = find_trainer(key);
	ServedTrainer *st;
	BtTrainBatch head;
	BtBatch		batch;
	const int32_t *labels;

	if (kind == BT_MSG_TRAIN_END)
	{
		end_trainer(key);
		return bt_msg_send(fd, kind, BT_SERVE_OK, key, NULL, 0, NULL, 0, NULL, 0);
	}
	if (i < 0)
		return reply_error(fd, kind, BT_ERR_UNKNOWN_MODEL, key, "no such training run in the engine");
	st = &trainers[i];
	switch (kind)
	{
		case BT_MSG_TRAIN_ACCUMULATE:
			{
				float		loss;

				if (train_batch(payload, len, true, &head, &batch, &labels) == NULL)
					return reply_error(fd, kind, BT_ERR_BAD_REQUEST, key, "malformed training batch");
				if (st->gpu != NULL)
				{
					int			rc = bt_gpu_trainer_accumulate(st->gpu, &batch, labels, head.scale, &loss, err,
															   sizeof(err));

					if (rc != 0)
						return reply_error(fd, kind, gpu_train_status(rc, err), key, "%s", err);
				}
				else if (bt_trainer_accumulate(st->trainer, &batch, labels, head.scale, &loss, err, sizeof(err)) != 0)
					return reply_error(fd, kind, BT_ERR_BAD_REQUEST, key, "%s", err);
				return bt_msg_send(fd, kind, BT_SERVE_OK, key, &loss, sizeof(loss), NULL, 0, NULL, 0);
			}
		case BT_MSG_TRAIN_STEP:
			{
				BtTrainStepped r;

				memset(&r, 0, sizeof(r));
				if (st->gpu != NULL)
				{
					int			rc = bt_gpu_trainer_step(st->gpu, &r.lr, &r.grad_norm, err, sizeof(err));

					if (rc != 0)
						return reply_error(fd, kind, gpu_train_status(rc, err), key, "%s", err);
					r.steps = bt_gpu_trainer_steps(st->gpu);
				}
				else
				{
					bt_trainer_step(st->trainer, &r.lr, &r.grad_norm);
					r.steps = bt_trainer_steps(st->trainer);
				}
				return bt_msg_send(fd, kind, BT_SERVE_OK, key, &r, sizeof(r), NULL, 0, NULL, 0);
			}
		case BT_MSG_TRAIN_FORWARD:
			{
				BtForwardOut out;
				float	   *logits;
				int			rc;

				if (train_batch(payload, len, false, &head, &batch, &labels) == NULL)
					return reply_error(fd, kind, BT_ERR_BAD_REQUEST, key, "malformed evaluation batch");
				logits = malloc(sizeof(float) * (size_t) head.n_seq * st->model->num_classes);
				if (logits == NULL)
					return reply_error(fd, kind, BT_ERR_NO_MEMORY, key, "out of memory");
				memset(&out, 0, sizeof(out));
				out.logits = logits;
				if (st->gpu != NULL)
				{
					int			grc = bt_gpu_trainer_forward(st->gpu, &batch, logits, err, sizeof(err));

					if (grc != 0)
					{
						free(logits);
						return reply_error(fd, kind, gpu_train_status(grc, err), key, "%s", err);
					}
				}
				else if (bt_model_forward(st->model, &batch, &out, err, sizeof(err)) != 0)
				{
					free(logits);
					return reply_error(fd, kind, BT_ERR_BAD_REQUEST, key, "%s", err);
				}
				rc = bt_msg_send(fd, kind, BT_SERVE_OK, key, logits,
								 sizeof(float) * (size_t) head.n_seq * st->model->num_classes, NULL, 0, NULL, 0);
				free(logits);
				return rc;
			}
		case BT_MSG_TRAIN_SNAPSHOT:
			if (st->gpu != NULL)
			{
				int			rc = bt_gpu_trainer_snapshot(st->gpu, err, sizeof(err));

				if (rc != 0)
					return reply_error(fd, kind, gpu_train_status(rc, err), key, "%s", err);
				return bt_msg_send(fd, kind, BT_SERVE_OK, key, NULL, 0, NULL, 0, NULL, 0);
			}
			if (st->best == NULL)
				st->best = malloc(sizeof(float) * st->model->num_params);
			if (st->best == NULL)
				return reply_error(fd, kind, BT_ERR_NO_MEMORY, key, "out of memory for a copy of the weights");
			memcpy(st->best, st->model->params, sizeof(float) * st->model->num_params);
			return bt_msg_send(fd, kind, BT_SERVE_OK, key, NULL, 0, NULL, 0, NULL, 0);
		case BT_MSG_TRAIN_RESTORE:
			if (st->gpu != NULL)
			{
				int			rc = bt_gpu_trainer_restore(st->gpu, err, sizeof(err));

				if (rc != 0)
					return reply_error(fd, kind, gpu_train_status(rc, err), key, "%s", err);
				return bt_msg_send(fd, kind, BT_SERVE_OK, key, NULL, 0, NULL, 0, NULL, 0);
			}
			if (st->best == NULL)
				return reply_error(fd, kind, BT_ERR_BAD_REQUEST, key, "no copy of the weights to restore");
			memcpy(st->model->params, st->best, sizeof(float) * st->model->num_params);
			return bt_msg_send(fd, kind, BT_SERVE_OK, key, NULL, 0, NULL, 0, NULL, 0);
		case BT_MSG_TRAIN_SAVE:
			{
				uint8_t    *blob;
				size_t		blob_len;
				int			rc;

				if (st->gpu != NULL)
				{
					/* the device holds the trained weights: bring them into the host model first */
					rc = bt_gpu_trainer_download(st->gpu, err, sizeof(err));
					if (rc != 0)
						return reply_error(fd, kind, gpu_train_status(rc, err), key, "%s", err);
				}
				if (bt_model_save_safetensors(st->model, &blob, &blob_len, err, sizeof(err)) != 0)
					return reply_error(fd, kind, BT_ERR_NO_MEMORY, key, "%s", err);
				rc = bt_msg_send(fd, kind, BT_SERVE_OK, key, blob, blob_len, NULL, 0, NULL, 0);
				free(blob);
				return rc;
			}
	}
	return reply_error(fd, kind, BT_ERR_BAD_REQUEST, key, "unknown training message %u", kind);
}

int
bt_serve(int fd, const char *device, int threads, const BtServeGpuOptions *gpu_opts)
{
	char		err[512];
	BtHello		hello;

	memset(&hello, 0, sizeof(hello));
	hello.version = BT_SERVE_VERSION;
	hello.pid = (uint32_t) getpid();
	if (strcmp(device, "auto") != 0 && strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0)
	{
		reply_error(fd, BT_MSG_HELLO, BT_ERR_DEVICE, 0, "unknown device \"%s\"", device);
		return 2;
	}
	if (strcmp(device, "cpu") != 0)
	{
		/* cuda: the GPU or an error; auto: the GPU when there is one, else the CPU */
		gpu = bt_gpu_open(NULL, gpu_opts ? gpu_opts->precision : NULL, gpu_opts ? gpu_opts->memory_limit : 0,
						  err, sizeof(err));
		if (gpu == NULL && strcmp(device, "cuda") == 0)
		{
			reply_error(fd, BT_MSG_HELLO, BT_ERR_DEVICE, 0, "%s", err);
			return 2;
		}
	}
	if (bt_blas_load(NULL, threads, err, sizeof(err)) != 0)
	{
		reply_error(fd, BT_MSG_HELLO, BT_ERR_DEVICE, 0, "%s", err);
		return 2;
	}
	snprintf(hello.device, sizeof(hello.device), gpu ? "cuda" : "cpu");
	if (bt_msg_send(fd, BT_MSG_HELLO, BT_SERVE_OK, 0, &hello, sizeof(hello), NULL, 0, NULL, 0) != 0)
		return 1;

	for (;;)
	{
		BtMsgHeader h;
		uint8_t    *payload = NULL;
		int			rc;

		rc = bt_io_read_all(fd, &h, sizeof(h));
		if (rc == 1)
			return 0;			/* the worker closed the socket: done */
		if (rc != 0 || h.magic != BT_SERVE_MAGIC || h.len > BT_SERVE_MAX_PAYLOAD)
			return 1;
		if (h.len > 0)
		{
			payload = malloc(h.len);
			if (payload == NULL)
			{
				/* drain it so the stream stays framed, then refuse */
				char		sink[65536];
				uint64_t	left = h.len;

				while (left > 0)
				{
					size_t		n = left < sizeof(sink) ? (size_t) left : sizeof(sink);

					if (bt_io_read_all(fd, sink, n) != 0)
						return 1;
					left -= n;
				}
				if (reply_error(fd, h.kind, BT_ERR_NO_MEMORY, h.key, "out of memory for a %llu-byte message",
								(unsigned long long) h.len) != 0)
					return 1;
				continue;
			}
			if (bt_io_read_all(fd, payload, h.len) != 0)
			{
				free(payload);
				return 1;
			}
		}
		switch (h.kind)
		{
			case BT_MSG_LOAD:
				rc = handle_load(fd, h.key, payload, h.len);
				break;
			case BT_MSG_FORWARD:
				rc = handle_forward(fd, h.key, payload, h.len);
				break;
			case BT_MSG_EVICT:
				evict_model(h.key);
				rc = bt_msg_send(fd, BT_MSG_EVICT, BT_SERVE_OK, h.key, NULL, 0, NULL, 0, NULL, 0);
				break;
			case BT_MSG_THREADS:
				{
					uint32_t	t = 1;

					if (h.len >= 4)
						memcpy(&t, payload, 4);
					bt_blas_set_threads((int) t);
					rc = bt_msg_send(fd, BT_MSG_THREADS, BT_SERVE_OK, h.key, NULL, 0, NULL, 0, NULL, 0);
				}
				break;
			case BT_MSG_TRAIN_BEGIN:
				rc = handle_train_begin(fd, h.key, payload, h.len);
				break;
			case BT_MSG_TRAIN_ACCUMULATE:
			case BT_MSG_TRAIN_STEP:
			case BT_MSG_TRAIN_FORWARD:
			case BT_MSG_TRAIN_SNAPSHOT:
			case BT_MSG_TRAIN_RESTORE:
			case BT_MSG_TRAIN_SAVE:
			case BT_MSG_TRAIN_END:
				rc = handle_train(fd, h.kind, h.key, payload, h.len);
				break;
			default:
				rc = reply_error(fd, h.kind, BT_ERR_BAD_REQUEST, h.key, "unknown message kind %u", h.kind);
				break;
		}
		free(payload);
		if (rc != 0)
			return 1;
		if (gpu_failed)
			return 3;			/* after the reply: the worker sees us gone and starts a fresh engine */
	}
}

void
bt_serve_reset(void)
{
	while (n_served > 0)
		evict_model(served[0].key);
	while (n_trainers > 0)
		end_trainer(trainers[0].key);
}
