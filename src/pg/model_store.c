/*
 * model_store.c - model versions from the catalog and their large objects,
 * loaded once per backend and kept in a bounded cache.
 *
 * A call site resolves its model name to a catalog row once per statement
 * (so a statement sees one version, and the next statement sees a redeploy),
 * checks that the current role may read the weights, and finds the loaded
 * version by row id or loads it: the whole large object is read through the
 * fd-style API and handed to the engine, which converts it to float32 in one
 * allocation. Older versions of a name are freed when a newer one is
 * resolved; least recently used versions go when the cache is over
 * pgbert.model_cache_size.
 */
#include "postgres.h"

#include <limits.h>

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "libpq/be-fsstubs.h"
#include "libpq/libpq-fs.h"
#include "miscadmin.h"
#include "storage/large_object.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "config.h"
#include "model_store.h"
#include "pg_compat.h"
#include "quote.h"
#include "safetensors.h"
#include "session_engine.h"
#include "vocab.h"

#define MAX_CACHED 64

/* settings: pgbert.default_model, pgbert.model_cache_size */
static char *pgbert_default_model = NULL;
static int	pgbert_model_cache_mb = 1024;

static PgbertModel *cache[MAX_CACHED];
static int	n_cached = 0;
static uint64 use_clock = 0;

/* What a call site remembers between rows of one statement. */
typedef struct CallSiteModel
{
	LocalTransactionId lxid;
	TimestampTz stmt_start;
	char	   *name;			/* as given; NULL = default */
	int64		id;				/* resolved catalog row */
} CallSiteModel;

/* A resolved catalog row. */
typedef struct ResolvedRow
{
	int64		id;
	int32		version;
	Oid			weights;
	bool		weights_exist;	/* its large object, in the statement's snapshot */
	uint64		stamp;			/* the row's version: xmin and ctid */
	char	   *name;
} ResolvedRow;

/* ---- the engine's pieces of one version ---- */

/* The tokenizer side of a version. */
typedef struct BuiltTokenizer
{
	BtTokenizer *tokenizer;
	int			max_tokens;
	int			hidden_size;	/* from the config, read here anyway */
	bool		head_tail;		/* config "pgbert_truncation": "head_tail" */
} BuiltTokenizer;

/* The weights side of a version. */
typedef struct BuiltWeights
{
	BtBertModel *model;
	Size		blob_len;		/* bytes of model.safetensors */
	char		notes[1024];	/* unused tensors */
} BuiltWeights;

/* Read a whole large object into palloc'd memory, as the current role. */
static char *
read_large_object(Oid weights, Size *len)
{
	int			fd;
	int64		size;
	char	   *buf;
	Size		done = 0;

	fd = DatumGetInt32(DirectFunctionCall2(be_lo_open, ObjectIdGetDatum(weights),
										   Int32GetDatum(INV_READ)));
	size = DatumGetInt64(DirectFunctionCall3(be_lo_lseek64, Int32GetDatum(fd),
											 Int64GetDatum(0), Int32GetDatum(SEEK_END)));
	DirectFunctionCall3(be_lo_lseek64, Int32GetDatum(fd), Int64GetDatum(0), Int32GetDatum(SEEK_SET));
	if (size <= 0 || (uint64) size > MaxAllocHugeSize)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("large object %u holds %lld bytes, not a checkpoint", weights, (long long) size)));
	buf = MemoryContextAllocHuge(CurrentMemoryContext, (Size) size);
	while (done < (Size) size)
	{
		int			chunk = (int) Min((Size) size - done, (Size) (64 * 1024 * 1024));
		int			n = lo_read(fd, buf + done, chunk);

		if (n <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("large object %u ended after %zu of %lld bytes", weights, done, (long long) size)));
		done += n;
		CHECK_FOR_INTERRUPTS();
	}
	DirectFunctionCall1(be_lo_close, Int32GetDatum(fd));
	*len = done;
	return buf;
}

