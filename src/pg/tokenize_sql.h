/*
 * tokenize_sql.h - text datums into word-piece ids (tokenize_sql.c), for the
 * SQL tokenizer functions and every caller that runs a model on texts.
 */
#ifndef PGBERT_TOKENIZE_SQL_H
#define PGBERT_TOKENIZE_SQL_H

#include "tokenizer.h"

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

/* The tokenizer of the bundled uncased vocabulary. */
extern const BtTokenizer *pgbert_bundled_tokenizer(void);

/* Path of the bundled vocabulary file. */
extern char *pgbert_bundled_vocab_path(void);

#endif
