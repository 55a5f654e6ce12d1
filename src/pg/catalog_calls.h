/*
 * catalog_calls.h - the statements C sends to pgbert's model catalog
 * (catalog_calls.c), other than the model loader's reads (model_store.c):
 * every write goes through one of the extension's management functions, as
 * the calling role, so that the rules they enforce hold for C callers too.
 * Each call connects to SPI itself; nested inside a caller's connection is
 * fine.
 */
#ifndef PGBERT_CATALOG_CALLS_H
#define PGBERT_CATALOG_CALLS_H

/* A trained version to store (import_model). */
typedef struct PgbertNewVersion
{
	const char *model;
	Oid			weights;		/* large object holding model.safetensors */
	const char *config_json;	/* the starting point's config; labels and architecture are set here */
	bytea	   *vocab;			/* vocab.txt */
	const char *tokenizer_json; /* or NULL; model_max_length is set here */
	char	  **labels;			/* in id order */
	int			n_labels;
	const char *parent;			/* "name vN" of the base model, or NULL */
	bool		head_tail;		/* records pgbert_truncation = head_tail */
	int			max_tokens;
} PgbertNewVersion;

/* Raise unless the calling role may store versions under name (pgbert.owns_name; a new name may). */
extern void pgbert_catalog_check_owner(const char *name);

/* Raise when the database's pgbert objects are older than this library (it could not store a result). */
extern void pgbert_catalog_check_current(void);

/* The deployed version of model and its validation accuracy (NAN: none recorded); false when none is. */
extern bool pgbert_catalog_deployed(const char *model, int *version, double *accuracy);

/* The deployed version's number, as classify() would resolve it now (0: none). */
extern int	pgbert_catalog_resolve_version(const char *model);

/* A version's labels in id order, allocated in the current memory context; *n of them. */
extern char **pgbert_catalog_version_labels(const char *model, int version, int *n);

/* Store a trained version (import_model); its version number. */
extern int	pgbert_catalog_import_version(const PgbertNewVersion *v);

/* Attach a version's metrics and training log (pgbert.record_training); both JSON. */
extern void pgbert_catalog_record_training(const char *model, int version, const char *metrics_json,
										   const char *log_json);

/* Deploy a version (deploy_model). */
extern void pgbert_catalog_deploy(const char *model, int version);

/* Merge rule (a JSON object, as text) into a version's decision rule (set_decision_rule). */
extern void pgbert_catalog_set_decision_rule(const char *model, int version, const char *rule_json);

#endif
