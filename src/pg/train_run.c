/*
 * train_run.c - a training run's math, here or in the trainer worker's engine
 * process (see train_run.h).
 *
 * In the worker, every call is one engine message (serve.h) sent through this
 * backend's slot. If the run ends by error or cancellation, its trainer in the
 * engine is ended by this backend's next run, or by the worker once this
 * backend has exited: a memory context callback runs during abort and must
 * not wait on the worker.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"

#include "encoder_client.h"
#include "serve.h"
#include "session_engine.h"
#include "train_run.h"

struct TrainRun
{
	bool		in_worker;
	bool		ended;
	uint64		key;			/* worker: the trainer's key */
	BtBertModel *model;			/* here: the model trained */
	BtBertModel *own_model;		/* here: a from-scratch model this run frees */
	BtTrainer  *trainer;		/* here */
	float	   *best;			/* here: early stopping's copy */
	int			num_classes;
	size_t		num_params;
	int			steps;
};

/* A worker-side run this backend could not end (error or cancel): ended before the next. */
static uint64 unended_key = 0;
static uint32 run_counter = 0;

/* Memory context callback: free what lives here; remember a worker run that did not end. */
static void
free_run(void *arg)
{
	TrainRun   *run = arg;

	if (run->trainer)
		bt_trainer_free(run->trainer);
	if (run->own_model)
		bt_model_free(run->own_model);
	free(run->best);
	if (run->in_worker && !run->ended)
		unended_key = run->key;
	run->trainer = NULL;
	run->own_model = NULL;
	run->best = NULL;
	run->ended = true;
}

/* An empty run whose engine side is freed with the current memory context. */
static TrainRun *
new_run(bool in_worker)
{
	TrainRun   *run = palloc0(sizeof(TrainRun));
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

	run->in_worker = in_worker;
	cb->func = free_run;
	cb->arg = run;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	return run;
}

/* One engine message for this run through the worker; raises unless the engine says OK. */
static char *
trainer_request(TrainRun *run, int kind, const void *p1, Size n1, const void *p2, Size n2, const void *p3,
				Size n3, Size out_cap, Size *out_len)
{
	char		message[256];
	char	   *reply;
	Size		len;
	int			status = pgbert_worker_call(kind, run->key, p1, n1, p2, n2, p3, n3, out_cap, &reply, &len,
											message, sizeof(message));

	if (status == -2)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("the trainer worker stopped during training"),
				 errhint("Run it again; with the worker down it trains in this session.")));
	if (status == -1)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("training failed in the trainer worker"),
				 errdetail("%s.", message),
				 errhint("The worker has started a new engine process; running the training again should work.")));
	if (status == BT_ERR_PRECISION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 strstr(message, "AVX512-BF16") ? errmsg("pgbert.cpu_precision = bf16 is not available on this CPU") :
				 errmsg("pgbert.cpu_precision = bf16 does not apply in the trainer worker"),
				 errdetail("%s.", message),
				 errhint("SET pgbert.cpu_precision = fp32 to train in float32.")));
	if (status == BT_ERR_UNKNOWN_MODEL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("training failed in the trainer worker: its engine process was restarted")));
	if (status != BT_SERVE_OK)
		ereport(ERROR,
				(errcode(status == BT_ERR_NO_MEMORY ? ERRCODE_OUT_OF_MEMORY : ERRCODE_INTERNAL_ERROR),
				 errmsg("training failed in the trainer worker: %s", message)));
	if (out_len)
		*out_len = len;
	return reply;
}

/* End a worker run this backend left behind; failures do not matter (the worker sweeps). */
static void
end_unended(void)
{
	char		message[256];
	char	   *reply;
	Size		len;
	uint64		key = unended_key;

	if (key == 0)
		return;
	unended_key = 0;
	(void) pgbert_worker_call(BT_MSG_TRAIN_END, key, NULL, 0, NULL, 0, NULL, 0, 0, &reply, &len,
							  message, sizeof(message));
}

