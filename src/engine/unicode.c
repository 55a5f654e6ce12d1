/*
 * unicode.c - character properties for the BERT normalizer and pre-tokenizer.
 *
 * Defaults come from utf8proc. The reference tokenizer (HF tokenizers) uses
 * older tables (Unicode 8 categories, Unicode 9 NFD) and Rust's lowercasing,
 * so the generated reference_tables.h lists every code point where the two
 * disagree, and those entries win. Flags of the Basic Multilingual Plane are
 * cached in a 64 KiB table built once per process.
 */
#include "unicode.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "reference_tables.h"

#define BT_UC_DEFAULT_FLAG_MASK (BT_UC_CONTROL | BT_UC_SPACE | BT_UC_PUNCT | BT_UC_MARK)

static uint8_t bmp_flags[0x10000];
static pthread_once_t bmp_once = PTHREAD_ONCE_INIT;

/* CJK ideograph blocks exactly as tokenizers' BertNormalizer lists them (its 0x2B920 included). */
static int
is_cjk(int32_t cp)
{
	return (cp >= 0x4E00 && cp <= 0x9FFF) ||
		(cp >= 0x3400 && cp <= 0x4DBF) ||
		(cp >= 0x20000 && cp <= 0x2A6DF) ||
		(cp >= 0x2A700 && cp <= 0x2B73F) ||
		(cp >= 0x2B740 && cp <= 0x2B81F) ||
		(cp >= 0x2B920 && cp <= 0x2CEAF) ||
		(cp >= 0xF900 && cp <= 0xFAFF) ||
		(cp >= 0x2F800 && cp <= 0x2FA1F);
}

static int
is_ascii_punct(int32_t cp)
{
	return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) ||
		(cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
}

static int
valid_cp(int32_t cp)
{
	return cp >= 0 && cp <= 0x10FFFF;
}

uint8_t
bt_uc_default_flags(int32_t cp)
{
	utf8proc_category_t cat;
	uint8_t		f = 0;
	int32_t		buf[BT_UC_MAX_DECOMP];

	if (!valid_cp(cp))
		return BT_UC_CONTROL;
	cat = utf8proc_category(cp);
	if (cp == 0 || cp == 0xFFFD ||
		(cp != '\t' && cp != '\n' && cp != '\r' &&
		 (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
		  cat == UTF8PROC_CATEGORY_CO)))
		f |= BT_UC_CONTROL;
	if ((cp >= 9 && cp <= 13) || cp == 0x20 || cp == 0x85 ||
		cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
		cat == UTF8PROC_CATEGORY_ZP)
		f |= BT_UC_SPACE;
	if (is_ascii_punct(cp) ||
		(cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO))
		f |= BT_UC_PUNCT;
	if (cat == UTF8PROC_CATEGORY_MN)
		f |= BT_UC_MARK;
	if (is_cjk(cp))
		f |= BT_UC_CJK;
	if (bt_uc_default_decompose(cp, buf) != 1 || buf[0] != cp)
		f |= BT_UC_DECOMP;
	if (bt_uc_default_lower(cp, buf) != 1 || buf[0] != cp)
		f |= BT_UC_LOWER;
	if (utf8proc_get_property(cp)->combining_class != 0)
		f |= BT_UC_NONSTARTER;
	return f;
}

int
bt_uc_default_ccc(int32_t cp)
{
	if (!valid_cp(cp))
		return 0;
	return utf8proc_get_property(cp)->combining_class;
}

int
bt_uc_default_decompose(int32_t cp, int32_t *out)
{
	int			boundclass = 0;
	utf8proc_ssize_t n;

	if (!valid_cp(cp))
	{
		out[0] = cp;
		return 1;
	}
	n = utf8proc_decompose_char(cp, out, BT_UC_MAX_DECOMP, UTF8PROC_DECOMPOSE,
								&boundclass);
	if (n < 1 || n > BT_UC_MAX_DECOMP)
	{
		out[0] = cp;
		return 1;
	}
	return (int) n;
}

int
bt_uc_default_lower(int32_t cp, int32_t *out)
{
	if (!valid_cp(cp))
	{
		out[0] = cp;
		return 1;
	}
	out[0] = utf8proc_tolower(cp);
	return 1;
}

/*
 * Index of the entry whose code points [first, last] hold cp in a table sorted
 * by code point, or -1. Entries are `stride` bytes with int32 bounds at
 * first_at and last_at (one offset twice for tables of single code points),
 * so that the three reference tables share one search.
 */
