/*
 * evaluate_sql.c - evaluate_classifier() and calibrate_model(): a stored
 * version scored on any labelled table, and the temperature that calibrates
 * its scores there; the metrics and calibration that train_classifier()
 * also reports on its held-out rows.
 */
#include "postgres.h"

#include <math.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "catalog_calls.h"
#include "decision.h"
#include "evaluate_sql.h"

/*
 * Predict rows[0..n): accuracy and mean cross-entropy, and (when out is not
 * NULL) the metrics as JSON members: per-class precision/recall/F1,
 * macro-F1, confusion matrix (rows: true label, columns: predicted).
 * Labels are picked by decision (NULL: the most probable); the loss is the
 * model's own. logits_out, when not NULL, receives the n x C logits.
 */
void
evaluate_rows(TrainRun *run, const Dataset *ds, const int *rows, int n, int max_tokens,
		 const PgbertDecision *decision, StringInfo out, double *accuracy_out, double *loss_out,
		 float *logits_out)
{
	int			C = ds->n_classes;
	int			chunk = 32;
	int32	   *offsets = palloc(sizeof(int32) * (chunk + 1));
	int32	   *ids = palloc(sizeof(int32) * chunk * max_tokens);
	float	   *logits = palloc(sizeof(float) * chunk * C);
	int64	   *confusion = palloc0(sizeof(int64) * C * C);
	double	   *probs = palloc(sizeof(double) * C);
	double		loss = 0.0,
				macro_f1 = 0.0;
	int64		correct = 0;

	for (int i = 0; i < n; i += chunk)
	{
		int			k = Min(chunk, n - i);
		BtBatch		b;

		dataset_pack(ds, rows + i, k, offsets, ids, NULL);
		b.n_seq = k;
		b.offsets = offsets;
		b.ids = ids;
		b.type_ids = NULL;
		train_run_forward(run, &b, logits);
		for (int s = 0; s < k; s++)
		{
			const float *z = logits + (Size) s * C;
			int			y = ds->labels[rows[i + s]],
						best = 0;
			double		max = z[0],
						sum = 0.0;

			for (int c = 1; c < C; c++)
			{
				if (z[c] > z[best])
					best = c;
				max = Max(max, (double) z[c]);
			}
			if (decision && decision->weights)
				best = pgbert_decide(decision, z, C, probs);
			if (logits_out)
				memcpy(logits_out + (Size) (i + s) * C, z, sizeof(float) * C);
			for (int c = 0; c < C; c++)
				sum += exp((double) z[c] - max);
			loss += log(sum) + max - z[y];
			confusion[y * C + best]++;
			correct += best == y;
		}
		CHECK_FOR_INTERRUPTS();
	}
	if (accuracy_out)
		*accuracy_out = n ? (double) correct / n : NAN;
	if (loss_out)
		*loss_out = n ? loss / n : NAN;
	if (out == NULL)
	{
		pfree(offsets);
		pfree(ids);
		pfree(logits);
		pfree(confusion);
		pfree(probs);
		return;
	}

	appendStringInfo(out, "\"accuracy\": %s, ", n ? float8out_internal((double) correct / n) : "null");
	appendStringInfo(out, "\"loss\": %s, ", n ? float8out_internal(loss / n) : "null");
	appendStringInfoString(out, "\"per_class\": {");
	for (int c = 0; c < C; c++)
	{
		int64		tp = confusion[c * C + c],
					predicted = 0,
					actual = 0;
		double		p,
					r,
					f1;

		for (int j = 0; j < C; j++)
		{
			predicted += confusion[j * C + c];
			actual += confusion[c * C + j];
		}
		p = predicted ? (double) tp / predicted : 0.0;
		r = actual ? (double) tp / actual : 0.0;
		f1 = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
		macro_f1 += f1;
		if (c > 0)
			appendStringInfoString(out, ", ");
		escape_json(out, ds->classes[c]);
		appendStringInfo(out, ": {\"precision\": %s, ", float8out_internal(p));
		appendStringInfo(out, "\"recall\": %s, ", float8out_internal(r));
		appendStringInfo(out, "\"f1\": %s, \"support\": " INT64_FORMAT "}", float8out_internal(f1), actual);
	}
	appendStringInfo(out, "}, \"macro_f1\": %s, \"confusion_matrix\": [", float8out_internal(C ? macro_f1 / C : 0.0));
	for (int y = 0; y < C; y++)
	{
		appendStringInfoString(out, y ? ", [" : "[");
		for (int c = 0; c < C; c++)
			appendStringInfo(out, "%s" INT64_FORMAT, c ? ", " : "", confusion[y * C + c]);
		appendStringInfoChar(out, ']');
	}
	appendStringInfoString(out, "], \"labels\": [");
	for (int c = 0; c < C; c++)
	{
		if (c > 0)
			appendStringInfoString(out, ", ");
		escape_json(out, ds->classes[c]);
	}
	appendStringInfoChar(out, ']');
	pfree(offsets);
	pfree(ids);
	pfree(logits);
	pfree(confusion);
	pfree(probs);
}

/*
 * Fit the temperature on held-out rows and append it as a "calibration"
 * member: the rows, the temperature, and the cross-entropy and expected
 * calibration error (15 bins) before and after. Returns the temperature.
 */
