/*
 * training_jobs.c - start_training(): train_classifier() in a background
 * worker, so long jobs do not hold the caller's connection.
 *
 * start_training() records a job in pgbert.training_jobs and launches a
 * dynamic background worker (no shared_preload_libraries needed) that
 * connects to the same database, runs as the job's owner, waits until the job row
 * is committed, and runs the very same train_classifier() call with the
 * caller's pgbert.cpu_threads, so the result is identical. The job row
 * tells its status (queued, running, succeeded, failed, cancelled), the
 * result or the error. cancel_training() cancels a running job the way
 * pg_cancel_backend does. A failing job ends the worker normally (exit 0):
 * nothing a job does can make the postmaster restart the cluster. A server
 * shutdown (SIGTERM) marks the running job failed before the worker exits;
 * jobs a crash left behind are marked failed by the next start_training().
 */
#include "postgres.h"

#include <signal.h>

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "catalog_door.h"
#include "session_engine.h"

/* What the launcher hands the worker in bgw_extra. */
typedef struct JobTarget
{
	Oid			dbid;
	Oid			userid;			/* the job's owner: the training runs with its privileges */
	Oid			connect_as;		/* the extension's owner: the connection, and the job row's bookkeeping */
	int64		job;
	TransactionId xid;			/* the launching transaction, which inserted the job */
	int			cpu_precision;	/* the caller's pgbert.cpu_precision (bf16 trains in bf16) */
} JobTarget;

PGDLLEXPORT void pgbert_training_worker_main(Datum arg);

/* SIGTERM arrived: the server is shutting down (or someone terminated the job). */
static volatile sig_atomic_t terminate_requested = false;

/*
 * SIGTERM handler: interrupt the run as a cancel would, so the error path
 * records the job as failed before the worker exits. die() would end the
 * process with FATAL, past that path, and leave the row saying 'running'.
 */
static void
training_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	terminate_requested = true;
	InterruptPending = true;
	QueryCancelPending = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Mark the caller's jobs that a server crash or restart left 'queued' or
 * 'running' as failed: they were started before the current postmaster, so
 * no worker runs them. (A clean shutdown marks its running job itself.)
 */
static void
sweep_interrupted_jobs(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("UPDATE pgbert.training_jobs SET status = 'failed', finished_at = now(), "
					"error = 'interrupted: the server restarted while the job was ' || status "
					"WHERE status IN ('queued', 'running') AND submitted_at < pg_postmaster_start_time()",
					false, 0) < 0)
		elog(ERROR, "could not sweep interrupted training jobs");
	SPI_finish();
}

/*
 * The owner of a queued job, which the current role must be able to act for:
 * a worker slot is taken only for one's own job, and only once.
 */
static Oid
queued_job_owner(int64 job)
{
	Oid			types[1] = {INT8OID};
	Datum		vals[1] = {Int64GetDatum(job)};
	bool		isnull;
	Oid			owner;
	char	   *status;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT owner::oid, status FROM pgbert.training_jobs WHERE id = $1",
							  1, types, vals, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read training job " INT64_FORMAT, job);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("training job " INT64_FORMAT " does not exist", job)));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for training job " INT64_FORMAT, job)));
	if (strcmp(status, "queued") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("training job " INT64_FORMAT " is %s, not queued", job, status)));
	SPI_finish();
	return owner;
}

PG_FUNCTION_INFO_V1(pgbert_launch_training_worker);

/* pgbert.launch_training_worker(job bigint) RETURNS integer: start the worker, return its pid. */
Datum
pgbert_launch_training_worker(PG_FUNCTION_ARGS)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	JobTarget	target;
	pid_t		pid;
	int64		job = PG_GETARG_INT64(0);
	Oid			owner;

	owner = queued_job_owner(job);
	sweep_interrupted_jobs();
	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "pgbert");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "pgbert_training_worker_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "pgbert training job " INT64_FORMAT, PG_GETARG_INT64(0));
	snprintf(w.bgw_type, BGW_MAXLEN, "pgbert training");
	target.dbid = MyDatabaseId;
	target.userid = owner;		/* the job runs with its owner's privileges, whoever launches it */
	target.connect_as = pgbert_extension_owner();
	target.job = PG_GETARG_INT64(0);
	target.xid = GetTopTransactionId();
	target.cpu_precision = pgbert_cpu_precision;
	memcpy(w.bgw_extra, &target, sizeof(target));
	w.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&w, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a background worker for the training job"),
				 errhint("All max_worker_processes slots (%d) are in use; raise it or wait for jobs to end.",
						 max_worker_processes)));
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("the background worker for the training job did not start")));
	PG_RETURN_INT32((int32) pid);
}

/* The role this worker connected as: the extension's owner, who writes the job's row. */
static Oid	bookkeeper = InvalidOid;

/*
 * Run a statement on pgbert.training_jobs as the extension's owner: the job
 * runs as its owner, who may read the row but not write it (only pgbert does).
 */
