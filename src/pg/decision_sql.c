/*
 * decision_sql.c - estimate_label_priors() and label_drift(): the label mix of
 * unlabelled rows, estimated from the model's own calibrated scores (EM,
 * decision.h), with a bootstrap interval; install stores it as the version's
 * priors.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "catalog_calls.h"
#include "classify_sql.h"
#include "decision.h"
#include "decision_rule.h"

/* Bootstrap resamples behind estimate_label_priors()' interval, and its level. */
#define PRIOR_RESAMPLES 200
#define PRIOR_LEVEL 0.95

/* Calibrated scores of one relation's texts (n x C, palloc'd), and how often each label is decided. */
typedef struct ScoredRows
{
	double	   *probs;
	int64		n;
	int64		cap;
	int64		skipped;		/* NULL texts */
	double	   *decided;		/* per label: rows classify() gives it */
} ScoredRows;

/* Score a chunk of texts and add their rows. */
static void
score_chunk(PgbertModel *pm, PgbertRunPlace *place, int k, text **texts, ScoredRows *sr)
{
	int			C = pm->num_labels;
	float	   *logits = palloc(sizeof(float) * (Size) k * C);

	pgbert_classifier_logits(pm, place, k, texts, logits);
	if (sr->n + k > sr->cap)
	{
		sr->cap = Max(sr->cap * 2, sr->n + k);
		sr->probs = repalloc_huge(sr->probs, sizeof(double) * (Size) sr->cap * C);
	}
	for (int i = 0; i < k; i++)
	{
		const float *z = logits + (Size) i * C;
		double	   *p = sr->probs + (Size) sr->n * C;

		for (int c = 0; c < C; c++)
			if (!isfinite(z[c]))
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("model \"%s\" version %d produced a non-finite logit", pm->name, pm->version)));
		/* EM needs the posterior under the training mix: calibrated, without the rule's priors */
		bt_softmax_scaled(z, C, pm->decision.temperature, p);
		/* the same scores decide the label classify() gives (pgbert_decide) */
		sr->decided[bt_decide(p, pm->decision.weights, C)] += 1.0;
		sr->n++;
	}
	pfree(logits);
}

/* Read the text column of a relation as the caller, scoring it a chunk at a time. */
static void
score_relation(PgbertModel *pm, PgbertRunPlace *place, Oid relid, Name column, ScoredRows *sr)
{
	char	   *relname = get_rel_name(relid);
	char	   *q;
	Portal		portal;
	MemoryContext chunk_mcxt = AllocSetContextCreate(CurrentMemoryContext, "pgbert prior rows",
													 ALLOCSET_DEFAULT_SIZES);
	MemoryContext caller = CurrentMemoryContext;

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (get_attnum(relid, NameStr(*column)) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", NameStr(*column), relname)));
	q = psprintf("SELECT %s::text FROM %s", quote_identifier(NameStr(*column)),
				 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), relname));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	portal = SPI_cursor_open_with_args(NULL, q, 0, NULL, NULL, NULL, true, CURSOR_OPT_NO_SCROLL);
	for (;;)
	{
		text	  **texts;
		int			k = 0;

		SPI_cursor_fetch(portal, true, 256);
		if (SPI_processed == 0)
			break;
		/* the texts outlive the tuple table: the forward pass may use SPI itself */
		MemoryContextSwitchTo(chunk_mcxt);
		texts = palloc(sizeof(text *) * SPI_processed);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

			if (isnull)
				sr->skipped++;
			else
				texts[k++] = DatumGetTextPCopy(d);
		}
		SPI_freetuptable(SPI_tuptable);
		MemoryContextSwitchTo(caller);
		if (k > 0)
			score_chunk(pm, place, k, texts, sr);
		MemoryContextReset(chunk_mcxt);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	SPI_finish();
	MemoryContextDelete(chunk_mcxt);
}

/* The bootstrap's stop callback: a cancel or timeout is pending (handled once the engine returns). */
static int
interrupt_pending(void *arg)
{
	return INTERRUPTS_PENDING_CONDITION();
}

PG_FUNCTION_INFO_V1(pgbert_estimate_label_priors);

/*
 * estimate_label_priors(relation, text_column, model, install) RETURNS jsonb:
 * the label mix of a relation's texts, estimated by EM from the deployed
 * version's calibrated scores and its training mix, with a bootstrap
 * interval, beside the mix classify() gives there; install makes the
 * estimate the version's priors.
 */
