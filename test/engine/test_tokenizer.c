/*
 * test_tokenizer.c - engine tokenizer tests: oracle parity and edge cases, no server.
 *
 *   test_tokenizer FIXTURE_DIR VOCAB
 *
 * Parity: every corpus line under four settings must give exactly the ids
 * Hugging Face's BertTokenizer gave (fixtures from test/oracle/). The edge
 * cases check what the oracle cannot express (invalid UTF-8, NUL, callbacks,
 * bounded work on huge inputs, vocabulary parsing) through relations between
 * outputs rather than hard-coded ids.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "copy_text.h"
#include "testing.h"
#include "tokenizer.h"
#include "unicode.h"

static const char *fixture_dir;
static const char *vocab_path;

/* ---- helpers ---- */

static int
ids_progress(void *arg)
{
	((Ids *) arg)->progress_calls++;
	return 0;
}

/* Tokenize into a fresh Ids (caller frees v). */
static BtStatus
tokenize(const BtTokenizer *tk, const char *s, size_t len, long limit, Ids *out, size_t *err_off)
{
	BtSink		sink;
	BtStatus	st;

	memset(out, 0, sizeof(*out));
	out->limit = limit;
	memset(&sink, 0, sizeof(sink));
	sink.emit = ids_emit;
	sink.progress = ids_progress;
	sink.arg = out;
	if (limit == 0)
		return BT_OK;			/* nothing wanted: as the SQL layer, do not run */
	st = bt_tokenize(tk, s, len, &sink);
	if (err_off)
		*err_off = sink.error_offset;
	return st;
}

static int
same_ids(const Ids *a, const Ids *b)
{
	return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(int32_t)) == 0);
}

static int
tokenize_equal(const BtTokenizer *tk, const char *a, size_t alen, const char *b, size_t blen)
{
	Ids			x,
				y;
	int			eq;

	tokenize(tk, a, alen, -1, &x, NULL);
	tokenize(tk, b, blen, -1, &y, NULL);
	eq = same_ids(&x, &y);
	free(x.v);
	free(y.v);
	return eq;
}

static BtTokenizer *
make_tokenizer(int lowercase, int strip, int chinese)
{
	char		err[256];
	BtVocab    *v = bt_vocab_load(vocab_path, err, sizeof err);
	BtTokenizerOptions o;
	BtTokenizer *tk;

	if (v == NULL)
	{
		fprintf(stderr, "test_tokenizer: %s\n", err);
		exit(2);
	}
	o.lowercase = lowercase;
	o.strip_accents = strip;
	o.chinese_chars = chinese;
	tk = bt_tokenizer_create(v, &o, err, sizeof err);
	if (tk == NULL)
	{
		fprintf(stderr, "test_tokenizer: %s\n", err);
		exit(2);
	}
	return tk;
}

/* Parse "{1,2,3}" into ids. */
static void
parse_int_array(const char *s, Ids *out)
{
	memset(out, 0, sizeof(*out));
	out->limit = -1;
	s = strchr(s, '{');
	if (!s)
		return;
	s++;
	while (*s && *s != '}')
	{
		char	   *end;
		long		v = strtol(s, &end, 10);

		if (end == s)
			break;
		ids_emit(out, (int32_t) v);
		s = end;
		if (*s == ',')
			s++;
	}
}

typedef struct Lines
{
	char	   *buf;
	char	  **line;
	size_t	   *len;
	size_t		n;
} Lines;

