/*
 * test_safetensors.c - safetensors parser tests: exact conversions, every rejection, golden file.
 *
 *   test_safetensors FIXTURE_DIR      (the folder with golden.safetensors and golden.json)
 *
 * Blobs are assembled in memory and always handed to the parser in a heap
 * buffer of exactly their length, so a sanitizer build catches any read past
 * the end. The golden file comes from the reference implementation
 * (test/oracle/gen_safetensors_fixtures.py) with numpy's float32 values.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "testing.h"

/* ---- helpers ---- */

/* Bits of a float, for exact comparisons (-0.0 and NaN included). */
static uint32_t
f32_bits(float f)
{
	uint32_t	b;

	memcpy(&b, &f, sizeof b);
	return b;
}

/* Exact-size heap copy of bytes, so sanitizers see the true end. */
static uint8_t *
dup_bytes(const void *p, size_t len)
{
	uint8_t    *q = malloc(len ? len : 1);

	if (q == NULL)
		abort();
	if (len)
		memcpy(q, p, len);
	return q;
}

/*
 * A safetensors blob: the 8-byte length field (hlen_field, or the padded
 * header's real length when hlen_field is UINT64_MAX), the header padded with
 * spaces to a multiple of 8 as Hugging Face writes it, then dlen data bytes
 * (data, or zeros when NULL). Returns an exact-size heap buffer.
 */
static uint8_t *
make_blob_raw(uint64_t hlen_field, const char *header, size_t hdr_len, const void *data,
			  size_t dlen, size_t *len)
{
	size_t		padded = (hdr_len + 7) / 8 * 8;
	uint64_t	field = hlen_field == UINT64_MAX ? padded : hlen_field;
	uint8_t    *b;

	*len = 8 + padded + dlen;
	b = malloc(*len);
	if (b == NULL)
		abort();
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t) (field >> (8 * i));
	memcpy(b + 8, header, hdr_len);
	memset(b + 8 + hdr_len, ' ', padded - hdr_len);
	if (data)
		memcpy(b + 8 + padded, data, dlen);
	else
		memset(b + 8 + padded, 0, dlen);
	return b;
}

static uint8_t *
make_blob(const char *header, const void *data, size_t dlen, size_t *len)
{
	return make_blob_raw(UINT64_MAX, header, strlen(header), data, dlen, len);
}

/* Whether s is valid UTF-8 (shortest forms, no surrogates). */
static int
valid_utf8(const char *s)
{
	const unsigned char *u = (const unsigned char *) s;

	while (*u)
	{
		int			n = *u < 0x80 ? 1 : *u >= 0xC2 && *u <= 0xDF ? 2 :
			*u >= 0xE0 && *u <= 0xEF ? 3 : *u >= 0xF0 && *u <= 0xF4 ? 4 : 0;

		if (n == 0)
			return 0;
		for (int i = 1; i < n; i++)
			if ((u[i] & 0xC0) != 0x80)
				return 0;
		if ((u[0] == 0xE0 && u[1] < 0xA0) || (u[0] == 0xED && u[1] > 0x9F) ||
			(u[0] == 0xF0 && u[1] < 0x90) || (u[0] == 0xF4 && u[1] > 0x8F))
			return 0;
		u += n;
	}
	return 1;
}

/* Parse blob (which is freed); check it fails with a valid UTF-8 error containing want. */
static void
expect_fail_blob(uint8_t *blob, size_t len, const char *want, const char *what)
{
	char		err[512] = "";
	BtSafetensors *st = bt_safetensors_parse(blob, len, err, sizeof err);

	check(st == NULL && strstr(err, want) != NULL && valid_utf8(err), "reject %s: %s", what,
		  st ? "(parsed!)" : err);
	bt_safetensors_free(st);
	free(blob);
}

/* Header text plus dlen zero data bytes must fail with want in the message. */
static void
expect_fail(const char *header, size_t dlen, const char *want, const char *what)
{
	size_t		len;
	uint8_t    *blob = make_blob(header, NULL, dlen, &len);

	expect_fail_blob(blob, len, want, what);
}

/* Header text plus dlen zero data bytes must parse into n tensors. */
static void
expect_ok(const char *header, size_t dlen, int n, const char *what)
{
	char		err[512] = "";
	size_t		len;
	uint8_t    *blob = make_blob(header, NULL, dlen, &len);
	BtSafetensors *st = bt_safetensors_parse(blob, len, err, sizeof err);

	check(st != NULL && st->n_tensors == n, "accept %s%s%s", what, st ? "" : ": ", st ? "" : err);
	bt_safetensors_free(st);
	free(blob);
}

