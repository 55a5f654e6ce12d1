/*
 * catalog_calls.c - pgbert's model catalog as C code reads and writes it
 * outside the model loader (catalog_calls.h).
 *
 * Writes call the management functions (import_model, deploy_model,
 * set_decision_rule, pgbert.record_training) through their schema-qualified
 * names, so that a change of their signatures or rules is made in the
 * install script and here, and nowhere else.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "catalog_calls.h"
#include "catalog_door.h"
#include "quote.h"

/* Connect to SPI (nested connections are allowed). */
static void
connect_spi(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* Connect and run a query whose one parameter, $1, is a model name; what the query is for names a failure. */
static void
query_by_name(const char *sql, const char *name, bool read_only, const char *what)
{
	Oid			types[1] = {TEXTOID};
	Datum		vals[1] = {CStringGetTextDatum(name)};

	connect_spi();
	if (SPI_execute_with_args(sql, 1, types, vals, NULL, read_only, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not %s", what);
}

/* Column col (1-based) of the first result row, and whether it is NULL. */
static Datum
first_value(int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull);
}

/* Refuse a training whose result the caller could not store under name. */
void
pgbert_catalog_check_owner(const char *name)
{
	bool		isnull;
	Datum		owns;

	query_by_name("SELECT pgbert.owns_name($1)", name, true, "check the model's owner");
	owns = first_value(1, &isnull);
	if (!isnull && !DatumGetBool(owns))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of model \"%s\" to train a new version of it", name)));
	SPI_finish();
}

