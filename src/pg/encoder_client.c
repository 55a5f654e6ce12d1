/*
 * encoder_client.c - a session's side of the encoder worker: post a packed
 * chunk to this backend's slot, wait on the latch, read the rows back; hand
 * the worker a model's checkpoint the first time it needs it.
 *
 * The data travels in a DSM segment the session keeps for its lifetime (grown
 * when a request needs more). When the worker is not there, callers run the
 * engine in-process; the first time in a session that happens while the
 * worker was expected, a NOTICE says why.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "encoder_client.h"
#include "encoder_worker.h"
#include "pg_compat.h"
#include "serve.h"
#include "session_engine.h"

/* pgbert.worker: whether sessions send their forward passes to the encoder worker */
static int	pgbert_worker_mode = PGBERT_WORKER_AUTO;

static const struct config_enum_entry worker_options[] = {
	{"auto", PGBERT_WORKER_AUTO, false},
	{"on", PGBERT_WORKER_ON, false},
	{"off", PGBERT_WORKER_OFF, false},
	{"true", PGBERT_WORKER_ON, true},
	{"false", PGBERT_WORKER_OFF, true},
	{NULL, 0, false}
};

/*
 * How many times one forward request may hand its version to the engine: a
 * load can be evicted by other sessions' loads before the pass runs.
 */
#define WORKER_MAX_LOADS 4

static dsm_segment *session_seg = NULL;
static bool told_fallback[ENGINE_ROLES];
static bool exit_hook_set = false;

/* This backend's slot. */
static WorkerSlot *
my_slot(void)
{
	WorkerShared *ws = pgbert_worker_shared;

	int			index = pgbert_my_backend_index();

	if (index < 0 || index >= ws->n_slots)
		return NULL;
	return &ws->slots[index];
}

/* Give up the request: a queued or answered one is dropped, a running one left for the worker to free. */
static void
withdraw_request(WorkerSlot *slot)
{
	SpinLockAcquire(&slot->mutex);
	if (slot->state == SLOT_READY || slot->state == SLOT_DONE)
		slot->state = SLOT_FREE;
	else if (slot->state == SLOT_RUNNING)
		slot->state = SLOT_ABANDONED;
	SpinLockRelease(&slot->mutex);
}

/* On backend exit: a request still queued is withdrawn, a running one abandoned. */
static void
release_slot_at_exit(int code, Datum arg)
{
	WorkerSlot *slot = my_slot();

	if (slot != NULL)
		withdraw_request(slot);
}

/* One NOTICE per session and worker when the worker was expected but is not serving. */
static void
tell_fallback_for(EngineRole role, const char *why)
{
	if (told_fallback[role])
		return;
	told_fallback[role] = true;
	if (role == ENGINE_TRAIN)
		ereport(NOTICE,
				(errmsg("pgbert trains in this session, not in the trainer worker: %s", why)));
	else
		ereport(NOTICE,
				(errmsg("pgbert runs models in this session, not in the encoder worker: %s", why)));
}

#define tell_fallback(why) tell_fallback_for(ENGINE_SERVE, (why))

/* Whether the worker of that role is there to take requests; if expected and not, say why once. */
static bool
engine_usable(EngineRole role)
{
	WorkerShared *ws = pgbert_worker_shared;
	const char *who = role == ENGINE_TRAIN ? "trainer" : "encoder";
	WorkerState state;
	char		message[256];

	if (pgbert_worker_mode == PGBERT_WORKER_OFF)
		return false;
	if (ws == NULL)
	{
		/* not preloaded: the server is not set up for a worker; say so only when asked for one */
		if (pgbert_worker_mode == PGBERT_WORKER_ON)
			tell_fallback_for(role, "pgbert is not in shared_preload_libraries");
		return false;
	}
	if (my_slot() == NULL)
		return false;
	SpinLockAcquire(&ws->mutex);
	state = ws->engines[role].state;
	strlcpy(message, ws->engines[role].message, sizeof(message));
	SpinLockRelease(&ws->mutex);
	if (state == WORKER_READY)
		return true;
	if (state == WORKER_FAILED)
		tell_fallback_for(role, message);
	else if (state == WORKER_STARTING)
		tell_fallback_for(role, psprintf("the %s worker is starting its engine process", who));
	else
		tell_fallback_for(role, psprintf("the %s worker is not running", who));
	return false;
}