TrainRun *
train_run_begin(PgbertBaseModel *base, const char *config_json, int num_classes,
				const BtTrainOptions *opts, bool in_worker)
{
	TrainRun   *run = new_run(in_worker);
	char		err[512];

	run->num_classes = num_classes;
	if (in_worker)
	{
		BtTrainBegin b;
		Size		weights_len = opts->class_weights ? sizeof(float) * num_classes : 0;
		char	   *payload;
		Size		config_len = strlen(config_json);
		char	   *reply;

		end_unended();
		run->key = ((uint64) MyProcPid << 32) | ++run_counter;
		memset(&b, 0, sizeof(b));
		bt_train_begin_set_options(&b, opts);
		b.num_classes = num_classes;
		b.n_class_weights = opts->class_weights ? num_classes : 0;
		b.from_checkpoint = base != NULL;
		b.config_len = config_len;
		/* the fixed part, class weights and config in one piece; the checkpoint after it */
		payload = palloc(sizeof(b) + weights_len + config_len);
		memcpy(payload, &b, sizeof(b));
		if (weights_len)
			memcpy(payload + sizeof(b), opts->class_weights, weights_len);
		memcpy(payload + sizeof(b) + weights_len, config_json, config_len);
		reply = trainer_request(run, BT_MSG_TRAIN_BEGIN, payload, sizeof(b) + weights_len + config_len,
					 base ? base->checkpoint : NULL, base ? base->checkpoint_len : 0, NULL, 0,
					 sizeof(BtTrainStarted), NULL);
		run->num_params = ((BtTrainStarted *) reply)->num_params;
		pfree(payload);
		return run;
	}

	if (base)
	{
		if (bt_model_reset_head(&base->model, num_classes, opts->seed, err, sizeof(err)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not add a classification head: %s", err)));
		run->model = base->model;
	}
	else
	{
		BtBertConfig cfg;

		if (bt_config_parse(config_json, strlen(config_json), &cfg, err, sizeof(err)) != 0)
			elog(ERROR, "scratch config: %s", err);
		run->own_model = bt_model_init_random(&cfg, num_classes, opts->seed, err, sizeof(err));
		if (run->own_model == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a model: %s", err)));
		run->model = run->own_model;
	}
	run->num_params = run->model->num_params;
	pgbert_load_blas();
	run->trainer = bt_trainer_create(run->model, opts, err, sizeof(err));
	if (run->trainer == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start training: %s", err)));
	return run;
}

/* A run around an existing model, so evaluation shares training's forward path. */
TrainRun *
train_run_wrap(BtBertModel *m)
{
	TrainRun   *run = new_run(false);

	run->model = m;
	run->num_classes = m->num_classes;
	run->num_params = m->num_params;
	return run;
}

/* Whether the run's model lives in the trainer's engine. */
bool
train_run_in_worker(const TrainRun *run)
{
	return run->in_worker;
}

/* The head's size, for sizing logits. */
int
train_run_classes(const TrainRun *run)
{
	return run->num_classes;
}

/* Pack a batch as the engine messages carry it: head, offsets, [labels,] ids. */
static char *
pack_batch(const BtBatch *batch, const int32 *labels, float scale, Size *len)
{
	BtTrainBatch head = {scale, (uint32) batch->n_seq};
	Size		n_off = sizeof(int32) * (batch->n_seq + 1),
				n_lab = labels ? sizeof(int32) * batch->n_seq : 0,
				n_ids = sizeof(int32) * batch->offsets[batch->n_seq];
	char	   *p = palloc(sizeof(head) + n_off + n_lab + n_ids);

	memcpy(p, &head, sizeof(head));
	memcpy(p + sizeof(head), batch->offsets, n_off);
	if (labels)
		memcpy(p + sizeof(head) + n_off, labels, n_lab);
	memcpy(p + sizeof(head) + n_off + n_lab, batch->ids, n_ids);
	*len = sizeof(head) + n_off + n_lab + n_ids;
	return p;
}

/* Forward and backward over one batch, adding to the gradients. */
float
train_run_accumulate(TrainRun *run, const BtBatch *batch, const int32 *labels, float scale)
{
	char		err[512];
	float		loss;

	if (run->in_worker)
	{
		Size		len;
		char	   *p = pack_batch(batch, labels, scale, &len);
		char	   *reply = trainer_request(run, BT_MSG_TRAIN_ACCUMULATE, p, len, NULL, 0, NULL, 0, sizeof(float),
												NULL);

		memcpy(&loss, reply, sizeof(float));
		pfree(p);
		return loss;
	}
	if (bt_trainer_accumulate(run->trainer, batch, labels, scale, &loss, err, sizeof(err)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("training failed: %s", err)));
	return loss;
}

/* An AdamW step on the accumulated gradients. */
void
train_run_step(TrainRun *run, float *lr, float *norm)
{
	if (run->in_worker)
	{
		BtTrainStepped r;

		memcpy(&r, trainer_request(run, BT_MSG_TRAIN_STEP, NULL, 0, NULL, 0, NULL, 0, sizeof(r), NULL), sizeof(r));
		*lr = r.lr;
		*norm = r.grad_norm;
		run->steps = r.steps;
		return;
	}
	bt_trainer_step(run->trainer, lr, norm);
	run->steps = bt_trainer_steps(run->trainer);
}

/* Steps taken so far, for the log and progress. */
int
train_run_steps(const TrainRun *run)
{
	return run->steps;
}

/* Logits without dropout, for validation. */
void
train_run_forward(TrainRun *run, const BtBatch *batch, float *logits)
{
	char		err[512];
	BtForwardOut o;

	if (run->in_worker)
	{
		Size		len,
					out = sizeof(float) * (Size) batch->n_seq * run->num_classes;
		char	   *p = pack_batch(batch, NULL, 0.0f, &len);

		memcpy(logits, trainer_request(run, BT_MSG_TRAIN_FORWARD, p, len, NULL, 0, NULL, 0, out, NULL), out);
		pfree(p);
		return;
	}
	pgbert_load_blas();
	memset(&o, 0, sizeof(o));
	o.logits = logits;
	if (bt_model_forward(run->model, batch, &o, err, sizeof(err)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("evaluation failed: %s", err)));
}

/* Remember the current weights (the best epoch so far). */
void
train_run_snapshot(TrainRun *run)
{
	if (run->in_worker)
	{
		trainer_request(run, BT_MSG_TRAIN_SNAPSHOT, NULL, 0, NULL, 0, NULL, 0, 0, NULL);
		return;
	}
	if (run->best == NULL)
		run->best = malloc(sizeof(float) * run->model->num_params);
	if (run->best == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory for early stopping's copy of the weights")));
	memcpy(run->best, run->model->params, sizeof(float) * run->model->num_params);
}

/* Go back to the remembered weights. */
void
train_run_restore(TrainRun *run)
{
	if (run->in_worker)
	{
		trainer_request(run, BT_MSG_TRAIN_RESTORE, NULL, 0, NULL, 0, NULL, 0, 0, NULL);
		return;
	}
	Assert(run->best != NULL);
	memcpy(run->model->params, run->best, sizeof(float) * run->model->num_params);
}

/* The trained model as a safetensors blob. */
char *
train_run_save(TrainRun *run, Size *len)
{
	char		err[512];
	uint8_t    *blob;
	size_t		blob_len;
	char	   *copy;

	if (run->in_worker)
	{
		/* the parameters plus a header of a few kB per tensor name */
		Size		cap = run->num_params * sizeof(float) + (Size) 1024 * 1024;
		char	   *reply = trainer_request(run, BT_MSG_TRAIN_SAVE, NULL, 0, NULL, 0, NULL, 0, cap, len);

		copy = MemoryContextAllocHuge(CurrentMemoryContext, *len);
		memcpy(copy, reply, *len);
		return copy;
	}
	if (bt_model_save_safetensors(run->model, &blob, &blob_len, err, sizeof(err)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not serialize the model: %s", err)));
	PG_TRY();
	{
		copy = MemoryContextAllocHuge(CurrentMemoryContext, blob_len);
	}
	PG_CATCH();
	{
		free(blob);
		PG_RE_THROW();
	}
	PG_END_TRY();
	memcpy(copy, blob, blob_len);
	free(blob);
	*len = blob_len;
	return copy;
}

/* Free the engine side now instead of at memory context reset. */
void
train_run_end(TrainRun *run)
{
	if (run->in_worker && !run->ended)
	{
		run->ended = true;
		trainer_request(run, BT_MSG_TRAIN_END, NULL, 0, NULL, 0, NULL, 0, 0, NULL);
		pgbert_worker_shrink_buffer();
	}
}
