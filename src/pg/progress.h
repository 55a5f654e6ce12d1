/*
 * progress.h - live training progress in shared memory (progress.c), shown by
 * pgbert.training_progress, and how often a run says it as a NOTICE.
 */
#ifndef PGBERT_PROGRESS_H
#define PGBERT_PROGRESS_H

extern int	pgbert_progress_interval;	/* pgbert.progress_interval, seconds; 0: no notices */

/* Define pgbert.progress_interval (_PG_init). */
extern void pgbert_progress_init(void);

/* A slot for one training run (-1 = none free); update it; give it back. */
extern int	pgbert_progress_begin(const char *model, int epochs, int total_steps);
extern void pgbert_progress_update(int slot, int epoch, int step, double loss, double rows_per_s,
								   double seconds_left);
extern void pgbert_progress_end(int slot);

#endif
