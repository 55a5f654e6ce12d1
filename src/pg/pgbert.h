/*
 * pgbert.h - what the SQL-layer files share: settings, tokenizing a text
 * datum, and the per-backend cache of loaded model versions.
 */
#ifndef PGBERT_PG_H
#define PGBERT_PG_H

#include "postgres.h"

#include "fmgr.h"

#include "decision_rule.h"
#include "model.h"
#include "tokenizer.h"

/* settings (pgbert.c) */
extern char *pgbert_default_model;
extern int	pgbert_model_cache_mb;
extern int	pgbert_cpu_threads;
extern int	pgbert_cpu_precision;	/* PGBERT_CPU_FP32, PGBERT_CPU_INT8 or PGBERT_CPU_BF16 */

#define PGBERT_CPU_FP32 0
#define PGBERT_CPU_INT8 1
#define PGBERT_CPU_BF16 2
extern int	pgbert_batch_tokens;
extern int	pgbert_progress_interval;

/* Token ids of one text, growing as the tokenizer emits them. */
typedef struct IdCollector
{
	int32	   *ids;
	int64		n;
	int64		cap;
	int64		limit;			/* stop after this many ids; -1 = no limit */
} IdCollector;

/* Word-piece ids of a text datum (no [CLS]/[SEP]), at most limit of them (-1: all). */
extern IdCollector pgbert_tokenize_text(const BtTokenizer *tk, text *input, int64 limit);

/* The same cut to limit as a model version cuts long texts: the beginning, or head_tail (bt_keep_head_tail). */
extern IdCollector pgbert_tokenize_truncated(const BtTokenizer *tk, text *input, int64 limit, bool head_tail);

/* One model version loaded in this backend. */
typedef struct PgbertModel
{
	int64		id;				/* pgbert.model_versions.id */
	char	   *name;
	int32		version;
	Oid			weights;
	uint64		stamp;			/* the catalog row's version it was loaded from (xmin and ctid) */
	int			head_rows;		/* outputs of the checkpoint's head, 0: none, -1: the header does
								 * not say, PGBERT_HEAD_UNREAD: not read yet */
	char	   *config_json;	/* config.json, for loading the weights */
	BtBertModel *model;			/* engine objects, malloc'd; model NULL until a forward pass needs it */
	BtTokenizer *tokenizer;
	int			max_tokens;		/* longest input, [CLS] and [SEP] included */
	bool		head_tail;		/* longer inputs keep their head and tail ("pgbert_truncation") */
	PgbertDecision decision;	/* how classify() picks the label (pgbert.model_versions.decision_rule) */
	int			num_labels;
	int			hidden_size;	/* from the config, for embedding widths without the weights */
	char	  **labels;			/* in id order, database encoding */
	Size		bytes;
	int64		uses;			/* statements that resolved to it */
	uint64		last_used;
	MemoryContext mcxt;			/* name, labels */
} PgbertModel;

#define PGBERT_HEAD_UNREAD (-2)

/* What a call does with a model: which checks it needs and whether the weights load here. */
typedef enum PgbertModelUse
{
	PGBERT_USE_TOKENIZER,		/* tokenizes with its vocabulary only */
	PGBERT_USE_WORKER,			/* runs it in the encoder worker: every check, no weights here */
	PGBERT_USE_SESSION			/* runs it in this backend: every check, and the weights */
} PgbertModelUse;

/*
 * The model a call uses: argument model_argno names it (NULL = the default
 * model). Resolved once per statement and call site, with the caller's read
 * permission checked; loaded when not cached. A use that runs the model also
 * checks, whichever process runs it, that the weights' large object exists
 * (each statement) and that the catalog's labels fit the checkpoint's head;
 * PGBERT_USE_SESSION loads the weights here. Valid until the next call.
 */
extern PgbertModel *pgbert_model_for_call(FunctionCallInfo fcinfo, int model_argno, PgbertModelUse use);

/*
 * The same for callers without a function call (the batching node): given is
 * the model name or NULL, and *site_extra caches the resolution, allocated in
 * site_mcxt, as fn_extra does for a call site.
 */
extern PgbertModel *pgbert_model_for_site(void **site_extra, MemoryContext site_mcxt, const char *given,
										  PgbertModelUse use);

/* The per-row inference functions the batching node can run a block of rows at a time. */
typedef enum PgbertBatchFn
{
	PGBERT_FN_NONE = 0,
	PGBERT_FN_CLASSIFY,			/* classify(input, model) */
	PGBERT_FN_CLASSIFY_SCORES,	/* classify_scores(input, model) */
	PGBERT_FN_EMBED				/* embed(input, model, pooling) */
} PgbertBatchFn;

/*
 * Results of n calls of fn, computed in batches (classify_sql.c): row i has
 * the arguments inputs[i], models[i], poolings[i] (NULL pointers for SQL
 * NULLs; poolings only for embed). Equal to what n separate calls return, in
 * the current memory context; *site_extra caches the model resolution. Adds
 * the rows that ran in the encoder worker and in this backend to the counters.
 */
extern void pgbert_batch_eval(PgbertBatchFn fn, void **site_extra, MemoryContext site_mcxt, int n,
							  text **inputs, text **models, text **poolings, Datum *results, bool *isnull,
							  int64 *worker_rows, int64 *session_rows);