/* ---- the valid file ---- */

static const uint32_t a_bits[6] = {0x3f800000, 0xc0200000, 0x00000000, 0x80000000, 0x7f7fffff, 0x00000001};
static const uint16_t b_half[10] = {0x0001, 0x8000, 0x7bff, 0x7c00, 0xfc00, 0x03ff, 0x0400, 0xc000, 0x7e00, 0x7d01};
static const uint32_t b_want[10] = {0x33800000, 0x80000000, 0x477fe000, 0x7f800000, 0xff800000,
0x387fc000, 0x38800000, 0xc0000000, 0x7fc00000, 0x7fa02000};
static const uint16_t c_bf16[4] = {0x3f80, 0xc049, 0x7f80, 0x0001};
static const uint32_t c_want[4] = {0x3f800000, 0xc0490000, 0x7f800000, 0x00010000};

/* Names deliberately out of order; data is 77 bytes. */
static const char valid_header[] =
"{\"f.scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[68,72]},"
"\"__metadata__\":{\"format\":\"pt\",\"note\":\"made by hand\"},"
"\"b.f16\":{\"dtype\":\"F16\",\"shape\":[10],\"data_offsets\":[24,44]},"
"\"a.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
"\"c.bf16\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[44,52]},"
"\"e.empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[68,68]},"
"\"d.i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[52,68]},"
"\"h.f4\":{\"dtype\":\"F4\",\"shape\":[3,2],\"data_offsets\":[74,77]},"
"\"g.f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[72,74]}}";

/* Little-endian data section of the valid file. */
static void
valid_data(uint8_t *d)
{
	size_t		o = 0;
	uint32_t	pi = 0x40490fdb;

	for (int i = 0; i < 6; i++, o += 4)
		for (int k = 0; k < 4; k++)
			d[o + k] = (uint8_t) (a_bits[i] >> (8 * k));
	for (int i = 0; i < 10; i++, o += 2)
		d[o] = (uint8_t) b_half[i], d[o + 1] = (uint8_t) (b_half[i] >> 8);
	for (int i = 0; i < 4; i++, o += 2)
		d[o] = (uint8_t) c_bf16[i], d[o + 1] = (uint8_t) (c_bf16[i] >> 8);
	for (int i = 0; i < 16; i++, o++)
		d[o] = (uint8_t) (i < 8 ? (i == 0 ? 7 : 0) : 0xff);	/* 7, -1 */
	for (int k = 0; k < 4; k++, o++)
		d[o] = (uint8_t) (pi >> (8 * k));
	d[o++] = 0x38, d[o++] = 0xb8;	/* F8_E4M3 1, -1 */
	d[o++] = 0x12, d[o++] = 0x34, d[o++] = 0x56;	/* F4 x 6 */
	if (o != 77)
		abort();
}

static uint8_t *
valid_blob(size_t *len)
{
	uint8_t		data[77];

	valid_data(data);
	return make_blob(valid_header, data, sizeof data, len);
}

