/*
 * team.c - fork-join threads for one forward pass (see team.h).
 *
 * The caller publishes a job by bumping a generation counter; members wait
 * for the next generation, run the job and count themselves done. All
 * hand-offs are atomics with acquire/release order; no locks.
 */
#include "team.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>

#define MAX_MEMBERS 64
#define SPINS 4000				/* busy polls before each yield while waiting */

struct BtTeam
{
	int			members;
	int			started;		/* threads running, caller not counted */
	pthread_t	tid[MAX_MEMBERS];
	BtTeamJob	job;
	void	   *arg;
	unsigned	generation;		/* atomic: bumped for each job */
	int			done;			/* atomic: threads done with the current job */
	int			quit;			/* atomic */
};

/* One member's thread and its number. */
typedef struct Member
{
	BtTeam	   *team;
	int			id;
} Member;

/* Wait a moment: a CPU pause, or a yield every SPINS polls. */
static inline void
relax(int *polls)
{
	if (++*polls % SPINS == 0)
		sched_yield();
#if defined(__x86_64__) || defined(__i386__)
	else
		__builtin_ia32_pause();
#endif
}

/* Thread body: run each new generation's job until told to quit. */
static void *
member_main(void *arg)
{
	BtTeam	   *t = ((Member *) arg)->team;
	int			id = ((Member *) arg)->id;
	unsigned	seen = 0;

	free(arg);
	for (;;)
	{
		unsigned	g;
		int			polls = 0;

		while ((g = __atomic_load_n(&t->generation, __ATOMIC_ACQUIRE)) == seen)
			relax(&polls);
		seen = g;
		if (__atomic_load_n(&t->quit, __ATOMIC_ACQUIRE))
			return NULL;
		t->job(t->arg, id, t->members);
		__atomic_add_fetch(&t->done, 1, __ATOMIC_RELEASE);
	}
}

BtTeam *
bt_team_start(int threads)
{
	BtTeam	   *t;
	sigset_t	all,
				old;

	if (threads < 2)
		return NULL;
	if (threads > MAX_MEMBERS)
		threads = MAX_MEMBERS;
	t = calloc(1, sizeof(BtTeam));
	if (t == NULL)
		return NULL;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 1; i < threads; i++)
	{
		Member	   *m = malloc(sizeof(Member));

		if (m == NULL)
			break;
		m->team = t;
		m->id = i;
		if (pthread_create(&t->tid[i], NULL, member_main, m) != 0)
		{
			free(m);
			break;
		}
		t->started++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	t->members = t->started + 1;
	if (t->started == 0)
	{
		free(t);
		return NULL;
	}
	return t;
}

void
bt_team_run(BtTeam *t, BtTeamJob job, void *arg)
{
	int			polls = 0;

	t->job = job;
	t->arg = arg;
	__atomic_store_n(&t->done, 0, __ATOMIC_RELAXED);
	__atomic_add_fetch(&t->generation, 1, __ATOMIC_RELEASE);
	job(arg, 0, t->members);
	while (__atomic_load_n(&t->done, __ATOMIC_ACQUIRE) < t->started)
		relax(&polls);
}

int
bt_team_size(const BtTeam *t)
{
	return t ? t->members : 1;
}

void
bt_team_stop(BtTeam *t)
{
	if (t == NULL)
		return;
	__atomic_store_n(&t->quit, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&t->generation, 1, __ATOMIC_RELEASE);
	for (int i = 1; i <= t->started; i++)
		pthread_join(t->tid[i], NULL);
	free(t);
}
