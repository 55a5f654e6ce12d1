/*
 * copy_text.h - undo PostgreSQL COPY text escaping, the line format of the
 * corpus and fixtures (test/oracle/copytext.py writes it). For test programs.
 */
#ifndef PGBERT_TEST_COPY_TEXT_H
#define PGBERT_TEST_COPY_TEXT_H

#include <stddef.h>

/* Unescape s[0..len) in place (\\ \t \n \r \b \f \v); returns the new length. */
static inline size_t
copy_unescape(char *s, size_t len)
{
	size_t		o = 0;

	for (size_t i = 0; i < len; i++)
	{
		char		r = 0;

		if (s[i] == '\\' && i + 1 < len)
		{
			switch (s[i + 1])
			{
				case '\\': r = '\\'; break;
				case 't': r = '\t'; break;
				case 'n': r = '\n'; break;
				case 'r': r = '\r'; break;
				case 'b': r = '\b'; break;
				case 'f': r = '\f'; break;
				case 'v': r = '\v'; break;
			}
		}
		if (r)
		{
			s[o++] = r;
			i++;
		}
		else
			s[o++] = s[i];
	}
	return o;
}

#endif
