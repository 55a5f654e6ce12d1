/*
 * dataset.c - a labelled table as training and evaluation read it.
 *
 * Rows are read through SPI as the calling role (so privileges and row-level
 * security apply), in a stable order, tokenized once and kept in memory as
 * packed ids (4 bytes per token: 100,000 rows of 128 tokens take 51 MB).
 * Splits and shuffles are seeded, so the same seed and rows give the same
 * run.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"

#include "dataset.h"
#include "quote.h"
#include "tokenize_sql.h"

/* ---- a small seeded generator (splitmix64), for splits and shuffles ---- */

static uint64
next_random(uint64 *state)
{
	uint64		z = (*state += UINT64CONST(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64CONST(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64CONST(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Fisher-Yates shuffle of v[0..n). */
void
dataset_shuffle(int *v, int n, uint64 *state)
{
	for (int i = n - 1; i > 0; i--)
	{
		int			j = (int) (next_random(state) % (uint64) (i + 1));
		int			t = v[i];

		v[i] = v[j];
		v[j] = t;
	}
}

/* ---- reading a table ---- */

/* Check the relation and columns; the text column must be of a string type. */
Source
dataset_check_source(Oid relid, Name text_col, Name label_col)
{
	Source		src;
	AttrNumber	ta,
				la;
	char	   *relname = get_rel_name(relid);

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	ta = get_attnum(relid, NameStr(*text_col));
	la = get_attnum(relid, NameStr(*label_col));
	if (ta == InvalidAttrNumber || ta < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", NameStr(*text_col), relname)));
	if (la == InvalidAttrNumber || la < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", NameStr(*label_col), relname)));
	{
		Oid			t = getBaseType(get_atttype(relid, ta));
		char		category;
		bool		preferred;

		get_type_category_preferred(t, &category, &preferred);
		if (category != TYPCATEGORY_STRING)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" is of type %s, not a text type", NameStr(*text_col), format_type_be(t)),
					 errhint("Pass a text, varchar or char column, or a view that casts one.")));
	}
	src.relation = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), relname);
	src.text_column = (char *) quote_identifier(NameStr(*text_col));
	src.label_column = (char *) quote_identifier(NameStr(*label_col));
	src.split_by = NULL;
	return src;
}

/*
 * Distinct labels of the usable rows, in the label type's own order (SPI
 * connected). The model's labels are the text forms, and each row's label is
 * matched by its text form (read_rows), so equal values must print the same:
 * numeric 1.0 and 1.00, or citext 'Spam' and 'spam', are equal to DISTINCT but
 * would be two labels (or a row whose label is "not one of the labels").
 * Such a column is refused, naming the two spellings.
 */
void
dataset_read_classes(const Source *src, Dataset *ds, MemoryContext mcxt)
{
	char	   *q = psprintf("SELECT min(s.t), max(s.t), count(*) FROM "
							 "(SELECT DISTINCT %s AS l, %s::text AS t FROM %s "
							 "WHERE %s IS NOT NULL AND %s IS NOT NULL%s%s%s) s GROUP BY s.l ORDER BY s.l",
							 src->label_column, src->label_column, src->relation,
							 src->text_column, src->label_column,
							 src->split_by ? " AND " : "", src->split_by ? src->split_by : "",
							 src->split_by ? " IS NOT NULL" : "");

	if (SPI_execute(q, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the labels");
	ds->n_classes = (int) SPI_processed;
	ds->classes = MemoryContextAlloc(mcxt, sizeof(char *) * Max(ds->n_classes, 1));
	for (int i = 0; i < ds->n_classes; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *count = SPI_getvalue(tup, SPI_tuptable->tupdesc, 3);

		if (strcmp(count, "1") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("equal labels in column %s are spelled differently: \"%s\" and \"%s\"",
							src->label_column,
							pgbert_quote_limit(SPI_getvalue(tup, SPI_tuptable->tupdesc, 1)),
							pgbert_quote_limit(SPI_getvalue(tup, SPI_tuptable->tupdesc, 2))),
					 errdetail("A model's labels are text, so each label needs one spelling."),
					 errhint("Train from a view that spells each label one way, e.g. trim_scale(%s) for numeric labels or lower(%s)::text for citext.",
							 src->label_column, src->label_column)));
		ds->classes[i] = MemoryContextStrdup(mcxt, SPI_getvalue(tup, SPI_tuptable->tupdesc, 1));
	}
}

typedef struct LabelEntry
{
	char		key[NAMEDATALEN * 4];
	int			id;
} LabelEntry;

/*
 * Read and tokenize every usable row (SPI connected; arrays are allocated in
 * mcxt), cut to max_tokens as the model cuts (head_tail or not). Labels map
 * to ds->classes; one that is not there is an error (evaluation with a model
 * that never saw it). With src->split_by the rows come oldest first and a
 * NULL there makes a row unusable.
 */
void
dataset_read_rows(const Source *src, const BtTokenizer *tk, int max_tokens, bool head_tail, Dataset *ds,
		  MemoryContext mcxt, const char *what)
{
	char	   *q = src->split_by ?
		psprintf("SELECT %s::text, %s::text, %s IS NULL FROM %s ORDER BY %s, 1, 2",
				 src->text_column, src->label_column, src->split_by, src->relation, src->split_by) :
		psprintf("SELECT %s::text, %s::text, false FROM %s ORDER BY 1, 2",
				 src->text_column, src->label_column, src->relation);
	Portal		portal;
	HTAB	   *map;
	HASHCTL		ctl;
	IdCollector c;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(((LabelEntry *) 0)->key);
	ctl.entrysize = sizeof(LabelEntry);
	ctl.hcxt = CurrentMemoryContext;
	map = hash_create("pgbert labels", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (int i = 0; i < ds->n_classes; i++)
	{
		bool		found;
		LabelEntry *e;

		if (strlen(ds->classes[i]) >= sizeof(e->key))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("label \"%s\" is too long (at most %zu bytes)", pgbert_quote_limit(ds->classes[i]), sizeof(e->key) - 1)));
		e = hash_search(map, ds->classes[i], HASH_ENTER, &found);
		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("two different labels are both spelled \"%s\"", pgbert_quote_limit(ds->classes[i])),
					 errdetail("A model's labels are text, so each label needs its own spelling.")));
		e->id = i;
	}

	ds->cap_rows = 1024;
	ds->cap_ids = 65536;
	ds->offsets = MemoryContextAlloc(mcxt, sizeof(int32) * (ds->cap_rows + 1));
	ds->labels = MemoryContextAlloc(mcxt, sizeof(int32) * ds->cap_rows);
	ds->ids = MemoryContextAllocHuge(mcxt, sizeof(int32) * ds->cap_ids);
	ds->offsets[0] = 0;
	ds->n = 0;
	ds->skipped = 0;

	portal = SPI_cursor_open_with_args(NULL, q, 0, NULL, NULL, NULL, true, CURSOR_OPT_NO_SCROLL);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			bool		tnull,
						lnull,
						snull;
			Datum		t = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &tnull);
			Datum		l = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &lnull);
			bool		no_split = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &snull));
			LabelEntry *e;
			char	   *label;
			int64		need;

			if (tnull || lnull || no_split)
			{
				ds->skipped++;
				continue;
			}
			label = TextDatumGetCString(l);
			e = strlen(label) < sizeof(e->key) ? hash_search(map, label, HASH_FIND, NULL) : NULL;
			if (e == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("label \"%s\" is not one of %s's labels", pgbert_quote_limit(label), what)));
			c = pgbert_tokenize_truncated(tk, DatumGetTextPP(t), max_tokens - 2, head_tail);
			if (ds->n == ds->cap_rows)
			{
				ds->cap_rows *= 2;
				ds->offsets = repalloc(ds->offsets, sizeof(int32) * (ds->cap_rows + 1));
				ds->labels = repalloc(ds->labels, sizeof(int32) * ds->cap_rows);
			}
			need = (int64) ds->offsets[ds->n] + c.n + 2;
			if (need > PG_INT32_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("the table has more than %d tokens", PG_INT32_MAX)));
			while (need > ds->cap_ids)
			{
				ds->cap_ids *= 2;
				ds->ids = repalloc_huge(ds->ids, sizeof(int32) * ds->cap_ids);
			}
			ds->ids[ds->offsets[ds->n]] = tk->cls_id;
			memcpy(ds->ids + ds->offsets[ds->n] + 1, c.ids, sizeof(int32) * c.n);
			ds->ids[need - 1] = tk->sep_id;
			ds->offsets[ds->n + 1] = (int32) need;
			ds->labels[ds->n] = e->id;
			ds->n++;
			pfree(c.ids);
			pfree(label);
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	hash_destroy(map);
}

