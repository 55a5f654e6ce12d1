/*
 * team.h - a few threads that run the same function together, for the length
 * of one forward pass.
 *
 * A forward pass over one sequence runs dozens of GEMMs of well under a
 * millisecond each; starting threads for each would cost more than it saves.
 * A team is started once per pass; between jobs its threads spin briefly and
 * then yield, so a job starts within microseconds. Threads block every signal
 * (the host's handlers stay on the calling thread) and never call back into
 * the host. PostgreSQL-free.
 */
#ifndef PGBERT_TEAM_H
#define PGBERT_TEAM_H

typedef struct BtTeam BtTeam;

/* What every member runs: member 0 is the caller, members in all. */
typedef void (*BtTeamJob) (void *arg, int member, int members);

/* A team of `threads` members, the caller included; NULL when threads < 2 or none could start. */
extern BtTeam *bt_team_start(int threads);

/* Run job on every member; returns when all are done. */
extern void bt_team_run(BtTeam *team, BtTeamJob job, void *arg);

/* Members, the caller included. */
extern int	bt_team_size(const BtTeam *team);

/* End the team's threads and free it (NULL is fine). */
extern void bt_team_stop(BtTeam *team);

#endif
