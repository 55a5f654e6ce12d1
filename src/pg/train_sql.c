/*
 * train_sql.c - train_classifier(): fine-tuning a BERT classifier on the rows
 * of a table.
 *
 * The rows are read once (dataset.c); a stratified or time-ordered split
 * holds out a validation set; the engine runs the epochs (forward, backward,
 * AdamW) in this backend or the trainer's engine process (train_run.c),
 * between CHECK_FOR_INTERRUPTS; the result is stored through import_model()
 * as the model's next version, with its metrics and decision rule
 * (catalog_calls.c). Engine objects are tied to the function's memory
 * context, so an error or a cancel frees them and leaves no catalog row and
 * no large object.
 */
#include "postgres.h"

#include <math.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "libpq/be-fsstubs.h"
#include "libpq/libpq-fs.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/fd.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "catalog_calls.h"
#include "config.h"
#include "cpu.h"
#include "dataset.h"
#include "encoder_client.h"
#include "encoder_worker.h"
#include "evaluate_sql.h"
#include "progress.h"
#include "quote.h"
#include "session_engine.h"
#include "tokenize_sql.h"
#include "train.h"
#include "train_run.h"

/* Memory context callback: give back a training run's progress slot, also on error. */
static void
release_progress_slot(void *arg)
{
	int		   *slot = arg;

	pgbert_progress_end(*slot);
	*slot = -1;
}

/* A progress slot for a run on model, given back when the current memory context goes. */
static int *
progress_slot_for_context(const char *model, int epochs, int total_steps)
{
	int		   *slot = palloc(sizeof(int));
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

	*slot = -1;
	cb->func = release_progress_slot;
	cb->arg = slot;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	*slot = pgbert_progress_begin(model, epochs, total_steps);
	return slot;
}

/* A small BERT for training from scratch over the bundled vocabulary. */
static char *
scratch_config_json(void)
{
	return psprintf("{\"architectures\": [\"BertForSequenceClassification\"], \"model_type\": \"bert\", "
					"\"vocab_size\": %u, \"hidden_size\": 256, \"num_hidden_layers\": 4, "
					"\"num_attention_heads\": 4, \"intermediate_size\": 1024, \"hidden_act\": \"gelu\", "
					"\"hidden_dropout_prob\": 0.1, \"attention_probs_dropout_prob\": 0.1, "
					"\"max_position_embeddings\": 512, \"type_vocab_size\": 2, \"initializer_range\": 0.02, "
					"\"layer_norm_eps\": 1e-12, \"pad_token_id\": 0}",
					pgbert_bundled_tokenizer()->vocab->size);
}

/* Bytes of the bundled vocab.txt (read by the server, whoever calls). */
static bytea *
bundled_vocab_bytes(void)
{
	char	   *path = pgbert_bundled_vocab_path();
	FILE	   *f = AllocateFile(path, PG_BINARY_R);
	StringInfoData buf;
	char		chunk[65536];
	size_t		n;
	bytea	   *out;

	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open the bundled vocabulary \"%s\": %m", path)));
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		appendBinaryStringInfo(&buf, chunk, (int) n);
	FreeFile(f);
	out = palloc(VARHDRSZ + buf.len);
	SET_VARSIZE(out, VARHDRSZ + buf.len);
	memcpy(VARDATA(out), buf.data, buf.len);
	return out;
}

/* Write bytes into a new large object owned by the current role; its OID. */
static Oid
write_large_object(const uint8_t *data, size_t len)
{
	Oid			lo = DatumGetObjectId(DirectFunctionCall1(be_lo_create, ObjectIdGetDatum(InvalidOid)));
	int			fd = DatumGetInt32(DirectFunctionCall2(be_lo_open, ObjectIdGetDatum(lo),
													   Int32GetDatum(INV_WRITE)));
	size_t		done = 0;

	while (done < len)
	{
		int			chunk = (int) Min(len - done, (size_t) (64 * 1024 * 1024));

		if (lo_write(fd, (const char *) data + done, chunk) != chunk)
			elog(ERROR, "could not write large object %u", lo);
		done += chunk;
		CHECK_FOR_INTERRUPTS();
	}
	DirectFunctionCall1(be_lo_close, Int32GetDatum(fd));
	return lo;
}