double
evaluate_append_calibration(StringInfo out, const Dataset *ds, const int *rows, int n, const float *logits)
{
	int			C = ds->n_classes;
	int		   *labels = palloc(sizeof(int) * Max(n, 1));
	double		t;

	for (int i = 0; i < n; i++)
		labels[i] = ds->labels[rows[i]];
	t = bt_fit_temperature(logits, labels, n, C);
	appendStringInfo(out, "\"calibration\": {\"rows\": %d, \"temperature\": %s, ", n, float8out_internal(t));
	appendStringInfo(out, "\"loss\": %s, ", float8out_internal(bt_cross_entropy(logits, labels, n, C, 1.0)));
	appendStringInfo(out, "\"loss_calibrated\": %s, ", float8out_internal(bt_cross_entropy(logits, labels, n, C, t)));
	appendStringInfo(out, "\"calibration_error\": %s, ",
					 float8out_internal(bt_calibration_error(logits, labels, n, C, 1.0, 15)));
	appendStringInfo(out, "\"calibration_error_calibrated\": %s}",
					 float8out_internal(bt_calibration_error(logits, labels, n, C, t, 15)));
	pfree(labels);
	return t;
}

/*
 * What evaluate_classifier() and calibrate_model() share: the deployed
 * version of a model (a private copy) and every usable row of a labelled
 * table, tokenized and cut as that version cuts, with the model's labels.
 */
static void
load_labelled_rows(FunctionCallInfo fcinfo, PgbertBaseModel *base, Dataset *ds, Source *src)
{
	char	   *name;
	MemoryContext fn_mcxt = CurrentMemoryContext;

	for (int i = 0; i <= 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("relation, text_column, label_column and model must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(3));
	*src = dataset_check_source(PG_GETARG_OID(0), PG_GETARG_NAME(1), PG_GETARG_NAME(2));
	pgbert_load_base_model(name, base, false);
	if (base->model->num_classes == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("model \"%s\" has no classification head", name)));

	/* the model's labels, in its order */
	memset(ds, 0, sizeof(*ds));
	ds->classes = pgbert_catalog_version_labels(base->name, base->version, &ds->n_classes);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	dataset_read_rows(src, base->tokenizer, base->max_tokens, base->head_tail, ds, fn_mcxt,
					  psprintf("model \"%s\"", name));
	SPI_finish();
	if (ds->n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s has no rows with both a text and a label", src->relation)));
	if (ds->skipped > 0)
		ereport(NOTICE,
				(errmsg("skipped " INT64_FORMAT " rows with a NULL text or label", ds->skipped)));
}

PG_FUNCTION_INFO_V1(pgbert_evaluate_classifier);

/*
 * evaluate_classifier(relation, text_column, label_column, model) RETURNS
 * jsonb: the version's labels as classify() gives them (its decision rule
 * applied), scored against the table's.
 */
Datum
pgbert_evaluate_classifier(PG_FUNCTION_ARGS)
{
	Source		src;
	Dataset		ds;
	PgbertBaseModel *base = palloc0(sizeof(PgbertBaseModel));
	PgbertDecision decision;
	StringInfoData out;

	load_labelled_rows(fcinfo, base, &ds, &src);
	pgbert_decision_parse(base->decision_rule_json, ds.classes, ds.n_classes, &decision);
	initStringInfo(&out);
	appendStringInfo(&out, "{\"model\": ");
	escape_json(&out, base->name);
	appendStringInfo(&out, ", \"version\": %d, \"rows\": %d, \"rows_skipped\": " INT64_FORMAT ", ",
					 base->version, ds.n, ds.skipped);
	evaluate_rows(train_run_wrap(base->model), &ds, dataset_all_rows(&ds), ds.n, base->max_tokens, &decision,
				  &out, NULL, NULL, NULL);
	appendStringInfoChar(&out, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}

PG_FUNCTION_INFO_V1(pgbert_calibrate_model);

/*
 * calibrate_model(relation, text_column, label_column, model, install)
 * RETURNS jsonb: the temperature that minimizes the deployed version's
 * cross-entropy on the table's rows, with the loss and calibration error
 * before and after; install stores it in the version's decision rule.
 */
Datum
pgbert_calibrate_model(PG_FUNCTION_ARGS)
{
	Source		src;
	Dataset		ds;
	PgbertBaseModel *base = palloc0(sizeof(PgbertBaseModel));
	StringInfoData out;
	float	   *logits;
	int		   *rows;
	double		t;
	bool		install = PG_ARGISNULL(4) ? false : PG_GETARG_BOOL(4);

	if (install)
	{
		PreventCommandIfReadOnly("calibrate_model(install => true)");
		PreventCommandDuringRecovery("calibrate_model(install => true)");
	}
	load_labelled_rows(fcinfo, base, &ds, &src);
	rows = dataset_all_rows(&ds);
	logits = palloc(sizeof(float) * (Size) ds.n * ds.n_classes);
	evaluate_rows(train_run_wrap(base->model), &ds, rows, ds.n, base->max_tokens, NULL, NULL, NULL, NULL, logits);

	initStringInfo(&out);
	appendStringInfo(&out, "{\"model\": ");
	escape_json(&out, base->name);
	appendStringInfo(&out, ", \"version\": %d, \"installed\": %s, ", base->version, install ? "true" : "false");
	t = evaluate_append_calibration(&out, &ds, rows, ds.n, logits);
	appendStringInfoChar(&out, '}');
	if (install)
		pgbert_catalog_set_decision_rule(base->name, base->version,
										 psprintf("{\"temperature\": %s}", float8out_internal(t)));
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}
