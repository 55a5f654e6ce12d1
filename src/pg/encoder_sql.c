/*
 * encoder_sql.c - the encoder and trainer workers seen from SQL: the encoder's
 * state and counters (pgbert.worker view), each engine process and what it is
 * doing (pgbert.worker_engines), and the model versions the serving engine
 * holds, with their serving counts (pgbert.worker_models view).
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "catalog/pg_type.h"

#include "encoder_worker.h"

/* A worker state as the views spell it. */
static const char *
state_name(WorkerState s)
{
	switch (s)
	{
		case WORKER_DOWN:
			return "down";
		case WORKER_STARTING:
			return "starting";
		case WORKER_READY:
			return "ready";
		case WORKER_FAILED:
			return "failed";
	}
	return "unknown";
}

/* Upper bound in milliseconds of the bucket holding the q-quantile of the histogram; NULL if empty. */
static bool
latency_quantile(const uint64 *hist, double q, double *ms)
{
	uint64		total = 0,
				seen = 0;

	for (int b = 0; b < PGBERT_LATENCY_BUCKETS; b++)
		total += hist[b];
	if (total == 0)
		return false;
	for (int b = 0; b < PGBERT_LATENCY_BUCKETS; b++)
	{
		seen += hist[b];
		if ((double) seen >= q * (double) total)
		{
			*ms = (double) ((uint64) 1 << (b + 1)) / 1000.0;
			return true;
		}
	}
	*ms = (double) ((uint64) 1 << PGBERT_LATENCY_BUCKETS) / 1000.0;
	return true;
}

/* Requests waiting for the worker of that role, and requests it is running (unlocked peeks). */
static void
count_slots(EngineRole role, int *queued, int *running)
{
	WorkerShared *ws = pgbert_worker_shared;

	*queued = *running = 0;
	for (int i = 0; i < ws->n_slots; i++)
	{
		SlotState	s = ws->slots[i].state;

		if (pgbert_slot_role(ws->slots[i].kind) != role)
			continue;
		*queued += s == SLOT_READY;
		*running += s == SLOT_RUNNING || s == SLOT_ABANDONED;
	}
}

/* An engine's state, message, worker and engine pids and device: five columns from v[0], n[0]. */
static void
engine_columns(const WorkerEngine *e, Datum *v, bool *n)
{
	v[0] = CStringGetTextDatum(state_name(e->state));
	v[1] = CStringGetTextDatum(e->message);
	n[1] = e->message[0] == '\0';
	v[2] = Int32GetDatum(e->worker_pid);
	n[2] = e->worker_pid == 0;
	v[3] = Int32GetDatum(e->engine_pid);
	n[3] = e->engine_pid == 0;
	v[4] = CStringGetTextDatum(e->device);
	n[4] = e->device[0] == '\0';
}

PG_FUNCTION_INFO_V1(pgbert_worker_status);

/* worker_status() RETURNS one row: the worker's state and counters since it started. */
Datum
pgbert_worker_status(PG_FUNCTION_ARGS)
{
	WorkerShared *ws = pgbert_worker_shared;
	TupleDesc	desc;
	Datum		v[22];
	bool		n[22];
	WorkerEngine copy;
	int			trainings;
	uint64		training_requests;
	int			queued = 0,
				running = 0,
				models = 0;
	uint64		model_bytes = 0;
	double		ms;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "worker_status must return a row");
	memset(n, 0, sizeof(n));
	if (ws == NULL)
	{
		memset(n, true, sizeof(n));
		v[0] = CStringGetTextDatum("not preloaded");
		n[0] = false;
		v[1] = CStringGetTextDatum("pgbert is not in shared_preload_libraries: models run in each session");
		n[1] = false;
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, v, n)));
	}

	SpinLockAcquire(&ws->mutex);
	copy = ws->engines[ENGINE_SERVE];
	trainings = ws->engines[ENGINE_TRAIN].trainings;
	training_requests = ws->engines[ENGINE_TRAIN].requests;
	for (int i = 0; i < PGBERT_WORKER_MODELS; i++)
		if (ws->models[i].used)
		{
			models++;
			model_bytes += ws->models[i].bytes;
		}
	SpinLockRelease(&ws->mutex);
	count_slots(ENGINE_SERVE, &queued, &running);

	engine_columns(&copy, v, n);
	v[5] = TimestampTzGetDatum(copy.started_at);
	n[5] = copy.started_at == 0;
	v[6] = Int32GetDatum(models);
	v[7] = Int64GetDatum((int64) model_bytes);
	v[8] = Int32GetDatum(queued);
	v[9] = Int32GetDatum(running);
	v[10] = Int64GetDatum((int64) copy.batches);
	v[11] = Int64GetDatum((int64) copy.requests);
	v[12] = Int64GetDatum((int64) copy.batch_rows);
	v[13] = Float8GetDatum(copy.batches ? (double) copy.batch_rows / copy.batches : 0.0);
	n[13] = copy.batches == 0;
	v[14] = Float8GetDatum(copy.busy_seconds > 0 ? copy.batch_rows / copy.busy_seconds : 0.0);
	n[14] = copy.busy_seconds <= 0;
	n[15] = !latency_quantile(copy.latency, 0.5, &ms);
	v[15] = Float8GetDatum(ms);
	n[16] = !latency_quantile(copy.latency, 0.99, &ms);
	v[16] = Float8GetDatum(ms);
	v[17] = Int64GetDatum((int64) copy.errors);
	v[18] = Int64GetDatum((int64) copy.restarts);
	v[19] = Float8GetDatum(copy.busy_seconds);
	v[20] = Int32GetDatum(trainings);
	v[21] = Int64GetDatum((int64) training_requests);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, v, n)));
}

