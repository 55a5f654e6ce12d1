/*
 * classify_sql.c - classify(), classify_scores(), classify_batch() and embed():
 * tokenize with the model's vocabulary, pack the batch, run the engine.
 *
 * Inputs longer than the model takes are truncated to its maximum length
 * (the smaller of tokenizer model_max_length and max_position_embeddings),
 * as transformers does with truncation=True. Batches are cut into chunks of
 * at most pgbert.batch_tokens tokens; the query can be cancelled between
 * chunks. Engine threads never call PostgreSQL.
 *
 * With the encoder worker running (pgbert preloaded, pgbert.worker on), the
 * chunks go to it instead and this backend never loads the weights; when the
 * worker is not there, or goes away mid-statement, they run here.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "classify_sql.h"
#include "decision.h"
#include "encoder_client.h"
#include "serve.h"
#include "session_engine.h"
#include "tokenize_sql.h"

/* pgbert.batch_tokens: most tokens in one engine call, which bounds the activations */
static int	pgbert_batch_tokens = 4096;

/* Start a call's place: the encoder worker when it is usable, else this backend. */
static void
start_place(PgbertRunPlace *place)
{
	place->worker = pgbert_worker_usable();
	place->served_by_worker = false;
	place->worker_rows = place->session_rows = 0;
}

/* The model for this call, with its weights only when it runs in this backend. */
static PgbertModel *
model_for_call(FunctionCallInfo fcinfo, int argno, PgbertRunPlace *place)
{
	start_place(place);
	return pgbert_model_for_call(fcinfo, argno, place->worker ? PGBERT_USE_WORKER : PGBERT_USE_SESSION);
}

/* Width of one sequence's output row (the label count equals the head's rows once loaded). */
static int
output_width(const PgbertModel *pm, BtWant want)
{
	return want == BT_WANT_LOGITS ? pm->num_labels : pm->hidden_size;
}

/* Run the engine on one packed chunk; rows go to out (n_seq x width). */
static void
forward_chunk(PgbertModel *pm, PgbertRunPlace *place, BtWant want, int n_seq, const int32 *offsets,
			  const int32 *ids, float *out)
{
	char		err[256];
	BtBatch		b = {n_seq, offsets, ids, NULL};
	BtForwardOut o;
	float	   *hidden = NULL;

	if (place->worker)
	{
		if (pgbert_worker_forward(pm, want, n_seq, offsets, ids, out, output_width(pm, want)))
		{
			place->served_by_worker = true;
			place->worker_rows += n_seq;
			return;
		}
		place->worker = false;	/* the worker went away: the rest runs here */
	}
	place->served_by_worker = false;
	pgbert_model_ensure_weights(pm);
	pgbert_model_use_precision(pm);
	if ((want == BT_WANT_LOGITS || want == BT_WANT_POOLER) && !pm->model->has_pooler)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("model \"%s\" has no pooler", pm->name),
				 errhint("Use pooling => 'mean' or 'cls'.")));

	memset(&o, 0, sizeof(o));
	if (want == BT_WANT_LOGITS)
		o.logits = out;
	else if (want == BT_WANT_MEAN)
		o.mean = out;
	else if (want == BT_WANT_POOLER)
		o.pooled = out;
	else
		o.hidden = hidden = palloc(sizeof(float) * (Size) offsets[n_seq] * pm->model->cfg.hidden_size);

	pgbert_load_blas();
	place->session_rows += n_seq;
	if (bt_model_forward(pm->model, &b, &o, err, sizeof(err)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("model \"%s\" version %d failed: %s", pm->name, pm->version, err)));
	if (want == BT_WANT_CLS)
	{
		int			H = pm->model->cfg.hidden_size;

		for (int s = 0; s < n_seq; s++)
			memcpy(out + (Size) s * H, hidden + (Size) offsets[s] * H, sizeof(float) * H);
		pfree(hidden);
	}
}

/*
 * Run texts[0..n) through the model, writing n rows of output_width floats
 * to out. NULL texts (texts[i] == NULL) get no row written.
 */