/* Refuse a training whose result the database's older SQL objects could not store. */
void
pgbert_catalog_check_current(void)
{
	bool		isnull;

	connect_spi();
	/* set_decision_rule_as came with 0.7.0, the newest function a stored result needs */
	if (SPI_execute("SELECT pg_catalog.to_regprocedure('pgbert.set_decision_rule_as(regrole,text,jsonb,integer)') IS NULL",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up pgbert.set_decision_rule_as");
	if (DatumGetBool(first_value(1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the pgbert extension in this database is older than its library"),
				 errhint("Run ALTER EXTENSION pgbert UPDATE.")));
	SPI_finish();
}

/* What keep_better compares a new version with. */
bool
pgbert_catalog_deployed(const char *model, int *version, double *accuracy)
{
	bool		isnull;
	bool		found;

	query_by_name("SELECT version, (metrics->'validation'->>'accuracy')::float8 FROM pgbert.models "
				  "WHERE name = $1 AND deployed", model, true, "read the deployed version");
	found = SPI_processed == 1;
	if (found)
	{
		Datum		acc = first_value(2, &isnull);

		*accuracy = isnull ? NAN : DatumGetFloat8(acc);
		*version = DatumGetInt32(first_value(1, &isnull));
	}
	SPI_finish();
	return found;
}

/* Whether a stored version ended up deployed (keep_better may have kept the old one). */
int
pgbert_catalog_resolve_version(const char *model)
{
	bool		isnull;
	Datum		v;

	/* not read-only: it must see a version this transaction just added */
	query_by_name("SELECT pgbert.resolve_version($1)", model, false, "resolve the deployed version");
	v = first_value(1, &isnull);
	SPI_finish();
	return isnull ? 0 : DatumGetInt32(v);
}

/* The labels evaluation maps a table's labels to. */
char **
pgbert_catalog_version_labels(const char *model, int version, int *n)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		vals[2] = {CStringGetTextDatum(model), Int32GetDatum(version)};
	char	  **labels;

	connect_spi();
	if (SPI_execute_with_args("SELECT unnest(labels) FROM pgbert.model_versions WHERE name = $1 AND version = $2",
							  2, types, vals, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the model's labels");
	*n = (int) SPI_processed;
	labels = MemoryContextAlloc(caller, sizeof(char *) * Max(*n, 1));
	for (int c = 0; c < *n; c++)
		labels[c] = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[c], SPI_tuptable->tupdesc, 1));
	SPI_finish();
	return labels;
}

/* A trained version into the catalog, named and labelled as transformers would save it. */
int
pgbert_catalog_import_version(const PgbertNewVersion *v)
{
	Oid			types[7] = {TEXTOID, OIDOID, TEXTOID, BYTEAOID, TEXTOID, TEXTARRAYOID, TEXTOID};
	Datum		vals[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Datum	   *label_datums = palloc(sizeof(Datum) * Max(v->n_labels, 1));
	char	   *q;
	bool		isnull;
	int			version;

	for (int c = 0; c < v->n_labels; c++)
		label_datums[c] = CStringGetTextDatum(v->labels[c]);
	vals[0] = CStringGetTextDatum(v->model);
	vals[1] = ObjectIdGetDatum(v->weights);
	vals[2] = CStringGetTextDatum(v->config_json);
	vals[3] = PointerGetDatum(v->vocab);
	vals[4] = v->tokenizer_json ? CStringGetTextDatum(v->tokenizer_json) : (Datum) 0;
	nulls[4] = v->tokenizer_json ? ' ' : 'n';
	vals[5] = PointerGetDatum(construct_array(label_datums, v->n_labels, TEXTOID, -1, false, TYPALIGN_INT));
	vals[6] = v->parent ? CStringGetTextDatum(v->parent) : (Datum) 0;
	nulls[6] = v->parent ? ' ' : 'n';

	connect_spi();
	/* the config names the head's labels both ways, as transformers writes them */
	q = psprintf("SELECT %s($1, $2, ($3::jsonb - 'pgbert_truncation') || jsonb_build_object(%s"
				 "'architectures', jsonb_build_array('BertForSequenceClassification'), "
				 "'id2label', (SELECT jsonb_object_agg((i - 1)::text, $6[i]) FROM generate_subscripts($6, 1) i), "
				 "'label2id', (SELECT jsonb_object_agg($6[i], i - 1) FROM generate_subscripts($6, 1) i)), "
				 "$4, coalesce($5::jsonb, '{}') || jsonb_build_object('model_max_length', %d), $6, $7)",
				 pgbert_extension_function("import_model"),
				 v->head_tail ? "'pgbert_truncation', 'head_tail', " : "", v->max_tokens);
	if (SPI_execute_with_args(q, 7, types, vals, nulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not record the trained model");
	version = DatumGetInt32(first_value(1, &isnull));
	SPI_finish();
	return version;
}

/* The metrics and log of a version train_classifier stored. */
void
pgbert_catalog_record_training(const char *model, int version, const char *metrics_json, const char *log_json)
{
	Oid			types[4] = {JSONBOID, TEXTOID, INT4OID, JSONBOID};
	Datum		vals[4];

	vals[0] = DirectFunctionCall1(jsonb_in, CStringGetDatum(metrics_json));
	vals[1] = CStringGetTextDatum(model);
	vals[2] = Int32GetDatum(version);
	vals[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(log_json));
	connect_spi();
	if (SPI_execute_with_args("SELECT pgbert.record_training($2, $3, $1, $4)",
							  4, types, vals, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not store the metrics and the training log");
	SPI_finish();
}

/* Put a version (back) in service. */
void
pgbert_catalog_deploy(const char *model, int version)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		vals[2] = {CStringGetTextDatum(model), Int32GetDatum(version)};

	connect_spi();
	if (SPI_execute_with_args(psprintf("SELECT %s($1, $2)", pgbert_extension_function("deploy_model")),
							  2, types, vals, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not deploy version %d of model \"%s\"", version, pgbert_quote_limit(model));
	SPI_finish();
}

/* Merge keys into a version's decision rule, as the calling role. */
void
pgbert_catalog_set_decision_rule(const char *model, int version, const char *rule_json)
{
	Oid			types[3] = {TEXTOID, JSONBOID, INT4OID};
	Datum		vals[3];

	vals[0] = CStringGetTextDatum(model);
	vals[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(rule_json));
	vals[2] = Int32GetDatum(version);
	connect_spi();
	if (SPI_execute_with_args(psprintf("SELECT %s($1, $2, $3)", pgbert_extension_function("set_decision_rule")),
							  3, types, vals, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not store the decision rule");
	SPI_finish();
}