/* Settings a training run takes from its arguments. */
typedef struct TrainArgs
{
	char	   *model;
	char	   *base_model;		/* NULL: from scratch */
	int			epochs;
	int			batch_size;
	double		learning_rate;
	int			max_length;
	double		validation_fraction;
	int			seed;
	double		weight_decay;
	double		warmup_ratio;
	bool		freeze_encoder;
	int			accumulation;
	double		max_grad_norm;
	Jsonb	   *class_weights;	/* NULL, "balanced" or {"label": weight} */
	int			patience;		/* early stopping after this many epochs without a better validation loss; 0: off */
	bool		keep_better;	/* do not deploy a version that validates worse than the deployed one */
	char	   *split_by;		/* NULL, or the column whose newest rows are validated on */
	int			head_tail;		/* long texts cut head + tail (1), from the start (0), as the base model (-1) */
} TrainArgs;

/* Raise unless x lies in [lo, hi]. */
static void
check_range(const char *what, double x, double lo, double hi)
{
	if (!(x >= lo && x <= hi))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %.10g and %.10g, not %.10g", what, lo, hi, x)));
}

/*
 * Raise before training when the result could not be stored: an invalid
 * name, a model whose owner role the caller is not a member of, or SQL
 * objects older than this library.
 */
static void
check_target(const char *name)
{
	size_t		len = strlen(name);

	for (size_t i = 0; i < len; i++)
	{
		char		ch = name[i];
		bool		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			ch == '_' || (i > 0 && (ch == '.' || ch == '-'));

		if (!ok)
			len = 0;
	}
	if (len == 0 || len > 63)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid model name \"%s\"", pgbert_quote_limit(name)),
				 errdetail("Names are 1 to 63 characters: letters, digits, \"_\", \".\" and \"-\", not starting with \".\" or \"-\".")));
	pgbert_catalog_check_owner(name);
	pgbert_catalog_check_current();
}

/* A C string as JSON: quoted and escaped, or null. */
static char *
json_or_null(const char *s)
{
	StringInfoData buf;

	if (s == NULL)
		return "null";
	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}

/*
 * Record what a trained version's decision rule needs: the
 * label mix the loss saw (training rows per class, times the class weight),
 * and the temperature fitted on the validation rows (NAN: none).
 */
static void
store_training_rule(const char *model, int version, const Dataset *ds, const int *train_rows, int n_train,
					const float *class_weights, double temperature)
{
	double	   *mass = palloc0(sizeof(double) * ds->n_classes);
	double		total = 0.0;
	StringInfoData rule;

	for (int i = 0; i < n_train; i++)
		mass[ds->labels[train_rows[i]]] += class_weights ? class_weights[ds->labels[train_rows[i]]] : 1.0;
	for (int c = 0; c < ds->n_classes; c++)
		total += mass[c];
	for (int c = 0; c < ds->n_classes; c++)
		mass[c] /= total;
	initStringInfo(&rule);
	appendStringInfoString(&rule, "{\"training_priors\": ");
	pgbert_append_label_numbers(&rule, ds->classes, mass, ds->n_classes);
	if (!isnan(temperature))
		appendStringInfo(&rule, ", \"temperature\": %s", float8out_internal(temperature));
	appendStringInfoChar(&rule, '}');
	pgbert_catalog_set_decision_rule(model, version, rule.data);
	pfree(mass);
}

/* truncation's value: 1 for 'head_tail', 0 for 'head'. */
static int
truncation_arg(text *arg)
{
	char	   *t = text_to_cstring(arg);

	if (strcmp(t, "head_tail") == 0)
		return 1;
	if (strcmp(t, "head") == 0)
		return 0;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("truncation must be 'head' or 'head_tail', not \"%s\"", pgbert_quote_limit(t))));
	return 0;					/* keep the compiler quiet */
}