static void
run_model(PgbertModel *pm, PgbertRunPlace *place, BtWant want, int n, text **texts, float *out)
{
	const BtTokenizer *tk = pm->tokenizer;
	int			width = output_width(pm, want);
	int			budget = Max(pgbert_batch_tokens, pm->max_tokens);
	int32	   *offsets = palloc(sizeof(int32) * (n + 1));
	int32	   *ids = palloc(sizeof(int32) * budget);
	int		   *rows = palloc(sizeof(int) * Max(n, 1));
	float	   *chunk_out = palloc(sizeof(float) * (Size) Max(n, 1) * Max(width, 1));
	int			n_seq = 0;

	if (want == BT_WANT_LOGITS && pm->num_labels == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("model \"%s\" has no classification head", pm->name),
				 errhint("Use embed() for its sentence embeddings.")));

	offsets[0] = 0;
	for (int i = 0; i <= n; i++)
	{
		IdCollector c;

		/* flush the chunk when the next text might not fit, or at the end */
		if (n_seq > 0 && (i == n || offsets[n_seq] + pm->max_tokens > budget))
		{
			forward_chunk(pm, place, want, n_seq, offsets, ids, chunk_out);
			for (int s = 0; s < n_seq; s++)
				memcpy(out + (Size) rows[s] * width, chunk_out + (Size) s * width, sizeof(float) * width);
			n_seq = 0;
			CHECK_FOR_INTERRUPTS();
		}
		if (i == n)
			break;
		if (texts[i] == NULL)
			continue;

		c = pgbert_tokenize_truncated(tk, texts[i], pm->max_tokens - 2, pm->head_tail);
		ids[offsets[n_seq]] = tk->cls_id;
		memcpy(ids + offsets[n_seq] + 1, c.ids, sizeof(int32) * c.n);
		ids[offsets[n_seq] + 1 + c.n] = tk->sep_id;
		offsets[n_seq + 1] = offsets[n_seq] + (int32) c.n + 2;
		rows[n_seq++] = i;
		pfree(c.ids);
	}
	pfree(offsets);
	pfree(ids);
	pfree(rows);
	pfree(chunk_out);
}

/* Softmax of one logits row into probs (double precision); raises on non-finite logits. */
static void
softmax(const PgbertModel *pm, const float *logits, double *probs)
{
	for (int c = 0; c < pm->num_labels; c++)
		if (!isfinite(logits[c]))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("model \"%s\" version %d produced a non-finite logit", pm->name, pm->version)));
	bt_softmax_scaled(logits, pm->num_labels, 1.0, probs);
}

/*
 * The label the version's decision rule picks for one logits row (without a
 * rule the most probable one, the first on ties, as torch.argmax); raises on
 * non-finite logits. probs receives the model's own probabilities.
 */
static int
decided_label(PgbertModel *pm, const float *logits, double *probs)
{
	int			best;

	softmax(pm, logits, probs);
	if (pm->decision.weights == NULL)
		return bt_decide(probs, NULL, pm->num_labels);
	/* decide on the calibrated scores, then give probs back the model's own */
	best = pgbert_decide(&pm->decision, logits, pm->num_labels, probs);
	bt_softmax_scaled(logits, pm->num_labels, 1.0, probs);
	return best;
}

/* classify()'s result for one logits row: the label the decision rule picks. */
static Datum
label_datum(PgbertModel *pm, const PgbertRunPlace *place, const float *logits, double *probs)
{
	int			best = decided_label(pm, logits, probs);

	if (place->served_by_worker)
		pgbert_worker_count_label(pm, best);
	return PointerGetDatum(cstring_to_text(pm->labels[best]));
}

