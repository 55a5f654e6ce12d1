/*
 * encoder_worker.c - the background workers that run sessions' requests in
 * engine processes: "pgbert encoder" takes forward passes from every
 * session's slot (encoder_worker.h), merges them into batches per model and
 * runs them in its engine process, pgbert_engine (src/engine/serve.h);
 * "pgbert trainer" is the
 * same loop with its own engine for training runs, so that a training step,
 * which may take seconds, never holds up a classify() behind it. The trainer's
 * engine runs at a lower CPU priority (pgbert.training_nice) with its own
 * thread count (pgbert.training_threads).
 *
 * A worker itself runs no model code. The engine process is its child,
 * started with fork + exec, holding no PostgreSQL shared memory; when it dies,
 * even from SIGSEGV, only the requests of the batch it was running fail, the
 * worker starts a new one, and PostgreSQL never sees an abnormal exit. A crash
 * of this worker instead would restart the cluster, which is why it stays small.
 */
#include "postgres.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "encoder_worker.h"
#include "serve.h"

PGDLLEXPORT void pgbert_encoder_main(Datum arg);

WorkerShared *pgbert_worker_shared = NULL;

/* This process's role, its entry in the shared state, and its name in the log. */
static EngineRole my_role = ENGINE_SERVE;
static WorkerEngine *me = NULL;
static const char *const role_names[ENGINE_ROLES] = {"pgbert encoder", "pgbert trainer"};
#define my_name (role_names[my_role])

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* settings (encoder_worker.h) */
int			pgbert_worker_device = PGBERT_DEVICE_AUTO;
int			pgbert_worker_threads = 1;
int			pgbert_training_threads = 1;
int			pgbert_training_nice = 10;
int			pgbert_worker_batch_tokens = 8192;
int			pgbert_worker_max_wait_ms = 0;
int			pgbert_worker_memory_mb = 2048;
int			pgbert_gpu_memory_mb = 0;
int			pgbert_gpu_precision = PGBERT_GPU_BF16;

/* pgbert.device's names, which are also what the engine's --device takes */
static const struct config_enum_entry device_options[] = {
	{"auto", PGBERT_DEVICE_AUTO, false},
	{"cpu", PGBERT_DEVICE_CPU, false},
	{"cuda", PGBERT_DEVICE_CUDA, false},
	{NULL, 0, false}
};

static const struct config_enum_entry gpu_precision_options[] = {
	{"bf16", PGBERT_GPU_BF16, false},
	{"fp32", PGBERT_GPU_FP32, false},
	{NULL, 0, false}
};

/* The engine process, from the worker's side. */
static int	engine_fd = -1;
static pid_t engine_pid = 0;
static TimestampTz next_spawn = 0;
static int	engine_device = -1;	/* setting the running engine was started with */
static int	engine_gpu_memory_mb = -1;	/* and its GPU settings */
static int	engine_gpu_precision = -1;
static int	engine_nice = 0;
static bool engine_started_once = false;

/* Training runs in the engine and the backends that own them (freed if those exit). */
#define MAX_TRAININGS 64
static struct
{
	uint64		key;
	int			pid;
}			trainings[MAX_TRAININGS];
static int	n_trainings = 0;

/* The shared state: fixed part, then one request slot per backend. */
static Size
worker_shmem_size(void)
{
	return add_size(offsetof(WorkerShared, slots), mul_size(MaxBackends, sizeof(WorkerSlot)));
}

/* shmem_request_hook: reserve the shared state (PostgreSQL 15 asks for it here, not in _PG_init). */
static void
worker_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(worker_shmem_size());
}

