/*
 * quote.c - shortening user-given strings for error messages (quote.h).
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "quote.h"

/* s, palloc'd, cut at a character boundary after PGBERT_QUOTE_CHARS characters. */
char *
pgbert_quote_limit(const char *s)
{
	int			len = strlen(s);
	int			keep;

	if (pg_mbstrlen_with_len(s, len) <= PGBERT_QUOTE_CHARS)
		return pstrdup(s);
	keep = pg_mbcharcliplen(s, len, PGBERT_QUOTE_CHARS);
	return psprintf("%.*s...", keep, s);
}