/* Read a float tensor and compare every element's bits with want. */
static void
check_read(const BtSafetensors *st, const char *name, const uint32_t *want, size_t n)
{
	const BtTensor *t = bt_safetensors_find(st, name);
	float		out[16];
	char		err[256] = "";
	size_t		bad = 0;

	if (t == NULL || n > 16)
	{
		check(0, "read %s: tensor not found", name);
		return;
	}
	memset(out, 0xAA, sizeof out);
	if (bt_safetensors_read_f32(st, t, out, n, err, sizeof err) != 0)
	{
		check(0, "read %s: %s", name, err);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (f32_bits(out[i]) != want[i])
		{
			printf("     %s[%zu] = %08x, want %08x\n", name, i, f32_bits(out[i]), want[i]);
			bad++;
		}
	check(bad == 0, "read %s: %zu values bit-exact", name, n - bad);
}

static void
test_valid(void)
{
	size_t		len;
	uint8_t    *blob = valid_blob(&len);
	char		err[512] = "";
	BtSafetensors *st = bt_safetensors_parse(blob, len, err, sizeof err);
	const BtTensor *t;
	float		out[16];
	int			sorted = 1;

	check(st != NULL, "valid file parses%s%s", st ? "" : ": ", st ? "" : err);
	if (st == NULL)
	{
		free(blob);
		return;
	}
	check(st->n_tensors == 8, "valid file: 8 tensors (got %d), __metadata__ is not one", st->n_tensors);
	check(st->data_len == 77 && st->data == blob + len - 77 && st->file == blob &&
		  st->file_len == len, "valid file: data section is the last 77 bytes");
	for (int i = 1; i < st->n_tensors; i++)
		sorted &= strcmp(st->tensors[i - 1].name, st->tensors[i].name) < 0;
	check(sorted, "valid file: tensors sorted by name");

	check_read(st, "a.f32", a_bits, 6);
	check_read(st, "b.f16", b_want, 10);
	check_read(st, "c.bf16", c_want, 4);
	{
		uint32_t	pi = 0x40490fdb;

		check_read(st, "f.scalar", &pi, 1);
	}

	/* the same values as floats, so the expected bits are not self-referential */
	t = bt_safetensors_find(st, "b.f16");
	if (t && bt_safetensors_read_f32(st, t, out, 10, err, sizeof err) == 0)
		check(out[0] == 0x1p-24f && out[1] == 0.0f && signbit(out[1]) && out[2] == 65504.0f &&
			  isinf(out[3]) && out[3] > 0 && isinf(out[4]) && out[4] < 0 &&
			  out[5] == 1023 * 0x1p-24f && out[6] == 0x1p-14f && out[7] == -2.0f &&
			  isnan(out[8]) && isnan(out[9]),
			  "f16: 2^-24, -0, 65504, +-inf, largest subnormal, 2^-14, -2, NaNs");
	t = bt_safetensors_find(st, "c.bf16");
	if (t && bt_safetensors_read_f32(st, t, out, 4, err, sizeof err) == 0)
		check(out[0] == 1.0f && out[1] == -3.140625f && isinf(out[2]) && out[3] == 0x1p-133f,
			  "bf16: 1, -3.140625, inf, 2^-133");
	t = bt_safetensors_find(st, "a.f32");
	if (t && bt_safetensors_read_f32(st, t, out, 6, err, sizeof err) == 0)
		check(out[0] == 1.0f && out[1] == -2.5f && signbit(out[3]) && out[4] == 0x1.fffffep127f &&
			  out[5] == 0x1p-149f, "f32: 1, -2.5, -0, FLT_MAX, 2^-149");

	/* shapes, dtypes, sizes */
	t = bt_safetensors_find(st, "a.f32");
	check(t && t->dtype == BT_F32 && strcmp(t->dtype_name, "F32") == 0 && t->ndim == 2 &&
		  t->shape[0] == 2 && t->shape[1] == 3 && t->offset == 0 && t->nbytes == 24 &&
		  bt_tensor_numel(t) == 6, "a.f32: F32 [2,3] at [0,24)");
	t = bt_safetensors_find(st, "e.empty");
	check(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 4 && t->nbytes == 0 &&
		  t->offset == 68 && bt_tensor_numel(t) == 0 &&
		  bt_safetensors_read_f32(st, t, NULL, 0, err, sizeof err) == 0,
		  "e.empty: [0,4], 0 bytes, reads 0 elements");
	t = bt_safetensors_find(st, "f.scalar");
	check(t && t->ndim == 0 && t->nbytes == 4 && bt_tensor_numel(t) == 1, "f.scalar: shape [], 1 element");
	t = bt_safetensors_find(st, "g.f8");
	check(t && t->dtype == BT_OTHER && strcmp(t->dtype_name, "F8_E4M3") == 0 && t->nbytes == 2,
		  "g.f8: F8_E4M3 parses as BT_OTHER, 2 bytes");
	t = bt_safetensors_find(st, "h.f4");
	check(t && t->dtype == BT_OTHER && strcmp(t->dtype_name, "F4") == 0 && t->nbytes == 3 &&
		  bt_tensor_numel(t) == 6, "h.f4: 6 F4 elements in 3 bytes");
	t = bt_safetensors_find(st, "d.i64");
	check(t && t->dtype == BT_I64 && t->nbytes == 16 && bt_dtype_size(t->dtype) == 8,
		  "d.i64: I64, 16 bytes");
	check(bt_dtype_size(BT_F32) == 4 && bt_dtype_size(BT_F16) == 2 && bt_dtype_size(BT_BF16) == 2 &&
		  bt_dtype_size(BT_F64) == 8 && bt_dtype_size(BT_I32) == 4 && bt_dtype_size(BT_I16) == 2 &&
		  bt_dtype_size(BT_I8) == 1 && bt_dtype_size(BT_U8) == 1 && bt_dtype_size(BT_BOOL) == 1 &&
		  bt_dtype_size(BT_OTHER) == 0, "bt_dtype_size of every dtype");

	/* find */
	{
		static const char *const names[] = {"a.f32", "b.f16", "c.bf16", "d.i64", "e.empty",
		"f.scalar", "g.f8", "h.f4"};
		static const char *const misses[] = {"", "a", "a.f3", "a.f32 ", "A.F32", "zzz", "0",
		"__metadata__", "format"};
		int			hits = 0,
					wrong = 0;

		for (int i = 0; i < 8; i++)
		{
			t = bt_safetensors_find(st, names[i]);
			hits += t != NULL && strcmp(t->name, names[i]) == 0;
		}
		for (int i = 0; i < 9; i++)
			wrong += bt_safetensors_find(st, misses[i]) != NULL;
		check(hits == 8, "find: all 8 names hit");
		check(wrong == 0, "find: 9 absent names miss");
	}

	/* read_f32 errors */
	t = bt_safetensors_find(st, "d.i64");
	check(t && bt_safetensors_read_f32(st, t, out, 2, err, sizeof err) == -1 && strstr(err, "I64") &&
		  strstr(err, "d.i64"), "read_f32 on I64 fails (%s)", err);
	t = bt_safetensors_find(st, "g.f8");
	check(t && bt_safetensors_read_f32(st, t, out, 2, err, sizeof err) == -1 && strstr(err, "F8_E4M3"),
		  "read_f32 on F8_E4M3 fails (%s)", err);
	t = bt_safetensors_find(st, "a.f32");
	check(t && bt_safetensors_read_f32(st, t, out, 5, err, sizeof err) == -1 &&
		  strstr(err, "has 6 elements, not 5"), "read_f32 with n = 5 fails (%s)", err);
	check(t && bt_safetensors_read_f32(st, t, out, 7, err, sizeof err) == -1 &&
		  strstr(err, "has 6 elements, not 7"), "read_f32 with n = 7 fails (%s)", err);
	if (t)
	{
		BtTensor	copy = *t;

		check(bt_safetensors_read_f32(st, &copy, out, 6, err, sizeof err) == -1 &&
			  strstr(err, "does not belong"), "read_f32 of a tensor from elsewhere fails (%s)", err);
	}

	bt_safetensors_free(st);

	/* every truncation fails cleanly; so does one extra byte */
	{
		size_t		bad = 0;

		for (size_t cut = 0; cut < len; cut++)
		{
			uint8_t    *part = dup_bytes(blob, cut);

			err[0] = '\0';
			st = bt_safetensors_parse(part, cut, err, sizeof err);
			if (st != NULL || err[0] == '\0')
			{
				printf("     cut at %zu: %s\n", cut, st ? "parsed" : "no message");
				bad++;
			}
			bt_safetensors_free(st);
			free(part);
		}
		check(bad == 0, "truncation: all %zu cuts of the %zu-byte file rejected with a message",
			  len - bad, len);
	}
	{
		uint8_t    *longer = malloc(len + 1);

		memcpy(longer, blob, len);
		longer[len] = 0;
		expect_fail_blob(longer, len + 1, "data section has 78 bytes but the tensors cover only 77",
						 "one byte appended");
	}
	{
		uint8_t    *bumped = dup_bytes(blob, len);

		bumped[0]++;			/* header one byte longer: eats the first data byte */
		expect_fail_blob(bumped, len, "not valid json", "header length + 1");
		bumped = dup_bytes(blob, len);
		bumped[0]--;			/* header loses its last padding space: data one longer */
		expect_fail_blob(bumped, len, "cover only 77", "header length - 1");
	}
	free(blob);
}

/* ---- malformed files ---- */

#define F32_ENTRY(name, shape, b, e) \
	"\"" name "\":{\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void
test_malformed(void)
{
	size_t		len;
	uint8_t    *blob;
	char		hdr[256];

	/* the length field */
	for (size_t n = 0; n < 8; n++)
	{
		char		want[64];

		snprintf(want, sizeof want, "file is %zu bytes, shorter than", n);
		expect_fail_blob(dup_bytes("\x02\0\0\0\0\0\0\0{}", n), n, want, "file shorter than 8 bytes");
	}
	blob = make_blob_raw(0, "{}", 2, NULL, 0, &len);
	expect_fail_blob(blob, len, "header length is 0", "header length 0");
	blob = make_blob_raw(100000001, "{}", 2, NULL, 0, &len);
	expect_fail_blob(blob, len, "header length 100000001 exceeds the limit of 100000000", "header length > 100 MB");
	blob = make_blob_raw(UINT64_MAX - 1, "{}", 2, NULL, 0, &len);
	expect_fail_blob(blob, len, "exceeds the limit", "header length 2^64-2");
	blob = make_blob_raw(9, "{}", 2, NULL, 0, &len);	/* 8 bytes follow */
	expect_fail_blob(blob, len, "header length 9 is past the end of the file (8 bytes follow", "header length past EOF");
	blob = make_blob_raw(4096, "{}", 2, NULL, 0, &len);
	expect_fail_blob(blob, len, "past the end of the file", "header length far past EOF");

	/* the JSON */
	expect_fail("{\"a\":", 0, "header is not valid json", "truncated json");
	expect_fail("{} x", 0, "header is not valid json", "trailing garbage after the object");
	expect_fail("{\"a\":1,}", 0, "header is not valid json", "trailing comma");
	expect_fail("{\"\xff\":{}}", 0, "header is not valid json", "invalid utf-8 in a key");
	expect_fail("{\"a\\u0000b\":{}}", 0, "header is not valid json", "NUL escape in a key");
	expect_fail("[]", 0, "header is not a json object", "array header");
	expect_fail("\"str\"", 0, "header is not valid json", "string header");
	blob = make_blob_raw(UINT64_MAX, "{}\0", 3, NULL, 0, &len);
	expect_fail_blob(blob, len, "header is not valid json", "NUL byte after the object");
	expect_fail("{" F32_ENTRY("x", "[1]", 0, 4) "," F32_ENTRY("x", "[1]", 0, 4) "}", 4,
				"duplicate", "duplicate tensor keys");
	expect_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate", "duplicate __metadata__");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
				"duplicate", "duplicate key inside an entry");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
				"not valid json", "shape too big for json integers");

	/* metadata */
	expect_fail("{\"__metadata__\":{\"a\":\"b\",\"n\":1}}", 0, "\"__metadata__\" value of key \"n\" is not a string",
				"metadata with an integer value");
	expect_fail("{\"__metadata__\":{\"a\":null}}", 0, "value of key \"a\" is not a string", "metadata with a null value");
	expect_fail("{\"__metadata__\":{\"a\":{}}}", 0, "value of key \"a\" is not a string", "metadata with an object value");
	expect_fail("{\"__metadata__\":\"pt\"}", 0, "\"__metadata__\" is not an object", "metadata a string");
	expect_fail("{\"__metadata__\":null}", 0, "\"__metadata__\" is not an object", "metadata null");

	/* entries */
	expect_fail("{\"x\":5}", 0, "tensor \"x\": header entry is not an object", "entry an integer");
	expect_fail("{\"x\":[]}", 0, "tensor \"x\": header entry is not an object", "entry an array");
	expect_fail("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor name is empty", "empty name");
	expect_fail("{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor \"x\": no \"dtype\"", "no dtype");
	expect_fail("{\"x\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\" is not a string", "dtype an integer");
	expect_fail("{\"x\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor \"x\": unknown dtype \"Q7\"", "unknown dtype");
	expect_fail("{\"x\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype \"f32\"", "lowercase dtype");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor \"x\": no \"shape\"", "no shape");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, "\"shape\" is not an array", "shape an integer");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
				"tensor \"x\": shape[0] is not a non-negative integer", "negative shape");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,-3],\"data_offsets\":[0,4]}}", 4,
				"shape[1] is not a non-negative integer", "negative second dimension");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
				"shape[0] is not a non-negative integer", "real-valued shape");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
				"shape[0] is not a non-negative integer", "string shape");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
				"shape has 9 dimensions, at most 8", "9 dimensions");
	expect_ok("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, 1,
			  "8 dimensions");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor \"x\": no \"data_offsets\"", "no data_offsets");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4,
				"\"data_offsets\" is not an array of 2 integers", "one data offset");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
				"\"data_offsets\" is not an array of 2 integers", "three data offsets");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"a\":0}}}", 4,
				"\"data_offsets\" is not an array of 2 integers", "data_offsets an object");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
				"\"data_offsets\" are not non-negative integers", "negative data offset");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4,
				"\"data_offsets\" are not non-negative integers", "string data offset");
	expect_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
				"tensor \"x\": data_offsets begin 4 is after end 0", "begin after end");

	/* sizes */
	expect_fail("{" F32_ENTRY("w", "[2,2]", 0, 12) "}", 12,
				"tensor \"w\": 4 F32 elements take 16 bytes but data_offsets [0, 12] span 12", "shape x dtype != span");
	expect_fail("{\"w\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
				"3 F16 elements take 6 bytes but data_offsets [0, 8] span 8", "F16 shape x dtype != span");
	expect_fail("{" F32_ENTRY("z", "[0]", 0, 4) "}", 4,
				"0 F32 elements take 0 bytes but data_offsets [0, 4] span 4", "0-element tensor with begin != end");
	expect_fail("{" F32_ENTRY("z", "[5,0,7]", 0, 4) "}", 4, "0 F32 elements take 0 bytes", "zero dimension inside the shape");
	expect_fail("{\"q\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
				"tensor \"q\": 3 F4 elements are 12 bits, not a whole number of bytes", "odd count of F4");
	expect_fail("{\"q\":{\"dtype\":\"F6_E2M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
				"2 F6_E2M3 elements are 12 bits", "two F6 elements");
	expect_ok("{\"q\":{\"dtype\":\"F6_E3M2\",\"shape\":[4],\"data_offsets\":[0,3]}}", 3, 1, "four F6 elements in 3 bytes");
	expect_fail("{" F32_ENTRY("big", "[4294967296,4294967296]", 0, 0) "}", 0,
				"tensor \"big\": element count overflows 64 bits at shape[1] = 4294967296", "element count overflow");
	expect_fail("{" F32_ENTRY("big", "[4294967296,4294967296,0]", 0, 0) "}", 0,
				"element count overflows", "overflow before a zero dimension");
	expect_fail("{" F32_ENTRY("big", "[2305843009213693952]", 0, 0) "}", 0,
				"size of 2305843009213693952 F32 elements overflows 64 bits", "byte size overflow");
	expect_fail("{" F32_ENTRY("big", "[4611686018427387904]", 0, 0) "}", 0,
				"overflows 64 bits", "byte size overflow, 2^62 elements");
	expect_fail("{" F32_ENTRY("w", "[2]", 0, 8) "}", 4,
				"tensor \"w\": data_offsets end 8 is past the end of the data section (4 bytes)", "data_offsets past the end");
	expect_fail("{" F32_ENTRY("w", "[1]", 9223372036854775800, 9223372036854775804) "}", 4,
				"data_offsets end 9223372036854775804 is past the end", "data_offsets far past the end");

	/* layout */
	expect_fail("{" F32_ENTRY("a", "[2]", 0, 8) "," F32_ENTRY("b", "[2]", 4, 12) "}", 12,
				"tensor \"b\" bytes [4, 12) overlap tensor \"a\" bytes [0, 8)", "overlapping spans");
	expect_fail("{" F32_ENTRY("a", "[2]", 0, 8) "," F32_ENTRY("b", "[2]", 0, 8) "}", 16,
				"tensor \"b\" bytes [0, 8) overlap tensor \"a\" bytes [0, 8)", "identical spans");
	expect_fail("{" F32_ENTRY("a", "[3]", 0, 12) "," F32_ENTRY("b", "[1]", 4, 8) "}", 12,
				"overlap", "span inside another");
	expect_fail("{" F32_ENTRY("a", "[2]", 0, 8) "," F32_ENTRY("z", "[0]", 4, 4) "}", 8,
				"tensor \"z\" bytes [4, 4) overlap tensor \"a\" bytes [0, 8)", "empty tensor inside another's span");
	expect_fail("{" F32_ENTRY("a", "[1]", 0, 4) "," F32_ENTRY("b", "[1]", 8, 12) "}", 12,
				"hole in data section: bytes [4, 8) before tensor \"b\" belong to no tensor", "hole between tensors");
	expect_fail("{" F32_ENTRY("b", "[1]", 4, 8) "}", 8,
				"hole in data section: bytes [0, 4) before tensor \"b\"", "hole at the start");
	expect_fail("{" F32_ENTRY("a", "[1]", 0, 4) "}", 8,
				"data section has 8 bytes but the tensors cover only 4 (after tensor \"a\")", "trailing bytes not covered");
	expect_fail("{}", 8, "file has no tensors but a data section of 8 bytes", "data without tensors");
	expect_fail("{\"__metadata__\":{\"a\":\"b\"}}", 1, "no tensors but a data section of 1 bytes", "metadata and data, no tensors");

	/* accepted edge cases */
	expect_ok("{}", 0, 0, "empty header object, no data");
	expect_ok("  {}", 0, 0, "leading whitespace before the object (the reference accepts it)");
	expect_ok("{\"__metadata__\":{}}", 0, 0, "empty metadata only");
	expect_ok("{" F32_ENTRY("a", "[1]", 0, 4) "," F32_ENTRY("z", "[0]", 4, 4) "," F32_ENTRY("b", "[1]", 4, 8) "}", 8, 3,
			  "empty tensor between two others");
	expect_ok("{" F32_ENTRY("z", "[0]", 0, 0) "," F32_ENTRY("y", "[3,0]", 0, 0) "}", 0, 2, "only empty tensors, no data");
	expect_ok("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":[1]}}", 4, 1,
			  "unknown key in an entry is ignored (as the reference does)");
	expect_ok("{\"\xc3\xa9t\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 1, "utf-8 tensor name");
	snprintf(hdr, sizeof hdr, "{%s}", F32_ENTRY("a", "[1]", 0, 4));
	blob = make_blob_raw(UINT64_MAX, hdr, strlen(hdr), NULL, 4, &len);
	{
		char		err[256] = "";
		BtSafetensors *st = bt_safetensors_parse(blob, len, err, sizeof err);

		check(st && st->n_tensors == 1 && bt_safetensors_find(st, "a") &&
			  bt_safetensors_find(st, "b") == NULL, "one-tensor file: find hit and miss");
		bt_safetensors_free(st);
		free(blob);
	}
	blob = make_blob("{}", NULL, 0, &len);
	{
		char		err[256] = "";
		BtSafetensors *st = bt_safetensors_parse(blob, len, err, sizeof err);

		check(st && bt_safetensors_find(st, "a") == NULL && bt_safetensors_find(st, "") == NULL,
			  "zero-tensor file: find misses");
		bt_safetensors_free(st);
		free(blob);
	}
	{
		char		name[301],
					header[400],
					want[256],
					err[512],
					small[10];

		for (int i = 0; i < 150; i++)
			memcpy(name + 2 * i, "\xc3\xa9", 2);	/* U+00E9, 300 bytes */
		name[300] = '\0';
		snprintf(header, sizeof header, "{\"%s\":5}", name);
		snprintf(want, sizeof want, "tensor \"%.200s\": header entry is not an object", name);
		blob = make_blob(header, NULL, 0, &len);
		check(bt_safetensors_parse(blob, len, err, sizeof err) == NULL && strcmp(err, want) == 0,
			  "long name cut to 200 bytes at a character boundary");
		check(bt_safetensors_parse(blob, len, small, sizeof small) == NULL &&
			  strcmp(small, "tensor \"") == 0, "message cut inside a character drops the partial character");
		free(blob);
		snprintf(header, sizeof header, "{\"x\":{\"dtype\":\"\xc3\xa9%s\",\"shape\":[],\"data_offsets\":[0,4]}}", name);
		expect_fail(header, 4, "unknown dtype \"\xc3\xa9", "long non-ASCII dtype, message valid UTF-8");
		name[200] = '\0';		/* "a" + 200 bytes: the 200-byte cut falls inside a character */
		snprintf(header, sizeof header, "{\"a%s\":5}", name);
		snprintf(want, sizeof want, "tensor \"a%.198s\": header entry", name);
		blob = make_blob(header, NULL, 0, &len);
		check(bt_safetensors_parse(blob, len, err, sizeof err) == NULL && strstr(err, want) &&
			  valid_utf8(err), "name cut between characters, not inside one (%zu bytes)", strlen(err));
		free(blob);
	}
	{
		char		small[8];

		blob = make_blob("{\"x\":5}", NULL, 0, &len);
		check(bt_safetensors_parse(blob, len, small, sizeof small) == NULL && strlen(small) == 7,
			  "error message truncated to the caller's buffer");
		free(blob);
	}
}

