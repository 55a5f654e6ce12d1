/*
 * model_store.h - model versions from the catalog (model_store.c): resolved
 * once per statement and call site, loaded once per backend into a bounded
 * cache, and private copies of a stored version for training.
 */
#ifndef PGBERT_MODEL_STORE_H
#define PGBERT_MODEL_STORE_H

#include "fmgr.h"

#include "decision_rule.h"
#include "model.h"
#include "tokenizer.h"

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

/* Define pgbert.default_model and pgbert.model_cache_size (_PG_init). */
extern void pgbert_model_store_init(void);

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

/* Load a cached version's weights in this backend if they are not yet (the in-process path). */
extern void pgbert_model_ensure_weights(PgbertModel *pm);

/* Set a loaded version's forward passes to pgbert.cpu_precision, quantizing it on first use of int8. */
extern void pgbert_model_use_precision(PgbertModel *pm);

/* The version's model.safetensors bytes, palloc'd, read as the current role. */
extern char *pgbert_read_checkpoint(PgbertModel *pm, Size *len);

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

#endif