/* Raise unless the current role may read a large object (PostgreSQL's rule, clearer words). */
static void
check_weights_readable(const char *name, int32 version, Oid weights)
{
	if (lo_compat_privileges)
		return;
	if (pg_largeobject_aclcheck_snapshot(weights, GetUserId(), ACL_SELECT, NULL) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for model \"%s\"", name),
				 errdetail("Role %s may not read the weights of version %d (large object %u).",
						   GetUserNameFromId(GetUserId(), false), version, weights),
				 errhint("The model's owner can run SELECT grant_model('%s', '%s').",
						 name, GetUserNameFromId(GetUserId(), false))));
}

/* Raise unless a resolved version's large object exists (the words be_lo_open uses). */
static void
check_weights_exist(const ResolvedRow *row)
{
	Oid			weights = row->weights;

	if (!row->weights_exist)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("large object %u does not exist", weights)));
}

/*
 * The outputs of a checkpoint's classification head, from its safetensors
 * header only (a few kB of the large object, read as the current role): 0
 * without a head, -1 when the header does not say (loading the checkpoint
 * refuses it then, in this backend or in the encoder worker alike).
 */
static int
read_head_rows(Oid weights)
{
	int			fd;
	int64		size;
	uint8		lenbuf[8];
	uint64		hlen = 0;
	char	   *header;
	Size		done = 0;
	int			rows = -1;

	fd = DatumGetInt32(DirectFunctionCall2(be_lo_open, ObjectIdGetDatum(weights),
										   Int32GetDatum(INV_READ)));
	size = DatumGetInt64(DirectFunctionCall3(be_lo_lseek64, Int32GetDatum(fd),
											 Int64GetDatum(0), Int32GetDatum(SEEK_END)));
	DirectFunctionCall3(be_lo_lseek64, Int32GetDatum(fd), Int64GetDatum(0), Int32GetDatum(SEEK_SET));
	if (size >= 8 && lo_read(fd, (char *) lenbuf, 8) == 8)
		for (int i = 7; i >= 0; i--)
			hlen = (hlen << 8) | lenbuf[i];
	if (hlen > 0 && hlen <= (uint64) (size - 8) && hlen <= BT_SAFETENSORS_MAX_HEADER)
	{
		header = palloc(hlen);
		while (done < hlen)
		{
			int			n = lo_read(fd, header + done, (int) (hlen - done));

			if (n <= 0)
				break;
			done += n;
		}
		if (done == hlen)
			rows = bt_safetensors_head_rows(header, hlen);
		pfree(header);
	}
	DirectFunctionCall1(be_lo_close, Int32GetDatum(fd));
	return rows;
}