/* Whether this call's forward passes should go to the encoder worker. */
bool
pgbert_worker_usable(void)
{
	return engine_usable(ENGINE_SERVE);
}

/* Whether a training run should live in the trainer's engine. */
bool
pgbert_trainer_usable(void)
{
	return engine_usable(ENGINE_TRAIN);
}

/* The session's segment, with at least size bytes. */
static char *
session_buffer(Size size)
{
	if (session_seg != NULL && dsm_segment_map_length(session_seg) < size)
	{
		dsm_detach(session_seg);
		session_seg = NULL;
	}
	if (session_seg == NULL)
	{
		Size		want = Max(size, (Size) 1 << 20);

		session_seg = dsm_create(want + want / 4, 0);
		dsm_pin_mapping(session_seg);
	}
	return dsm_segment_address(session_seg);
}

/* Post the prepared slot and wait for the worker; the final state's status, or -2 if the worker went away. */
static int
post_and_wait(WorkerSlot *slot, char *message, size_t msglen)
{
	WorkerShared *ws = pgbert_worker_shared;
	WorkerEngine *engine = &ws->engines[pgbert_slot_role(slot->kind)];
	PGPROC	   *worker;
	int			status;
	volatile bool gone = false;

	if (!exit_hook_set)
	{
		before_shmem_exit(release_slot_at_exit, (Datum) 0);
		exit_hook_set = true;
	}
	SpinLockAcquire(&ws->mutex);
	worker = engine->worker_proc;
	SpinLockRelease(&ws->mutex);
	if (worker == NULL)
		return -2;

	SpinLockAcquire(&slot->mutex);
	slot->pid = MyProcPid;
	slot->proc = MyProc;
	slot->submitted = GetCurrentTimestamp();
	slot->status = 0;
	slot->message[0] = '\0';
	slot->state = SLOT_READY;
	SpinLockRelease(&slot->mutex);
	SetLatch(&worker->procLatch);

	PG_TRY();
	{
		for (;;)
		{
			SlotState	state;
			int			worker_pid;

			SpinLockAcquire(&slot->mutex);
			state = slot->state;
			SpinLockRelease(&slot->mutex);
			if (state == SLOT_DONE)
				break;
			SpinLockAcquire(&ws->mutex);
			worker_pid = engine->worker_pid;
			SpinLockRelease(&ws->mutex);
			if (worker_pid == 0)
			{
				/* the worker died without answering: withdraw, or abandon a running request */
				SpinLockAcquire(&slot->mutex);
				if (slot->state == SLOT_READY)
					slot->state = SLOT_FREE;
				else if (slot->state == SLOT_RUNNING)
					slot->state = SLOT_ABANDONED;
				state = slot->state;
				SpinLockRelease(&slot->mutex);
				if (state != SLOT_DONE)
					gone = true;	/* no return inside PG_TRY: it would leave the handler installed */
				break;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		/* cancelled: a queued request is withdrawn, a running one's rows are dropped by the worker */
		withdraw_request(slot);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (gone)
		return -2;
	status = slot->status;
	strlcpy(message, slot->message, msglen);
	return status;
}

/* Wait until a request this session abandoned earlier has been dropped by the worker. */
static bool
wait_slot_free(WorkerSlot *slot)
{
	for (;;)
	{
		SlotState	state;

		SpinLockAcquire(&slot->mutex);
		state = slot->state;
		if (state == SLOT_DONE)
			slot->state = state = SLOT_FREE;
		SpinLockRelease(&slot->mutex);
		if (state == SLOT_FREE)
			return true;
		/* the kind of the request it abandoned says whose */
		if (pgbert_worker_shared->engines[pgbert_slot_role(slot->kind)].worker_pid == 0)
			return false;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Fill the model fields of the slot. */
static void
describe_model(WorkerSlot *slot, const PgbertModel *pm)
{
	slot->dboid = MyDatabaseId;
	slot->version_id = pm->id;
	slot->version = pm->version;
	strlcpy(slot->name, pm->name, NAMEDATALEN);
	slot->key = pgbert_worker_key(MyDatabaseId, pm->id);
	slot->stamp = pm->stamp;
}

/* Whether the engine holds this version of the catalog row now (unlocked peek). */
static bool
worker_holds(const PgbertModel *pm)
{
	uint64		key = pgbert_worker_key(MyDatabaseId, pm->id);

	for (int i = 0; i < PGBERT_WORKER_MODELS; i++)
		if (pgbert_worker_shared->models[i].used && pgbert_worker_shared->models[i].key == key &&
			pgbert_worker_shared->models[i].stamp == pm->stamp)
			return true;
	return false;
}

/* Hand the worker the model's config and checkpoint (read here, as the current role). */
static int
load_into_worker(WorkerSlot *slot, PgbertModel *pm, char *message, size_t msglen)
{
	Size		blob_len;
	char	   *blob = pgbert_read_checkpoint(pm, &blob_len);
	uint32		config_len = strlen(pm->config_json);
	Size		total = 4 + config_len + blob_len;
	dsm_segment *seg;
	char	   *p;
	volatile int status = -2;

	seg = dsm_create(total, 0);
	p = dsm_segment_address(seg);
	memcpy(p, &config_len, 4);
	memcpy(p + 4, pm->config_json, config_len);
	memcpy(p + 4 + config_len, blob, blob_len);
	pfree(blob);

	describe_model(slot, pm);
	slot->kind = SLOT_LOAD;
	slot->seg = dsm_segment_handle(seg);
	slot->load_bytes = total;
	slot->n_seq = 0;
	slot->n_tokens = 0;
	PG_TRY();
	{
		status = post_and_wait(slot, message, msglen);
	}
	PG_FINALLY();
	{
		dsm_detach(seg);
	}
	PG_END_TRY();
	if (status != -2)
	{
		SpinLockAcquire(&slot->mutex);
		slot->state = SLOT_FREE;
		SpinLockRelease(&slot->mutex);
	}
	return status;
}

/* Raise the error a forward request ended with (status: the engine's or a WORKER_STATUS_*). */
static void
raise_forward_error(PgbertModel *pm, int want, int width, int status, const char *message)
{
	switch (status)
	{
		case BT_ERR_NO_CLASSIFIER:
		case BT_ERR_NO_POOLER:
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 status == BT_ERR_NO_CLASSIFIER ?
					 errmsg("model \"%s\" has no classification head", pm->name) :
					 errmsg("model \"%s\" has no pooler", pm->name),
					 status == BT_ERR_NO_CLASSIFIER ?
					 errhint("Use embed() for its sentence embeddings.") :
					 errhint("Use pooling => 'mean' or 'cls'.")));
			break;
		case BT_ERR_MODEL:
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("model \"%s\" version %d could not be loaded by the encoder worker: %s",
							pm->name, pm->version, message)));
			break;
		case BT_ERR_NO_MEMORY:
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("the encoder worker ran out of memory for model \"%s\" version %d", pm->name,
							pm->version),
					 errdetail("%s.", message),
					 errhint("Raise pgbert.gpu_memory (or pgbert.worker_memory), or lower pgbert.worker_batch_tokens.")));
			break;
		case BT_ERR_PRECISION:
			/* the worker's engine on this CPU lacks bf16: the same error as in the session */
			if (pgbert_cpu_precision == PGBERT_CPU_BF16 && strstr(message, "AVX512-BF16") != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("pgbert.cpu_precision = bf16 is not available on this CPU"),
						 errdetail("%s.", message),
						 errhint("SET pgbert.cpu_precision = fp32 (or int8).")));
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("pgbert.cpu_precision = %s does not apply in the encoder worker: %s",
							pgbert_cpu_precision_name(pgbert_cpu_precision), message),
					 errhint("SET pgbert.cpu_precision = fp32, or SET pgbert.worker = off to run these "
							 "dense layers on this session's CPU.")));
			break;
		case WORKER_STATUS_WIDTH:
			/* the session checked the labels against the head; a checkpoint changed under it */
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 want == BT_WANT_LOGITS ?
					 errmsg("label set mismatch: the classifier has %s outputs but the catalog lists %d labels",
							message, pm->num_labels) :
					 errmsg("model \"%s\" version %d gave rows of %s values in the encoder worker, not %d",
							pm->name, pm->version, message, width)));
			break;
		case BT_ERR_DEVICE:
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("the encoder worker's device failed on model \"%s\" version %d", pm->name, pm->version),
					 errdetail("%s.", message)));
			break;
		case -1:
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("model \"%s\" version %d failed in the encoder worker", pm->name, pm->version),
					 errdetail("%s.", message),
					 errhint("The worker has started a new engine process; running the statement again should work.")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("model \"%s\" version %d failed in the encoder worker: %s",
							pm->name, pm->version, message)));
	}
}