/* ---- golden file from the reference implementation ---- */

static void
test_golden(const char *dir)
{
	size_t		len,
				jlen;
	uint8_t    *blob = read_file(dir, "golden.safetensors", &len);
	uint8_t    *jtext = read_file(dir, "golden.json", &jlen);
	json_t	   *root = NULL,
			   *rows;
	json_error_t jerr;
	char		err[512] = "";
	BtSafetensors *st = NULL;
	size_t		values = 0,
				bad = 0,
				i;

	check(blob != NULL && jtext != NULL, "golden: read %s/golden.safetensors and golden.json", dir);
	if (blob == NULL || jtext == NULL)
		goto done;
	root = json_loadb((const char *) jtext, jlen, 0, &jerr);
	rows = root ? json_object_get(root, "tensors") : NULL;
	check(json_is_array(rows), "golden.json has a tensors array");
	if (!json_is_array(rows))
		goto done;
	st = bt_safetensors_parse(blob, len, err, sizeof err);
	check(st != NULL, "golden: file parses%s%s", st ? "" : ": ", st ? "" : err);
	if (st == NULL)
		goto done;
	check((size_t) st->n_tensors == json_array_size(rows), "golden: %d tensors, json lists %zu",
		  st->n_tensors, json_array_size(rows));

	for (i = 0; i < json_array_size(rows); i++)
	{
		json_t	   *row = json_array_get(rows, i);
		const char *name = json_string_value(json_object_get(row, "name"));
		const char *dtype = json_string_value(json_object_get(row, "dtype"));
		json_t	   *shape = json_object_get(row, "shape");
		json_t	   *bits = json_object_get(row, "bits");
		const BtTensor *t = name ? bt_safetensors_find(st, name) : NULL;
		int			same_shape;
		float	   *out;

		if (t == NULL || dtype == NULL)
		{
			check(0, "golden: tensor %s found", name ? name : "(unnamed)");
			continue;
		}
		same_shape = (size_t) t->ndim == json_array_size(shape);
		for (int d = 0; same_shape && d < t->ndim; d++)
			same_shape = t->shape[d] == json_integer_value(json_array_get(shape, d));
		check(strcmp(t->dtype_name, dtype) == 0 && same_shape, "golden: %s is %s, shape as the oracle",
			  name, t->dtype_name);
		if (bits == NULL)
		{
			float		one;

			check(bt_safetensors_read_f32(st, t, &one, 1, err, sizeof err) == -1,
				  "golden: %s (%s) does not convert to float32", name, dtype);
			continue;
		}
		out = malloc(sizeof(float) * (json_array_size(bits) + 1));
		if (bt_safetensors_read_f32(st, t, out, json_array_size(bits), err, sizeof err) != 0)
		{
			check(0, "golden: read %s: %s", name, err);
			free(out);
			continue;
		}
		for (size_t k = 0; k < json_array_size(bits); k++)
		{
			const char *hex = json_string_value(json_array_get(bits, k));
			uint32_t	want = hex ? (uint32_t) strtoul(hex, NULL, 16) : 0;

			values++;
			if (hex == NULL || f32_bits(out[k]) != want)
			{
				printf("     %s[%zu] = %08x, want %s\n", name, k, f32_bits(out[k]), hex ? hex : "?");
				bad++;
			}
		}
		free(out);
	}
	check(bad == 0 && values > 0, "golden: %zu of %zu float32 values bit-identical to the oracle",
		  values - bad, values);

	/* the reference file, cut anywhere, is rejected */
	{
		size_t		cuts_bad = 0;

		for (size_t cut = 0; cut < len; cut++)
		{
			uint8_t    *part = dup_bytes(blob, cut);
			BtSafetensors *p = bt_safetensors_parse(part, cut, err, sizeof err);

			cuts_bad += p != NULL;
			bt_safetensors_free(p);
			free(part);
		}
		check(cuts_bad == 0, "golden: all %zu truncations rejected", len);
	}

done:
	bt_safetensors_free(st);
	json_decref(root);
	free(blob);
	free(jtext);
}