/* Parse config.json, raising on errors. */
static void
parse_config(const char *config_json, BtBertConfig *cfg)
{
	char		err[512];

	if (bt_config_parse(config_json, strlen(config_json), cfg, err, sizeof(err)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid model config: %s", err)));
}

/*
 * Validate and build the tokenizer of a version: vocabulary, tokenizer
 * settings, and the longest input (from the config). Engine allocations are
 * freed before any ereport.
 */
static void
build_tokenizer(const char *config_json, const char *vocab, Size vocab_len,
				const char *tokenizer_json, BuiltTokenizer *out)
{
	char		err[512];
	BtBertConfig cfg;
	BtTokenizerConfig tc = {1, -1, 1, 512};
	BtTokenizerOptions opts;
	BtVocab    *v;
	int			vocab_size,
				max_position;

	memset(out, 0, sizeof(*out));
	parse_config(config_json, &cfg);
	vocab_size = cfg.vocab_size;
	max_position = cfg.max_position;
	out->hidden_size = cfg.hidden_size;
	out->head_tail = cfg.head_tail != 0;
	bt_config_free(&cfg);
	if (tokenizer_json && bt_tokenizer_config_parse(tokenizer_json, strlen(tokenizer_json),
													&tc, err, sizeof(err)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tokenizer config: %s", err)));
	v = bt_vocab_parse(vocab, vocab_len, err, sizeof(err));
	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid vocabulary: %s", err)));
	if ((int64) v->size > vocab_size)
	{
		uint32		n = v->size;

		bt_vocab_free(v);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("vocabulary has %u tokens but the model's vocab_size is %d", n, vocab_size)));
	}
	opts = bt_tokenizer_default_options();
	opts.lowercase = tc.do_lower_case != 0;
	opts.strip_accents = tc.strip_accents;
	opts.chinese_chars = tc.tokenize_chinese_chars != 0;
	out->tokenizer = bt_tokenizer_create(v, &opts, err, sizeof(err));
	if (out->tokenizer == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid vocabulary: %s", err)));
	if (out->tokenizer->cls_id < 0 || out->tokenizer->sep_id < 0)
	{
		bt_tokenizer_free(out->tokenizer);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid vocabulary: it has no [CLS] or [SEP] token")));
	}
	out->max_tokens = Min(tc.model_max_length, max_position);
	if (out->max_tokens < 2)
	{
		int			n = out->max_tokens;

		bt_tokenizer_free(out->tokenizer);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the model takes at most %d tokens; [CLS] and [SEP] alone need 2", n)));
	}
}

/*
 * Read a version's weights from its large object and build the model,
 * validated against the config. Nothing of the engine's is held while
 * PostgreSQL may ereport.
 */
static void
build_weights(Oid weights, const char *config_json, BuiltWeights *out)
{
	char		err[512];
	BtBertConfig cfg;
	BtSafetensors *st;
	char	   *blob;

	memset(out, 0, sizeof(*out));
	blob = read_large_object(weights, &out->blob_len);
	parse_config(config_json, &cfg);
	st = bt_safetensors_parse((const uint8_t *) blob, out->blob_len, err, sizeof(err));
	if (st == NULL)
	{
		bt_config_free(&cfg);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("large object %u is not a valid safetensors checkpoint: %s", weights, err)));
	}
	out->model = bt_model_load(&cfg, st, out->notes, sizeof(out->notes), err, sizeof(err));
	bt_safetensors_free(st);
	pfree(blob);
	if (out->model == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("checkpoint in large object %u does not fit its config: %s", weights, err)));
}

/* ---- the cache ---- */

/* Free one cached version and drop it from the list. */
static void
evict(int i)
{
	PgbertModel *pm = cache[i];

	if (pm->model)
		bt_model_free(pm->model);
	bt_tokenizer_free(pm->tokenizer);
	MemoryContextDelete(pm->mcxt);
	cache[i] = cache[--n_cached];
}

/* Cached version by catalog id, or -1. */
static int
find_cached(int64 id)
{
	for (int i = 0; i < n_cached; i++)
		if (cache[i]->id == id)
			return i;
	return -1;
}

/* Free cached versions of a name other than keep_id (0: all of them). */
static void
evict_name(const char *name, int64 keep_id)
{
	for (int i = n_cached - 1; i >= 0; i--)
		if (strcmp(cache[i]->name, name) == 0 && cache[i]->id != keep_id)
			evict(i);
}

/* Evict least recently used versions, except keep, until the cache fits its budget. */
static void
enforce_budget(PgbertModel *keep)
{
	Size		budget = (Size) pgbert_model_cache_mb * 1024 * 1024;

	for (;;)
	{
		Size		total = 0;
		int			victim = -1;

		for (int i = 0; i < n_cached; i++)
		{
			total += cache[i]->bytes;
			if (cache[i] != keep && (victim < 0 || cache[i]->last_used < cache[victim]->last_used))
				victim = i;
		}
		if (total <= budget || victim < 0)
			break;
		evict(victim);
	}
}

/* Error context: which model a failure happened in. */
static void
loading_context(void *arg)
{
	PgbertModel *pm = arg;

	errcontext("loading model \"%s\" version %d", pm->name, pm->version);
}

/*
 * Run sql, a query of one catalog row by id, prepared once into *plan (SPI
 * connected); the row is SPI_tuptable->vals[0]. Raises when the row is gone.
 */
static void
read_version_row(SPIPlanPtr *plan, const char *sql, int64 id, const char *name, int version)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(id)};

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, 1, argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the model query");
		*plan = p;
	}
	if (SPI_execute_plan(*plan, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" version %d disappeared while loading", name, version)));
}