/* One train_classifier() call, from its arguments to the stored version. */
typedef struct Training
{
	TrainArgs	a;
	Source		src;
	Dataset		ds;
	MemoryContext mcxt;			/* the call's: rows and engine objects live as long */

	/* the starting point */
	PgbertBaseModel *base;		/* a stored model's copy, or NULL: from scratch */
	bool		in_worker;		/* the model and optimizer live in the trainer's engine */
	const BtTokenizer *tk;
	char	   *config_json;
	bytea	   *vocab;
	char	   *tokenizer_json;
	int			max_tokens;

	/* the split and the optimizer */
	int		   *train_rows;
	int		   *val_rows;
	int			n_train;
	int			n_val;
	BtTrainOptions opts;
	int			batches_per_epoch;
	int			total_steps;
	TrainRun   *run;
	int		   *progress_slot;

	/* what the epochs did */
	StringInfoData log;			/* training_log rows, as JSON arrays */
	double		last_epoch_loss;
	int			epochs_run;
	int			best_epoch;		/* with early stopping: the epoch of the lowest validation loss */
	double		best_loss;
	bool		stopped_early;
	int64		rows_seen;
	double		train_seconds;

	/* the held-out rows' verdict */
	StringInfoData metrics;
	double		validation_accuracy;
	double		temperature;	/* fitted on the validation rows, NAN without them */
} Training;

/* The call's arguments, checked; refuses before any work what could not be stored. */
static void
read_train_args(FunctionCallInfo fcinfo, TrainArgs *a)
{
	for (int i = 0; i <= 2; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("relation, text_column and label_column must not be null")));
	for (int i = 5; i <= 15; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("training settings must not be null")));
	a->model = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (a->model == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model must not be null")));
	a->base_model = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	a->epochs = PG_GETARG_INT32(5);
	a->batch_size = PG_GETARG_INT32(6);
	a->learning_rate = PG_GETARG_FLOAT8(7);
	a->max_length = PG_GETARG_INT32(8);
	a->validation_fraction = PG_GETARG_FLOAT8(9);
	a->seed = PG_GETARG_INT32(10);
	a->weight_decay = PG_GETARG_FLOAT8(11);
	a->warmup_ratio = PG_GETARG_FLOAT8(12);
	a->freeze_encoder = PG_GETARG_BOOL(13);
	a->accumulation = PG_GETARG_INT32(14);
	a->max_grad_norm = PG_GETARG_FLOAT8(15);
	a->class_weights = PG_ARGISNULL(16) ? NULL : PG_GETARG_JSONB_P(16);
	a->patience = PG_ARGISNULL(17) ? 0 : PG_GETARG_INT32(17);
	a->keep_better = PG_ARGISNULL(18) ? false : PG_GETARG_BOOL(18);
	/* 0.6.0's SQL definition has no split_by or truncation (a library newer than the database's objects) */
	a->split_by = PG_NARGS() > 19 && !PG_ARGISNULL(19) ? pstrdup(NameStr(*PG_GETARG_NAME(19))) : NULL;
	a->head_tail = PG_NARGS() > 20 && !PG_ARGISNULL(20) ? truncation_arg(PG_GETARG_TEXT_PP(20)) : -1;
	check_range("epochs", a->epochs, 1, 10000);
	check_range("batch_size", a->batch_size, 1, 65536);
	check_range("learning_rate", a->learning_rate, 0, 1);
	check_range("max_length", a->max_length, 2, 1 << 20);
	check_range("validation_fraction", a->validation_fraction, 0, 0.9);
	check_range("weight_decay", a->weight_decay, 0, 1);
	check_range("warmup_ratio", a->warmup_ratio, 0, 1);
	check_range("gradient_accumulation", a->accumulation, 1, 65536);
	check_range("max_grad_norm", a->max_grad_norm, 0, 1e9);
	check_range("early_stopping_patience", a->patience, 0, 10000);
	if (a->patience > 0 && a->validation_fraction <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("early stopping needs validation rows"),
				 errhint("Set validation_fraction above 0, or early_stopping_patience to 0.")));
}

/*
 * The starting point: a stored model's private copy, or a small random
 * BERT. With the trainer worker ready, the model and optimizer live in its
 * engine process (the base model's checkpoint goes there as bytes), apart
 * from the encoder worker's, so that classify() never waits for a step.
 */