Datum
pgbert_estimate_label_priors(PG_FUNCTION_ARGS)
{
	PgbertRunPlace place;
	PgbertModel *pm;
	ScoredRows	sr;
	int			C,
				steps,
				rc;
	double	   *priors,
			   *low,
			   *high;
	bool		install = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);
	StringInfoData out;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("relation and text_column must not be null")));
	if (install)
	{
		PreventCommandIfReadOnly("estimate_label_priors(install => true)");
		PreventCommandDuringRecovery("estimate_label_priors(install => true)");
	}
	pm = pgbert_classifier_for_call(fcinfo, 2, &place);
	C = pm->num_labels;
	if (C < 2)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("model \"%s\" has no classification head with two or more labels", pm->name)));
	if (pm->decision.training_priors == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("model \"%s\" version %d has no training_priors in its decision rule", pm->name, pm->version),
				 errdetail("Estimating a new label mix needs the mix the model was trained on."),
				 errhint("train_classifier records it; for an imported model set it with "
						 "set_decision_rule('%s', '{\"training_priors\": {...}}').", pm->name)));

	if (!pm->decision.calibrated)
		ereport(NOTICE,
				(errmsg("model \"%s\" version %d has no temperature: its scores are taken as calibrated",
						pm->name, pm->version),
				 errdetail("EM trusts the scores; an overconfident model moves the estimate."),
				 errhint("Fit one with calibrate_model() on recent labelled rows.")));
	memset(&sr, 0, sizeof(sr));
	sr.cap = 1024;
	sr.probs = palloc(sizeof(double) * sr.cap * C);
	sr.decided = palloc0(sizeof(double) * C);
	score_relation(pm, &place, PG_GETARG_OID(0), PG_GETARG_NAME(1), &sr);
	if (sr.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("relation \"%s\" has no rows with a text", get_rel_name(PG_GETARG_OID(0)))));

	priors = palloc(sizeof(double) * C);
	low = palloc(sizeof(double) * C);
	high = palloc(sizeof(double) * C);
	steps = bt_estimate_priors(sr.probs, (int) sr.n, C, pm->decision.training_priors, priors, 1000, 1e-6);
	rc = bt_prior_interval(sr.probs, (int) sr.n, C, pm->decision.training_priors, priors, PRIOR_RESAMPLES, 42,
						   PRIOR_LEVEL, low, high, interrupt_pending, NULL);
	CHECK_FOR_INTERRUPTS();
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	for (int c = 0; c < C; c++)
		sr.decided[c] /= sr.n;

	initStringInfo(&out);
	appendStringInfoString(&out, "{\"model\": ");
	escape_json(&out, pm->name);
	appendStringInfo(&out, ", \"version\": %d, \"rows\": " INT64_FORMAT ", \"rows_skipped\": " INT64_FORMAT
					 ", \"labels\": [", pm->version, sr.n, sr.skipped);
	for (int c = 0; c < C; c++)
	{
		if (c > 0)
			appendStringInfoString(&out, ", ");
		escape_json(&out, pm->labels[c]);
	}
	appendStringInfoString(&out, "], \"training_priors\": ");
	pgbert_append_label_numbers(&out, pm->labels, pm->decision.training_priors, C);
	appendStringInfoString(&out, ", \"predicted_mix\": ");
	pgbert_append_label_numbers(&out, pm->labels, sr.decided, C);
	appendStringInfoString(&out, ", \"priors\": ");
	pgbert_append_label_numbers(&out, pm->labels, priors, C);
	appendStringInfoString(&out, ", \"low\": ");
	pgbert_append_label_numbers(&out, pm->labels, low, C);
	appendStringInfoString(&out, ", \"high\": ");
	pgbert_append_label_numbers(&out, pm->labels, high, C);
	appendStringInfo(&out, ", \"level\": %s, \"em_steps\": %d, \"installed\": %s}",
					 float8out_internal(PRIOR_LEVEL), steps, install ? "true" : "false");
	if (install)
	{
		StringInfoData rule;

		initStringInfo(&rule);
		appendStringInfoString(&rule, "{\"priors\": ");
		pgbert_append_label_numbers(&rule, pm->labels, priors, C);
		appendStringInfoChar(&rule, '}');
		pgbert_catalog_set_decision_rule(pm->name, pm->version, rule.data);
	}
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}