/*
 * Load a resolved row into the cache: its tokenizer, labels and config. The
 * weights follow on the first forward pass (load_weights), so tokenizing
 * with a model's vocabulary does not read its large object.
 */
static PgbertModel *
load_version(const ResolvedRow *row)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *volatile tokenizer_json = NULL;
	bytea	   *vocab;
	ArrayType  *labels;
	Datum	   *label_datums;
	int			n_labels;
	BuiltTokenizer built;
	PgbertModel *pm;
	MemoryContext mcxt,
				old;
	ErrorContextCallback errcb;
	PgbertModel context_only = {.name = row->name, .version = row->version};

	errcb.callback = loading_context;
	errcb.arg = &context_only;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (n_cached == MAX_CACHED)
		enforce_budget(NULL);
	if (n_cached == MAX_CACHED)
		evict(0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* to_jsonb: a database not yet updated to 0.7.0 has no decision_rule column */
	read_version_row(&plan, "SELECT config::text, vocab, tokenizer_config::text, labels, "
					 "(to_jsonb(v) -> 'decision_rule')::text "
					 "FROM pgbert.model_versions v WHERE id = $1", row->id, row->name, row->version);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	vocab = DatumGetByteaPP(SPI_getbinval(tup, desc, 2, &isnull));
	{
		Datum		d = SPI_getbinval(tup, desc, 3, &isnull);

		if (!isnull)
			tokenizer_json = TextDatumGetCString(d);
	}
	labels = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 4, &isnull));
	deconstruct_array(labels, TEXTOID, -1, false, TYPALIGN_INT, &label_datums, NULL, &n_labels);

	/* everything PostgreSQL-side first, so only the tokenizer can be left unowned */
	mcxt = AllocSetContextCreate(TopMemoryContext, "pgbert model", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(mcxt);
	pm = palloc0(sizeof(PgbertModel));
	pm->mcxt = mcxt;
	pm->name = pstrdup(row->name);
	pm->config_json = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
	pm->labels = palloc(sizeof(char *) * Max(n_labels, 1));
	for (int i = 0; i < n_labels; i++)
		pm->labels[i] = TextDatumGetCString(label_datums[i]);
	{
		Datum		rule = SPI_getbinval(tup, desc, 5, &isnull);

		pgbert_decision_parse(isnull ? NULL : TextDatumGetCString(rule), pm->labels, n_labels, &pm->decision);
	}
	MemoryContextSwitchTo(old);

	PG_TRY();
	{
		build_tokenizer(pm->config_json, VARDATA_ANY(vocab), VARSIZE_ANY_EXHDR(vocab),
						tokenizer_json, &built);
	}
	PG_CATCH();
	{
		MemoryContextDelete(mcxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pm->id = row->id;
	pm->version = row->version;
	pm->weights = row->weights;
	pm->stamp = row->stamp;
	pm->head_rows = PGBERT_HEAD_UNREAD;
	pm->tokenizer = built.tokenizer;
	pm->max_tokens = built.max_tokens;
	pm->head_tail = built.head_tail;
	pm->num_labels = n_labels;
	pm->hidden_size = built.hidden_size;
	pm->bytes = VARSIZE_ANY_EXHDR(vocab) * 3;
	cache[n_cached++] = pm;
	SPI_finish();
	error_context_stack = errcb.previous;
	return pm;
}

/*
 * What a forward pass of a version needs, checked here before it runs, in
 * this backend or in the encoder worker alike: the catalog's labels name the
 * head's outputs (an encoder without a head has none). The head is read from
 * the checkpoint's header once per cached version; a changed catalog row is
 * another cached version (pgbert_model_for_site).
 */
static void
check_labels_fit_head(PgbertModel *pm)
{
	if (pm->head_rows == PGBERT_HEAD_UNREAD)
	{
		ErrorContextCallback errcb;

		errcb.callback = loading_context;
		errcb.arg = pm;
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
		pm->head_rows = read_head_rows(pm->weights);
		error_context_stack = errcb.previous;
	}
	if (pm->head_rows >= 0 && pm->head_rows != pm->num_labels)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("label set mismatch: the classifier has %d outputs but the catalog lists %d labels",
						pm->head_rows, pm->num_labels)));
}

