/*
 * train_sql.c - train_classifier() and evaluate_classifier(): fine-tuning a
 * BERT classifier on the rows of a table, and scoring one on any table.
 *
 * Rows are read through SPI as the calling role (so privileges and row-level
 * security apply), in a stable order, tokenized once and kept in memory as
 * packed ids (4 bytes per token: 100,000 rows of 128 tokens take 51 MB). A
 * stratified, seeded split holds out a validation set; the engine runs the
 * epochs (forward, backward, AdamW) between CHECK_FOR_INTERRUPTS; the result
 * is stored through import_model() as the model's next version, with its
 * metrics. Engine objects are tied to the function's memory context, so an
 * error or a cancel frees them and leaves no catalog row and no large object.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "libpq/be-fsstubs.h"
#include "libpq/libpq-fs.h"
#include "miscadmin.h"
#include "parser/parse_type.h"
#include "portability/instr_time.h"
#include "storage/fd.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/typcache.h"

#include "config.h"
#include "decision.h"
#include "pgbert.h"
#include "train.h"
#include "train_run.h"
#include "worker.h"
#include "vocab.h"

/* Rows of a table, tokenized, with class ids. */
typedef struct Dataset
{
	int			n;				/* rows used */
	int64		skipped;		/* rows with a NULL text or label */
	int32	   *offsets;		/* n + 1: row r holds ids[offsets[r] .. offsets[r + 1]) */
	int32	   *ids;			/* [CLS] pieces [SEP] */
	int32	   *labels;			/* class of each row */
	int64		cap_ids;
	int			cap_rows;
	int			n_classes;
	char	  **classes;		/* label texts, in class order */
} Dataset;

/* What a call must release when its memory context goes, also on error. */
typedef struct Owned
{
	int			progress_slot;	/* in pgbert.training_progress, or -1 */
} Owned;

/* Memory context callback: free the progress slot. */
static void
free_owned(void *arg)
{
	Owned	   *o = arg;

	pgbert_progress_end(o->progress_slot);
	o->progress_slot = -1;
}

/* An Owned tied to the current memory context. */
static Owned *
new_owned(void)
{
	Owned	   *o = palloc0(sizeof(Owned));
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

	o->progress_slot = -1;
	cb->func = free_owned;
	cb->arg = o;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	return o;
}

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
static void
shuffle(int *v, int n, uint64 *state)
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

/* Quoted relation name and checked column names for a query. */
typedef struct Source
{
	char	   *relation;		/* schema-qualified, quoted */
	char	   *text_column;	/* quoted */
	char	   *label_column;	/* quoted */
	char	   *split_by;		/* quoted, or NULL: the column ordering rows in time */
} Source;

/* Check the relation and columns; the text column must be of a string type. */
static Source
check_source(Oid relid, Name text_col, Name label_col)
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
static void
read_classes(const Source *src, Dataset *ds, MemoryContext mcxt)
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
static void
read_rows(const Source *src, const BtTokenizer *tk, int max_tokens, bool head_tail, Dataset *ds,
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
static void
pack(const Dataset *ds, const int *rows, int k, int32 *offsets, int32 *ids, int32 *labels)
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

/* ---- evaluation ---- */

/*
 * Predict rows[0..n): accuracy and mean cross-entropy, and (when out is not
 * NULL) the metrics as JSON members: per-class precision/recall/F1,
 * macro-F1, confusion matrix (rows: true label, columns: predicted).
 * Labels are picked by decision (NULL: the most probable); the loss is the
 * model's own. logits_out, when not NULL, receives the n x C logits.
 */
static void
evaluate(TrainRun *run, const Dataset *ds, const int *rows, int n, int max_tokens,
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

		pack(ds, rows + i, k, offsets, ids, NULL);
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

/* ---- training ---- */

/* A small BERT for training from scratch over the bundled vocabulary. */
static char *
scratch_config_json(void)
{
	return psprintf("{\"architectures\": [\"BertForSequenceClassification\"], \"model_type\": \"bert\", "
					"\"vocab_size\": %u, \"hidden_size\": 256, \"num_hidden_layers\": 4, "
					"\"num_attention_heads\": 4, \"intermediate_size\": 1024, \"hidden_act\": \"gelu\", "
					"\"hidden_dropout_prob\": 0.1, \"attention_probs_dropout_prob\": 0.1, "
					"\"max_position_embeddings\": 512, \"type_vocab_size\": 2, \"initializer_range\": 0.02, "
					"\"layer_norm_eps\": 1e-12, \"pad_token_id\": 0}",
					pgbert_bundled_tokenizer()->vocab->size);
}

/* Bytes of the bundled vocab.txt (read by the server, whoever calls). */
static bytea *
bundled_vocab_bytes(void)
{
	char	   *path = pgbert_bundled_vocab_path();
	FILE	   *f = AllocateFile(path, PG_BINARY_R);
	StringInfoData buf;
	char		chunk[65536];
	size_t		n;
	bytea	   *out;

	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open the bundled vocabulary \"%s\": %m", path)));
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		appendBinaryStringInfo(&buf, chunk, (int) n);
	FreeFile(f);
	out = palloc(VARHDRSZ + buf.len);
	SET_VARSIZE(out, VARHDRSZ + buf.len);
	memcpy(VARDATA(out), buf.data, buf.len);
	return out;
}