/* classify_scores()'s result for one logits row: {"label": probability, ...}. */
static Datum
scores_datum(PgbertModel *pm, const float *logits, double *probs)
{
	StringInfoData buf;

	softmax(pm, logits, probs);
	initStringInfo(&buf);
	pgbert_append_label_numbers(&buf, pm->labels, probs, pm->num_labels);
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* embed()'s result: a real[] of H values. */
static Datum
embedding_datum(const float *vec, int H)
{
	Datum	   *elems = palloc(sizeof(Datum) * H);

	for (int i = 0; i < H; i++)
		elems[i] = Float4GetDatum(vec[i]);
	return PointerGetDatum(construct_array(elems, H, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT));
}

/* What embed()'s pooling argument asks for (NULL: mean). */
static BtWant
parse_pooling(text *pooling_arg)
{
	char	   *pooling;

	if (pooling_arg == NULL)
		return BT_WANT_MEAN;
	pooling = text_to_cstring(pooling_arg);
	if (strcmp(pooling, "mean") == 0)
		return BT_WANT_MEAN;
	if (strcmp(pooling, "cls") == 0)
		return BT_WANT_CLS;
	if (strcmp(pooling, "pooler") == 0)
		return BT_WANT_POOLER;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown pooling \"%s\"", pooling),
			 errhint("Use 'mean', 'cls' or 'pooler'.")));
	return BT_WANT_MEAN;			/* keep the compiler quiet */
}

/* The classifier a call names, with where its passes will run. */
PgbertModel *
pgbert_classifier_for_call(FunctionCallInfo fcinfo, int model_argno, PgbertRunPlace *place)
{
	return model_for_call(fcinfo, model_argno, place);
}

/* Logits of many texts, in chunks, where classify() would run them. */
void
pgbert_classifier_logits(PgbertModel *pm, PgbertRunPlace *place, int n, text **texts, float *logits)
{
	run_model(pm, place, BT_WANT_LOGITS, n, texts, logits);
}

/* A single-row call's model, where it runs, and its input's logits and room for the probabilities. */
typedef struct SingleRow
{
	PgbertModel *pm;
	PgbertRunPlace place;
	float	   *logits;
	double	   *probs;
} SingleRow;

/* Run the input (argument 0, not NULL) through the model argument 1 names. */
static void
run_single_row(FunctionCallInfo fcinfo, SingleRow *r)
{
	text	   *input = PG_GETARG_TEXT_PP(0);

	r->pm = model_for_call(fcinfo, 1, &r->place);
	r->logits = palloc(sizeof(float) * Max(r->pm->num_labels, 1));
	r->probs = palloc(sizeof(double) * Max(r->pm->num_labels, 1));
	run_model(r->pm, &r->place, BT_WANT_LOGITS, 1, &input, r->logits);
}

PG_FUNCTION_INFO_V1(pgbert_classify);

/* classify(input text, model text) RETURNS text */
Datum
pgbert_classify(PG_FUNCTION_ARGS)
{
	SingleRow	r;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	run_single_row(fcinfo, &r);
	PG_RETURN_DATUM(label_datum(r.pm, &r.place, r.logits, r.probs));
}

PG_FUNCTION_INFO_V1(pgbert_classify_scores);

/* classify_scores(input text, model text) RETURNS jsonb: {"label": probability, ...} */
Datum
pgbert_classify_scores(PG_FUNCTION_ARGS)
{
	SingleRow	r;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	run_single_row(fcinfo, &r);
	PG_RETURN_DATUM(scores_datum(r.pm, r.logits, r.probs));
}

PG_FUNCTION_INFO_V1(pgbert_classify_batch);