/* Read a cached version's weights, on its first forward pass. */
static void
load_weights(PgbertModel *pm)
{
	BuiltWeights built;
	ErrorContextCallback errcb;

	errcb.callback = loading_context;
	errcb.arg = pm;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	build_weights(pm->weights, pm->config_json, &built);
	if (built.model->num_classes != pm->num_labels)
	{
		int			n = built.model->num_classes;

		bt_model_free(built.model);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("label set mismatch: the classifier has %d outputs but the catalog lists %d labels",
						n, pm->num_labels)));
	}
	{
		char		err[256];

		/* classify() only runs forward passes on it: pack its weights for the CPU kernel */
		if (bt_model_pack(built.model, err, sizeof(err)) != 0)
		{
			bt_model_free(built.model);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("%s", err)));
		}
	}
	pm->model = built.model;
	pm->bytes += built.model->num_params * sizeof(float);
	error_context_stack = errcb.previous;
}

/* The in-process path's weights, loaded on first need. */
void
pgbert_model_ensure_weights(PgbertModel *pm)
{
	if (pm->model != NULL)
		return;
	load_weights(pm);
	enforce_budget(pm);
}

/* Switch a cached version to the session's pgbert.cpu_precision, converting once. */
void
pgbert_model_use_precision(PgbertModel *pm)
{
	BtBertModel *m = pm->model;
	bool		int8 = pgbert_cpu_precision == PGBERT_CPU_INT8;
	char		err[256];

	if (pgbert_cpu_precision == PGBERT_CPU_BF16)
	{
		size_t		had = bt_model_bf16_bytes(m);
		int			rc = bt_model_to_bf16(m, err, sizeof(err));

		if (rc == -2)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("pgbert.cpu_precision = bf16 is not available on this CPU"),
					 errdetail("%s.", err),
					 errhint("SET pgbert.cpu_precision = fp32 (or int8).")));
		if (rc != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("%s", err)));
		pm->bytes += bt_model_bf16_bytes(m) - had;
		enforce_budget(pm);
		return;
	}
	m->use_bf16 = false;
	/* packed means this CPU has AVX2; without it the setting changes nothing */
	if (int8 && m->n_q8 == 0 && m->packed)
	{
		if (bt_model_quantize(m, err, sizeof(err)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("%s", err)));
		pm->bytes += bt_model_q8_bytes(m);
		enforce_budget(pm);
	}
	m->use_q8 = int8;
}

/* The weights as bytes, for handing them to the encoder worker. */
char *
pgbert_read_checkpoint(PgbertModel *pm, Size *len)
{
	ErrorContextCallback errcb;
	char	   *blob;

	errcb.callback = loading_context;
	errcb.arg = pm;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	blob = read_large_object(pm->weights, len);
	error_context_stack = errcb.previous;
	return blob;
}

/* ---- resolving names ---- */

/*
 * Whether this database runs Citus: its worker nodes run classify() in sessions that
 * have none of the coordinator's settings, and hold only the models copied to them.
 */
static bool
in_citus_database(void)
{
	return OidIsValid(get_extension_oid("citus", true));
}

