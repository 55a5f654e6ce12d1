/*
 * progress.c - live progress of running train_classifier() calls, readable
 * from any session through the view pgbert.training_progress.
 *
 * A few slots in shared memory, one per running training. pgbert needs no
 * shared_preload_libraries entry, so the array is carved out of the main
 * segment's spare space on first use (as pgvector does for its small shared
 * state); if that ever fails, training runs on without a slot. Each slot has
 * its own spinlock; writers update it once per batch, readers copy it.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_authid.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "progress.h"

#define PROGRESS_SLOTS 16

typedef struct ProgressSlot
{
	slock_t		mutex;
	int			pid;			/* 0: free */
	Oid			dbid;
	Oid			userid;
	char		model[64];
	int			epoch;
	int			epochs;
	int			step;
	int			total_steps;
	double		loss;
	double		rows_per_s;
	double		seconds_left;
	TimestampTz started;
	TimestampTz updated;
} ProgressSlot;

typedef struct ProgressShared
{
	ProgressSlot slots[PROGRESS_SLOTS];
} ProgressShared;

static ProgressShared *shared = NULL;

/* The shared slots, created by the first backend that asks; NULL if there is no room. */
static ProgressShared *
progress_shared(void)
{
	bool		found;
	MemoryContext mcxt = CurrentMemoryContext;

	if (shared)
		return shared;
	PG_TRY();
	{
		LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
		shared = ShmemInitStruct("pgbert training progress", sizeof(ProgressShared), &found);
		if (!found)
		{
			for (int i = 0; i < PROGRESS_SLOTS; i++)
			{
				SpinLockInit(&shared->slots[i].mutex);
				shared->slots[i].pid = 0;
			}
		}
		LWLockRelease(AddinShmemInitLock);
	}
	PG_CATCH();
	{
		/* out of spare shared memory: live progress is a nicety, not a reason to fail */
		MemoryContextSwitchTo(mcxt);
		FlushErrorState();
		LWLockReleaseAll();
		shared = NULL;
	}
	PG_END_TRY();
	return shared;
}

/* Take a free progress slot for a run, or -1 when all are busy. */
int
pgbert_progress_begin(const char *model, int epochs, int total_steps)
{
	ProgressShared *p = progress_shared();

	if (p == NULL)
		return -1;
	for (int i = 0; i < PROGRESS_SLOTS; i++)
	{
		ProgressSlot *s = &p->slots[i];
		bool		taken = false;
		int			pid;

		SpinLockAcquire(&s->mutex);
		pid = s->pid;
		SpinLockRelease(&s->mutex);
		/* taken by a live backend (no LWLock may be taken under the spinlock, so look first) */
		if (pid != 0 && pid != MyProcPid && BackendPidGetProc(pid) != NULL)
			continue;
		SpinLockAcquire(&s->mutex);
		if (s->pid == pid)
		{
			s->pid = MyProcPid;
			s->dbid = MyDatabaseId;
			s->userid = GetUserId();
			strlcpy(s->model, model, sizeof(s->model));
			s->epoch = 0;
			s->epochs = epochs;
			s->step = 0;
			s->total_steps = total_steps;
			s->loss = NAN;
			s->rows_per_s = NAN;
			s->seconds_left = NAN;
			s->started = s->updated = GetCurrentTimestamp();
			taken = true;
		}
		SpinLockRelease(&s->mutex);
		if (taken)
			return i;
	}
	return -1;
}

/* Publish a run's position for pgbert.training_progress. */
void
pgbert_progress_update(int slot, int epoch, int step, double loss, double rows_per_s, double seconds_left)
{
	ProgressSlot *s;

	if (slot < 0 || shared == NULL)
		return;
	s = &shared->slots[slot];
	SpinLockAcquire(&s->mutex);
	s->epoch = epoch;
	s->step = step;
	s->loss = loss;
	s->rows_per_s = rows_per_s;
	s->seconds_left = seconds_left;
	s->updated = GetCurrentTimestamp();
	SpinLockRelease(&s->mutex);
}

/* Free a run's slot (also called on error, through a memory context callback). */
void
pgbert_progress_end(int slot)
{
	ProgressSlot *s;

	if (slot < 0 || shared == NULL)
		return;
	s = &shared->slots[slot];
	SpinLockAcquire(&s->mutex);
	if (s->pid == MyProcPid)
		s->pid = 0;
	SpinLockRelease(&s->mutex);
}

PG_FUNCTION_INFO_V1(pgbert_training_progress);

/* pgbert.training_progress(): one row per running training, in any database. */
Datum
pgbert_training_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ProgressShared *p;

	InitMaterializedSRF(fcinfo, 0);
	p = progress_shared();
	if (p == NULL)
		return (Datum) 0;
	for (int i = 0; i < PROGRESS_SLOTS; i++)
	{
		ProgressSlot copy;
		Datum		values[13];
		bool		nulls[13] = {0};

		SpinLockAcquire(&p->slots[i].mutex);
		copy = p->slots[i];
		SpinLockRelease(&p->slots[i].mutex);
		if (copy.pid == 0 || BackendPidGetProc(copy.pid) == NULL)
			continue;
		/* like pg_stat_progress_*: other roles' runs need pg_read_all_stats */
		if (!has_privs_of_role(GetUserId(), copy.userid) &&
			!has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS))
			continue;
		values[0] = Int32GetDatum(copy.pid);
		values[1] = ObjectIdGetDatum(copy.dbid);
		values[2] = ObjectIdGetDatum(copy.userid);
		values[3] = CStringGetTextDatum(copy.model);
		values[4] = Int32GetDatum(copy.epoch);
		values[5] = Int32GetDatum(copy.epochs);
		values[6] = Int32GetDatum(copy.step);
		values[7] = Int32GetDatum(copy.total_steps);
		values[8] = Float8GetDatum(copy.loss);
		nulls[8] = isnan(copy.loss);
		values[9] = Float8GetDatum(copy.rows_per_s);
		nulls[9] = isnan(copy.rows_per_s);
		values[10] = TimestampTzGetDatum(copy.started);
		values[11] = TimestampTzGetDatum(copy.updated);
		values[12] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(copy.updated,
																	 (int64) (copy.seconds_left * 1000)));
		nulls[12] = isnan(copy.seconds_left);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* pgbert.progress_interval: seconds between a training run's progress notices */
int			pgbert_progress_interval = 10;

/* Define pgbert.progress_interval. */
void
pgbert_progress_init(void)
{
	DefineCustomIntVariable("pgbert.progress_interval",
							"Seconds between progress notices of a training run.",
							"0 turns them off.",
							&pgbert_progress_interval, 10, 0, 86400, PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}