/* Read a whole file (through gzip -dc for .gz) split on '\n' only. */
static Lines
read_lines(const char *name)
{
	char		path[1024],
				cmd[1200];
	FILE	   *f;
	char	   *buf = NULL;
	size_t		len = 0,
				cap = 0,
				got;
	Lines		l = {0};
	int			gz = strlen(name) > 3 && strcmp(name + strlen(name) - 3, ".gz") == 0;

	snprintf(path, sizeof path, "%s/%s", fixture_dir, name);
	if (gz)
	{
		snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
		f = popen(cmd, "r");
	}
	else
		f = fopen(path, "rb");
	if (!f)
	{
		fprintf(stderr, "test_tokenizer: cannot read %s\n", path);
		exit(2);
	}
	do
	{
		if (len + 65536 > cap)
		{
			cap = (cap + 65536) * 2;
			buf = realloc(buf, cap);
		}
		got = fread(buf + len, 1, cap - len - 1, f);
		len += got;
	} while (got > 0);
	if (gz ? pclose(f) != 0 : fclose(f) != 0)
	{
		fprintf(stderr, "test_tokenizer: error reading %s\n", path);
		exit(2);
	}
	for (size_t i = 0; i < len; i++)
		l.n += buf[i] == '\n';
	l.buf = buf;
	l.line = malloc(sizeof(char *) * (l.n + 1));
	l.len = malloc(sizeof(size_t) * (l.n + 1));
	for (size_t i = 0, start = 0, k = 0; i < len; i++)
	{
		if (buf[i] == '\n')
		{
			buf[i] = '\0';
			l.line[k] = buf + start;
			l.len[k] = i - start;
			k++;
			start = i + 1;
		}
	}
	return l;
}

static void
free_lines(Lines *l)
{
	free(l->buf);
	free(l->line);
	free(l->len);
}

/* ---- parity with the oracle ---- */

static void
test_corpus_setting(const Lines *corpus, const char *setting, int lower, int strip, int chinese)
{
	BtTokenizer *tk = make_tokenizer(lower, strip, chinese);
	char		name[256];
	Lines		want;
	size_t		bad = 0;

	snprintf(name, sizeof name, "tokenizer_ids_%s.txt.gz", setting);
	want = read_lines(name);
	if (want.n != corpus->n)
	{
		check(0, "parity %s: %zu fixture lines for %zu corpus lines", setting, want.n, corpus->n);
		free_lines(&want);
		bt_tokenizer_free(tk);
		return;
	}
	for (size_t i = 0; i < corpus->n; i++)
	{
		Ids			got,
					exp;
		int			eq;

		tokenize(tk, corpus->line[i], corpus->len[i], -1, &got, NULL);
		parse_int_array(want.line[i], &exp);
		eq = exp.n == got.n + 2 && exp.v[0] == tk->cls_id && exp.v[exp.n - 1] == tk->sep_id &&
			(got.n == 0 || memcmp(exp.v + 1, got.v, got.n * sizeof(int32_t)) == 0);
		if (!eq && ++bad <= 5)
			printf("     %s line %zu differs (expected %zu ids, got %zu+2)\n",
				   setting, i + 1, exp.n, got.n);
		free(got.v);
		free(exp.v);
	}
	check(bad == 0, "parity %s: %zu of %zu corpus lines identical to the oracle",
		  setting, corpus->n - bad, corpus->n);
	free_lines(&want);
	bt_tokenizer_free(tk);
}

static void
test_truncation(const Lines *corpus)
{
	BtTokenizer *tk = make_tokenizer(1, -1, 1);
	Lines		rows = read_lines("tokenizer_truncation.txt");
	size_t		bad = 0;

	for (size_t i = 0; i < rows.n; i++)
	{
		long		line_no,
					max_length;
		char	   *p = rows.line[i];
		Ids			got,
					exp;

		line_no = strtol(p, &p, 10);
		max_length = strtol(p, &p, 10);
		parse_int_array(p, &exp);
		tokenize(tk, corpus->line[line_no - 1], corpus->len[line_no - 1], max_length - 2, &got, NULL);
		if (!(exp.n == got.n + 2 && (got.n == 0 || memcmp(exp.v + 1, got.v, got.n * 4) == 0)))
		{
			if (++bad <= 5)
				printf("     truncation line %ld max_length %ld differs\n", line_no, max_length);
		}
		free(got.v);
		free(exp.v);
	}
	check(bad == 0 && rows.n > 0, "truncation: %zu of %zu cases identical to the oracle",
		  rows.n - bad, rows.n);
	free_lines(&rows);
	bt_tokenizer_free(tk);
}

