/*
 * unidump.c - per-code-point dumps that test/oracle/gen_unicode_tables.py
 * compares with the reference tokenizer.
 *
 *   unidump version
 *     the Unicode version of the linked utf8proc
 *   unidump defaults
 *     one line per code point (surrogates skipped), from utf8proc alone:
 *     "CP FLAGS CCC DECOMP LOWER" (hex; sequences joined by '.')
 *   unidump words VOCAB LOWER STRIP CHINESE
 *     one line per code point c (surrogates and U+0000 skipped): the normalized,
 *     pre-tokenized words of "x" c "x" from the real pipeline, as hex code
 *     points joined by '.', words separated by ' '
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "unicode.h"

static void
print_seq(const int32_t *s, int n)
{
	for (int i = 0; i < n; i++)
		printf(i ? ".%X" : "%X", (unsigned) s[i]);
}

static int
encode_utf8(int32_t cp, char *o)
{
	if (cp < 0x80)
		return o[0] = (char) cp, 1;
	if (cp < 0x800)
		return o[0] = (char) (0xC0 | (cp >> 6)), o[1] = (char) (0x80 | (cp & 0x3F)), 2;
	if (cp < 0x10000)
		return o[0] = (char) (0xE0 | (cp >> 12)), o[1] = (char) (0x80 | ((cp >> 6) & 0x3F)),
			o[2] = (char) (0x80 | (cp & 0x3F)), 3;
	o[0] = (char) (0xF0 | (cp >> 18));
	o[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/* Print one word as dotted hex code points. */
static int
print_word(void *arg, const char *w, size_t len)
{
	int		   *first = arg;
	const unsigned char *p = (const unsigned char *) w;
	size_t		i = 0;
	int			k = 0;

	if (!*first)
		putchar(' ');
	*first = 0;
	while (i < len)
	{
		int32_t		cp;
		int			n = p[i] < 0x80 ? 1 : p[i] < 0xE0 ? 2 : p[i] < 0xF0 ? 3 : 4;

		if (n == 1)
			cp = p[i];
		else if (n == 2)
			cp = ((p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
		else if (n == 3)
			cp = ((p[i] & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
		else
			cp = ((p[i] & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) |
				((p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
		printf(k++ ? ".%X" : "%X", (unsigned) cp);
		i += n;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "version") == 0)
	{
		printf("%s\n", bt_uc_utf8proc_version());
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "defaults") == 0)
	{
		for (int32_t cp = 0; cp <= 0x10FFFF; cp++)
		{
			int32_t		d[BT_UC_MAX_DECOMP],
						l[BT_UC_MAX_LOWER];
			int			nd,
						nl;

			if (cp >= 0xD800 && cp <= 0xDFFF)
				continue;
			nd = bt_uc_default_decompose(cp, d);
			nl = bt_uc_default_lower(cp, l);
			printf("%X %X %X ", (unsigned) cp, bt_uc_default_flags(cp), bt_uc_default_ccc(cp));
			print_seq(d, nd);
			putchar(' ');
			print_seq(l, nl);
			putchar('\n');
		}
		return 0;
	}
	if (argc == 6 && strcmp(argv[1], "words") == 0)
	{
		char		err[256];
		BtVocab    *v = bt_vocab_load(argv[2], err, sizeof err);
		BtTokenizerOptions o;
		BtTokenizer *tk;

		if (v == NULL)
		{
			fprintf(stderr, "unidump: %s\n", err);
			return 1;
		}
		o.lowercase = atoi(argv[3]) != 0;
		o.strip_accents = atoi(argv[4]);
		o.chinese_chars = atoi(argv[5]) != 0;
		tk = bt_tokenizer_create(v, &o, err, sizeof err);
		if (tk == NULL)
		{
			fprintf(stderr, "unidump: %s\n", err);
			return 1;
		}
		for (int32_t cp = 1; cp <= 0x10FFFF; cp++)
		{
			char		buf[8];
			int			n;
			int			first = 1;

			if (cp >= 0xD800 && cp <= 0xDFFF)
				continue;
			buf[0] = 'x';
			n = encode_utf8(cp, buf + 1);
			buf[n + 1] = 'x';
			printf("%X\t", (unsigned) cp);
			bt_pretokenize(tk, buf, (size_t) n + 2, print_word, &first);
			putchar('\n');
		}
		bt_tokenizer_free(tk);
		return 0;
	}
	fprintf(stderr, "usage: unidump defaults | unidump words VOCAB LOWER STRIP CHINESE\n");
	return 2;
}