/* classify_batch(inputs text[], model text) RETURNS TABLE(ord int, label text, score real) */
Datum
pgbert_classify_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PgbertModel *pm;
	PgbertRunPlace		place;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				C,
				lbound;
	text	  **texts;
	float	   *logits;
	double	   *probs;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	arr = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("inputs must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		return (Datum) 0;
	lbound = ARR_LBOUND(arr)[0];
	pm = model_for_call(fcinfo, 1, &place);
	C = Max(pm->num_labels, 1);
	texts = palloc(sizeof(text *) * n);
	for (int i = 0; i < n; i++)
		texts[i] = nulls[i] ? NULL : DatumGetTextPP(elems[i]);
	logits = palloc(sizeof(float) * (Size) n * C);
	probs = palloc(sizeof(double) * C);
	run_model(pm, &place, BT_WANT_LOGITS, n, texts, logits);

	for (int i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		isnull[3] = {false, true, true};

		values[0] = Int32GetDatum(lbound + i);
		if (texts[i] != NULL)
		{
			int			best = decided_label(pm, logits + (Size) i * C, probs);

			if (place.served_by_worker)
				pgbert_worker_count_label(pm, best);
			values[1] = CStringGetTextDatum(pm->labels[best]);
			values[2] = Float4GetDatum((float4) probs[best]);
			isnull[1] = isnull[2] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(pgbert_embed);

/* embed(input text, model text, pooling text) RETURNS real[] */
Datum
pgbert_embed(PG_FUNCTION_ARGS)
{
	PgbertModel *pm;
	PgbertRunPlace		place;
	text	   *input;
	BtWant		want;
	float	   *vec;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	want = parse_pooling(PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2));
	pm = model_for_call(fcinfo, 1, &place);
	input = PG_GETARG_TEXT_PP(0);
	vec = palloc(sizeof(float) * pm->hidden_size);
	run_model(pm, &place, want, 1, &input, vec);
	PG_RETURN_DATUM(embedding_datum(vec, pm->hidden_size));
}

/* Whether two optional text arguments are equal (both NULL counts). */
static bool
same_arg(text *a, text *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

void
pgbert_batch_eval(PgbertBatchFn fn, void **site_extra, MemoryContext site_mcxt, int n,
				  text **inputs, text **models, text **poolings, Datum *results, bool *isnull,
				  int64 *worker_rows, int64 *session_rows)
{
	bool	   *done = palloc0(sizeof(bool) * Max(n, 1));
	int		   *group = palloc(sizeof(int) * Max(n, 1));
	text	  **texts = palloc(sizeof(text *) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		isnull[i] = true;
		results[i] = (Datum) 0;
		done[i] = inputs[i] == NULL;	/* a NULL input is a NULL result, as one call gives */
	}

	/* rows naming the same model (and pooling) run as one batch, in row order */
	for (int first = 0; first < n; first++)
	{
		PgbertModel *pm;
		PgbertRunPlace		place;
		BtWant		want = BT_WANT_LOGITS;
		int			k = 0,
					width;
		float	   *out;
		double	   *probs;

		if (done[first])
			continue;
		for (int i = first; i < n; i++)
			if (!done[i] && same_arg(models[i], models[first]) &&
				(fn != PGBERT_FN_EMBED || same_arg(poolings[i], poolings[first])))
			{
				group[k] = i;
				texts[k++] = inputs[i];
				done[i] = true;
			}

		if (fn == PGBERT_FN_EMBED)
			want = parse_pooling(poolings[first]);
		start_place(&place);
		pm = pgbert_model_for_site(site_extra, site_mcxt,
								   models[first] ? text_to_cstring(models[first]) : NULL,
								   place.worker ? PGBERT_USE_WORKER : PGBERT_USE_SESSION);
		width = Max(output_width(pm, want), 1);
		out = palloc(sizeof(float) * (Size) k * width);
		probs = palloc(sizeof(double) * width);
		run_model(pm, &place, want, k, texts, out);
		*worker_rows += place.worker_rows;
		*session_rows += place.session_rows;

		for (int g = 0; g < k; g++)
		{
			const float *row = out + (Size) g * width;
			int			i = group[g];

			if (fn == PGBERT_FN_CLASSIFY)
				results[i] = label_datum(pm, &place, row, probs);
			else if (fn == PGBERT_FN_CLASSIFY_SCORES)
				results[i] = scores_datum(pm, row, probs);
			else
				results[i] = embedding_datum(row, pm->hidden_size);
			isnull[i] = false;
		}
		pfree(out);
		pfree(probs);
	}
	pfree(done);
	pfree(group);
	pfree(texts);
}

/* Define pgbert.batch_tokens. */
void
pgbert_classify_init(void)
{
	DefineCustomIntVariable("pgbert.batch_tokens",
							"Most tokens run through the model in one engine call.",
							"Bounds the activation memory of classify_batch(); the query can be cancelled between calls.",
							&pgbert_batch_tokens, 4096, 64, 1048576, PGC_USERSET, 0, NULL, NULL, NULL);
}
