/*
 * encoder_worker.h - the encoder worker's shared state: one request slot per backend,
 * the table of models the serving engine holds, and each engine's state and
 * statistics.
 *
 * Two background workers take requests from the slots, each with its own
 * engine process (serve.h): "pgbert encoder" serves forward passes, "pgbert
 * trainer" training steps, so that inference never queues behind a step. A
 * session fills its slot (the data itself in a DSM segment it owns), sets the
 * latch of the worker its request kind belongs to and waits on its own; the
 * encoder merges ready slots of the same model into one batch, runs it in its
 * engine, writes each session's rows back and sets their latches. Exists only
 * when pgbert is in shared_preload_libraries.
 */
#ifndef PGBERT_ENCODER_WORKER_H
#define PGBERT_ENCODER_WORKER_H

#include "storage/dsm.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#define PGBERT_WORKER_MODELS 64		/* versions the engine process may hold */
#define PGBERT_WORKER_LABELS 16		/* labels counted per model */
#define PGBERT_LATENCY_BUCKETS 32	/* request latency histogram, 2^i microseconds */

typedef enum SlotState
{
	SLOT_FREE = 0,
	SLOT_READY,					/* the session posted a request */
	SLOT_RUNNING,				/* the worker took it */
	SLOT_DONE,					/* result (or error) written; the session reads it */
	SLOT_ABANDONED				/* the session gave up while running; the worker frees it */
} SlotState;

typedef enum SlotKind
{
	SLOT_FORWARD = 0,
	SLOT_LOAD,
	SLOT_EVICT,					/* drop a version from the engine (it was deleted) */
	SLOT_PASS					/* one engine message as is (training): payload in, reply out */
} SlotKind;

/* Worker-side outcomes of a request, beside the engine's BtServeStatus. */
#define WORKER_STATUS_FAILED (-1)	/* the engine died or the request's memory is gone; message says */
#define WORKER_STATUS_GONE (-2)		/* session side only: the worker went away without answering */
#define WORKER_STATUS_WIDTH (-3)	/* the engine's rows are not as wide as the request expects */

typedef struct WorkerSlot
{
	slock_t		mutex;			/* protects state */
	SlotState	state;
	SlotKind	kind;
	int			pid;			/* session, for the latch and for diagnostics */
	PGPROC	   *proc;
	dsm_handle	seg;			/* the request's data */
	uint64		key;			/* model: database and version id */
	Oid			dboid;
	int64		version_id;
	int32		version;
	char		name[NAMEDATALEN];
	uint64		stamp;			/* the catalog row's version (pgbert_model_stamp): a changed row is another model */
	int			want;			/* BtWant */
	int			precision;		/* BtPrecision: the session's pgbert.cpu_precision */
	int			width;			/* floats per result row the session expects */
	int			n_seq;
	int			n_tokens;
	uint64		load_bytes;		/* LOAD: config + checkpoint bytes */
	int			msg_kind;		/* PASS: BtMsgKind */
	uint64		in_len;			/* PASS: payload bytes at the start of the segment */
	uint64		out_cap;		/* PASS: room for the reply in the segment */
	uint64		out_len;		/* PASS: reply bytes written there */
	TimestampTz submitted;
	int			status;			/* BtStatus of the result, or a WORKER_STATUS_* (< 0) */
	char		message[256];
} WorkerSlot;

typedef struct WorkerModel
{
	bool		used;
	uint64		key;
	Oid			dboid;
	int64		version_id;
	int32		version;
	char		name[NAMEDATALEN];
	uint64		stamp;			/* the catalog row's version it was loaded from */
	uint64		bytes;
	int			hidden_size;
	int			num_classes;
	bool		has_pooler;
	TimestampTz loaded_at;
	TimestampTz last_used;
	pg_atomic_uint64 calls;		/* requests served */
	pg_atomic_uint64 rows;
	pg_atomic_uint64 label_counts[PGBERT_WORKER_LABELS];	/* classify() results, by label id */
} WorkerModel;

