/*
 * tokenize_sql.c - bert_tokenize() and bert_token_ids(): the engine tokenizer in SQL.
 *
 * The bundled uncased vocabulary is loaded once per backend on first use.
 * Text is handed to the engine as UTF-8 (converted from the database
 * encoding when that is not UTF8) and pieces are converted back. The engine
 * holds no resources while it tokenizes, so its callbacks may ereport and
 * CHECK_FOR_INTERRUPTS freely.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "model_store.h"
#include "tokenize_sql.h"
#include "unicode.h"

#define BUNDLED_VOCAB_FILE "pgbert_vocab_uncased.txt"

/* Bundled-vocabulary tokenizers of this backend, by do_lower_case. */
static BtTokenizer *bundled_tokenizer[2];
static bool tables_warned = false;

/* Engine emit callback: append one id; stop at the limit. */
static int
collect_id(void *arg, int32_t id)
{
	IdCollector *c = arg;

	if (c->n == c->cap)
	{
		if (c->cap >= (int64) (MaxAllocSize / sizeof(int32)) / 2)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("input produces too many tokens")));
		c->cap *= 2;
		c->ids = repalloc(c->ids, c->cap * sizeof(int32));
	}
	c->ids[c->n++] = id;
	return c->limit >= 0 && c->n >= c->limit;
}

/* Engine progress callback: let the query be cancelled during long inputs. */
static int
check_interrupts(void *arg)
{
	CHECK_FOR_INTERRUPTS();
	return 0;
}

/* Path of the vocabulary installed with the extension. */
char *
pgbert_bundled_vocab_path(void)
{
	char		sharepath[MAXPGPATH];

	get_share_path(my_exec_path, sharepath);
	return psprintf("%s/extension/%s", sharepath, BUNDLED_VOCAB_FILE);
}

/* The tokenizer for the bundled vocabulary, loaded on first use. */
static const BtTokenizer *
get_bundled_tokenizer(bool lowercase)
{
	char		err[256];
	char	   *path;
	BtVocab    *vocab;
	BtTokenizerOptions opts;

	if (bundled_tokenizer[lowercase])
		return bundled_tokenizer[lowercase];

	path = pgbert_bundled_vocab_path();
	vocab = bt_vocab_load(path, err, sizeof(err));
	if (vocab == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("could not load the bundled vocabulary"),
				 errdetail("%s", err),
				 errhint("Reinstall pgbert (\"make install\").")));
	opts = bt_tokenizer_default_options();
	opts.lowercase = lowercase;
	bundled_tokenizer[lowercase] = bt_tokenizer_create(vocab, &opts, err, sizeof(err));
	if (bundled_tokenizer[lowercase] == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("bundled vocabulary \"%s\" is unusable: %s", path, err)));

	if (!tables_warned && !bt_uc_tables_current())
	{
		tables_warned = true;
		ereport(WARNING,
				(errmsg("utf8proc has Unicode %s, but pgbert's tokenizer tables were generated for %s",
						bt_uc_utf8proc_version(), bt_uc_reference_tables_id()),
				 errdetail("Tokens of characters assigned in recent Unicode versions may differ from Hugging Face's.")));
	}
	return bundled_tokenizer[lowercase];
}

/* The bundled vocabulary's uncased tokenizer, which models trained from scratch use. */
const BtTokenizer *
pgbert_bundled_tokenizer(void)
{
	return get_bundled_tokenizer(true);
}

/* Resolve the model argument and options of a tokenizer function call. */
static const BtTokenizer *
tokenizer_for_call(FunctionCallInfo fcinfo, int model_arg, int lower_arg)
{
	bool		lowercase = true;	/* the bundled vocabulary is uncased */

	if (!PG_ARGISNULL(model_arg))
	{
		/* a stored model's own vocabulary and settings */
		if (!PG_ARGISNULL(lower_arg))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("do_lower_case cannot be combined with a model"),
					 errdetail("A model's tokenizer settings come from its tokenizer_config.")));
		return pgbert_model_for_call(fcinfo, model_arg, PGBERT_USE_TOKENIZER)->tokenizer;
	}
	if (!PG_ARGISNULL(lower_arg))
		lowercase = PG_GETARG_BOOL(lower_arg);
	return get_bundled_tokenizer(lowercase);
}

/* Tokenize a text datum into ids, converting to UTF-8 when the database is not UTF8. */
IdCollector
pgbert_tokenize_text(const BtTokenizer *tk, text *input, int64 limit)
{
	IdCollector c;
	BtSink		sink;
	BtStatus	status;
	char	   *src = VARDATA_ANY(input);
	int			len = VARSIZE_ANY_EXHDR(input);
	char	   *utf8 = src;

	if (GetDatabaseEncoding() != PG_UTF8 && len > 0)
	{
		utf8 = (char *) pg_server_to_any(src, len, PG_UTF8);
		if (utf8 != src)
			len = strlen(utf8);
	}

	c.cap = 64;
	c.n = 0;
	c.limit = limit;
	c.ids = palloc(c.cap * sizeof(int32));
	if (limit == 0)
		return c;

	memset(&sink, 0, sizeof(sink));
	sink.emit = collect_id;
	sink.progress = check_interrupts;
	sink.arg = &c;
	status = bt_tokenize(tk, utf8, len, &sink);
	if (status == BT_INVALID_UTF8)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("invalid UTF-8 byte sequence at byte offset %zu of input",
						sink.error_offset)));
	if (utf8 != src)
		pfree(utf8);
	return c;
}