static void
test_hf_cases(void)
{
	BtTokenizer *uncased = make_tokenizer(1, -1, 1);
	BtTokenizer *cased = make_tokenizer(0, -1, 1);
	Lines		rows = read_lines("tokenizer_cases.txt");

	for (size_t i = 0; i < rows.n; i++)
	{
		BtTokenizer *tk = rows.line[i][0] == 't' ? uncased : cased;
		char	   *text = rows.line[i] + 2;
		char	   *t1 = strchr(text, '\t');
		char	   *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
		size_t		tlen;
		Ids			got,
					exp;
		char		pieces[4096] = "{";
		int			eq;

		if (!t2)
		{
			check(0, "hf case %zu malformed", i + 1);
			continue;
		}
		*t1 = *t2 = '\0';
		tlen = copy_unescape(text, (size_t) (t1 - text));
		copy_unescape(t1 + 1, strlen(t1 + 1));
		parse_int_array(t2 + 1, &exp);
		tokenize(tk, text, tlen, -1, &got, NULL);
		for (size_t k = 0; k < got.n; k++)
		{
			const char *tok = bt_vocab_token(tk->vocab, got.v[k], NULL);

			snprintf(pieces + strlen(pieces), sizeof pieces - strlen(pieces), "%s\"%s\"",
					 k ? "," : "", tok);
		}
		strcat(pieces, "}");
		eq = exp.n == got.n + 2 && (got.n == 0 || memcmp(exp.v + 1, got.v, got.n * 4) == 0) &&
			strcmp(pieces, t1 + 1) == 0;
		check(eq, "hf case %zu (%s): pieces %s", i + 1, tk == cased ? "cased" : "uncased", pieces);
		free(got.v);
		free(exp.v);
	}
	free_lines(&rows);
	bt_tokenizer_free(uncased);
	bt_tokenizer_free(cased);
}

/* ---- edge cases ---- */