/* shmem_startup_hook: create and initialize the shared state once, attach to it after. */
static void
worker_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pgbert_worker_shared = ShmemInitStruct("pgbert encoder worker", worker_shmem_size(), &found);
	if (!found)
	{
		memset(pgbert_worker_shared, 0, worker_shmem_size());
		SpinLockInit(&pgbert_worker_shared->mutex);
		pgbert_worker_shared->n_slots = MaxBackends;
		for (int i = 0; i < MaxBackends; i++)
			SpinLockInit(&pgbert_worker_shared->slots[i].mutex);
		for (int i = 0; i < PGBERT_WORKER_MODELS; i++)
		{
			pg_atomic_init_u64(&pgbert_worker_shared->models[i].calls, 0);
			pg_atomic_init_u64(&pgbert_worker_shared->models[i].rows, 0);
			for (int l = 0; l < PGBERT_WORKER_LABELS; l++)
				pg_atomic_init_u64(&pgbert_worker_shared->models[i].label_counts[l], 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Define the workers' settings; they exist preloaded or not, so that sessions can show them. */
void
pgbert_encoder_worker_init(void)
{
	DefineCustomEnumVariable("pgbert.device",
							 "Device the encoder worker's engine process runs models on.",
							 "auto picks the GPU when the engine has one, else the CPU.",
							 &pgbert_worker_device, PGBERT_DEVICE_AUTO, device_options, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.worker_threads",
							"Threads the encoder worker's engine process uses on the CPU.",
							NULL,
							&pgbert_worker_threads, 1, 1, 256, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.training_threads",
							"Threads the trainer's engine process uses on the CPU for training runs.",
							"Training runs in its own engine beside the encoder's; give it the cores inference does not need.",
							&pgbert_training_threads, 1, 1, 256, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.training_nice",
							"Scheduling priority (nice value) of the trainer's engine process.",
							"Above 0, inference gets a core first when both want it. A change restarts the engine "
							"when no training runs in it, else it applies when the engine next starts.",
							&pgbert_training_nice, 10, 0, 19, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.worker_batch_tokens",
							"Most tokens the encoder worker merges into one batch.",
							"One request larger than this still runs, alone.",
							&pgbert_worker_batch_tokens, 8192, 64, 1048576, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.worker_max_wait",
							"How long the encoder worker holds a batch with room for more requests.",
							"0: never; batches still merge what arrived while the previous one ran.",
							&pgbert_worker_max_wait_ms, 0, 0, 1000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.worker_memory",
							"Memory for model versions held by the encoder worker's engine process.",
							"Least recently used versions are dropped beyond it.",
							&pgbert_worker_memory_mb, 2048, 1, INT_MAX / 2, PGC_SIGHUP, GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.gpu_memory",
							"Device memory the engine process may use on the GPU.",
							"Weights and activations; a batch that would pass it fails alone. 0: the whole card.",
							&pgbert_gpu_memory_mb, 0, 0, INT_MAX / 2, PGC_SIGHUP, GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("pgbert.gpu_precision",
							 "Arithmetic of the GPU's matrix products.",
							 "bf16: tensor cores with float32 accumulation; fp32: float32 throughout, for parity.",
							 &pgbert_gpu_precision, PGBERT_GPU_BF16, gpu_precision_options, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
}

/* Request the shared state and register the two background workers (only while preloading). */
void
pgbert_encoder_worker_register(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = worker_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = worker_shmem_startup;

	for (int role = 0; role < ENGINE_ROLES; role++)
	{
		BackgroundWorker w;

		memset(&w, 0, sizeof(w));
		w.bgw_flags = BGWORKER_SHMEM_ACCESS;
		/* consistent state, not recovery finished: standbys serve classify() too */
		w.bgw_start_time = BgWorkerStart_ConsistentState;
		w.bgw_restart_time = 5;
		w.bgw_main_arg = Int32GetDatum(role);
		snprintf(w.bgw_library_name, BGW_MAXLEN, "pgbert");
		snprintf(w.bgw_function_name, BGW_MAXLEN, "pgbert_encoder_main");
		snprintf(w.bgw_name, BGW_MAXLEN, "%s", role_names[role]);
		snprintf(w.bgw_type, BGW_MAXLEN, "%s", role_names[role]);
		RegisterBackgroundWorker(&w);
	}
}

/* ---- slots ---- */

/* Finish a taken slot: the result is in place; wake its session. */
static void
finish_slot(WorkerSlot *slot, int status, const char *message)
{
	PGPROC	   *proc;

	SpinLockAcquire(&slot->mutex);
	slot->status = status;
	strlcpy(slot->message, message ? message : "", sizeof(slot->message));
	proc = slot->proc;
	slot->state = slot->state == SLOT_ABANDONED ? SLOT_FREE : SLOT_DONE;
	SpinLockRelease(&slot->mutex);
	if (proc)
		SetLatch(&proc->procLatch);
}

/* Fail every request for this worker that is waiting or running (start, exit, no engine). */
static void
fail_all_slots(int status, const char *message)
{
	WorkerShared *ws = pgbert_worker_shared;

	for (int i = 0; i < ws->n_slots; i++)
	{
		WorkerSlot *slot = &ws->slots[i];
		bool		busy;

		SpinLockAcquire(&slot->mutex);
		busy = (slot->state == SLOT_READY || slot->state == SLOT_RUNNING || slot->state == SLOT_ABANDONED) &&
			pgbert_slot_role(slot->kind) == my_role;
		if (busy && slot->state == SLOT_READY)
			slot->state = SLOT_RUNNING;
		SpinLockRelease(&slot->mutex);
		if (busy)
			finish_slot(slot, status, message);
	}
}

/* Take a ready slot for this batch; false if its session withdrew it meanwhile. */
static bool
take_slot(WorkerSlot *slot)
{
	bool		taken;

	SpinLockAcquire(&slot->mutex);
	taken = slot->state == SLOT_READY;
	if (taken)
		slot->state = SLOT_RUNNING;
	SpinLockRelease(&slot->mutex);
	return taken;
}

/* A taken slot that this worker does not serve goes back, and its worker is woken. */
static void
hand_back(WorkerSlot *slot)
{
	EngineRole	role = pgbert_slot_role(slot->kind);
	PGPROC	   *worker;
	bool		ready;

	SpinLockAcquire(&slot->mutex);
	slot->state = slot->state == SLOT_ABANDONED ? SLOT_FREE : SLOT_READY;
	ready = slot->state == SLOT_READY;
	SpinLockRelease(&slot->mutex);
	SpinLockAcquire(&pgbert_worker_shared->mutex);
	worker = pgbert_worker_shared->engines[role].worker_proc;
	SpinLockRelease(&pgbert_worker_shared->mutex);
	if (ready && worker != NULL)
		SetLatch(&worker->procLatch);
}

/* Say what the engine is doing now (pgbert.worker_engines), and since when. */
static void
set_activity(const char *fmt,...) pg_attribute_printf(1, 2);

/* The text pgbert.worker_engines shows for this engine, and since when. */
static void
set_activity(const char *fmt,...)
{
	char		buf[128];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	SpinLockAcquire(&pgbert_worker_shared->mutex);
	strlcpy(me->activity, buf, sizeof(me->activity));
	me->activity_since = GetCurrentTimestamp();
	SpinLockRelease(&pgbert_worker_shared->mutex);
}

/* ---- the engine process ---- */

/* Words for how a child ended, from waitpid's status. */
static void
describe_exit(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "was terminated by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else
		snprintf(buf, len, "ended");
}

/* Reap a dead or dying engine process; its description goes to why. */
static void
engine_gone(char *why, size_t len)
{
	int			status = 0;

	if (engine_fd >= 0)
		close(engine_fd);
	engine_fd = -1;
	if (engine_pid > 0)
	{
		/* closing the socket ends a live engine; give a hung one a moment, then kill it */
		for (int i = 0; i < 50; i++)
		{
			if (waitpid(engine_pid, &status, WNOHANG) == engine_pid)
				break;
			if (i == 49)
			{
				kill(engine_pid, SIGKILL);
				waitpid(engine_pid, &status, 0);
			}
			pg_usleep(10000);
		}
		describe_exit(status, why, len);
	}
	else
		snprintf(why, len, "was not running");
	engine_pid = 0;

	SpinLockAcquire(&pgbert_worker_shared->mutex);
	me->engine_pid = 0;
	if (me->state == WORKER_READY)
		me->state = WORKER_STARTING;
	strlcpy(me->activity, "no engine", sizeof(me->activity));
	me->activity_since = GetCurrentTimestamp();
	if (my_role == ENGINE_SERVE)
		for (int i = 0; i < PGBERT_WORKER_MODELS; i++)
			pgbert_worker_shared->models[i].used = false;
	me->trainings = 0;
	SpinLockRelease(&pgbert_worker_shared->mutex);
	n_trainings = 0;
}

/*
 * Between requests the engine says nothing: its socket turning readable then
 * means it died (the kernel closed its end) or broke the protocol. Reap it at
 * once and start a fresh one, so that the next request finds a live engine
 * instead of failing for a death it had no part in. True if that happened.
 */
static bool
engine_died_idle(void)
{
	struct pollfd p = {engine_fd, POLLIN, 0};
	char		why[200];

	if (engine_fd < 0 || poll(&p, 1, 0) <= 0)
		return false;
	engine_gone(why, sizeof(why));
	ereport(LOG,
			(errmsg("%s: the engine process %s while idle; starting a new one", my_name, why)));
	next_spawn = 0;
	return true;
}

/*
 * Wait until the engine has something to say. A shutdown request or the
 * postmaster's death meanwhile kills the engine (a batch may take long, a
 * hung engine forever): false then.
 */
static bool
wait_engine(void)
{
	for (;;)
	{
		struct pollfd p = {engine_fd, POLLIN, 0};
		int			rc = poll(&p, 1, 200);

		if (rc > 0)
			return true;
		if (rc < 0 && errno != EINTR)
			return true;		/* let the read report it */
		if (ShutdownRequestPending || !PostmasterIsAlive())
		{
			if (engine_pid > 0)
				kill(engine_pid, SIGKILL);
			return false;
		}
	}
}

/* Read one reply; its payload (palloc'd, NUL-terminated) in *payload. 0, or -1 if the engine is gone. */
static int
read_reply(BtMsgHeader *h, char **payload)
{
	*payload = NULL;
	if (!wait_engine())
		return -1;
	if (bt_io_read_all(engine_fd, h, sizeof(*h)) != 0 || h->magic != BT_SERVE_MAGIC ||
		h->len > BT_SERVE_MAX_PAYLOAD)
		return -1;
	*payload = MemoryContextAllocHuge(CurrentMemoryContext, h->len + 1);
	if (h->len > 0 && bt_io_read_all(engine_fd, *payload, h->len) != 0)
		return -1;
	(*payload)[h->len] = '\0';
	return 0;
}

/* Start pgbert_engine (from pkglibdir) and read its hello. */
static void
spawn_engine(void)
{
	WorkerShared *ws = pgbert_worker_shared;
	char		path[MAXPGPATH];
	char		fdarg[16],
				threads[16],
				gpu_memory[16];
	const char *device = device_options[pgbert_worker_device].name;
	int			n_threads = my_role == ENGINE_TRAIN ? pgbert_training_threads : pgbert_worker_threads;
	int			nice_value = my_role == ENGINE_TRAIN ? pgbert_training_nice : 0;
	int			sv[2];
	pid_t		pid;
	pid_t		parent = getpid();
	BtMsgHeader h;
	char	   *payload;
	char		why[200];

	get_pkglib_path(my_exec_path, path);
	strlcat(path, "/pgbert_engine", sizeof(path));
	next_spawn = GetCurrentTimestamp() + 10 * USECS_PER_SEC;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
	{
		ereport(LOG, (errmsg("%s: could not create a socket pair: %m", my_name)));
		return;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0)
	{
		ereport(LOG, (errmsg("%s: could not fork the engine process: %m", my_name)));
		close(sv[0]);
		close(sv[1]);
		return;
	}
	if (pid == 0)
	{
		sigset_t	none;

		/* the child: nothing of PostgreSQL's survives exec but fd 3 */
		if (dup2(sv[1], 3) < 0)
			_exit(126);
		close_range(4, ~0U, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		/* before exec, so that every thread the engine starts inherits it (nice is per thread) */
		if (nice_value > 0)
			(void) setpriority(PRIO_PROCESS, 0, nice_value);
		snprintf(fdarg, sizeof(fdarg), "3");
		snprintf(threads, sizeof(threads), "%d", n_threads);
		snprintf(gpu_memory, sizeof(gpu_memory), "%d", pgbert_gpu_memory_mb);
		execl(path, "pgbert_engine", fdarg, device, threads, gpu_memory,
			  gpu_precision_options[pgbert_gpu_precision].name, (char *) NULL);
		_exit(127);
	}
	close(sv[1]);
	engine_fd = sv[0];
	engine_pid = pid;
	engine_device = pgbert_worker_device;
	engine_gpu_memory_mb = pgbert_gpu_memory_mb;
	engine_gpu_precision = pgbert_gpu_precision;
	engine_nice = nice_value;

	if (read_reply(&h, &payload) != 0 || h.kind != BT_MSG_HELLO || h.status != BT_SERVE_OK ||
		h.len < sizeof(BtHello))
	{
		char		msg[256];

		if (payload && h.status != BT_SERVE_OK && h.len > 0)
			snprintf(msg, sizeof(msg), "%s", payload);
		else
		{
			engine_gone(why, sizeof(why));
			snprintf(msg, sizeof(msg), "%s %s", path, why);
		}
		if (engine_pid > 0)
			engine_gone(why, sizeof(why));
		ereport(LOG, (errmsg("%s: the engine process did not start: %s", my_name, msg)));
		SpinLockAcquire(&ws->mutex);
		me->state = WORKER_FAILED;
		strlcpy(me->message, msg, sizeof(me->message));
		SpinLockRelease(&ws->mutex);
		if (payload)
			pfree(payload);
		return;
	}
	SpinLockAcquire(&ws->mutex);
	if (engine_started_once)
		me->restarts++;
	engine_started_once = true;
	me->engine_pid = pid;
	me->state = WORKER_READY;
	strlcpy(me->device, ((BtHello *) payload)->device, sizeof(me->device));
	me->message[0] = '\0';
	me->threads = n_threads;
	me->nice = nice_value;
	strlcpy(me->activity, "idle", sizeof(me->activity));
	me->activity_since = GetCurrentTimestamp();
	SpinLockRelease(&ws->mutex);
	pfree(payload);
	next_spawn = 0;
}

/*
 * The engine failed a request (the socket broke): reap it, say why in msg (and
 * the log), and return the status for the requests lost with it: -1 (the
 * query errors), or -2 when the worker killed it to stop (the session runs
 * the request itself). during: what it was doing, for the message.
 */
static int
engine_lost(const char *during, char *msg, size_t len)
{
	char		why[200];

	engine_gone(why, sizeof(why));
	if (ShutdownRequestPending)
		snprintf(msg, len, "the pgbert encoder worker is stopping");
	else
		snprintf(msg, len, "the pgbert engine process %s %s", why, during);
	ereport(LOG, (errmsg("%s: %s", my_name, msg)));
	return ShutdownRequestPending ? -2 : -1;
}

/*
 * The engine ends itself after a BT_ERR_DEVICE reply (its CUDA context is
 * unusable; see serve.c's gpu_status): reap it now, so that the next request
 * starts a fresh engine rather than failing on the closed socket.
 */
static void
reap_after_device_failure(int status)
{
	char		why[200];

	if (status != BT_ERR_DEVICE || engine_fd < 0)
		return;
	engine_gone(why, sizeof(why));
	ereport(LOG, (errmsg("%s: the engine process %s after a device failure; starting a fresh one",
						 my_name, why)));
}

/* ---- models in the engine ---- */

static int
find_model(uint64 key)
{
	for (int i = 0; i < PGBERT_WORKER_MODELS; i++)
		if (pgbert_worker_shared->models[i].used && pgbert_worker_shared->models[i].key == key)
			return i;
	return -1;
}

/* Ask the engine to drop a model; false if the engine died. */
static bool
evict_model(int i)
{
	WorkerModel *m = &pgbert_worker_shared->models[i];
	BtMsgHeader h;
	char	   *payload;
	bool		ok;

	ok = bt_msg_send(engine_fd, BT_MSG_EVICT, 0, m->key, NULL, 0, NULL, 0, NULL, 0) == 0 &&
		read_reply(&h, &payload) == 0;
	if (payload)
		pfree(payload);
	SpinLockAcquire(&pgbert_worker_shared->mutex);
	m->used = false;
	SpinLockRelease(&pgbert_worker_shared->mutex);
	return ok;
}

/*
 * A version loaded for a session that has not run its pass yet. Evicting it
 * would send that session back to load it again, and two sessions whose
 * versions do not fit the budget together (or two versions of one name) would
 * evict each other's loads forever. It is spared for a few seconds, long
 * enough for its pass to be taken, not so long that an abandoned load pins it.
 */
#define FRESH_LOAD_MS 5000

/* Whether a model was loaded within FRESH_LOAD_MS and has not served its first pass yet. */
static bool
fresh_load(const WorkerModel *m, TimestampTz now)
{
	return m->last_used == m->loaded_at &&
		!TimestampDifferenceExceeds(m->loaded_at, now, FRESH_LOAD_MS);
}

/*
 * Make room for a model of the given size: drop older versions of the same
 * name in the same database, then least recently used models beyond the
 * memory budget. Fresh loads (fresh_load) stay, even beyond the budget for a
 * moment, unless every entry is taken. false if the engine died.
 */
static bool
make_room(const WorkerSlot *slot, uint64 bytes)
{
	WorkerShared *ws = pgbert_worker_shared;
	uint64		budget = (uint64) pgbert_worker_memory_mb * 1024 * 1024;
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < PGBERT_WORKER_MODELS; i++)
		if (ws->models[i].used && ws->models[i].dboid == slot->dboid &&
			strcmp(ws->models[i].name, slot->name) == 0 && ws->models[i].version_id != slot->version_id &&
			!fresh_load(&ws->models[i], now) && !evict_model(i))
			return false;
	for (;;)
	{
		uint64		used = 0;
		int			n = 0,
					oldest = -1,
					oldest_any = -1;

		for (int i = 0; i < PGBERT_WORKER_MODELS; i++)
			if (ws->models[i].used)
			{
				used += ws->models[i].bytes;
				n++;
				if (oldest_any < 0 || ws->models[i].last_used < ws->models[oldest_any].last_used)
					oldest_any = i;
				if (!fresh_load(&ws->models[i], now) &&
					(oldest < 0 || ws->models[i].last_used < ws->models[oldest].last_used))
					oldest = i;
			}
		if (n >= PGBERT_WORKER_MODELS)
			oldest = oldest < 0 ? oldest_any : oldest;		/* an entry is needed */
		else if (used + bytes <= budget)
			return true;
		if (oldest < 0)
			return true;
		if (!evict_model(oldest))
			return false;
	}
}

/* A load request the engine died during: detach its segment and fail it with how the engine ended. */
static void
load_lost(WorkerSlot *slot, dsm_segment *seg, const char *during)
{
	char		msg[256];
	int			status;

	dsm_detach(seg);
	status = engine_lost(during, msg, sizeof(msg));
	finish_slot(slot, status, msg);
}

/* Serve a LOAD slot: the session's segment holds uint32 config length, config, checkpoint. */
static void
run_load(WorkerSlot *slot)
{
	WorkerShared *ws = pgbert_worker_shared;
	dsm_segment *seg = dsm_attach(slot->seg);
	BtMsgHeader h;
	char	   *payload = NULL;
	int			i;

	if (seg == NULL)
	{
		finish_slot(slot, -1, "the request's shared memory is gone");
		return;
	}
	if ((i = find_model(slot->key)) >= 0)
	{
		if (ws->models[i].stamp == slot->stamp)
		{
			/* another session's load of the same version came first */
			dsm_detach(seg);
			finish_slot(slot, BT_SERVE_OK, NULL);
			return;
		}
		/* the catalog row changed since (an UPDATE by hand): the engine's copy is not this one */
		if (!evict_model(i))
		{
			load_lost(slot, seg, "while dropping the model's older copy");
			return;
		}
	}
	set_activity("loading model \"%s\" version %d", slot->name, slot->version);
	for (;;)
	{
		int			oldest = -1;

		if (!make_room(slot, slot->load_bytes) ||
			bt_msg_send(engine_fd, BT_MSG_LOAD, 0, slot->key, dsm_segment_address(seg), slot->load_bytes,
						NULL, 0, NULL, 0) != 0 ||
			read_reply(&h, &payload) != 0)
		{
			load_lost(slot, seg, "while loading the model");
			return;
		}
		if (h.status != BT_ERR_NO_MEMORY)
			break;
		/* the device (pgbert.gpu_memory) is full: drop the least recently used version, try again */
		for (int j = 0; j < PGBERT_WORKER_MODELS; j++)
			if (ws->models[j].used &&
				(oldest < 0 || ws->models[j].last_used < ws->models[oldest].last_used))
				oldest = j;
		if (oldest < 0)
			break;
		pfree(payload);
		payload = NULL;
		if (!evict_model(oldest))
		{
			load_lost(slot, seg, "while making room for the model");
			return;
		}
	}
	dsm_detach(seg);
	if (h.status != BT_SERVE_OK || h.len < sizeof(BtLoaded))
	{
		finish_slot(slot, h.status, payload);
		pfree(payload);
		reap_after_device_failure(h.status);
		return;
	}
	SpinLockAcquire(&ws->mutex);
	for (i = 0; i < PGBERT_WORKER_MODELS && ws->models[i].used; i++)
		;
	if (i < PGBERT_WORKER_MODELS)
	{
		WorkerModel *m = &ws->models[i];
		BtLoaded   *info = (BtLoaded *) payload;

		m->used = true;
		m->key = slot->key;
		m->dboid = slot->dboid;
		m->version_id = slot->version_id;
		m->version = slot->version;
		strlcpy(m->name, slot->name, NAMEDATALEN);
		m->stamp = slot->stamp;
		m->bytes = info->param_bytes;
		m->hidden_size = info->hidden_size;
		m->num_classes = info->num_classes;
		m->has_pooler = info->has_pooler != 0;
		m->loaded_at = m->last_used = GetCurrentTimestamp();
		pg_atomic_write_u64(&m->calls, 0);
		pg_atomic_write_u64(&m->rows, 0);
		for (int l = 0; l < PGBERT_WORKER_LABELS; l++)
			pg_atomic_write_u64(&m->label_counts[l], 0);
	}
	SpinLockRelease(&ws->mutex);
	pfree(payload);
	finish_slot(slot, BT_SERVE_OK, NULL);
}

/* Record (or forget) a training run after the engine accepted its begin (or end). */
static void
track_training(uint64 key, int pid, bool begin)
{
	for (int i = 0; i < n_trainings; i++)
		if (trainings[i].key == key)
		{
			trainings[i] = trainings[--n_trainings];
			break;
		}
	if (begin && n_trainings < MAX_TRAININGS)
	{
		trainings[n_trainings].key = key;
		trainings[n_trainings].pid = pid;
		n_trainings++;
	}
	SpinLockAcquire(&pgbert_worker_shared->mutex);
	me->trainings = n_trainings;
	SpinLockRelease(&pgbert_worker_shared->mutex);
}

/* End the training runs whose backends have exited (cancelled runs end themselves). */
static void
sweep_trainings(void)
{
	for (int i = n_trainings - 1; i >= 0; i--)
	{
		BtMsgHeader h;
		char	   *payload;
		uint64		key = trainings[i].key;

		if (kill(trainings[i].pid, 0) == 0 || errno != ESRCH)
			continue;
		if (bt_msg_send(engine_fd, BT_MSG_TRAIN_END, 0, key, NULL, 0, NULL, 0, NULL, 0) != 0 ||
			read_reply(&h, &payload) != 0)
		{
			char		why[200];

			engine_gone(why, sizeof(why));
			return;
		}
		pfree(payload);
		track_training(key, 0, false);
	}
}

/* Bucket of a latency in microseconds: floor(log2), capped. */
static int
latency_bucket(int64 us)
{
	int			b = 0;

	while (us > 1 && b < PGBERT_LATENCY_BUCKETS - 1)
	{
		us >>= 1;
		b++;
	}
	return b;
}

/* Words for a training message, for the trainer's activity. */
static const char *
training_step_name(int kind)
{
	switch (kind)
	{
		case BT_MSG_TRAIN_BEGIN:
			return "starting a training run";
		case BT_MSG_TRAIN_ACCUMULATE:
			return "training: forward and backward pass";
		case BT_MSG_TRAIN_STEP:
			return "training: optimizer step";
		case BT_MSG_TRAIN_FORWARD:
			return "training: validation pass";
		case BT_MSG_TRAIN_SNAPSHOT:
		case BT_MSG_TRAIN_RESTORE:
			return "training: copying parameters";
		case BT_MSG_TRAIN_SAVE:
			return "training: saving the model";
		case BT_MSG_TRAIN_END:
			return "ending a training run";
	}
	return "a training message";
}

/* Serve a PASS slot: send its message to the engine as is and copy the reply back. */
static void
run_pass(WorkerSlot *slot)
{
	dsm_segment *seg = dsm_attach(slot->seg);
	BtMsgHeader h;
	char	   *payload = NULL;
	uint64		key = slot->key;
	int			pid = slot->pid;
	int			kind = slot->msg_kind;
	TimestampTz start = GetCurrentTimestamp(),
				end;

	if (seg == NULL)
	{
		finish_slot(slot, -1, "the request's shared memory is gone");
		return;
	}
	set_activity("%s for backend %d", training_step_name(kind), pid);
	if (bt_msg_send(engine_fd, (uint16) kind, 0, key, dsm_segment_address(seg), slot->in_len,
					NULL, 0, NULL, 0) != 0 ||
		read_reply(&h, &payload) != 0)
	{
		char		msg[256];
		int			status;

		dsm_detach(seg);
		status = engine_lost("during a training step", msg, sizeof(msg));
		SpinLockAcquire(&pgbert_worker_shared->mutex);
		me->errors++;
		SpinLockRelease(&pgbert_worker_shared->mutex);
		finish_slot(slot, status, msg);
		return;
	}
	end = GetCurrentTimestamp();
	if (h.status == BT_SERVE_OK && h.len > slot->out_cap)
	{
		dsm_detach(seg);
		finish_slot(slot, -1, "the engine's reply does not fit the request's shared memory");
		pfree(payload);
		return;
	}
	if (h.status == BT_SERVE_OK)
	{
		memcpy(dsm_segment_address(seg), payload, h.len);
		slot->out_len = h.len;
	}
	dsm_detach(seg);
	if (h.status == BT_SERVE_OK && kind == BT_MSG_TRAIN_BEGIN)
		track_training(key, pid, true);
	else if (kind == BT_MSG_TRAIN_END)
		track_training(key, pid, false);
	SpinLockAcquire(&pgbert_worker_shared->mutex);
	me->requests++;
	if (h.status != BT_SERVE_OK)
		me->errors++;
	me->busy_seconds += (double) (end - start) / USECS_PER_SEC;
	me->latency[latency_bucket(end - slot->submitted)]++;
	SpinLockRelease(&pgbert_worker_shared->mutex);
	finish_slot(slot, h.status, h.status == BT_SERVE_OK ? NULL : payload);
	pfree(payload);
	reap_after_device_failure(h.status);
}

/* FORWARD slots of one model and output kind merged into one engine request. */
typedef struct ForwardBatch
{
	WorkerSlot **slots;
	int			n;
	dsm_segment **segs;			/* each slot's segment; NULL where the session is gone */
	int32	   *offsets;		/* the merged sequences: n_seq + 1 offsets into ids */
	int32	   *ids;
	int			n_seq;
	int			n_tokens;
} ForwardBatch;

/* Attach every slot's segment and pack their sequences after one another. */
static void
gather_forward_batch(ForwardBatch *fb)
{
	int			n_seq = 0,
				n_tokens = 0;

	for (int i = 0; i < fb->n; i++)
	{
		n_seq += fb->slots[i]->n_seq;
		n_tokens += fb->slots[i]->n_tokens;
	}
	fb->segs = palloc0(sizeof(dsm_segment *) * fb->n);
	fb->offsets = palloc(sizeof(int32) * (n_seq + 1));
	fb->ids = palloc(sizeof(int32) * Max(n_tokens, 1));
	fb->offsets[0] = 0;
	fb->n_seq = 0;
	fb->n_tokens = 0;
	for (int i = 0; i < fb->n; i++)
	{
		WorkerSlot *s = fb->slots[i];
		int32	   *their;

		fb->segs[i] = dsm_attach(s->seg);
		if (fb->segs[i] == NULL)
			continue;			/* the session is gone; its rows are skipped */
		their = dsm_segment_address(fb->segs[i]);
		for (int q = 0; q < s->n_seq; q++)
			fb->offsets[fb->n_seq + q + 1] = fb->n_tokens + their[q + 1];
		memcpy(fb->ids + fb->n_tokens, their + s->n_seq + 1, sizeof(int32) * s->n_tokens);
		fb->n_seq += s->n_seq;
		fb->n_tokens += s->n_tokens;
	}
}

/* Answer every slot of a batch with the same failure, detaching their segments. */
static void
fail_forward_batch(ForwardBatch *fb, int status, const char *message)
{
	for (int i = 0; i < fb->n; i++)
	{
		if (fb->segs[i])
			dsm_detach(fb->segs[i]);
		finish_slot(fb->slots[i], status, message);
	}
}

/* Copy each session's rows (width floats each) into its segment, and detach it. */
static void
scatter_forward_rows(ForwardBatch *fb, int status, const char *payload, int width)
{
	int			row = 0;

	for (int i = 0; i < fb->n; i++)
	{
		WorkerSlot *s = fb->slots[i];

		if (fb->segs[i] == NULL)
			continue;
		/* rows as wide as the session expects, or none: its segment has room for exactly those */
		if (status == BT_SERVE_OK && width == s->width)
		{
			char	   *base = dsm_segment_address(fb->segs[i]);
			Size		out_at = sizeof(int32) * ((Size) s->n_seq + 1 + s->n_tokens);

			memcpy(base + out_at, payload + sizeof(float) * (Size) row * width,
				   sizeof(float) * (Size) s->n_seq * width);
		}
		row += s->n_seq;
		dsm_detach(fb->segs[i]);
	}
}

/* Add a served batch to the engine's and the model's counters. */
static void
count_forward_batch(ForwardBatch *fb, int status, TimestampTz start, TimestampTz end)
{
	WorkerShared *ws = pgbert_worker_shared;
	int			m;

	SpinLockAcquire(&ws->mutex);
	me->batches++;
	if (status == BT_SERVE_OK)
	{
		/* rows the engine computed: a batch refused as "load the model first" is retried */
		me->batch_rows += fb->n_seq;
		me->batch_tokens += fb->n_tokens;
	}
	me->requests += fb->n;
	if (status != BT_SERVE_OK && status != BT_ERR_UNKNOWN_MODEL)
		me->errors += fb->n;
	me->busy_seconds += (double) (end - start) / USECS_PER_SEC;
	for (int i = 0; i < fb->n; i++)
		me->latency[latency_bucket(end - fb->slots[i]->submitted)]++;
	if ((m = find_model(fb->slots[0]->key)) >= 0)
	{
		ws->models[m].last_used = end;
		pg_atomic_fetch_add_u64(&ws->models[m].calls, fb->n);
		if (status == BT_SERVE_OK)
			pg_atomic_fetch_add_u64(&ws->models[m].rows, fb->n_seq);
	}
	SpinLockRelease(&ws->mutex);
}

/*
 * Serve a batch of FORWARD slots of one model and one output kind: pack their
 * sequences into one request, send it, and hand each slot its rows.
 */
static void
run_forward(WorkerSlot **batch, int n)
{
	WorkerShared *ws = pgbert_worker_shared;
	ForwardBatch fb = {.slots = batch,.n = n};
	BtForwardHead head;
	BtMsgHeader h;
	char	   *payload = NULL;
	TimestampTz start = GetCurrentTimestamp(),
				end;
	int			width = 0;
	int			m;

	/* the loop's memory context is reset after each round, so early returns free nothing */
	gather_forward_batch(&fb);
	if (fb.n_seq == 0)
	{
		for (int i = 0; i < n; i++)
			finish_slot(batch[i], -1, "the request's shared memory is gone");
		return;
	}
	if ((m = find_model(batch[0]->key)) >= 0 && ws->models[m].stamp != batch[0]->stamp)
	{
		/* the engine holds a copy of another version of the catalog row: the session loads this one */
		fail_forward_batch(&fb, BT_ERR_UNKNOWN_MODEL, "the engine holds another version of the catalog row");
		return;
	}

	set_activity("forward pass: %d rows of model \"%s\" version %d", fb.n_seq, batch[0]->name,
				 batch[0]->version);
	memset(&head, 0, sizeof(head));
	head.want = batch[0]->want;
	head.n_seq = fb.n_seq;
	head.precision = batch[0]->precision;
	if (bt_msg_send(engine_fd, BT_MSG_FORWARD, 0, batch[0]->key, &head, sizeof(head),
					fb.offsets, sizeof(int32) * (fb.n_seq + 1), fb.ids, sizeof(int32) * fb.n_tokens) != 0 ||
		read_reply(&h, &payload) != 0)
	{
		char		during[64],
					msg[256];

		snprintf(during, sizeof(during), "while running a batch of %d rows", fb.n_seq);
		fail_forward_batch(&fb, engine_lost(during, msg, sizeof(msg)), msg);
		SpinLockAcquire(&ws->mutex);
		me->errors += n;
		SpinLockRelease(&ws->mutex);
		return;
	}
	if (h.status == BT_SERVE_OK)
	{
		width = h.len / sizeof(float) / fb.n_seq;
		if (h.len != sizeof(float) * (uint64) fb.n_seq * width)
			width = -1;			/* not whole rows: no session gets any */
	}
	end = GetCurrentTimestamp();
	scatter_forward_rows(&fb, h.status, payload, width);

	/* the counters first: a session that wakes up reads them with its batch included */
	count_forward_batch(&fb, h.status, start, end);
	for (int i = 0; i < n; i++)
		if (fb.segs[i] == NULL)
			finish_slot(batch[i], -1, "the request's shared memory is gone");
		else if (h.status == BT_SERVE_OK && width != batch[i]->width)
		{
			char		msg[64];

			snprintf(msg, sizeof(msg), "%d", width);
			finish_slot(batch[i], WORKER_STATUS_WIDTH, msg);
		}
		else
			finish_slot(batch[i], h.status, h.status == BT_SERVE_OK ? NULL : payload);
	pfree(payload);
	pfree(fb.offsets);
	pfree(fb.ids);
	pfree(fb.segs);
	reap_after_device_failure(h.status);
}

/*
 * Run what is ready: the oldest request, and with a forward request every
 * other ready one for the same model and output, up to the token budget.
 * Returns the milliseconds to wait for a batch to fill, 0 when work was done,
 * or -1 when nothing is pending.
 */
static long
serve_ready(void)
{
	WorkerShared *ws = pgbert_worker_shared;
	WorkerSlot *oldest = NULL;
	WorkerSlot **batch;
	int			n = 0,
				tokens = 0,
				ready = 0;

	for (int i = 0; i < ws->n_slots; i++)
	{
		WorkerSlot *s = &ws->slots[i];

		/* unlocked peek; take_slot decides */
		if (s->state != SLOT_READY || pgbert_slot_role(s->kind) != my_role)
			continue;
		ready++;
		if (oldest == NULL || s->submitted < oldest->submitted)
			oldest = s;
	}
	if (oldest == NULL)
		return -1;
	if (oldest->kind != SLOT_FORWARD)
	{
		/* taken, its fields hold still: dispatch on what it is now */
		if (!take_slot(oldest))
			return 0;
		if (pgbert_slot_role(oldest->kind) != my_role)
		{
			/* reposted as another kind since the peek: the other worker's */
			hand_back(oldest);
			return 0;
		}
		switch (oldest->kind)
		{
			case SLOT_LOAD:
				run_load(oldest);
				break;
			case SLOT_PASS:
				run_pass(oldest);
				break;
			case SLOT_EVICT:
				{
					int			m = find_model(oldest->key);

					if (m >= 0 && !evict_model(m))
					{
						char		why[200];

						engine_gone(why, sizeof(why));
					}
					finish_slot(oldest, BT_SERVE_OK, NULL);
				}
				break;
			case SLOT_FORWARD:
				run_forward(&oldest, 1);
				break;
		}
		return 0;
	}

	batch = palloc(sizeof(WorkerSlot *) * ready);
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < ws->n_slots; i++)
		{
			WorkerSlot *s = &ws->slots[i];

			/* the oldest first, then the others in slot order */
			if ((pass == 0) != (s == oldest) || s->state != SLOT_READY || s->kind != SLOT_FORWARD ||
				s->key != oldest->key || s->stamp != oldest->stamp || s->want != oldest->want ||
				s->precision != oldest->precision || s->width != oldest->width || n == ready)
				continue;
			if (n > 0 && tokens + s->n_tokens > pgbert_worker_batch_tokens)
				continue;
			batch[n++] = s;
			tokens += s->n_tokens;
		}

	/* a batch with room may wait a little for more sessions */
	if (tokens < pgbert_worker_batch_tokens && pgbert_worker_max_wait_ms > 0)
	{
		long		waited = (long) ((GetCurrentTimestamp() - oldest->submitted) / 1000);

		if (waited < pgbert_worker_max_wait_ms)
		{
			pfree(batch);
			return pgbert_worker_max_wait_ms - waited;
		}
	}

	{
		int			taken = 0;
		uint64		key = batch[0]->key;
		uint64		stamp = batch[0]->stamp;
		int			want = batch[0]->want;
		int			precision = batch[0]->precision;
		int			width = batch[0]->width;

		/*
		 * The fields were read before taking the slots; a session may have
		 * withdrawn and posted another request since. Once taken they hold
		 * still: keep those that still match, hand the others back.
		 */
		for (int i = 0; i < n; i++)
		{
			WorkerSlot *s = batch[i];

			if (!take_slot(s))
				continue;
			if (s->kind != SLOT_FORWARD || s->key != key || s->stamp != stamp || s->want != want ||
				s->precision != precision || s->width != width)
			{
				hand_back(s);	/* served next round, by whichever worker it is for */
				continue;
			}
			batch[taken++] = s;
		}
		if (taken > 0)
			run_forward(batch, taken);
	}
	pfree(batch);
	return 0;
}

/* On exit: say the worker is gone and fail what waits, so sessions run in-process. */
static void
worker_exit(int code, Datum arg)
{
	WorkerShared *ws = pgbert_worker_shared;
	char		why[200];

	if (engine_fd >= 0)
		engine_gone(why, sizeof(why));
	SpinLockAcquire(&ws->mutex);
	me->state = WORKER_DOWN;
	me->worker_pid = 0;
	me->worker_proc = NULL;
	me->engine_pid = 0;
	strlcpy(me->activity, "stopped", sizeof(me->activity));
	me->activity_since = GetCurrentTimestamp();
	SpinLockRelease(&ws->mutex);
	fail_all_slots(-2, my_role == ENGINE_TRAIN ? "the pgbert trainer worker stopped" :
				   "the pgbert encoder worker stopped");
}

/* Entry of both workers (its argument is the EngineRole): start the engine, serve until shutdown. */
void
pgbert_encoder_main(Datum arg)
{
	WorkerShared *ws;
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGCHLD, SIG_DFL);
	BackgroundWorkerUnblockSignals();
	ws = pgbert_worker_shared;
	if (ws == NULL)
		proc_exit(0);
	my_role = DatumGetInt32(arg) == ENGINE_TRAIN ? ENGINE_TRAIN : ENGINE_SERVE;
	me = &ws->engines[my_role];

	/* requests left from a previous worker are failed: their sessions retry in-process */
	fail_all_slots(-2, my_role == ENGINE_TRAIN ? "the pgbert trainer worker restarted" :
				   "the pgbert encoder worker restarted");
	SpinLockAcquire(&ws->mutex);
	me->state = WORKER_STARTING;
	me->worker_pid = MyProcPid;
	me->worker_proc = MyProc;
	me->started_at = GetCurrentTimestamp();
	if (my_role == ENGINE_SERVE)
		for (int i = 0; i < PGBERT_WORKER_MODELS; i++)
			ws->models[i].used = false;
	SpinLockRelease(&ws->mutex);
	before_shmem_exit(worker_exit, (Datum) 0);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pgbert worker requests", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		long		wait_ms;

		ResetLatch(MyLatch);
		if (ShutdownRequestPending)
			break;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (engine_fd < 0)
				next_spawn = 0; /* a changed setting may let it start: try now */
			else if (engine_device != pgbert_worker_device || engine_gpu_memory_mb != pgbert_gpu_memory_mb ||
					 engine_gpu_precision != pgbert_gpu_precision ||
					 (my_role == ENGINE_TRAIN && engine_nice != pgbert_training_nice && n_trainings == 0))
			{
				/* a priority applies to threads as they start: a new nice value needs a new engine */
				char		why[200];

				engine_gone(why, sizeof(why));	/* restarted on the new device below */
				next_spawn = 0;
			}
			else if (engine_fd >= 0)
			{
				uint32		threads = my_role == ENGINE_TRAIN ? pgbert_training_threads : pgbert_worker_threads;
				BtMsgHeader h;
				char	   *payload;

				if (bt_msg_send(engine_fd, BT_MSG_THREADS, 0, 0, &threads, sizeof(threads),
								NULL, 0, NULL, 0) != 0 || read_reply(&h, &payload) != 0)
				{
					char		why[200];

					engine_gone(why, sizeof(why));
				}
				else
				{
					SpinLockAcquire(&ws->mutex);
					me->threads = (int) threads;
					SpinLockRelease(&ws->mutex);
				}
			}
		}
		(void) engine_died_idle();
		if (engine_fd < 0 && GetCurrentTimestamp() >= next_spawn)
		{
			SpinLockAcquire(&ws->mutex);
			if (me->state != WORKER_FAILED)
				me->state = WORKER_STARTING;
			SpinLockRelease(&ws->mutex);
			spawn_engine();
		}

		if (engine_fd < 0)
		{
			/* no engine: what waits runs in the sessions instead */
			fail_all_slots(-2, me->message[0] ? me->message : "the pgbert engine process is not running");
			wait_ms = 1000;
		}
		else
		{
			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

			wait_ms = serve_ready();
			if (wait_ms != 0 && n_trainings > 0 && engine_fd >= 0)
				sweep_trainings();
			if (wait_ms != 0 && engine_fd >= 0 && strcmp(me->activity, "idle") != 0)
				set_activity("idle");
			MemoryContextSwitchTo(old);
			MemoryContextReset(loop_cxt);
			if (wait_ms == 0)
				continue;		/* more may be ready */
			if (wait_ms < 0)
				wait_ms = 1000;
		}
		/* the engine's socket too: its death wakes the worker, not the next request */
		if (engine_fd >= 0)
			(void) WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH |
									 WL_SOCKET_READABLE, engine_fd, wait_ms, PG_WAIT_EXTENSION);
		else
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms,
							 PG_WAIT_EXTENSION);
	}
	/* 1, not 0: the postmaster starts the worker again unless the server is stopping */
	proc_exit(1);
}