static int
job_bookkeeping(const char *sql, int nargs, Oid *types, Datum *vals, const char *nulls)
{
	Oid			save_userid;
	int			save_sec_context;
	int			rc;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(bookkeeper, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	rc = SPI_execute_with_args(sql, nargs, types, vals, nulls, false, 0);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return rc;
}

/* Run one SQL statement with a bigint parameter in its own transaction; true if it changed a row. */
static bool
job_statement(const char *sql, int64 job, const char *text_arg)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		vals[2];
	char		nulls[2] = {' ', text_arg ? ' ' : 'n'};
	bool		changed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	vals[0] = Int64GetDatum(job);
	vals[1] = text_arg ? CStringGetTextDatum(text_arg) : (Datum) 0;
	if (job_bookkeeping(sql, 2, types, vals, nulls) < 0)
		elog(ERROR, "training job statement failed: %s", sql);
	changed = SPI_processed > 0;
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return changed;
}

/* Worker entry point: claim the job, run it, record how it ended. */
void
pgbert_training_worker_main(Datum arg)
{
	JobTarget	target;
	bool		claimed = false;
	MemoryContext mcxt;

	memcpy(&target, MyBgworkerEntry->bgw_extra, sizeof(target));
	pqsignal(SIGTERM, training_sigterm);
	BackgroundWorkerUnblockSignals();
	/*
	 * Connect as the extension's owner, who can log in, and run the training as
	 * the job's owner, who may be a role that cannot (a group role, members
	 * acting through SET ROLE). The switch is the one security-definer functions
	 * make: under SECURITY_LOCAL_USERID_CHANGE, nothing the training runs (a
	 * view's function, a policy) can SET ROLE or SET SESSION AUTHORIZATION back.
	 */
	BackgroundWorkerInitializeConnectionByOid(target.dbid, target.connect_as, 0);
	bookkeeper = target.connect_as;
	mcxt = AllocSetContextCreate(TopMemoryContext, "pgbert training job", ALLOCSET_DEFAULT_SIZES);

	/* the job row commits with the caller's transaction: wait for it (or for its rollback) */
	for (int i = 0; i < 600 && !claimed; i++)
	{
		claimed = job_statement("UPDATE pgbert.training_jobs SET status = 'running', pid = pg_backend_pid(), "
								"started_at = now() WHERE id = $1 AND status = 'queued'", target.job, NULL);
		if (!claimed && job_statement("SELECT 1 FROM pgbert.training_jobs WHERE id = $1 AND status <> 'queued'",
									  target.job, NULL))
			proc_exit(0);		/* cancelled while queued */
		if (!claimed && TransactionIdDidAbort(target.xid))
			proc_exit(0);		/* the job was rolled back */
		if (!claimed)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	if (!claimed)
		proc_exit(0);			/* rolled back, or cancelled while queued */

	pgstat_report_activity(STATE_RUNNING, "pgbert training job");
	PG_TRY();
	{
		StringInfoData result;
		Oid			save_userid;
		int			save_sec_context;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(target.userid, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		{
			Oid			types[1] = {INT8OID};
			Datum		vals[1] = {Int64GetDatum(target.job)};

			/* the caller's thread count and precision, then the same call start_training was given */
			if (SPI_execute_with_args("SELECT set_config('pgbert.cpu_threads', cpu_threads::text, false), "
									  "set_config('pgbert.progress_interval', '0', false) "
									  "FROM pgbert.training_jobs WHERE id = $1", 1, types, vals, NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "could not read the training job");
			SetConfigOption("pgbert.cpu_precision", pgbert_cpu_precision_name(target.cpu_precision), PGC_USERSET,
							PGC_S_SESSION);
			if (SPI_execute_with_args("SELECT pgbert.run_training_job($1)::text", 1, types, vals, NULL, false, 0) != SPI_OK_SELECT ||
				SPI_processed != 1)
				elog(ERROR, "the training job returned nothing");
			initStringInfo(&result);
			appendStringInfoString(&result, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
			{
				Oid			utypes[2] = {INT8OID, TEXTOID};
				Datum		uvals[2] = {Int64GetDatum(target.job), CStringGetTextDatum(result.data)};

				if (job_bookkeeping("UPDATE pgbert.training_jobs SET status = 'succeeded', result = $2::jsonb, "
									"finished_at = now() WHERE id = $1", 2, utypes, uvals, NULL) != SPI_OK_UPDATE)
					elog(ERROR, "could not record the training job's result");
			}
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		/* an abort would restore it; a commit does not */
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		cancelled;

		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		/* a cancel also interrupts the wait for the lock below: clear it first */
		QueryCancelPending = false;
		cancelled = edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !terminate_requested;
		job_statement(cancelled
					  ? "UPDATE pgbert.training_jobs SET status = 'cancelled', error = $2, finished_at = now() WHERE id = $1"
					  : "UPDATE pgbert.training_jobs SET status = 'failed', error = $2, finished_at = now() WHERE id = $1",
					  target.job,
					  terminate_requested ? "interrupted: the server shut down (or the job's worker was terminated) "
					  "while the job was running" : edata->message);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