static void
choose_start(Training *t)
{
	t->in_worker = pgbert_trainer_usable();
	if (t->a.base_model)
	{
		t->base = palloc0(sizeof(PgbertBaseModel));
		pgbert_load_base_model(t->a.base_model, t->base, t->in_worker);
		t->tk = t->base->tokenizer;
		t->config_json = t->base->config_json;
		t->vocab = t->base->vocab;
		t->tokenizer_json = t->base->tokenizer_json;
		t->max_tokens = Min(t->a.max_length, t->base->max_tokens);
		if (t->a.head_tail < 0)
			t->a.head_tail = t->base->head_tail;
	}
	else
	{
		t->tk = pgbert_bundled_tokenizer();
		t->config_json = scratch_config_json();
		t->vocab = bundled_vocab_bytes();
		t->tokenizer_json = "{\"do_lower_case\": true, \"tokenizer_class\": \"BertTokenizer\", \"model_max_length\": 512}";
		t->max_tokens = Min(t->a.max_length, 512);
	}
	t->a.head_tail = Max(t->a.head_tail, 0);
}

/* Read the labels and rows, and split them into training and validation rows. */
static void
read_and_split_rows(Training *t)
{
	Dataset    *ds = &t->ds;

	memset(ds, 0, sizeof(*ds));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	dataset_read_classes(&t->src, ds, t->mcxt);
	if (ds->n_classes == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s has no rows with both a text and a label", t->src.relation)));
	if (ds->n_classes == 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s has only one label (\"%s\"); a classifier needs at least two",
						t->src.relation, pgbert_quote_limit(ds->classes[0]))));
	dataset_read_rows(&t->src, t->tk, t->max_tokens, t->a.head_tail, ds, t->mcxt, "the table");
	SPI_finish();
	if (ds->skipped > 0)
		ereport(NOTICE,
				(errmsg("skipped " INT64_FORMAT " rows with a NULL %s", ds->skipped,
						t->a.split_by ? "text, label or split_by value" : "text or label")));

	t->train_rows = palloc(sizeof(int) * ds->n);
	t->val_rows = palloc(sizeof(int) * ds->n);
	if (t->a.split_by)
		dataset_split_newest(ds, t->a.validation_fraction, t->a.split_by, t->train_rows, &t->n_train,
							 t->val_rows, &t->n_val);
	else
		dataset_split_stratified(ds, t->a.validation_fraction, t->a.seed, t->train_rows, &t->n_train,
								 t->val_rows, &t->n_val);
}

/* The optimizer's settings: HF Trainer's defaults, dropout from the config, then the caller's. */
static void
set_train_options(Training *t)
{
	BtBertConfig cfg;
	char		err[512];

	if (bt_config_parse(t->config_json, strlen(t->config_json), &cfg, err, sizeof(err)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("config of the model to train: %s", err)));
	t->opts = bt_train_default_options(&cfg);
	bt_config_free(&cfg);
	t->batches_per_epoch = (t->n_train + t->a.batch_size - 1) / t->a.batch_size;
	t->total_steps = t->a.epochs * ((t->batches_per_epoch + t->a.accumulation - 1) / t->a.accumulation);
	t->opts.learning_rate = (float) t->a.learning_rate;
	t->opts.weight_decay = (float) t->a.weight_decay;
	t->opts.max_grad_norm = (float) t->a.max_grad_norm;
	t->opts.total_steps = t->total_steps;
	t->opts.warmup_steps = (int) ceil(t->a.warmup_ratio * t->total_steps);
	t->opts.seed = (uint64) t->a.seed;
	t->opts.freeze_encoder = t->a.freeze_encoder;
	/* bf16 products for training too; int8 is an inference format, so it trains in float32 */
	t->opts.bf16 = pgbert_cpu_precision == PGBERT_CPU_BF16;
	if (t->opts.bf16 && !t->in_worker && !bt_cpu_bf16())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pgbert.cpu_precision = bf16 is not available on this CPU"),
				 errdetail("bf16 training needs a CPU with AVX512-BF16; this one's path is %s.",
						   bt_cpu_path_name(bt_cpu_path())),
				 errhint("SET pgbert.cpu_precision = fp32 to train in float32.")));
	if (t->a.class_weights)
		t->opts.class_weights = dataset_class_weights(t->a.class_weights, &t->ds, t->train_rows, t->n_train);
}

/*
 * Live progress after every batch, and a NOTICE every
 * pgbert.progress_interval seconds (last_notice: when the previous one was).
 */