/* The default model's name: the setting, else the only stored name. */
static char *
default_model_name(void)
{
	if (pgbert_default_model && pgbert_default_model[0] != '\0')
		return pstrdup(pgbert_default_model);
	if (SPI_execute("SELECT DISTINCT name FROM pgbert.model_versions ORDER BY 1 LIMIT 2", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list models");
	if (SPI_processed == 0)
	{
		bool		citus = in_citus_database();

		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no model is stored"),
				 citus ?
				 errhint("Under Citus every node needs the model: distribute_model() on the coordinator copies it.") :
				 errhint("Import one with import_model() or the pgbert_import program.")));
	}
	if (SPI_processed > 1)
	{
		bool		citus = in_citus_database();

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no model given and pgbert.default_model is not set"),
				 errdetail("Several models are stored, so there is no single default."),
				 citus ?
				 errhint("Pass model => 'name'. Under Citus a SET on the coordinator does not reach the "
						 "worker nodes: set pgbert.default_model for the database on every node "
						 "(ALTER DATABASE ... SET), or use SET LOCAL with citus.propagate_set_commands = 'local'.") :
				 errhint("Pass model => 'name', or SET pgbert.default_model = 'name'.")));
	}
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* Catalog row a name serves now (pinned, else latest version). */
static ResolvedRow
resolve_name(const char *given)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	ResolvedRow row;
	MemoryContext caller = CurrentMemoryContext;
	char	   *name;

	if (get_namespace_oid("pgbert", true) == InvalidOid)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("schema \"pgbert\" does not exist"),
				 errhint("Run CREATE EXTENSION pgbert in this database.")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare("SELECT v.id, v.version, v.weights, v.xmin, v.ctid, "
									"EXISTS (SELECT FROM pg_catalog.pg_largeobject_metadata l WHERE l.oid = v.weights) "
									"FROM pgbert.model_versions v "
									"WHERE v.name = $1 AND v.version = "
									"(SELECT coalesce((SELECT d.version FROM pgbert.deployments d WHERE d.name = $1), "
									"max(m.version)) FROM pgbert.model_versions m WHERE m.name = $1)",
									1, argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the model resolution query");
		plan = p;
	}
	name = given ? pstrdup(given) : default_model_name();
	args[0] = CStringGetTextDatum(name);
	if (SPI_execute_plan(plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "model resolution query failed");
	if (SPI_processed == 0)
	{
		bool		citus = in_citus_database();

		evict_name(name, 0);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", pgbert_quote_limit(name)),
				 citus ?
				 errhint("Under Citus every node needs the model: SELECT * FROM distribute_model('%s') "
						 "on the coordinator copies it, and cluster_models() there lists each node's version.",
						 pgbert_quote_limit(name)) :
				 errhint("SELECT name, version FROM pgbert.models lists the stored models.")));
	}
	row.id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	row.version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	row.weights = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	{
		TransactionId xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0],
																 SPI_tuptable->tupdesc, 4, &isnull));
		ItemPointer ctid = (ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 5, &isnull));

		row.weights_exist = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6,
													   &isnull));
		/* any UPDATE of the row (labels, config, weights) gives another stamp */
		row.stamp = ((uint64) xmin << 32) ^
			((uint64) ItemPointerGetBlockNumber(ctid) << 16) ^ ItemPointerGetOffsetNumber(ctid);
	}
	row.name = MemoryContextStrdup(caller, name);
	SPI_finish();
	return row;
}

/*
 * Mark a cached version used now, check its labels against its head when it
 * will run, and load its weights when they are needed here; true when it
 * loaded them.
 */
static bool
ready_for_use(PgbertModel *pm, bool run, bool need_weights)
{
	pm->last_used = ++use_clock;
	if (run)
		check_labels_fit_head(pm);
	if (need_weights && pm->model == NULL)
	{
		load_weights(pm);
		return true;
	}
	return false;
}

/* A call site's model: its model argument resolved once per statement. */
PgbertModel *
pgbert_model_for_call(FunctionCallInfo fcinfo, int model_argno, PgbertModelUse use)
{
	char	   *given = PG_ARGISNULL(model_argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(model_argno));

	return pgbert_model_for_site(&fcinfo->flinfo->fn_extra, fcinfo->flinfo->fn_mcxt, given, use);
}