/* Pack rows[0..k) of a dataset into offsets/ids (and labels when given). */
void
dataset_pack(const Dataset *ds, const int *rows, int k, int32 *offsets, int32 *ids, int32 *labels)
{
	offsets[0] = 0;
	for (int s = 0; s < k; s++)
	{
		int			r = rows[s];
		int			len = ds->offsets[r + 1] - ds->offsets[r];

		memcpy(ids + offsets[s], ds->ids + ds->offsets[r], sizeof(int32) * len);
		offsets[s + 1] = offsets[s] + len;
		if (labels)
			labels[s] = ds->labels[r];
	}
}

/* Check split_by names a column of the relation, and that there is something to validate on; quoted. */
char *
dataset_split_column(Oid relid, const char *column, double validation_fraction)
{
	AttrNumber	att = get_attnum(relid, column);

	if (att == InvalidAttrNumber || att < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", column, get_rel_name(relid))));
	if (validation_fraction <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("split_by needs validation rows"),
				 errhint("Set validation_fraction above 0.")));
	return (char *) quote_identifier(column);
}

/*
 * Stratified split: within each class, shuffled with seed, a fraction is
 * held out (at least one row of each class stays in training). The same seed
 * and rows give the same split.
 */
void
dataset_split_stratified(const Dataset *ds, double fraction, int seed, int *train_rows, int *n_train,
				 int *val_rows, int *n_val)
{
	uint64		state = (uint64) seed * UINT64CONST(0x2545F4914F6CDD1D) + 1;
	int		   *rows = palloc(sizeof(int) * Max(ds->n, 1));

	*n_train = *n_val = 0;
	for (int c = 0; c < ds->n_classes; c++)
	{
		int			n_c = 0,
					n_val_c;

		for (int r = 0; r < ds->n; r++)
			if (ds->labels[r] == c)
				rows[n_c++] = r;
		dataset_shuffle(rows, n_c, &state);
		n_val_c = (int) floor(fraction * n_c + 0.5);
		n_val_c = Min(n_val_c, n_c - 1);
		for (int i = 0; i < n_c; i++)
		{
			if (i < n_val_c)
				val_rows[(*n_val)++] = rows[i];
			else
				train_rows[(*n_train)++] = rows[i];
		}
	}
	pfree(rows);
}