/* Post one forward request of the packed chunk in buf and wait; the slot is free again after it. */
static int
forward_once(WorkerSlot *slot, PgbertModel *pm, int want, int n_seq, int n_tokens, int width,
			 char *message, size_t msglen)
{
	int			status;

	describe_model(slot, pm);
	slot->kind = SLOT_FORWARD;
	slot->seg = dsm_segment_handle(session_seg);
	slot->want = want;
	/* the session's setting, per request: the engine keeps both forms of a model */
	slot->precision = pgbert_cpu_precision == PGBERT_CPU_INT8 ? BT_PRECISION_INT8 :
		pgbert_cpu_precision == PGBERT_CPU_BF16 ? BT_PRECISION_BF16 : BT_PRECISION_FP32;
	slot->width = width;
	slot->n_seq = n_seq;
	slot->n_tokens = n_tokens;
	status = post_and_wait(slot, message, msglen);
	if (status != -2)
	{
		SpinLockAcquire(&slot->mutex);
		slot->state = SLOT_FREE;
		SpinLockRelease(&slot->mutex);
	}
	return status;
}

bool
pgbert_worker_forward(PgbertModel *pm, int want, int n_seq, const int32 *offsets, const int32 *ids,
					  float *out, int width)
{
	WorkerSlot *slot = my_slot();
	int			n_tokens = offsets[n_seq];
	Size		out_at = sizeof(int32) * ((Size) n_seq + 1 + n_tokens);
	Size		size = out_at + sizeof(float) * (Size) n_seq * width;
	char		message[256];
	int			status;
	int			loads = 0;
	bool		loading = false;	/* this round hands the engine the version rather than the rows */
	bool		retried_after_loss = false;

	if (slot == NULL || !wait_slot_free(slot))
		return false;
	for (;;)
	{
		char	   *buf = NULL;

		if (loading)
			status = load_into_worker(slot, pm, message, sizeof(message));
		else
		{
			buf = session_buffer(size);
			memcpy(buf, offsets, sizeof(int32) * (n_seq + 1));
			memcpy(buf + sizeof(int32) * (n_seq + 1), ids, sizeof(int32) * n_tokens);
			status = forward_once(slot, pm, want, n_seq, n_tokens, width, message, sizeof(message));
		}
		if (status == -2)
		{
			tell_fallback(message[0] ? message : "the encoder worker stopped");
			return false;
		}
		if (!loading && status == BT_SERVE_OK)
		{
			memcpy(out, buf + out_at, sizeof(float) * (Size) n_seq * width);
			return true;
		}

		/*
		 * The engine died with the request, or during the load (killed, or
		 * dying as it came): the worker has started a fresh one. A forward
		 * pass changes nothing, so it is sent once more; if it kills that
		 * engine too, its error stands.
		 */
		if (status == -1 && !retried_after_loss)
		{
			retried_after_loss = true;
			loads = 0;
			loading = false;
			continue;
		}
		if (loading)
		{
			if (status != BT_SERVE_OK)
				break;
			loading = false;
			continue;
		}

		/*
		 * The engine does not have this version (first use, evicted, or a new
		 * engine): send it. Between our load and our forward pass another
		 * session's load may evict it again (beyond pgbert.worker_memory, or a
		 * version larger than the budget empties the engine), so a few loads
		 * are allowed before "not loaded" is an error.
		 */
		if (status != BT_ERR_UNKNOWN_MODEL || loads >= WORKER_MAX_LOADS)
			break;
		loads++;
		/* unless another session's load finished meanwhile */
		loading = !worker_holds(pm);
	}
	raise_forward_error(pm, want, width, status, message);
	return false;
}