/* The same for the batching node, which has no fcinfo. */
PgbertModel *
pgbert_model_for_site(void **site_extra, MemoryContext site_mcxt, const char *given, PgbertModelUse use)
{
	bool		run = use != PGBERT_USE_TOKENIZER;
	bool		need_weights = use == PGBERT_USE_SESSION;
	CallSiteModel *site = *site_extra;
	int			i;
	PgbertModel *pm;

	if (site == NULL)
	{
		site = MemoryContextAllocZero(site_mcxt, sizeof(CallSiteModel));
		*site_extra = site;
	}

	/* same statement, same name: the row resolved for the first row */
	if (site->id != 0 && site->lxid == pgbert_my_lxid() &&
		site->stmt_start == GetCurrentStatementStartTimestamp() &&
		((given == NULL && site->name == NULL) ||
		 (given != NULL && site->name != NULL && strcmp(given, site->name) == 0)) &&
		(i = find_cached(site->id)) >= 0)
	{
		pm = cache[i];
		if (ready_for_use(pm, run, need_weights))
			enforce_budget(pm);
		return pm;
	}

	{
		ResolvedRow row = resolve_name(given);

		/*
		 * Every statement that runs the model checks the caller's privilege,
		 * that the weights exist and that the labels fit the head, wherever
		 * the forward pass then runs: cached weights here, or the encoder
		 * worker's copy, never stand in for the catalog.
		 */
		check_weights_readable(row.name, row.version, row.weights);
		if (run)
			check_weights_exist(&row);
		evict_name(row.name, row.id);
		i = find_cached(row.id);
		if (i >= 0 && cache[i]->stamp != row.stamp)
		{
			evict(i);			/* the row was updated since it was loaded: load it again */
			i = -1;
		}
		pm = i >= 0 ? cache[i] : load_version(&row);
		pm->uses++;
		ready_for_use(pm, run, need_weights);
		enforce_budget(pm);

		if (site->name)
			pfree(site->name);
		site->name = given ? MemoryContextStrdup(site_mcxt, given) : NULL;
		site->id = row.id;
		site->lxid = pgbert_my_lxid();
		site->stmt_start = GetCurrentStatementStartTimestamp();
	}
	return pm;
}

/* ---- private copies, for training ---- */

/* Engine objects of a base model copy, freed when their memory context goes. */
static void
free_base_model(void *arg)
{
	PgbertBaseModel *b = arg;

	if (b->model)
		bt_model_free(b->model);
	if (b->tokenizer)
		bt_tokenizer_free(b->tokenizer);
	b->model = NULL;
	b->tokenizer = NULL;
}

/* A private copy of the deployed version, for fine-tuning or evaluation. */
void
pgbert_load_base_model(const char *name, PgbertBaseModel *out, bool as_checkpoint)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	ResolvedRow row;
	BuiltTokenizer tk;
	BuiltWeights w;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContextCallback *cb;
	Datum		d;

	memset(out, 0, sizeof(*out));
	row = resolve_name(name);
	check_weights_readable(row.name, row.version, row.weights);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	read_version_row(&plan, "SELECT config::text, vocab, tokenizer_config::text, "
					 "(to_jsonb(v) -> 'decision_rule')::text "
					 "FROM pgbert.model_versions v WHERE id = $1", row.id, row.name, row.version);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	out->name = MemoryContextStrdup(caller, row.name);
	out->version = row.version;
	out->config_json = MemoryContextStrdup(caller, TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull)));
	{
		bytea	   *v = DatumGetByteaPP(SPI_getbinval(tup, desc, 2, &isnull));

		out->vocab = (bytea *) MemoryContextAlloc(caller, VARSIZE_ANY_EXHDR(v) + VARHDRSZ);
		SET_VARSIZE(out->vocab, VARSIZE_ANY_EXHDR(v) + VARHDRSZ);
		memcpy(VARDATA(out->vocab), VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
	}
	d = SPI_getbinval(tup, desc, 3, &isnull);
	out->tokenizer_json = isnull ? NULL : MemoryContextStrdup(caller, TextDatumGetCString(d));
	d = SPI_getbinval(tup, desc, 4, &isnull);
	out->decision_rule_json = isnull ? NULL : MemoryContextStrdup(caller, TextDatumGetCString(d));
	SPI_finish();

	/* engine objects die with the caller's memory context, also on error */
	cb = MemoryContextAlloc(caller, sizeof(MemoryContextCallback));
	cb->func = free_base_model;
	cb->arg = out;
	MemoryContextRegisterResetCallback(caller, cb);
	build_tokenizer(out->config_json, VARDATA(out->vocab), VARSIZE(out->vocab) - VARHDRSZ,
					out->tokenizer_json, &tk);
	out->tokenizer = tk.tokenizer;
	out->max_tokens = tk.max_tokens;
	out->head_tail = tk.head_tail;
	if (as_checkpoint)
	{
		out->checkpoint = read_large_object(row.weights, &out->checkpoint_len);
		return;
	}
	build_weights(row.weights, out->config_json, &w);
	out->model = w.model;
}

