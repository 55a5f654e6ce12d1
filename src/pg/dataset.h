/*
 * dataset.h - a labelled table read for training or evaluation (dataset.c):
 * its checked columns, its rows tokenized and packed, and the seeded splits
 * and shuffles of a training run.
 */
#ifndef PGBERT_DATASET_H
#define PGBERT_DATASET_H

#include "utils/jsonb.h"

#include "tokenizer.h"

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

/* Quoted relation name and checked column names for a query. */
typedef struct Source
{
	char	   *relation;		/* schema-qualified, quoted */
	char	   *text_column;	/* quoted */
	char	   *label_column;	/* quoted */
	char	   *split_by;		/* quoted, or NULL: the column ordering rows in time */
} Source;

/* Check the relation and columns; the text column must be of a string type. */
extern Source dataset_check_source(Oid relid, Name text_col, Name label_col);

/* Check split_by names a column of the relation, and that there is something to validate on; quoted. */
extern char *dataset_split_column(Oid relid, const char *column, double validation_fraction);

/* The distinct labels of the usable rows into ds->classes (SPI connected; allocated in mcxt). */
extern void dataset_read_classes(const Source *src, Dataset *ds, MemoryContext mcxt);

/*
 * Read and tokenize every usable row (SPI connected; allocated in mcxt), cut
 * to max_tokens as the model cuts; what names whose labels ds->classes are,
 * for the error about a label that is not one of them.
 */
extern void dataset_read_rows(const Source *src, const BtTokenizer *tk, int max_tokens, bool head_tail,
							  Dataset *ds, MemoryContext mcxt, const char *what);

/* Pack rows[0..k) of a dataset into offsets/ids (and labels when given). */
extern void dataset_pack(const Dataset *ds, const int *rows, int k, int32 *offsets, int32 *ids, int32 *labels);

/* Rows 0..n-1 of a dataset, in order. */
extern int *dataset_all_rows(const Dataset *ds);

/* Fisher-Yates shuffle of v[0..n) with a seeded generator whose state is *state. */
extern void dataset_shuffle(int *v, int n, uint64 *state);

/* Hold out a fraction of each class, shuffled with seed (at least one row of each class trains). */
extern void dataset_split_stratified(const Dataset *ds, double fraction, int seed, int *train_rows,
									 int *n_train, int *val_rows, int *n_val);

/* Hold out the newest fraction of the rows (read oldest first by split_by). */
extern void dataset_split_newest(const Dataset *ds, double fraction, const char *split_by, int *train_rows,
								 int *n_train, int *val_rows, int *n_val);

/* Cross-entropy weights per class from class_weights ("balanced" or {"label": weight}). */
extern float *dataset_class_weights(Jsonb *spec, const Dataset *ds, const int *train_rows, int n_train);

#endif