static void
report_progress(Training *t, int epoch, float loss, instr_time start, instr_time *last_notice)
{
	instr_time	now;
	double		total_rows = (double) t->a.epochs * t->n_train;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	{
		double		elapsed = INSTR_TIME_GET_DOUBLE(now);
		double		rate = t->rows_seen / Max(elapsed, 1e-9);

		pgbert_progress_update(*t->progress_slot, epoch + 1, train_run_steps(t->run),
							   loss, rate, (total_rows - t->rows_seen) / rate);
	}
	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, *last_notice);
	if (pgbert_progress_interval > 0 && INSTR_TIME_GET_DOUBLE(now) >= pgbert_progress_interval)
	{
		double		elapsed;
		double		rate;

		INSTR_TIME_SET_CURRENT(*last_notice);
		now = *last_notice;
		INSTR_TIME_SUBTRACT(now, start);
		elapsed = INSTR_TIME_GET_DOUBLE(now);
		rate = t->rows_seen / elapsed;
		ereport(NOTICE,
				(errmsg("epoch %d/%d, step %d/%d, loss %.4f, %.1f rows/s, about %.0f s left",
						epoch + 1, t->a.epochs, train_run_steps(t->run), t->total_steps, loss, rate,
						(total_rows - t->rows_seen) / rate)));
	}
}

/* One pass over the shuffled training rows: a step every gradient_accumulation batches. */
static void
train_epoch(Training *t, int epoch, int32 *offsets, int32 *ids, int32 *labels, instr_time start,
			instr_time *last_notice)
{
	uint64		state = (uint64) t->a.seed * 1000003 + epoch + 1;
	double		epoch_loss = 0.0,
				pending_loss = 0.0;
	int			pending = 0,
				pending_rows = 0;

	dataset_shuffle(t->train_rows, t->n_train, &state);
	for (int b = 0; b < t->batches_per_epoch; b++)
	{
		int			k = Min(t->a.batch_size, t->n_train - b * t->a.batch_size);
		BtBatch		batch;
		float		loss;

		dataset_pack(&t->ds, t->train_rows + b * t->a.batch_size, k, offsets, ids, labels);
		batch.n_seq = k;
		batch.offsets = offsets;
		batch.ids = ids;
		batch.type_ids = NULL;
		loss = train_run_accumulate(t->run, &batch, labels, 1.0f / t->a.accumulation);
		epoch_loss += loss * k;
		t->rows_seen += k;
		pending_loss += loss * k;
		pending_rows += k;
		if (++pending == t->a.accumulation || b == t->batches_per_epoch - 1)
		{
			float		lr,
						norm;

			train_run_step(t->run, &lr, &norm);
			appendStringInfo(&t->log, "%s[%d, %d, \"%s\", \"%s\", \"%s\", null, null]", t->log.len ? ", " : "",
							 epoch + 1, train_run_steps(t->run),
							 float8out_internal(pending_loss / pending_rows),
							 float8out_internal(lr), float8out_internal(norm));
			pending = 0;
			pending_loss = 0.0;
			pending_rows = 0;
		}
		CHECK_FOR_INTERRUPTS();
		report_progress(t, epoch, loss, start, last_notice);
	}
	t->last_epoch_loss = t->n_train ? epoch_loss / t->n_train : 0.0;
	t->epochs_run = epoch + 1;
}

/* Validate after an epoch: log it, keep the best epoch's weights, stop early when patience runs out. */
static void
validate_epoch(Training *t, int epoch)
{
	double		acc,
				vloss;

	evaluate_rows(t->run, &t->ds, t->val_rows, t->n_val, t->max_tokens, NULL, NULL, &acc, &vloss, NULL);
	if (t->a.patience > 0)
	{
		if (t->best_epoch == 0 || vloss < t->best_loss)
		{
			/* keep the best epoch's weights, as load_best_model_at_end does */
			train_run_snapshot(t->run);
			t->best_loss = vloss;
			t->best_epoch = epoch + 1;
		}
		else if (epoch + 1 - t->best_epoch >= t->a.patience)
			t->stopped_early = true;
	}
	appendStringInfo(&t->log, "%s[%d, %d, \"%s\", null, null, \"%s\", \"%s\"]", t->log.len ? ", " : "", epoch + 1,
					 train_run_steps(t->run), float8out_internal(t->last_epoch_loss),
					 float8out_internal(vloss), float8out_internal(acc));
	if (pgbert_progress_interval > 0)
		ereport(NOTICE,
				(errmsg("epoch %d/%d done: train loss %.4f, validation loss %.4f, accuracy %.4f",
						epoch + 1, t->a.epochs, t->last_epoch_loss, vloss, acc)));
}