/* A text cut the way the model it is for cuts long inputs. */
IdCollector
pgbert_tokenize_truncated(const BtTokenizer *tk, text *input, int64 limit, bool head_tail)
{
	IdCollector c;

	if (!head_tail)
		return pgbert_tokenize_text(tk, input, limit);
	/* the tail is only known once the whole text is tokenized */
	c = pgbert_tokenize_text(tk, input, -1);
	c.n = (int64) bt_keep_head_tail(c.ids, (size_t) c.n, (size_t) limit);
	return c;
}

PG_FUNCTION_INFO_V1(pgbert_bert_tokenize);

/* bert_tokenize(input text, model text, do_lower_case boolean) RETURNS text[] */
Datum
pgbert_bert_tokenize(PG_FUNCTION_ARGS)
{
	const BtTokenizer *tk;
	IdCollector c;
	bool		utf8_db = GetDatabaseEncoding() == PG_UTF8;
	char	  **piece;
	int		   *piece_len;
	Size		nbytes;
	ArrayType  *result;
	char	   *p;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	tk = tokenizer_for_call(fcinfo, 1, 2);
	c = pgbert_tokenize_text(tk, PG_GETARG_TEXT_PP(0), -1);

	/* pieces in the database encoding, then one text[] built in place */
	if (c.n > (int64) MaxArraySize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("input produces too many tokens for an array")));
	piece = palloc(sizeof(char *) * Max(c.n, 1));
	piece_len = palloc(sizeof(int) * Max(c.n, 1));
	nbytes = ARR_OVERHEAD_NONULLS(1);
	for (int64 i = 0; i < c.n; i++)
	{
		size_t		len;
		const char *tok = bt_vocab_token(tk->vocab, c.ids[i], &len);

		piece[i] = utf8_db ? (char *) tok : (char *) pg_any_to_server(tok, (int) len, PG_UTF8);
		piece_len[i] = utf8_db || piece[i] == tok ? (int) len : (int) strlen(piece[i]);
		nbytes += INTALIGN(VARHDRSZ + piece_len[i]);
		if (!AllocSizeIsValid(nbytes))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("input produces too many tokens for an array")));
	}

	if (c.n == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));
	result = (ArrayType *) palloc0(nbytes);
	SET_VARSIZE(result, nbytes);
	result->ndim = 1;
	result->dataoffset = 0;
	result->elemtype = TEXTOID;
	ARR_DIMS(result)[0] = (int) c.n;
	ARR_LBOUND(result)[0] = 1;
	p = ARR_DATA_PTR(result);
	for (int64 i = 0; i < c.n; i++)
	{
		SET_VARSIZE(p, VARHDRSZ + piece_len[i]);
		memcpy(VARDATA(p), piece[i], piece_len[i]);
		p += INTALIGN(VARHDRSZ + piece_len[i]);
	}
	PG_RETURN_ARRAYTYPE_P(result);
}

/* A one-dimensional int4[] of n elements, contents left to the caller. */
static ArrayType *
new_int4_array(int n)
{
	Size		nbytes = ARR_OVERHEAD_NONULLS(1) + (Size) n * sizeof(int32);
	ArrayType  *a = (ArrayType *) palloc0(nbytes);

	SET_VARSIZE(a, nbytes);
	a->ndim = 1;
	a->dataoffset = 0;
	a->elemtype = INT4OID;
	ARR_DIMS(a)[0] = n;
	ARR_LBOUND(a)[0] = 1;
	return a;
}

PG_FUNCTION_INFO_V1(pgbert_bert_token_ids);

/* bert_token_ids(input text, model text, max_length int, do_lower_case boolean) RETURNS int[] */
Datum
pgbert_bert_token_ids(PG_FUNCTION_ARGS)
{
	const BtTokenizer *tk;
	IdCollector c;
	int64		limit = -1;
	int32	   *out;
	ArrayType  *result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (!PG_ARGISNULL(2))
	{
		int32		max_length = PG_GETARG_INT32(2);

		if (max_length < 2)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_length must be at least 2"),
					 errdetail("[CLS] and [SEP] take two positions; max_length NULL means no truncation.")));
		limit = max_length - 2;
	}
	tk = tokenizer_for_call(fcinfo, 1, 3);
	if (tk->cls_id < 0 || tk->sep_id < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("vocabulary has no [CLS] or [SEP] token")));
	c = pgbert_tokenize_text(tk, PG_GETARG_TEXT_PP(0), limit);

	if (c.n + 2 > (int64) MaxArraySize ||
		!AllocSizeIsValid(ARR_OVERHEAD_NONULLS(1) + (c.n + 2) * sizeof(int32)))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("input produces too many tokens for an array")));
	result = new_int4_array((int) c.n + 2);
	out = (int32 *) ARR_DATA_PTR(result);
	out[0] = tk->cls_id;
	memcpy(out + 1, c.ids, c.n * sizeof(int32));
	out[c.n + 1] = tk->sep_id;
	PG_RETURN_ARRAYTYPE_P(result);
}