static inline ptrdiff_t
find_code_point(const void *table, size_t n, size_t stride, size_t first_at, size_t last_at, int32_t cp)
{
	const char *base = table;
	size_t		lo = 0,
				hi = n;

	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;
		int32_t		first,
					last;

		memcpy(&first, base + mid * stride + first_at, sizeof(first));
		memcpy(&last, base + mid * stride + last_at, sizeof(last));
		if (last < cp)
			lo = mid + 1;
		else if (first > cp)
			hi = mid;
		else
			return (ptrdiff_t) mid;
	}
	return -1;
}

#define TABLE_LENGTH(t) (sizeof(t) / sizeof((t)[0]))

/* Whether cp is in a sorted int32 list. */
static int
in_sorted(const int32_t *list, size_t n, int32_t cp)
{
	return find_code_point(list, n, sizeof(int32_t), 0, 0, cp) >= 0;
}

/* Reference flag override for cp, or -1. */
static int
ref_flag_override(int32_t cp)
{
	ptrdiff_t	i = find_code_point(bt_ref_flags, TABLE_LENGTH(bt_ref_flags), sizeof(BtRefFlagRange),
									offsetof(BtRefFlagRange, lo), offsetof(BtRefFlagRange, hi), cp);

	return i < 0 ? -1 : bt_ref_flags[i].flags;
}

/* The reference's lowercasing of cp where it differs from utf8proc's, or NULL. */
static const BtRefLower *
ref_lower_override(int32_t cp)
{
	ptrdiff_t	i = find_code_point(bt_ref_lower, TABLE_LENGTH(bt_ref_lower), sizeof(BtRefLower),
									offsetof(BtRefLower, cp), offsetof(BtRefLower, cp), cp);

	return i < 0 ? NULL : &bt_ref_lower[i];
}

int
bt_uc_ccc(int32_t cp)
{
	if (in_sorted(bt_ref_starters, TABLE_LENGTH(bt_ref_starters), cp))
		return 0;
	return bt_uc_default_ccc(cp);
}

int
bt_uc_decompose(int32_t cp, int32_t *out)
{
	if (in_sorted(bt_ref_no_decomp, TABLE_LENGTH(bt_ref_no_decomp), cp))
	{
		out[0] = cp;
		return 1;
	}
	return bt_uc_default_decompose(cp, out);
}

int
bt_uc_lower(int32_t cp, int32_t *out)
{
	const BtRefLower *o = ref_lower_override(cp);

	if (o)
	{
		for (int i = 0; i < o->n; i++)
			out[i] = o->to[i];
		return o->n;
	}
	return bt_uc_default_lower(cp, out);
}

/* Reference flags computed from scratch (no cache). */
static uint8_t
compute_flags(int32_t cp)
{
	uint8_t		f = bt_uc_default_flags(cp);
	int			o = ref_flag_override(cp);
	int32_t		buf[BT_UC_MAX_DECOMP];

	if (o >= 0)
		f = (uint8_t) ((f & ~BT_UC_DEFAULT_FLAG_MASK) | (o & BT_UC_DEFAULT_FLAG_MASK));
	f &= ~(BT_UC_DECOMP | BT_UC_LOWER | BT_UC_NONSTARTER);
	if (bt_uc_decompose(cp, buf) != 1 || buf[0] != cp)
		f |= BT_UC_DECOMP;
	if (bt_uc_lower(cp, buf) != 1 || buf[0] != cp)
		f |= BT_UC_LOWER;
	if (bt_uc_ccc(cp) != 0)
		f |= BT_UC_NONSTARTER;
	return f;
}

/* Flags of every BMP code point, computed once (pthread_once) so that the tokenizer's lookups are a table read. */
static void
build_bmp_cache(void)
{
	for (int32_t cp = 0; cp < 0x10000; cp++)
		bmp_flags[cp] = compute_flags(cp);
}

uint8_t
bt_uc_flags(int32_t cp)
{
	if (cp >= 0 && cp < 0x10000)
	{
		pthread_once(&bmp_once, build_bmp_cache);
		return bmp_flags[cp];
	}
	if (!valid_cp(cp))
		return BT_UC_CONTROL;
	return compute_flags(cp);
}

const char *
bt_uc_utf8proc_version(void)
{
	return utf8proc_unicode_version();
}

const char *
bt_uc_reference_tables_id(void)
{
	return BT_REF_TABLES_ID;
}

int
bt_uc_tables_current(void)
{
	const char *a = BT_REF_UTF8PROC_UNICODE,
			   *b = utf8proc_unicode_version();

	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

const uint8_t *
bt_uc_bmp_flags(void)
{
	pthread_once(&bmp_once, build_bmp_cache);
	return bmp_flags;
}