PG_FUNCTION_INFO_V1(pgbert_worker_models);

/* worker_models() RETURNS SETOF the versions the engine process holds, for every database. */
Datum
pgbert_worker_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerShared *ws = pgbert_worker_shared;

	InitMaterializedSRF(fcinfo, 0);
	if (ws == NULL)
		return (Datum) 0;
	for (int i = 0; i < PGBERT_WORKER_MODELS; i++)
	{
		WorkerModel m;
		Datum		v[11];
		bool		n[11];
		Datum		counts[PGBERT_WORKER_LABELS];
		int			nc;

		SpinLockAcquire(&ws->mutex);
		memcpy(&m, &ws->models[i], sizeof(m));
		SpinLockRelease(&ws->mutex);
		if (!m.used)
			continue;
		memset(n, 0, sizeof(n));
		nc = Min(m.num_classes, PGBERT_WORKER_LABELS);
		for (int l = 0; l < nc; l++)
			counts[l] = Int64GetDatum((int64) pg_atomic_read_u64(&ws->models[i].label_counts[l]));
		v[0] = ObjectIdGetDatum(m.dboid);
		v[1] = Int64GetDatum(m.version_id);
		v[2] = CStringGetTextDatum(m.name);
		v[3] = Int32GetDatum(m.version);
		v[4] = Int64GetDatum((int64) m.bytes);
		v[5] = TimestampTzGetDatum(m.loaded_at);
		v[6] = TimestampTzGetDatum(m.last_used);
		v[7] = Int64GetDatum((int64) pg_atomic_read_u64(&ws->models[i].calls));
		v[8] = Int64GetDatum((int64) pg_atomic_read_u64(&ws->models[i].rows));
		v[9] = PointerGetDatum(construct_array(counts, nc, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		v[10] = Int32GetDatum(m.hidden_size);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(pgbert_worker_engines);

/* worker_engines() RETURNS SETOF one row per worker: its engine process and what it is doing. */
Datum
pgbert_worker_engines(PG_FUNCTION_ARGS)
{
	static const char *const roles[ENGINE_ROLES] = {"serve", "train"};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerShared *ws = pgbert_worker_shared;

	InitMaterializedSRF(fcinfo, 0);
	if (ws == NULL)
		return (Datum) 0;
	for (int role = 0; role < ENGINE_ROLES; role++)
	{
		WorkerEngine e;
		Datum		v[18];
		bool		n[18];
		int			queued,
					running;
		double		ms;

		SpinLockAcquire(&ws->mutex);
		e = ws->engines[role];
		SpinLockRelease(&ws->mutex);
		count_slots(role, &queued, &running);
		memset(n, 0, sizeof(n));
		v[0] = CStringGetTextDatum(roles[role]);
		engine_columns(&e, v + 1, n + 1);
		v[6] = Int32GetDatum(e.threads);
		n[6] = e.engine_pid == 0;
		v[7] = Int32GetDatum(e.nice);
		n[7] = e.engine_pid == 0;
		v[8] = CStringGetTextDatum(e.activity);
		n[8] = e.activity[0] == '\0';
		v[9] = TimestampTzGetDatum(e.activity_since);
		n[9] = e.activity_since == 0;
		v[10] = Int32GetDatum(queued);
		v[11] = Int32GetDatum(running);
		v[12] = Int64GetDatum((int64) e.requests);
		v[13] = Int64GetDatum((int64) e.errors);
		v[14] = Int64GetDatum((int64) e.restarts);
		v[15] = Float8GetDatum(e.busy_seconds);
		n[16] = !latency_quantile(e.latency, 0.99, &ms);
		v[16] = Float8GetDatum(ms);
		v[17] = Int32GetDatum(e.trainings);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}