/* Write bytes into a new large object owned by the current role; its OID. */
static Oid
write_large_object(const uint8_t *data, size_t len)
{
	Oid			lo = DatumGetObjectId(DirectFunctionCall1(be_lo_create, ObjectIdGetDatum(InvalidOid)));
	int			fd = DatumGetInt32(DirectFunctionCall2(be_lo_open, ObjectIdGetDatum(lo),
													   Int32GetDatum(INV_WRITE)));
	size_t		done = 0;

	while (done < len)
	{
		int			chunk = (int) Min(len - done, (size_t) (64 * 1024 * 1024));

		if (lo_write(fd, (const char *) data + done, chunk) != chunk)
			elog(ERROR, "could not write large object %u", lo);
		done += chunk;
		CHECK_FOR_INTERRUPTS();
	}
	DirectFunctionCall1(be_lo_close, Int32GetDatum(fd));
	return lo;
}

/*
 * Cross-entropy weights per class from class_weights: "balanced" (n / (C *
 * n_c) over the training rows, as scikit-learn) or {"label": weight, ...}
 * (labels not named weigh 1).
 */
static float *
class_weights(Jsonb *spec, const Dataset *ds, const int *train_rows, int n_train)
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

/* Settings a training run takes from its arguments. */
typedef struct TrainArgs
{
	char	   *model;
	char	   *base_model;		/* NULL: from scratch */
	int			epochs;
	int			batch_size;
	double		learning_rate;
	int			max_length;
	double		validation_fraction;
	int			seed;
	double		weight_decay;
	double		warmup_ratio;
	bool		freeze_encoder;
	int			accumulation;
	double		max_grad_norm;
	Jsonb	   *class_weights;	/* NULL, "balanced" or {"label": weight} */
	int			patience;		/* early stopping after this many epochs without a better validation loss; 0: off */
	bool		keep_better;	/* do not deploy a version that validates worse than the deployed one */
	char	   *split_by;		/* NULL, or the column whose newest rows are validated on */
	int			head_tail;		/* long texts cut head + tail (1), from the start (0), as the base model (-1) */
} TrainArgs;

/* Raise unless x lies in [lo, hi]. */
static void
check_range(const char *what, double x, double lo, double hi)
{
	if (!(x >= lo && x <= hi))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %.10g and %.10g, not %.10g", what, lo, hi, x)));
}

/*
 * Raise before training when the result could not be stored: an invalid
 * name, or a model whose owner role the caller is not a member of.
 */
static void
check_target(const char *name)
{
	size_t		len = strlen(name);
	Oid			types[1] = {TEXTOID};
	Datum		vals[1];
	bool		isnull;
	Datum		owns;

	for (size_t i = 0; i < len; i++)
	{
		char		ch = name[i];
		bool		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			ch == '_' || (i > 0 && (ch == '.' || ch == '-'));

		if (!ok)
			len = 0;
	}
	if (len == 0 || len > 63)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid model name \"%s\"", pgbert_quote_limit(name)),
				 errdetail("Names are 1 to 63 characters: letters, digits, \"_\", \".\" and \"-\", not starting with \".\" or \"-\".")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	vals[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args("SELECT pgbert.owns_name($1)", 1, types, vals, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not check the model's owner");
	owns = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull && !DatumGetBool(owns))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of model \"%s\" to train a new version of it", name)));
	/* a library newer than the database's SQL objects would fail only when storing the result */
	if (SPI_execute("SELECT pg_catalog.to_regprocedure('pgbert.set_decision_rule_as(regrole,text,jsonb,integer)') IS NULL",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up pgbert.set_decision_rule_as");
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the pgbert extension in this database is older than its library"),
				 errhint("Run ALTER EXTENSION pgbert UPDATE.")));
	SPI_finish();
}