/* ---- SQL: inspect_model, cached_models ---- */

PG_FUNCTION_INFO_V1(pgbert_inspect_model);

/* pgbert.inspect_model(weights, config, vocab, tokenizer_config): validate a checkpoint, describe it. */
Datum
pgbert_inspect_model(PG_FUNCTION_ARGS)
{
	Oid			weights;
	char	   *config_json;
	bytea	   *vocab;
	char	   *tokenizer_json = NULL;
	BuiltTokenizer tk;
	BuiltWeights w;
	StringInfoData buf;
	uint32		vocab_tokens;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("weights, config and vocab must not be null")));
	weights = PG_GETARG_OID(0);
	config_json = JsonbToCString(NULL, &PG_GETARG_JSONB_P(1)->root, VARSIZE(PG_GETARG_JSONB_P(1)));
	vocab = PG_GETARG_BYTEA_PP(2);
	if (!PG_ARGISNULL(3))
		tokenizer_json = JsonbToCString(NULL, &PG_GETARG_JSONB_P(3)->root, VARSIZE(PG_GETARG_JSONB_P(3)));

	if (!lo_compat_privileges &&
		pg_largeobject_aclcheck_snapshot(weights, GetUserId(), ACL_SELECT, NULL) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for large object %u", weights)));
	build_tokenizer(config_json, VARDATA_ANY(vocab), VARSIZE_ANY_EXHDR(vocab), tokenizer_json, &tk);
	vocab_tokens = tk.tokenizer->vocab->size;
	bt_tokenizer_free(tk.tokenizer);
	build_weights(weights, config_json, &w);

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"num_params\": %zu, \"num_classes\": %d, \"has_pooler\": %s, "
					 "\"max_tokens\": %d, \"vocab_tokens\": %u, \"size_bytes\": %zu, \"config_labels\": [",
					 w.model->num_params, w.model->num_classes,
					 w.model->has_pooler ? "true" : "false", tk.max_tokens, vocab_tokens, w.blob_len);
	for (int i = 0; i < w.model->cfg.num_labels; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, w.model->cfg.labels[i]);
	}
	appendStringInfoString(&buf, "], \"unused_tensors\": ");
	escape_json(&buf, w.notes);
	appendStringInfoChar(&buf, '}');
	bt_model_free(w.model);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

PG_FUNCTION_INFO_V1(pgbert_cached_models);

/* pgbert.cached_models(): the versions this backend holds. */
Datum
pgbert_cached_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < n_cached; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = CStringGetTextDatum(cache[i]->name);
		values[1] = Int32GetDatum(cache[i]->version);
		values[2] = Int64GetDatum((int64) cache[i]->bytes);
		values[3] = Int64GetDatum(cache[i]->uses);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* Define pgbert.default_model and pgbert.model_cache_size (_PG_init). */
void
pgbert_model_store_init(void)
{
	DefineCustomStringVariable("pgbert.default_model",
							   "Model that classify() and embed() use when none is named.",
							   "Empty: the only stored model, an error when there are several.",
							   &pgbert_default_model, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.model_cache_size",
							"Memory for model versions loaded in one backend.",
							"Least recently used versions are freed beyond it; one model larger than it still loads.",
							&pgbert_model_cache_mb, 1024, 1, INT_MAX / 2, PGC_USERSET, GUC_UNIT_MB,
							NULL, NULL, NULL);
}