/* Where one call's forward passes run (classify_sql.c). */
typedef struct PgbertRunPlace
{
	bool		worker;			/* in the encoder worker, until it fails over */
	bool		served_by_worker;	/* the last chunk ran there */
	int64		worker_rows;	/* rows that ran in the encoder worker */
	int64		session_rows;	/* rows that ran in this backend */
} PgbertRunPlace;

/*
 * A classifier for a call that scores many texts (argument model_argno names
 * it), and the logits of texts[0..n) under it (n x num_labels; NULL texts get
 * no row), run where classify() would run them.
 */
extern PgbertModel *pgbert_classifier_for_call(FunctionCallInfo fcinfo, int model_argno, PgbertRunPlace *place);
extern void pgbert_classifier_logits(PgbertModel *pm, PgbertRunPlace *place, int n, text **texts, float *logits);

/* Transparent batching of per-row calls (batch_scan.c): the planner hook and the node. */
extern bool pgbert_batching;
extern int	pgbert_batch_rows;
extern void pgbert_batch_scan_init(void);

/* Load a cached version's weights in this backend if they are not yet (the in-process path). */
extern void pgbert_model_ensure_weights(PgbertModel *pm);

/* Set a loaded version's forward passes to pgbert.cpu_precision, quantizing it on first use of int8. */
extern void pgbert_model_use_precision(PgbertModel *pm);

/* The version's model.safetensors bytes, palloc'd, read as the current role. */
extern char *pgbert_read_checkpoint(PgbertModel *pm, Size *len);

/* Settings of the encoder worker path (pgbert.c). */
typedef enum PgbertWorkerMode
{
	PGBERT_WORKER_AUTO,			/* the worker when preloaded and ready, silently in-process without preload */
	PGBERT_WORKER_ON,			/* the same, and a NOTICE also when pgbert is not preloaded */
	PGBERT_WORKER_OFF
} PgbertWorkerMode;

extern int	pgbert_worker_mode;

/*
 * The encoder worker (worker_client.c). usable: preloaded, enabled and ready
 * (else false, with one NOTICE per session when the worker was expected).
 * forward: run one packed chunk there, n_seq rows of width floats to out;
 * false when the worker is gone (run it in-process then); errors raise.
 */
extern bool pgbert_worker_usable(void);
extern bool pgbert_trainer_usable(void);
extern bool pgbert_worker_forward(PgbertModel *pm, int want, int n_seq, const int32 *offsets,
								  const int32 *ids, float *out, int width);
extern void pgbert_worker_count_label(const PgbertModel *pm, int label);

/*
 * Send one engine message (serve.h) through the worker, payload in up to three
 * pieces; the reply, up to out_cap bytes, is at *reply (the session's shared
 * segment, valid until the next request). Returns the engine's status, -1
 * when the engine died (message says how), -2 when the worker is gone.
 */
extern int	pgbert_worker_call(int kind, uint64 key, const void *p1, Size n1, const void *p2, Size n2,
							   const void *p3, Size n3, Size out_cap, char **reply, Size *reply_len,
							   char *message, size_t msglen);

/* Give back this session's shared segment if a large request grew it. */
extern void pgbert_worker_shrink_buffer(void);

/* A private, trainable copy of a stored model version and what storing a new version needs. */
typedef struct PgbertBaseModel
{
	char	   *name;
	int32		version;
	char	   *config_json;
	bytea	   *vocab;			/* vocab.txt, UTF-8 */
	char	   *tokenizer_json; /* or NULL */
	BtBertModel *model;			/* engine objects, freed with the caller's memory context */
	BtTokenizer *tokenizer;
	int			max_tokens;
	bool		head_tail;		/* the version cuts long texts head + tail */
	char	   *decision_rule_json;	/* pgbert.model_versions.decision_rule as text, or NULL */
	char	   *checkpoint;		/* instead of model: model.safetensors bytes (palloc'd) */
	Size		checkpoint_len;
} PgbertBaseModel;

/*
 * Load a private copy of the deployed version of a stored model (read
 * permission checked). Its engine objects are freed when the current memory
 * context is reset or deleted, including on error; out must live at least as
 * long (allocate it in that context). as_checkpoint: read the weights as
 * bytes into out->checkpoint and build no model (for the encoder worker).
 */
extern void pgbert_load_base_model(const char *name, PgbertBaseModel *out, bool as_checkpoint);

/* Live training progress in shared memory (progress.c); slot -1 = none. */
extern int	pgbert_progress_begin(const char *model, int epochs, int total_steps);
extern void pgbert_progress_update(int slot, int epoch, int step, double loss, double rows_per_s,
								   double seconds_left);
extern void pgbert_progress_end(int slot);

/* Open OpenBLAS for a forward pass or training step here, with pgbert.cpu_threads (pgbert.c). */
extern void pgbert_load_blas(void);

/*
 * A user-given string (a model name, a label) as error messages quote it: at
 * most PGBERT_QUOTE_CHARS characters, then "..." when it was longer.
 */
#define PGBERT_QUOTE_CHARS 64
extern char *pgbert_quote_limit(const char *s);

/* The tokenizer of the bundled uncased vocabulary (tokenize_sql.c). */
extern const BtTokenizer *pgbert_bundled_tokenizer(void);

/* Path of the bundled vocabulary file. */
extern char *pgbert_bundled_vocab_path(void);

/* The role owning the extension, its catalog and the models' weights (catalog_door.c). */
extern Oid	pgbert_extension_owner(void);

/* Schema-qualified, quoted name of one of the extension's functions, for SPI (SPI connected). */
extern char *pgbert_extension_function(const char *name);

#endif