/* A C string as JSON: quoted and escaped, or null. */
static char *
json_or_null(const char *s)
{
	StringInfoData buf;

	if (s == NULL)
		return "null";
	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}

/*
 * Fit the temperature on held-out rows and append it as a "calibration"
 * member: the rows, the temperature, and the cross-entropy and expected
 * calibration error (15 bins) before and after. Returns the temperature.
 */
static double
append_calibration(StringInfo out, const Dataset *ds, const int *rows, int n, const float *logits)
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
 * Record what a trained version's decision rule needs (SPI connected): the
 * label mix the loss saw (training rows per class, times the class weight),
 * and the temperature fitted on the validation rows (NAN: none).
 */
static void
store_training_rule(const char *model, int version, const Dataset *ds, const int *train_rows, int n_train,
					const float *class_weights, double temperature)
{
	double	   *mass = palloc0(sizeof(double) * ds->n_classes);
	double		total = 0.0;
	StringInfoData rule;

	for (int i = 0; i < n_train; i++)
		mass[ds->labels[train_rows[i]]] += class_weights ? class_weights[ds->labels[train_rows[i]]] : 1.0;
	for (int c = 0; c < ds->n_classes; c++)
		total += mass[c];
	initStringInfo(&rule);
	appendStringInfoString(&rule, "{\"training_priors\": {");
	for (int c = 0; c < ds->n_classes; c++)
	{
		if (c > 0)
			appendStringInfoString(&rule, ", ");
		escape_json(&rule, ds->classes[c]);
		appendStringInfo(&rule, ": %s", float8out_internal(mass[c] / total));
	}
	appendStringInfoChar(&rule, '}');
	if (!isnan(temperature))
		appendStringInfo(&rule, ", \"temperature\": %s", float8out_internal(temperature));
	appendStringInfoChar(&rule, '}');
	pgbert_store_decision_rule(model, version, rule.data);
	pfree(mass);
}

/* truncation's value: 1 for 'head_tail', 0 for 'head'. */
static int
truncation_arg(text *arg)
{
	char	   *t = text_to_cstring(arg);

	if (strcmp(t, "head_tail") == 0)
		return 1;
	if (strcmp(t, "head") == 0)
		return 0;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("truncation must be 'head' or 'head_tail', not \"%s\"", pgbert_quote_limit(t))));
	return 0;					/* keep the compiler quiet */
}