/* The epochs, then the best epoch's weights back when early stopping kept them. */
static void
run_epochs(Training *t)
{
	int32	   *offsets = palloc(sizeof(int32) * (t->a.batch_size + 1));
	int32	   *ids = palloc(sizeof(int32) * (Size) t->a.batch_size * t->max_tokens);
	int32	   *labels = palloc(sizeof(int32) * t->a.batch_size);
	instr_time	start,
				now,
				last_notice;

	t->progress_slot = progress_slot_for_context(t->a.model, t->a.epochs, t->total_steps);
	initStringInfo(&t->log);
	INSTR_TIME_SET_CURRENT(start);
	last_notice = start;
	for (int epoch = 0; epoch < t->a.epochs && !t->stopped_early; epoch++)
	{
		train_epoch(t, epoch, offsets, ids, labels, start, &last_notice);
		if (t->n_val > 0)
			validate_epoch(t, epoch);
	}
	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	t->train_seconds = INSTR_TIME_GET_DOUBLE(now);
	if (t->a.patience > 0 && t->best_epoch > 0 && t->best_epoch != t->epochs_run)
		train_run_restore(t->run);
}

/* The metrics: the held-out rows' verdict and calibration, the run's numbers, its settings. */
static void
describe_run(Training *t)
{
	const TrainArgs *a = &t->a;
	StringInfo	m = &t->metrics;

	t->validation_accuracy = NAN;
	t->temperature = NAN;
	initStringInfo(m);
	appendStringInfoString(m, "{\"validation\": {");
	if (t->n_val > 0)
	{
		float	   *val_logits = palloc(sizeof(float) * (Size) t->n_val * t->ds.n_classes);

		evaluate_rows(t->run, &t->ds, t->val_rows, t->n_val, t->max_tokens, NULL, m, &t->validation_accuracy,
					  NULL, val_logits);
		appendStringInfoString(m, "}, ");
		t->temperature = evaluate_append_calibration(m, &t->ds, t->val_rows, t->n_val, val_logits);
		pfree(val_logits);
	}
	else
		appendStringInfoChar(m, '}');
	appendStringInfo(m, ", \"train_loss\": %s, \"rows_used\": %d, \"rows_skipped\": " INT64_FORMAT
					 ", \"train_rows\": %d, \"validation_rows\": %d, \"epochs\": %d, \"steps\": %d, "
					 "\"best_epoch\": %d, \"stopped_early\": %s, "
					 "\"train_seconds\": %s, \"train_rows_per_s\": %s, \"settings\": {\"base_model\": ",
					 float8out_internal(t->last_epoch_loss), t->ds.n, t->ds.skipped, t->n_train, t->n_val,
					 t->epochs_run, train_run_steps(t->run), a->patience > 0 ? t->best_epoch : t->epochs_run,
					 t->stopped_early ? "true" : "false", float8out_internal(t->train_seconds),
					 float8out_internal(t->rows_seen / Max(t->train_seconds, 1e-9)));
	if (a->base_model)
		appendStringInfo(m, "\"%s\", \"base_version\": %d", t->base->name, t->base->version);
	else
		appendStringInfoString(m, "null");
	appendStringInfo(m, ", \"batch_size\": %d, \"learning_rate\": %s, \"max_length\": %d, "
					 "\"validation_fraction\": %s, \"seed\": %d, \"weight_decay\": %s, \"warmup_ratio\": %s, "
					 "\"freeze_encoder\": %s, \"gradient_accumulation\": %d, \"max_grad_norm\": %s, "
					 "\"early_stopping_patience\": %d, \"keep_better\": %s, \"split_by\": %s, "
					 "\"truncation\": \"%s\", \"cpu_threads\": %d, \"precision\": \"%s\", \"ran_in\": \"%s\"}}",
					 a->batch_size, float8out_internal(a->learning_rate), t->max_tokens,
					 float8out_internal(a->validation_fraction), a->seed, float8out_internal(a->weight_decay),
					 float8out_internal(a->warmup_ratio), a->freeze_encoder ? "true" : "false",
					 a->accumulation, float8out_internal(a->max_grad_norm), a->patience,
					 a->keep_better ? "true" : "false", json_or_null(a->split_by),
					 a->head_tail ? "head_tail" : "head",
					 t->in_worker ? pgbert_training_threads : pgbert_cpu_threads, t->opts.bf16 ? "bf16" : "fp32",
					 t->in_worker ? "trainer" : "session");
}