static void
test_invalid_utf8(void)
{
	BtTokenizer *tk = make_tokenizer(1, -1, 1);
	static const struct
	{
		const char *s;
		size_t		offset;
		const char *what;
	}			cases[] = {
		{"ab\xFFz", 2, "0xFF byte"},
		{"ab\xC0\xAFz", 2, "overlong '/'"},
		{"a\xED\xA0\x80z", 1, "encoded surrogate"},
		{"abc\xE2\x82", 3, "truncated sequence"},
		{"\x80", 0, "lone continuation byte"},
		{"a\xF4\x90\x80\x80", 1, "above U+10FFFF"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
	{
		Ids			got;
		size_t		off = 999;
		BtStatus	st = tokenize(tk, cases[i].s, strlen(cases[i].s), -1, &got, &off);

		check(st == BT_INVALID_UTF8 && off == cases[i].offset,
			  "invalid UTF-8 (%s) rejected at byte %zu", cases[i].what, off);
		free(got.v);
	}
	bt_tokenizer_free(tk);
}

static void
test_relations(void)
{
	BtTokenizer *tk = make_tokenizer(1, -1, 1);
	BtTokenizer *cased = make_tokenizer(0, -1, 1);
	char	   *zalgo = malloc(1 + 300 * 2);
	Ids			got;

	/* clean_text drops NUL like any control character */
	check(tokenize_equal(tk, "a\0b c", 5, "ab c", 4), "NUL is removed like HF's clean_text");

	/* 300 combining acute accents on one letter: stripped in uncased, [UNK] in cased */
	zalgo[0] = 'a';
	for (int i = 0; i < 300; i++)
		memcpy(zalgo + 1 + 2 * i, "\xCC\x81", 2);
	check(tokenize_equal(tk, zalgo, 601, "a", 1), "300 stripped marks leave the bare letter");
	tokenize(cased, zalgo, 601, -1, &got, NULL);
	check(got.n == 1 && got.v[0] == cased->unk_id, "301 code points without stripping are one [UNK]");
	free(got.v);
	free(zalgo);

	/* the emit callback can stop early */
	tokenize(tk, "one two three four five", 23, 2, &got, NULL);
	check(got.n == 2, "emit returning nonzero stops after 2 ids (got %zu)", got.n);
	free(got.v);

	bt_tokenizer_free(tk);
	bt_tokenizer_free(cased);
}

static void
test_huge_inputs(void)
{
	BtTokenizer *tk = make_tokenizer(1, -1, 1);
	size_t		len = 10 * 1024 * 1024;
	char	   *s = malloc(len);
	Ids			got,
				unit;
	const char *phrase = "hello world ";
	size_t		plen = strlen(phrase);

	/* 10 MB of a repeated phrase: ids are the phrase's ids repeated, progress reported */
	for (size_t i = 0; i < len; i++)
		s[i] = phrase[i % plen];
	len -= len % plen;
	tokenize(tk, phrase, plen, -1, &unit, NULL);
	tokenize(tk, s, len, -1, &got, NULL);
	check(got.n == unit.n * (len / plen), "10 MB text: %zu ids = %zu repeats x %zu",
		  got.n, len / plen, unit.n);
	check(got.progress_calls >= (long) (len / BT_PROGRESS_BYTES) - 1,
		  "10 MB text: progress callback called %ld times", got.progress_calls);
	free(got.v);
	free(unit.v);

	/* one 10 MB word: a single [UNK], nothing buffered beyond 100 code points */
	memset(s, 'a', len);
	tokenize(tk, s, len, -1, &got, NULL);
	check(got.n == 1 && got.v[0] == tk->unk_id, "10 MB single word is one [UNK]");
	free(got.v);
	free(s);
	bt_tokenizer_free(tk);
}

static void
test_vocab_parsing(void)
{
	char		err[256];
	const char	data[] = "[PAD]\r\n[UNK]  \nfoo\n##bar\nfoo\n\nbaz";
	BtVocab    *v = bt_vocab_parse(data, sizeof data - 1, err, sizeof err);
	size_t		len;

	check(v != NULL && v->size == 7, "vocab: 7 lines, last without newline");
	if (!v)
		return;
	check(bt_vocab_find(v, "[UNK]", 5) == 1, "vocab: trailing spaces and CR trimmed");
	check(bt_vocab_find(v, "foo", 3) == 4, "vocab: repeated token keeps its last id");
	check(bt_vocab_find_continuation(v, "bar", 3) == 3 && bt_vocab_find(v, "##bar", 5) == 3,
		  "vocab: continuation piece found with and without ##");
	check(bt_vocab_find(v, "", 0) == 5, "vocab: empty line is a token");
	check(strcmp(bt_vocab_token(v, 6, &len), "baz") == 0 && len == 3 &&
		  bt_vocab_token(v, 7, NULL) == NULL, "vocab: id to token, out of range is NULL");
	bt_vocab_free(v);

	check(bt_vocab_parse("", 0, err, sizeof err) == NULL && strstr(err, "empty"),
		  "vocab: empty file rejected (%s)", err);
	{
		BtTokenizerOptions o = bt_tokenizer_default_options();
		BtVocab    *nounk = bt_vocab_parse("a\nb\n", 4, err, sizeof err);

		check(bt_tokenizer_create(nounk, &o, err, sizeof err) == NULL && strstr(err, "[UNK]"),
			  "tokenizer: vocabulary without [UNK] rejected (%s)", err);
	}
	check(bt_vocab_load("/nonexistent/vocab.txt", err, sizeof err) == NULL &&
		  strstr(err, "could not open"), "vocab: missing file reported (%s)", err);
}

/*
 * vocab.txt line endings as Hugging Face's BertTokenizer reads them (fixture from
 * test/oracle/gen_vocab_fixtures.py): CRLF, a lone CR inside a line (kept), trailing
 * White_Space (trimmed), an empty line, a last line with a CR and no LF.
 */
static void
test_vocab_line_endings(void)
{
	char		path[4096],
				err[256];
	json_error_t jerr;
	json_t	   *exp,
			   *item;
	size_t		i;
	BtVocab    *v;
	BtTokenizer *tk;
	BtTokenizerOptions o = bt_tokenizer_default_options();
	int			vocab_ok = 1;

	snprintf(path, sizeof path, "%s/vocab_line_endings/expected.json", fixture_dir);
	exp = json_load_file(path, 0, &jerr);
	snprintf(path, sizeof path, "%s/vocab_line_endings/vocab.txt", fixture_dir);
	v = bt_vocab_load(path, err, sizeof err);
	check(exp != NULL && v != NULL, "vocab line endings: fixture loads (%s)", v ? jerr.text : err);
	if (exp == NULL || v == NULL)
		return;
	check(v->size == json_integer_value(json_object_get(exp, "lines")),
		  "vocab line endings: %u tokens, one a line", v->size);
	json_array_foreach(json_object_get(exp, "vocab"), i, item)
	{
		const char *tok = json_string_value(json_array_get(item, 0));
		int32_t		id = (int32_t) json_integer_value(json_array_get(item, 1));
		size_t		len;
		const char *mine = bt_vocab_token(v, id, &len);

		if (bt_vocab_find(v, tok, strlen(tok)) != id || mine == NULL || len != strlen(tok) ||
			memcmp(mine, tok, len) != 0)
		{
			check(0, "vocab line endings: token %d is \"%s\" as Hugging Face reads it", id, tok);
			vocab_ok = 0;
		}
	}
	check(vocab_ok, "vocab line endings: every token and id as Hugging Face's BertTokenizer");
	tk = bt_tokenizer_create(v, &o, err, sizeof err);
	check(tk != NULL, "vocab line endings: tokenizer (%s)", err);
	if (tk != NULL)
	{
		json_array_foreach(json_object_get(exp, "cases"), i, item)
		{
			const char *text = json_string_value(json_object_get(item, "text"));
			json_t	   *ids = json_object_get(item, "ids");
			Ids			got;
			int			eq;

			tokenize(tk, text, strlen(text), -1, &got, NULL);
			eq = got.n + 2 == json_array_size(ids);
			for (size_t k = 0; eq && k < got.n; k++)
				eq = got.v[k] == json_integer_value(json_array_get(ids, k + 1));
			check(eq, "vocab line endings: ids of case %zu as Hugging Face", i + 1);
			free(got.v);
		}
		bt_tokenizer_free(tk);		/* frees v, as a failed create does */
	}
	json_decref(exp);
}

/* bt_keep_head_tail: the first quarter and the last three quarters, in order. */
static void
test_head_tail(void)
{
	int32_t		ids[300];
	int			ok = 1;
	size_t		n;

	for (int i = 0; i < 300; i++)
		ids[i] = i;
	n = bt_keep_head_tail(ids, 300, 126);
	for (int i = 0; i < 31; i++)
		ok &= ids[i] == i;
	for (int i = 31; i < 126; i++)
		ok &= ids[i] == 300 - 126 + i;
	check(n == 126 && ok, "head_tail keeps ids 0..30 and 205..299 of 300 for 126 places");
	for (int i = 0; i < 300; i++)
		ids[i] = i;
	check(bt_keep_head_tail(ids, 100, 126) == 100 && ids[99] == 99, "a text that fits is left as it is");
	n = bt_keep_head_tail(ids, 5, 3);
	check(n == 3 && ids[0] == 2 && ids[1] == 3 && ids[2] == 4, "3 places: no head, the last 3");
}

int
main(int argc, char **argv)
{
	Lines		corpus;

	if (argc != 3)
	{
		fprintf(stderr, "usage: test_tokenizer FIXTURE_DIR VOCAB\n");
		return 2;
	}
	fixture_dir = argv[1];
	vocab_path = argv[2];
	printf("utf8proc Unicode %s, tables: %s\n", bt_uc_utf8proc_version(), bt_uc_reference_tables_id());
	check(bt_uc_tables_current(), "reference tables match the linked utf8proc");

	corpus = read_lines("tokenizer_corpus.txt");
	for (size_t i = 0; i < corpus.n; i++)
		corpus.len[i] = copy_unescape(corpus.line[i], corpus.len[i]);
	check(corpus.n >= 20000, "corpus has %zu lines", corpus.n);

	test_corpus_setting(&corpus, "uncased", 1, -1, 1);
	test_corpus_setting(&corpus, "cased", 0, -1, 1);
	test_corpus_setting(&corpus, "lower_nostrip", 1, 0, 1);
	test_corpus_setting(&corpus, "cased_strip_nocjk", 0, 1, 0);
	test_truncation(&corpus);
	test_head_tail();
	test_hf_cases();
	test_invalid_utf8();
	test_relations();
	test_huge_inputs();
	test_vocab_parsing();
	test_vocab_line_endings();
	free_lines(&corpus);

	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
