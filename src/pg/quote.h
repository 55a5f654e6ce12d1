/*
 * quote.h - user-given strings (a model name, a label) as error messages
 * quote them: at most PGBERT_QUOTE_CHARS characters, then "..." when longer,
 * so that a megabyte of label does not become a megabyte of log.
 */
#ifndef PGBERT_QUOTE_H
#define PGBERT_QUOTE_H

#define PGBERT_QUOTE_CHARS 64

extern char *pgbert_quote_limit(const char *s);

#endif