/* Count a decided label for pgbert.worker_models (only when the worker exists). */
void
pgbert_worker_count_label(const PgbertModel *pm, int label)
{
	WorkerShared *ws = pgbert_worker_shared;
	uint64		key;

	if (ws == NULL || label < 0 || label >= PGBERT_WORKER_LABELS)
		return;
	key = pgbert_worker_key(MyDatabaseId, pm->id);
	/* unlocked read of the key: a count may land on a model evicted meanwhile, which is harmless */
	for (int i = 0; i < PGBERT_WORKER_MODELS; i++)
		if (ws->models[i].used && ws->models[i].key == key)
		{
			pg_atomic_fetch_add_u64(&ws->models[i].label_counts[label], 1);
			return;
		}
}

PG_FUNCTION_INFO_V1(pgbert_worker_forget_version);

/*
 * AFTER DELETE trigger on pgbert.model_versions: the engine process drops its
 * copy of the deleted version now rather than when memory runs short. Also
 * when the deleting transaction later rolls back; the next use loads it again.
 */
Datum
pgbert_worker_forget_version(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	WorkerShared *ws = pgbert_worker_shared;
	WorkerSlot *slot;
	bool		isnull;
	int64		id;
	char		message[256];
	int			status;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_DELETE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "worker_forget_version must run as a row-level DELETE trigger");
	if (ws == NULL || ws->engines[ENGINE_SERVE].state != WORKER_READY || (slot = my_slot()) == NULL ||
		!wait_slot_free(slot))
		return PointerGetDatum(td->tg_trigtuple);
	id = DatumGetInt64(heap_getattr(td->tg_trigtuple,
									SPI_fnumber(td->tg_relation->rd_att, "id"),
									td->tg_relation->rd_att, &isnull));
	if (isnull)
		return PointerGetDatum(td->tg_trigtuple);
	slot->kind = SLOT_EVICT;
	slot->dboid = MyDatabaseId;
	slot->version_id = id;
	slot->key = pgbert_worker_key(MyDatabaseId, id);
	slot->name[0] = '\0';
	slot->seg = DSM_HANDLE_INVALID;
	slot->n_seq = slot->n_tokens = 0;
	status = post_and_wait(slot, message, sizeof(message));
	if (status != -2)
	{
		SpinLockAcquire(&slot->mutex);
		slot->state = SLOT_FREE;
		SpinLockRelease(&slot->mutex);
	}
	return PointerGetDatum(td->tg_trigtuple);
}