typedef enum WorkerState
{
	WORKER_DOWN = 0,			/* no worker process */
	WORKER_STARTING,			/* starting the engine process */
	WORKER_READY,
	WORKER_FAILED				/* the engine process cannot start; message says why */
} WorkerState;

/* The background workers, each with its own engine process. */
typedef enum EngineRole
{
	ENGINE_SERVE = 0,			/* "pgbert encoder": forward passes, model loads and evictions */
	ENGINE_TRAIN,				/* "pgbert trainer": training runs (PASS requests) */
	ENGINE_ROLES
} EngineRole;

/* One background worker and its engine process, as the sessions and views see it. */
typedef struct WorkerEngine
{
	WorkerState state;
	int			worker_pid;
	PGPROC	   *worker_proc;
	int			engine_pid;
	char		device[32];
	char		message[256];	/* why the engine is not ready */
	TimestampTz started_at;
	int			threads;		/* the engine's CPU threads */
	int			nice;			/* and its scheduling priority (the nice value it runs at) */
	char		activity[128];	/* what the engine is doing now, "idle" between requests */
	TimestampTz activity_since;
	uint64		batches;
	uint64		batch_rows;
	uint64		batch_tokens;
	uint64		requests;
	uint64		errors;
	uint64		restarts;		/* engine processes started after the first */
	uint64		latency[PGBERT_LATENCY_BUCKETS];	/* request latencies, 2^i us buckets */
	double		busy_seconds;	/* time spent running requests */
	int			trainings;		/* training runs the engine holds */
} WorkerEngine;

typedef struct WorkerShared
{
	slock_t		mutex;			/* protects everything below but the slots and atomics */
	WorkerEngine engines[ENGINE_ROLES];
	WorkerModel models[PGBERT_WORKER_MODELS];	/* held by the serving engine */
	int			n_slots;
	WorkerSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} WorkerShared;

/* The shared state, NULL when pgbert was not preloaded. */
extern WorkerShared *pgbert_worker_shared;

/* pgbert.device's values: where the serving engine runs models */
typedef enum PgbertDevice
{
	PGBERT_DEVICE_AUTO,			/* the GPU when the engine finds one, else the CPU */
	PGBERT_DEVICE_CPU,
	PGBERT_DEVICE_CUDA
} PgbertDevice;

/* pgbert.gpu_precision's values */
typedef enum PgbertGpuPrecision
{
	PGBERT_GPU_BF16,			/* tensor cores, float32 sums */
	PGBERT_GPU_FP32
} PgbertGpuPrecision;

/* Settings of the workers, read by the workers and shown to sessions. */
extern int	pgbert_worker_device;	/* a PgbertDevice */
extern int	pgbert_worker_threads;
extern int	pgbert_training_threads;
extern int	pgbert_training_nice;
extern int	pgbert_worker_batch_tokens;
extern int	pgbert_worker_max_wait_ms;
extern int	pgbert_worker_memory_mb;
extern int	pgbert_gpu_memory_mb;
extern int	pgbert_gpu_precision;	/* a PgbertGpuPrecision */

/* Define the workers' settings (_PG_init, preloaded or not: sessions show them). */
extern void pgbert_encoder_worker_init(void);

/* Shared memory and the workers' registration, from _PG_init while preloading. */
extern void pgbert_encoder_worker_register(void);

/* The worker that serves a kind of request: training messages go to the trainer. */
static inline EngineRole
pgbert_slot_role(SlotKind kind)
{
	return kind == SLOT_PASS ? ENGINE_TRAIN : ENGINE_SERVE;
}

/* The key of a model version in the worker: database and version id. */
static inline uint64
pgbert_worker_key(Oid dboid, int64 version_id)
{
	return ((uint64) dboid << 40) ^ (uint64) version_id;
}

#endif
