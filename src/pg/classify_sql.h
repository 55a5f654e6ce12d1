/*
 * classify_sql.h - running a model on texts where classify() runs it (the
 * encoder worker, else this backend), in chunks of pgbert.batch_tokens: for
 * the batching node, decision_sql.c's estimates and classify_sql.c's own
 * SQL functions.
 */
#ifndef PGBERT_CLASSIFY_SQL_H
#define PGBERT_CLASSIFY_SQL_H

#include "fmgr.h"

#include "model_store.h"

/* The per-row inference functions the batching node can run a block of rows at a time. */
typedef enum PgbertBatchFn
{
	PGBERT_FN_NONE = 0,
	PGBERT_FN_CLASSIFY,			/* classify(input, model) */
	PGBERT_FN_CLASSIFY_SCORES,	/* classify_scores(input, model) */
	PGBERT_FN_EMBED				/* embed(input, model, pooling) */
} PgbertBatchFn;

/* Where one call's forward passes run. */
typedef struct PgbertRunPlace
{
	bool		worker;			/* in the encoder worker, until it fails over */
	bool		served_by_worker;	/* the last chunk ran there */
	int64		worker_rows;	/* rows that ran in the encoder worker */
	int64		session_rows;	/* rows that ran in this backend */
} PgbertRunPlace;

/* Define pgbert.batch_tokens (_PG_init). */
extern void pgbert_classify_init(void);

/*
 * Results of n calls of fn, computed in batches: row i has the arguments
 * inputs[i], models[i], poolings[i] (NULL pointers for SQL NULLs; poolings
 * only for embed). Equal to what n separate calls return, in the current
 * memory context; *site_extra caches the model resolution. Adds the rows
 * that ran in the encoder worker and in this backend to the counters.
 */
extern void pgbert_batch_eval(PgbertBatchFn fn, void **site_extra, MemoryContext site_mcxt, int n,
							  text **inputs, text **models, text **poolings, Datum *results, bool *isnull,
							  int64 *worker_rows, int64 *session_rows);

/*
 * A classifier for a call that scores many texts (argument model_argno names
 * it), and the logits of texts[0..n) under it (n x num_labels; NULL texts get
 * no row), run where classify() would run them.
 */
extern PgbertModel *pgbert_classifier_for_call(FunctionCallInfo fcinfo, int model_argno, PgbertRunPlace *place);
extern void pgbert_classifier_logits(PgbertModel *pm, PgbertRunPlace *place, int n, text **texts, float *logits);

#endif