int
pgbert_worker_call(int kind, uint64 key, const void *p1, Size n1, const void *p2, Size n2,
				   const void *p3, Size n3, Size out_cap, char **reply, Size *reply_len,
				   char *message, size_t msglen)
{
	WorkerSlot *slot = my_slot();
	Size		in_len = n1 + n2 + n3;
	char	   *buf;
	int			status;

	message[0] = '\0';
	if (slot == NULL || !wait_slot_free(slot))
		return -2;
	buf = session_buffer(Max(Max(in_len, out_cap), 1));
	if (n1)
		memcpy(buf, p1, n1);
	if (n2)
		memcpy(buf + n1, p2, n2);
	if (n3)
		memcpy(buf + n1 + n2, p3, n3);
	slot->kind = SLOT_PASS;
	slot->msg_kind = kind;
	slot->key = key;
	slot->dboid = MyDatabaseId;
	slot->name[0] = '\0';
	slot->seg = dsm_segment_handle(session_seg);
	slot->in_len = in_len;
	slot->out_cap = Max(in_len, out_cap);
	slot->out_len = 0;
	slot->n_seq = slot->n_tokens = 0;
	status = post_and_wait(slot, message, msglen);
	if (status == -2)
		return -2;
	*reply = buf;
	*reply_len = slot->out_len;
	SpinLockAcquire(&slot->mutex);
	slot->state = SLOT_FREE;
	SpinLockRelease(&slot->mutex);
	return status;
}

/* Free a segment a large request grew, so an idle session holds little shared memory. */
void
pgbert_worker_shrink_buffer(void)
{
	/* a training run's checkpoint-sized segment should not stay for the session's life */
	if (session_seg != NULL && dsm_segment_map_length(session_seg) > ((Size) 4 << 20))
	{
		dsm_detach(session_seg);
		session_seg = NULL;
	}
}

/* Define pgbert.worker. */
void
pgbert_encoder_client_init(void)
{
	DefineCustomEnumVariable("pgbert.worker",
							 "Run models in the encoder worker when it is running.",
							 "auto: when pgbert is preloaded; on: also say why when it cannot; off: in the session.",
							 &pgbert_worker_mode, PGBERT_WORKER_AUTO, worker_options, PGC_USERSET, 0,
							 NULL, NULL, NULL);
}
