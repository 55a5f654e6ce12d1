/*
 * testing.h - what the engine test programs share: ok/FAIL lines with a
 * closing "N passed, N failed", an id collector for the tokenizer's emit
 * callback, and whole-file reads. Header-only, for test programs.
 */
#ifndef PGBERT_TEST_TESTING_H
#define PGBERT_TEST_TESTING_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int	passed,
			failed;

/* Print one check as "ok" or "FAIL" and count it. */
static inline void
check(int ok, const char *fmt,...)
{
	va_list		ap;

	printf("%s ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (ok)
		passed++;
	else
		failed++;
}

/* Token ids collected from the tokenizer, stopping at a limit (-1: none). */
typedef struct Ids
{
	int32_t    *v;
	size_t		n,
				cap;
	long		limit;
	long		progress_calls;
} Ids;

/* Emit callback: append one id; ask to stop at the limit. */
static inline int
ids_emit(void *arg, int32_t id)
{
	Ids		   *ids = arg;

	if (ids->n == ids->cap)
	{
		ids->cap = ids->cap ? ids->cap * 2 : 64;
		ids->v = realloc(ids->v, ids->cap * sizeof(int32_t));
		if (ids->v == NULL)
			abort();
	}
	ids->v[ids->n++] = id;
	return ids->limit >= 0 && (long) ids->n >= ids->limit;
}

/* Whole file dir/name into an exact-size heap buffer (plus a NUL), or NULL. */
static inline uint8_t *
read_file(const char *dir, const char *name, size_t *len)
{
	char		path[4096];
	FILE	   *f;
	long		n;
	uint8_t    *buf;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
	{
		fclose(f);
		return NULL;
	}
	buf = malloc((size_t) n + 1);
	if (buf == NULL || fread(buf, 1, (size_t) n, f) != (size_t) n)
	{
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = 0;
	*len = (size_t) n;
	return buf;
}

#endif