/*
 * Split in time (the rows were read oldest first, by split_by): the newest
 * fraction of them is held out, as a model is trained on the past and used
 * on what comes next. Every class must keep a training row.
 */
void
dataset_split_newest(const Dataset *ds, double fraction, const char *split_by, int *train_rows, int *n_train,
			 int *val_rows, int *n_val)
{
	int			first_val = ds->n - (int) floor(fraction * ds->n + 0.5);
	bool	   *trained = palloc0(sizeof(bool) * ds->n_classes);

	*n_train = *n_val = 0;
	for (int r = 0; r < ds->n; r++)
	{
		if (r < first_val)
		{
			train_rows[(*n_train)++] = r;
			trained[ds->labels[r]] = true;
		}
		else
			val_rows[(*n_val)++] = r;
	}
	for (int c = 0; c < ds->n_classes; c++)
		if (!trained[c])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("label \"%s\" occurs only in the newest %d rows by %s, which are held out for validation",
							pgbert_quote_limit(ds->classes[c]), *n_val, split_by),
					 errhint("Lower validation_fraction, or train without split_by.")));
	pfree(trained);
}

/*
 * Cross-entropy weights per class from class_weights: "balanced" (n / (C *
 * n_c) over the training rows, as scikit-learn) or {"label": weight, ...}
 * (labels not named weigh 1).
 */
float *
dataset_class_weights(Jsonb *spec, const Dataset *ds, const int *train_rows, int n_train)
{
	float	   *w = palloc(sizeof(float) * ds->n_classes);
	Oid			types[1] = {JSONBOID};
	Datum		vals[1] = {JsonbPGetDatum(spec)};
	char	   *kind;

	for (int c = 0; c < ds->n_classes; c++)
		w[c] = 1.0f;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT jsonb_typeof($1), $1 #>> '{}'", 1, types, vals, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read class_weights");
	kind = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strcmp(kind, "string") == 0)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		int		   *count = palloc0(sizeof(int) * ds->n_classes);

		if (strcmp(v, "balanced") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("class_weights must be \"balanced\" or an object of label weights, not \"%s\"", pgbert_quote_limit(v))));
		for (int i = 0; i < n_train; i++)
			count[ds->labels[train_rows[i]]]++;
		for (int c = 0; c < ds->n_classes; c++)
			w[c] = count[c] ? (float) ((double) n_train / ((double) ds->n_classes * count[c])) : 1.0f;
	}
	else if (strcmp(kind, "object") == 0)
	{
		if (SPI_execute_with_args("SELECT key, value FROM jsonb_each_text($1)", 1, types, vals, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read class_weights");
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			char	   *label = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
			char	   *value = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);
			char	   *end;
			double		x = value ? strtod(value, &end) : -1;
			int			c;

			for (c = 0; c < ds->n_classes; c++)
				if (strcmp(ds->classes[c], label) == 0)
					break;
			if (c == ds->n_classes)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("class_weights names \"%s\", which is not a label of the table", pgbert_quote_limit(label))));
			if (value == NULL || *end != '\0' || !(x >= 0 && x < 1e6))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("class weight of \"%s\" must be a number from 0 to 1e6", pgbert_quote_limit(label))));
			w[c] = (float) x;
		}
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("class_weights must be \"balanced\" or an object of label weights")));
	SPI_finish();
	return w;
}

/* Every row, for evaluating on a whole table. */
int *
dataset_all_rows(const Dataset *ds)
{
	int		   *rows = palloc(sizeof(int) * ds->n);

	for (int r = 0; r < ds->n; r++)
		rows[r] = r;
	return rows;
}