/* Check split_by names a column of the relation, and that there is something to validate on; quoted. */
static char *
split_column(Oid relid, const char *column, double validation_fraction)
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
static void
split_stratified(const Dataset *ds, double fraction, int seed, int *train_rows, int *n_train,
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
		shuffle(rows, n_c, &state);
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
static void
split_newest(const Dataset *ds, double fraction, const char *split_by, int *train_rows, int *n_train,
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

PG_FUNCTION_INFO_V1(pgbert_train_classifier);

/*
 * train_classifier(relation, text_column, label_column, model, base_model,
 * epochs, batch_size, learning_rate, max_length, validation_fraction, seed,
 * weight_decay, warmup_ratio, freeze_encoder, gradient_accumulation,
 * max_grad_norm) RETURNS jsonb
 */
Datum
pgbert_train_classifier(PG_FUNCTION_ARGS)
{
	TrainArgs	a;
	Source		src;
	Dataset		ds;
	PgbertBaseModel *base = palloc0(sizeof(PgbertBaseModel));
	Owned	   *own = new_owned();
	TrainRun   *run;
	bool		in_worker;
	char	   *blob;
	const BtTokenizer *tk;
	char	   *config_json;
	bytea	   *vocab;
	char	   *tokenizer_json;
	int			max_tokens;
	int		   *train_rows,
			   *val_rows;
	int			n_train = 0,
				n_val = 0;
	BtTrainOptions opts;
	char		err[512];
	int			batches_per_epoch,
				total_steps;
	int32	   *offsets,
			   *ids,
			   *labels;
	double		last_epoch_loss = 0.0;
	double		best_loss = 0.0;
	int			best_epoch = 0,
				epochs_run = 0;
	bool		stopped_early = false;
	int			previous_version = 0;
	double		previous_accuracy = NAN;
	double		validation_accuracy = NAN;
	double		temperature = NAN;
	instr_time	start,
				now,
				last_notice;
	double		train_seconds;
	int64		train_rows_seen = 0;
	StringInfoData metrics;
	StringInfoData log;			/* training_log rows, as JSON arrays */
	Size		blob_len;
	Oid			lo;
	int			version;
	MemoryContext fn_mcxt = CurrentMemoryContext;

	/* it ends by storing a model version: refuse before the work, not after it */
	PreventCommandIfReadOnly("train_classifier()");
	PreventCommandDuringRecovery("train_classifier()");

	for (int i = 0; i <= 2; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("relation, text_column and label_column must not be null")));
	for (int i = 5; i <= 15; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("training settings must not be null")));
	a.model = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (a.model == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model must not be null")));
	a.base_model = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	a.epochs = PG_GETARG_INT32(5);
	a.batch_size = PG_GETARG_INT32(6);
	a.learning_rate = PG_GETARG_FLOAT8(7);
	a.max_length = PG_GETARG_INT32(8);
	a.validation_fraction = PG_GETARG_FLOAT8(9);
	a.seed = PG_GETARG_INT32(10);
	a.weight_decay = PG_GETARG_FLOAT8(11);
	a.warmup_ratio = PG_GETARG_FLOAT8(12);
	a.freeze_encoder = PG_GETARG_BOOL(13);
	a.accumulation = PG_GETARG_INT32(14);
	a.max_grad_norm = PG_GETARG_FLOAT8(15);
	a.class_weights = PG_ARGISNULL(16) ? NULL : PG_GETARG_JSONB_P(16);
	a.patience = PG_ARGISNULL(17) ? 0 : PG_GETARG_INT32(17);
	a.keep_better = PG_ARGISNULL(18) ? false : PG_GETARG_BOOL(18);
	/* 0.6.0's SQL definition has no split_by or truncation (a library newer than the database's objects) */
	a.split_by = PG_NARGS() > 19 && !PG_ARGISNULL(19) ? pstrdup(NameStr(*PG_GETARG_NAME(19))) : NULL;
	a.head_tail = PG_NARGS() > 20 && !PG_ARGISNULL(20) ? truncation_arg(PG_GETARG_TEXT_PP(20)) : -1;
	check_range("epochs", a.epochs, 1, 10000);
	check_range("batch_size", a.batch_size, 1, 65536);
	check_range("learning_rate", a.learning_rate, 0, 1);
	check_range("max_length", a.max_length, 2, 1 << 20);
	check_range("validation_fraction", a.validation_fraction, 0, 0.9);
	check_range("weight_decay", a.weight_decay, 0, 1);
	check_range("warmup_ratio", a.warmup_ratio, 0, 1);
	check_range("gradient_accumulation", a.accumulation, 1, 65536);
	check_range("max_grad_norm", a.max_grad_norm, 0, 1e9);
	check_range("early_stopping_patience", a.patience, 0, 10000);
	if (a.patience > 0 && a.validation_fraction <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("early stopping needs validation rows"),
				 errhint("Set validation_fraction above 0, or early_stopping_patience to 0.")));

	src = check_source(PG_GETARG_OID(0), PG_GETARG_NAME(1), PG_GETARG_NAME(2));
	if (a.split_by)
		src.split_by = split_column(PG_GETARG_OID(0), a.split_by, a.validation_fraction);
	check_target(a.model);

	/*
	 * The starting point: a stored model's private copy, or a small random
	 * BERT. With the trainer worker ready, the model and optimizer live in its
	 * engine process (the base model's checkpoint goes there as bytes), apart
	 * from the encoder worker's, so that classify() never waits for a step.
	 */
	in_worker = pgbert_trainer_usable();
	if (a.base_model)
	{
		pgbert_load_base_model(a.base_model, base, in_worker);
		tk = base->tokenizer;
		config_json = base->config_json;
		vocab = base->vocab;
		tokenizer_json = base->tokenizer_json;
		max_tokens = Min(a.max_length, base->max_tokens);
		if (a.head_tail < 0)
			a.head_tail = base->head_tail;
	}
	else
	{
		tk = pgbert_bundled_tokenizer();
		config_json = scratch_config_json();
		vocab = bundled_vocab_bytes();
		tokenizer_json = "{\"do_lower_case\": true, \"tokenizer_class\": \"BertTokenizer\", \"model_max_length\": 512}";
		max_tokens = Min(a.max_length, 512);
	}
	a.head_tail = Max(a.head_tail, 0);

	/* the rows */
	memset(&ds, 0, sizeof(ds));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	read_classes(&src, &ds, fn_mcxt);
	if (ds.n_classes == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s has no rows with both a text and a label", src.relation)));
	if (ds.n_classes == 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s has only one label (\"%s\"); a classifier needs at least two",
						src.relation, pgbert_quote_limit(ds.classes[0]))));
	read_rows(&src, tk, max_tokens, a.head_tail, &ds, fn_mcxt, "the table");
	SPI_finish();
	if (ds.skipped > 0)
		ereport(NOTICE,
				(errmsg("skipped " INT64_FORMAT " rows with a NULL %s", ds.skipped,
						a.split_by ? "text, label or split_by value" : "text or label")));

	train_rows = palloc(sizeof(int) * ds.n);
	val_rows = palloc(sizeof(int) * ds.n);
	if (a.split_by)
		split_newest(&ds, a.validation_fraction, a.split_by, train_rows, &n_train, val_rows, &n_val);
	else
		split_stratified(&ds, a.validation_fraction, a.seed, train_rows, &n_train, val_rows, &n_val);

	/* the optimizer's settings: HF Trainer's defaults, dropout from the config, then the caller's */
	{
		BtBertConfig cfg;

		if (bt_config_parse(config_json, strlen(config_json), &cfg, err, sizeof(err)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("config of the model to train: %s", err)));
		opts = bt_train_default_options(&cfg);
		bt_config_free(&cfg);
	}
	batches_per_epoch = (n_train + a.batch_size - 1) / a.batch_size;
	total_steps = a.epochs * ((batches_per_epoch + a.accumulation - 1) / a.accumulation);
	opts.learning_rate = (float) a.learning_rate;
	opts.weight_decay = (float) a.weight_decay;
	opts.max_grad_norm = (float) a.max_grad_norm;
	opts.total_steps = total_steps;
	opts.warmup_steps = (int) ceil(a.warmup_ratio * total_steps);
	opts.seed = (uint64) a.seed;
	opts.freeze_encoder = a.freeze_encoder;
	if (a.class_weights)
		opts.class_weights = class_weights(a.class_weights, &ds, train_rows, n_train);
	run = train_run_begin(a.base_model ? base : NULL, config_json, ds.n_classes, &opts, in_worker);

	/* the epochs */
	own->progress_slot = pgbert_progress_begin(a.model, a.epochs, total_steps);
	initStringInfo(&log);
	offsets = palloc(sizeof(int32) * (a.batch_size + 1));
	ids = palloc(sizeof(int32) * (Size) a.batch_size * max_tokens);
	labels = palloc(sizeof(int32) * a.batch_size);
	INSTR_TIME_SET_CURRENT(start);
	last_notice = start;
	for (int epoch = 0; epoch < a.epochs && !stopped_early; epoch++)
	{
		uint64		state = (uint64) a.seed * 1000003 + epoch + 1;
		double		epoch_loss = 0.0,
					pending_loss = 0.0;
		int			pending = 0,
					pending_rows = 0;

		shuffle(train_rows, n_train, &state);
		for (int b = 0; b < batches_per_epoch; b++)
		{
			int			k = Min(a.batch_size, n_train - b * a.batch_size);
			BtBatch		batch;
			float		loss;

			pack(&ds, train_rows + b * a.batch_size, k, offsets, ids, labels);
			batch.n_seq = k;
			batch.offsets = offsets;
			batch.ids = ids;
			batch.type_ids = NULL;
			loss = train_run_accumulate(run, &batch, labels, 1.0f / a.accumulation);
			epoch_loss += loss * k;
			train_rows_seen += k;
			pending_loss += loss * k;
			pending_rows += k;
			if (++pending == a.accumulation || b == batches_per_epoch - 1)
			{
				float		lr,
							norm;

				train_run_step(run, &lr, &norm);
				appendStringInfo(&log, "%s[%d, %d, \"%s\", \"%s\", \"%s\", null, null]", log.len ? ", " : "",
								 epoch + 1, train_run_steps(run),
								 float8out_internal(pending_loss / pending_rows),
								 float8out_internal(lr), float8out_internal(norm));
				pending = 0;
				pending_loss = 0.0;
				pending_rows = 0;
			}
			CHECK_FOR_INTERRUPTS();

			INSTR_TIME_SET_CURRENT(now);
			INSTR_TIME_SUBTRACT(now, start);
			{
				double		elapsed = INSTR_TIME_GET_DOUBLE(now);
				double		rate = train_rows_seen / Max(elapsed, 1e-9);

				pgbert_progress_update(own->progress_slot, epoch + 1, train_run_steps(run),
									   loss, rate, ((double) a.epochs * n_train - train_rows_seen) / rate);
			}
			INSTR_TIME_SET_CURRENT(now);
			INSTR_TIME_SUBTRACT(now, last_notice);
			if (pgbert_progress_interval > 0 && INSTR_TIME_GET_DOUBLE(now) >= pgbert_progress_interval)
			{
				double		elapsed;
				double		rate;
				int			steps = train_run_steps(run);

				INSTR_TIME_SET_CURRENT(last_notice);
				now = last_notice;
				INSTR_TIME_SUBTRACT(now, start);
				elapsed = INSTR_TIME_GET_DOUBLE(now);
				rate = train_rows_seen / elapsed;
				ereport(NOTICE,
						(errmsg("epoch %d/%d, step %d/%d, loss %.4f, %.1f rows/s, about %.0f s left",
								epoch + 1, a.epochs, steps, total_steps, loss, rate,
								((double) a.epochs * n_train - train_rows_seen) / rate)));
			}
		}
		last_epoch_loss = n_train ? epoch_loss / n_train : 0.0;
		epochs_run = epoch + 1;
		if (n_val > 0)
		{
			double		acc,
						vloss;

			evaluate(run, &ds, val_rows, n_val, max_tokens, NULL, NULL, &acc, &vloss, NULL);
			epochs_run = epoch + 1;
			if (a.patience > 0)
			{
				if (best_epoch == 0 || vloss < best_loss)
				{
					/* keep the best epoch's weights, as load_best_model_at_end does */
					train_run_snapshot(run);
					best_loss = vloss;
					best_epoch = epoch + 1;
				}
				else if (epoch + 1 - best_epoch >= a.patience)
					stopped_early = true;
			}
			appendStringInfo(&log, "%s[%d, %d, \"%s\", null, null, \"%s\", \"%s\"]", log.len ? ", " : "", epoch + 1,
							 train_run_steps(run), float8out_internal(last_epoch_loss),
							 float8out_internal(vloss), float8out_internal(acc));
			if (pgbert_progress_interval > 0)
				ereport(NOTICE,
						(errmsg("epoch %d/%d done: train loss %.4f, validation loss %.4f, accuracy %.4f",
								epoch + 1, a.epochs, last_epoch_loss, vloss, acc)));
		}
	}
	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	train_seconds = INSTR_TIME_GET_DOUBLE(now);
	if (a.patience > 0 && best_epoch > 0 && best_epoch != epochs_run)
		train_run_restore(run);

	/* metrics on the held-out rows, and the temperature that calibrates the scores there */
	initStringInfo(&metrics);
	appendStringInfoString(&metrics, "{\"validation\": {");
	if (n_val > 0)
	{
		float	   *val_logits = palloc(sizeof(float) * (Size) n_val * ds.n_classes);

		evaluate(run, &ds, val_rows, n_val, max_tokens, NULL, &metrics, &validation_accuracy, NULL, val_logits);
		appendStringInfoString(&metrics, "}, ");
		temperature = append_calibration(&metrics, &ds, val_rows, n_val, val_logits);
		pfree(val_logits);
	}
	else
		appendStringInfoChar(&metrics, '}');
	appendStringInfo(&metrics, ", \"train_loss\": %s, \"rows_used\": %d, \"rows_skipped\": " INT64_FORMAT
					 ", \"train_rows\": %d, \"validation_rows\": %d, \"epochs\": %d, \"steps\": %d, "
					 "\"best_epoch\": %d, \"stopped_early\": %s, "
					 "\"train_seconds\": %s, \"train_rows_per_s\": %s, \"settings\": {\"base_model\": ",
					 float8out_internal(last_epoch_loss), ds.n, ds.skipped, n_train, n_val, epochs_run,
					 train_run_steps(run), a.patience > 0 ? best_epoch : epochs_run,
					 stopped_early ? "true" : "false", float8out_internal(train_seconds),
					 float8out_internal(train_rows_seen / Max(train_seconds, 1e-9)));
	if (a.base_model)
		appendStringInfo(&metrics, "\"%s\", \"base_version\": %d", base->name, base->version);
	else
		appendStringInfoString(&metrics, "null");
	appendStringInfo(&metrics, ", \"batch_size\": %d, \"learning_rate\": %s, \"max_length\": %d, "
					 "\"validation_fraction\": %s, \"seed\": %d, \"weight_decay\": %s, \"warmup_ratio\": %s, "
					 "\"freeze_encoder\": %s, \"gradient_accumulation\": %d, \"max_grad_norm\": %s, "
					 "\"early_stopping_patience\": %d, \"keep_better\": %s, \"split_by\": %s, "
					 "\"truncation\": \"%s\", \"cpu_threads\": %d, \"ran_in\": \"%s\"}}",
					 a.batch_size, float8out_internal(a.learning_rate), max_tokens,
					 float8out_internal(a.validation_fraction), a.seed, float8out_internal(a.weight_decay),
					 float8out_internal(a.warmup_ratio), a.freeze_encoder ? "true" : "false",
					 a.accumulation, float8out_internal(a.max_grad_norm), a.patience,
					 a.keep_better ? "true" : "false", json_or_null(a.split_by),
					 a.head_tail ? "head_tail" : "head",
					 in_worker ? pgbert_training_threads : pgbert_cpu_threads,
					 in_worker ? "trainer" : "session");

	/* store: weights into a new large object, then the next version through import_model */
	blob = train_run_save(run, &blob_len);
	train_run_end(run);
	lo = write_large_object((const uint8_t *) blob, blob_len);
	if (a.keep_better)
	{
		Oid			types[1] = {TEXTOID};
		Datum		vals[1] = {CStringGetTextDatum(a.model)};
		bool		isnull;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_with_args("SELECT version, (metrics->'validation'->>'accuracy')::float8 FROM pgbert.models "
								  "WHERE name = $1 AND deployed", 1, types, vals, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the deployed version");
		if (SPI_processed == 1)
		{
			Datum		acc = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

			previous_version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			previous_accuracy = isnull ? NAN : DatumGetFloat8(acc);
		}
		SPI_finish();
	}
	pfree(blob);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			types[7] = {TEXTOID, OIDOID, TEXTOID, BYTEAOID, TEXTOID, TEXTARRAYOID, TEXTOID};
		Datum		vals[7];
		char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
		Datum	   *label_datums = palloc(sizeof(Datum) * ds.n_classes);
		char	   *q;
		bool		isnull;

		for (int c = 0; c < ds.n_classes; c++)
			label_datums[c] = CStringGetTextDatum(ds.classes[c]);
		vals[0] = CStringGetTextDatum(a.model);
		vals[1] = ObjectIdGetDatum(lo);
		vals[2] = CStringGetTextDatum(config_json);
		vals[3] = PointerGetDatum(vocab);
		vals[4] = tokenizer_json ? CStringGetTextDatum(tokenizer_json) : (Datum) 0;
		nulls[4] = tokenizer_json ? ' ' : 'n';
		vals[5] = PointerGetDatum(construct_array(label_datums, ds.n_classes, TEXTOID, -1, false, TYPALIGN_INT));
		vals[6] = a.base_model ? CStringGetTextDatum(psprintf("%s v%d", base->name, base->version)) : (Datum) 0;
		nulls[6] = a.base_model ? ' ' : 'n';
		q = psprintf("SELECT %s($1, $2, ($3::jsonb - 'pgbert_truncation') || jsonb_build_object(%s"
					 "'architectures', jsonb_build_array('BertForSequenceClassification'), "
					 "'id2label', (SELECT jsonb_object_agg((i - 1)::text, $6[i]) FROM generate_subscripts($6, 1) i), "
					 "'label2id', (SELECT jsonb_object_agg($6[i], i - 1) FROM generate_subscripts($6, 1) i)), "
					 "$4, coalesce($5::jsonb, '{}') || jsonb_build_object('model_max_length', %d), $6, $7)",
					 pgbert_extension_function("import_model"),
					 a.head_tail ? "'pgbert_truncation', 'head_tail', " : "", max_tokens);
		if (SPI_execute_with_args(q, 7, types, vals, nulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not record the trained model");
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		{
			Oid			utypes[4] = {JSONBOID, TEXTOID, INT4OID, JSONBOID};
			Datum		uvals[4];

			uvals[0] = DirectFunctionCall1(jsonb_in, CStringGetDatum(metrics.data));
			uvals[1] = CStringGetTextDatum(a.model);
			uvals[2] = Int32GetDatum(version);
			/* numbers travel as JSON strings: float8in reads NaN and Infinity, JSON numbers cannot */
			uvals[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(psprintf("[%s]", log.data)));
			if (SPI_execute_with_args("SELECT pgbert.record_training($2, $3, $1, $4)",
									  4, utypes, uvals, NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "could not store the metrics and the training log");
		}
		store_training_rule(a.model, version, &ds, train_rows, n_train, opts.class_weights, temperature);
	}
	/* keep_better: a version that validates worse than the deployed one is kept, not deployed */
	{
		bool		deployed;
		Oid			types[2] = {TEXTOID, INT4OID};
		Datum		vals[2] = {CStringGetTextDatum(a.model), Int32GetDatum(previous_version)};
		bool		isnull;

		if (a.keep_better && previous_version > 0 && n_val > 0 && !isnan(previous_accuracy) &&
			validation_accuracy < previous_accuracy)
		{
			if (SPI_execute_with_args(psprintf("SELECT %s($1, $2)", pgbert_extension_function("deploy_model")),
									  2, types, vals, NULL, false, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not keep the deployed version");
			ereport(NOTICE,
					(errmsg("version %d of model \"%s\" validates worse than version %d (accuracy %.4f < %.4f); "
							"version %d stays deployed", version, a.model, previous_version,
							validation_accuracy, previous_accuracy, previous_version)));
		}
		/* not read-only: it must see the version import_model just added */
		if (SPI_execute_with_args("SELECT pgbert.resolve_version($1)", 1, types, vals, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not resolve the deployed version");
		deployed = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) == version;
		SPI_finish();

	{
		StringInfoData result;

		initStringInfo(&result);
		appendStringInfoString(&result, "{\"model\": ");
		escape_json(&result, a.model);
		appendStringInfo(&result, ", \"version\": %d, \"deployed\": %s, \"metrics\": %s}", version,
						 deployed ? "true" : "false", metrics.data);
		PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(result.data)));
	}
	}
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
	*src = check_source(PG_GETARG_OID(0), PG_GETARG_NAME(1), PG_GETARG_NAME(2));
	pgbert_load_base_model(name, base, false);
	if (base->model->num_classes == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("model \"%s\" has no classification head", name)));

	/* the model's labels, in its order */
	memset(ds, 0, sizeof(*ds));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			types[2] = {TEXTOID, INT4OID};
		Datum		vals[2] = {CStringGetTextDatum(base->name), Int32GetDatum(base->version)};

		if (SPI_execute_with_args("SELECT unnest(labels) FROM pgbert.model_versions WHERE name = $1 AND version = $2",
								  2, types, vals, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the model's labels");
		ds->n_classes = (int) SPI_processed;
		ds->classes = MemoryContextAlloc(fn_mcxt, sizeof(char *) * Max(ds->n_classes, 1));
		for (int c = 0; c < ds->n_classes; c++)
			ds->classes[c] = MemoryContextStrdup(fn_mcxt,
												 SPI_getvalue(SPI_tuptable->vals[c], SPI_tuptable->tupdesc, 1));
	}
	read_rows(src, base->tokenizer, base->max_tokens, base->head_tail, ds, fn_mcxt,
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

/* Rows 0..n-1 of a dataset, in order. */
static int *
all_rows(const Dataset *ds)
{
	int		   *rows = palloc(sizeof(int) * ds->n);

	for (int r = 0; r < ds->n; r++)
		rows[r] = r;
	return rows;
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
	evaluate(train_run_wrap(base->model), &ds, all_rows(&ds), ds.n, base->max_tokens, &decision, &out, NULL, NULL,
			 NULL);
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
	rows = all_rows(&ds);
	logits = palloc(sizeof(float) * (Size) ds.n * ds.n_classes);
	evaluate(train_run_wrap(base->model), &ds, rows, ds.n, base->max_tokens, NULL, NULL, NULL, NULL, logits);

	initStringInfo(&out);
	appendStringInfo(&out, "{\"model\": ");
	escape_json(&out, base->name);
	appendStringInfo(&out, ", \"version\": %d, \"installed\": %s, ", base->version, install ? "true" : "false");
	t = append_calibration(&out, &ds, rows, ds.n, logits);
	appendStringInfoChar(&out, '}');
	if (install)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		pgbert_store_decision_rule(base->name, base->version,
								   psprintf("{\"temperature\": %s}", float8out_internal(t)));
		SPI_finish();
	}
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}