/*
 * Store the trained version: weights into a new large object, then the next
 * version through import_model, its metrics, log and decision rule. With
 * keep_better, a version that validates worse than the deployed one is kept
 * but not deployed. Returns the version; *deployed: whether it is deployed.
 */
static int
store_version(Training *t, bool *deployed)
{
	const TrainArgs *a = &t->a;
	PgbertNewVersion nv;
	Size		blob_len;
	char	   *blob = train_run_save(t->run, &blob_len);
	int			previous_version = 0;
	double		previous_accuracy = NAN;
	int			version;

	train_run_end(t->run);
	memset(&nv, 0, sizeof(nv));
	nv.weights = write_large_object((const uint8_t *) blob, blob_len);
	if (a->keep_better)
		pgbert_catalog_deployed(a->model, &previous_version, &previous_accuracy);
	pfree(blob);

	nv.model = a->model;
	nv.config_json = t->config_json;
	nv.vocab = t->vocab;
	nv.tokenizer_json = t->tokenizer_json;
	nv.labels = t->ds.classes;
	nv.n_labels = t->ds.n_classes;
	nv.parent = a->base_model ? psprintf("%s v%d", t->base->name, t->base->version) : NULL;
	nv.head_tail = a->head_tail;
	nv.max_tokens = t->max_tokens;
	version = pgbert_catalog_import_version(&nv);
	/* numbers travel as JSON strings: float8in reads NaN and Infinity, JSON numbers cannot */
	pgbert_catalog_record_training(a->model, version, t->metrics.data, psprintf("[%s]", t->log.data));
	store_training_rule(a->model, version, &t->ds, t->train_rows, t->n_train, t->opts.class_weights,
						t->temperature);

	if (a->keep_better && previous_version > 0 && t->n_val > 0 && !isnan(previous_accuracy) &&
		t->validation_accuracy < previous_accuracy)
	{
		pgbert_catalog_deploy(a->model, previous_version);
		ereport(NOTICE,
				(errmsg("version %d of model \"%s\" validates worse than version %d (accuracy %.4f < %.4f); "
						"version %d stays deployed", version, a->model, previous_version,
						t->validation_accuracy, previous_accuracy, previous_version)));
	}
	*deployed = pgbert_catalog_resolve_version(a->model) == version;
	return version;
}

PG_FUNCTION_INFO_V1(pgbert_train_classifier);

/*
 * train_classifier(relation, text_column, label_column, model, base_model,
 * epochs, batch_size, learning_rate, max_length, validation_fraction, seed,
 * weight_decay, warmup_ratio, freeze_encoder, gradient_accumulation,
 * max_grad_norm, class_weights, early_stopping_patience, keep_better,
 * split_by, truncation) RETURNS jsonb
 */
Datum
pgbert_train_classifier(PG_FUNCTION_ARGS)
{
	Training   *t = palloc0(sizeof(Training));
	StringInfoData result;
	int			version;
	bool		deployed;

	/* it ends by storing a model version: refuse before the work, not after it */
	PreventCommandIfReadOnly("train_classifier()");
	PreventCommandDuringRecovery("train_classifier()");

	t->mcxt = CurrentMemoryContext;
	read_train_args(fcinfo, &t->a);
	t->src = dataset_check_source(PG_GETARG_OID(0), PG_GETARG_NAME(1), PG_GETARG_NAME(2));
	if (t->a.split_by)
		t->src.split_by = dataset_split_column(PG_GETARG_OID(0), t->a.split_by, t->a.validation_fraction);
	check_target(t->a.model);

	choose_start(t);
	read_and_split_rows(t);
	set_train_options(t);
	t->run = train_run_begin(t->base, t->config_json, t->ds.n_classes, &t->opts, t->in_worker);
	run_epochs(t);
	describe_run(t);
	version = store_version(t, &deployed);

	initStringInfo(&result);
	appendStringInfoString(&result, "{\"model\": ");
	escape_json(&result, t->a.model);
	appendStringInfo(&result, ", \"version\": %d, \"deployed\": %s, \"metrics\": %s}", version,
					 deployed ? "true" : "false", t->metrics.data);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(result.data)));
}