/* The head's outputs from the header alone, as bt_model_load would count them. */
static void
test_head_rows(void)
{
	static const struct
	{
		const char *header;
		int			rows;
	}			cases[] = {
		{"{\"classifier.weight\": {\"dtype\": \"F32\", \"shape\": [3, 32], \"data_offsets\": [0, 384]}}", 3},
		{"{\"__metadata__\": {}, \"pooler.dense.weight\": {\"dtype\": \"F32\", \"shape\": [2, 2], "
		 "\"data_offsets\": [0, 16]}}", 0},
		{"{\"classifier.weight\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 12]}}", -1},
		{"{\"classifier.weight\": {\"dtype\": \"F32\", \"shape\": [0, 4], \"data_offsets\": [0, 0]}}", -1},
		{"{\"classifier.weight\": {\"shape\": [\"3\", 4]}}", -1},
		{"[1, 2]", -1},
		{"{\"classifier.weight\": ", -1},
	};

	for (int i = 0; i < (int) (sizeof(cases) / sizeof(cases[0])); i++)
	{
		int			rows = bt_safetensors_head_rows(cases[i].header, strlen(cases[i].header));

		check(rows == cases[i].rows, "head rows of header %d: %d (want %d)", i, rows, cases[i].rows);
	}
}

int
main(int argc, char **argv)
{
	if (argc != 2)
	{
		fprintf(stderr, "usage: test_safetensors FIXTURE_DIR\n");
		return 2;
	}
	test_valid();
	test_malformed();
	test_head_rows();
	test_golden(argv[1]);

	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
