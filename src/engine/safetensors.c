/*
 * safetensors.c - parsing and validating safetensors blobs, reading tensors as float32.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON header, then the
 * data section. All checks happen in bt_safetensors_parse; the result is one
 * allocation (struct, tensor array, names) so every error path frees one block.
 */
#include "safetensors.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METADATA_KEY "__metadata__"

/* Arguments for "%.*s": a name cut to at most 200 bytes at a character boundary. */
#define NAME(s) clip_utf8((s), 200), (s)

typedef struct DTypeInfo
{
	const char *name;
	BtDType		dtype;
	unsigned	bits;			/* per element */
} DTypeInfo;

/* Every dtype of the safetensors 0.8 specification. */
static const DTypeInfo dtype_table[] = {
	{"F64", BT_F64, 64},
	{"F32", BT_F32, 32},
	{"F16", BT_F16, 16},
	{"BF16", BT_BF16, 16},
	{"I64", BT_I64, 64},
	{"I32", BT_I32, 32},
	{"I16", BT_I16, 16},
	{"I8", BT_I8, 8},
	{"U8", BT_U8, 8},
	{"BOOL", BT_BOOL, 8},
	{"U64", BT_OTHER, 64},
	{"U32", BT_OTHER, 32},
	{"U16", BT_OTHER, 16},
	{"C64", BT_OTHER, 64},
	{"F8_E4M3", BT_OTHER, 8},
	{"F8_E5M2", BT_OTHER, 8},
	{"F8_E8M0", BT_OTHER, 8},
	{"F8_E4M3FNUZ", BT_OTHER, 8},
	{"F8_E5M2FNUZ", BT_OTHER, 8},
	{"F6_E2M3", BT_OTHER, 6},
	{"F6_E3M2", BT_OTHER, 6},
	{"F4", BT_OTHER, 4},
};

/* Byte length of s cut to at most max bytes without splitting a UTF-8 sequence. */
static int
clip_utf8(const char *s, size_t max)
{
	size_t		len = strnlen(s, max + 1);

	if (len <= max)
		return (int) len;
	len = max;
	while (len > 0 && ((unsigned char) s[len] & 0xC0) == 0x80)
		len--;					/* s[len] continues a sequence: cut before its lead */
	return (int) len;
}

/* Length of the valid UTF-8 sequence at s (not past the NUL), or 0 when invalid. */
static int
utf8_seq_len(const unsigned char *s)
{
	unsigned char lo = 0x80,
				hi = 0xBF;
	int			n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		n = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
	{
		n = 3;
		lo = s[0] == 0xE0 ? 0xA0 : 0x80;	/* no overlongs */
		hi = s[0] == 0xED ? 0x9F : 0xBF;	/* no surrogates */
	}
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
	{
		n = 4;
		lo = s[0] == 0xF0 ? 0x90 : 0x80;
		hi = s[0] == 0xF4 ? 0x8F : 0xBF;
	}
	else
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

/*
 * Format err and keep it valid UTF-8 (it may reach a database log): a
 * sequence cut short at the end is dropped, any other bad byte becomes '?'.
 */
static void
set_err(char *err, size_t errlen, const char *fmt,...)
__attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt,...)
{
	va_list		ap;
	unsigned char *u = (unsigned char *) err;

	if (errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	while (*u)
	{
		int			n = utf8_seq_len(u);

		if (n > 0)
			u += n;
		else
		{
			int			rest = 1;

			while (rest < 4 && u[rest] != 0 && (u[rest] & 0xC0) == 0x80)
				rest++;
			if (u[0] >= 0xC2 && u[0] <= 0xF4 && u[rest] == 0)
			{
				*u = '\0';		/* a sequence cut off by the buffer's end */
				break;
			}
			*u++ = '?';
		}
	}
}

size_t
bt_dtype_size(BtDType dt)
{
	switch (dt)
	{
		case BT_F64:
		case BT_I64:
			return 8;
		case BT_F32:
		case BT_I32:
			return 4;
		case BT_F16:
		case BT_BF16:
		case BT_I16:
			return 2;
		case BT_I8:
		case BT_U8:
		case BT_BOOL:
			return 1;
		case BT_OTHER:
			break;
	}
	return 0;
}

uint64_t
bt_tensor_numel(const BtTensor *t)
{
	uint64_t	n = 1;

	for (int d = 0; d < t->ndim; d++)
		n *= (uint64_t) t->shape[d];
	return n;
}

/* Table entry for a header dtype string, or NULL when the spec has no such dtype. */
static const DTypeInfo *
dtype_lookup(const char *name)
{
	for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++)
		if (strcmp(dtype_table[i].name, name) == 0)
			return &dtype_table[i];
	return NULL;
}

/* Non-negative JSON integer into *v; 0 when j is anything else. */
static int
get_uint(const json_t *j, uint64_t *v)
{
	json_int_t	i;

	if (!json_is_integer(j))
		return 0;
	i = json_integer_value(j);
	if (i < 0)
		return 0;
	*v = (uint64_t) i;
	return 1;
}

/* Validate the __metadata__ entry: an object whose values are all strings. */
static int
check_metadata(json_t *meta, char *err, size_t errlen)
{
	const char *key;
	json_t	   *val;

	if (!json_is_object(meta))
	{
		set_err(err, errlen, "\"%s\" is not an object", METADATA_KEY);
		return 0;
	}
	json_object_foreach(meta, key, val)
	{
		if (!json_is_string(val))
		{
			set_err(err, errlen, "\"%s\" value of key \"%.*s\" is not a string",
					METADATA_KEY, NAME(key));
			return 0;
		}
	}
	return 1;
}

/*
 * Fill t (name already set) from its header entry and check its own
 * consistency: dtype, shape, offsets, byte count, end within data_len.
 */
static int
parse_entry(BtTensor *t, json_t *entry, uint64_t data_len, char *err, size_t errlen)
{
	json_t	   *jdtype,
			   *jshape,
			   *joff;
	const DTypeInfo *info;
	uint64_t	count = 1,
				begin,
				end,
				nbits;
	size_t		ndim;

	if (!json_is_object(entry))
	{
		set_err(err, errlen, "tensor \"%.*s\": header entry is not an object", NAME(t->name));
		return 0;
	}
	jdtype = json_object_get(entry, "dtype");
	jshape = json_object_get(entry, "shape");
	joff = json_object_get(entry, "data_offsets");
	if (!json_is_string(jdtype))
	{
		set_err(err, errlen, "tensor \"%.*s\": %s", NAME(t->name),
				jdtype ? "\"dtype\" is not a string" : "no \"dtype\"");
		return 0;
	}
	info = dtype_lookup(json_string_value(jdtype));
	if (info == NULL)
	{
		set_err(err, errlen, "tensor \"%.*s\": unknown dtype \"%.*s\"", NAME(t->name),
				NAME(json_string_value(jdtype)));
		return 0;
	}
	t->dtype = info->dtype;
	snprintf(t->dtype_name, sizeof t->dtype_name, "%s", info->name);

	if (!json_is_array(jshape))
	{
		set_err(err, errlen, "tensor \"%.*s\": %s", NAME(t->name),
				jshape ? "\"shape\" is not an array" : "no \"shape\"");
		return 0;
	}
	ndim = json_array_size(jshape);
	if (ndim > BT_SAFETENSORS_MAX_DIMS)
	{
		set_err(err, errlen, "tensor \"%.*s\": shape has %zu dimensions, at most %d are supported",
				NAME(t->name), ndim, BT_SAFETENSORS_MAX_DIMS);
		return 0;
	}
	t->ndim = (int) ndim;
	for (size_t d = 0; d < ndim; d++)
	{
		uint64_t	dim;

		if (!get_uint(json_array_get(jshape, d), &dim))
		{
			set_err(err, errlen, "tensor \"%.*s\": shape[%zu] is not a non-negative integer",
					NAME(t->name), d);
			return 0;
		}
		t->shape[d] = (int64_t) dim;
		if (dim != 0 && count > UINT64_MAX / dim)
		{
			set_err(err, errlen, "tensor \"%.*s\": element count overflows 64 bits at shape[%zu] = %" PRIu64,
					NAME(t->name), d, dim);
			return 0;
		}
		count *= dim;
	}
	if (count > UINT64_MAX / info->bits)
	{
		set_err(err, errlen, "tensor \"%.*s\": size of %" PRIu64 " %s elements overflows 64 bits",
				NAME(t->name), count, info->name);
		return 0;
	}
	nbits = count * info->bits;

	if (!json_is_array(joff) || json_array_size(joff) != 2)
	{
		set_err(err, errlen, "tensor \"%.*s\": %s", NAME(t->name),
				joff ? "\"data_offsets\" is not an array of 2 integers" : "no \"data_offsets\"");
		return 0;
	}
	if (!get_uint(json_array_get(joff, 0), &begin) || !get_uint(json_array_get(joff, 1), &end))
	{
		set_err(err, errlen, "tensor \"%.*s\": \"data_offsets\" are not non-negative integers",
				NAME(t->name));
		return 0;
	}
	if (begin > end)
	{
		set_err(err, errlen, "tensor \"%.*s\": data_offsets begin %" PRIu64 " is after end %" PRIu64,
				NAME(t->name), begin, end);
		return 0;
	}
	if (nbits % 8 != 0)
	{
		set_err(err, errlen, "tensor \"%.*s\": %" PRIu64 " %s elements are %" PRIu64 " bits, not a whole number of bytes",
				NAME(t->name), count, info->name, nbits);
		return 0;
	}
	if (nbits / 8 != end - begin)
	{
		set_err(err, errlen, "tensor \"%.*s\": %" PRIu64 " %s elements take %" PRIu64 " bytes but data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64,
				NAME(t->name), count, info->name, nbits / 8, begin, end, end - begin);
		return 0;
	}
	if (end > data_len)
	{
		set_err(err, errlen, "tensor \"%.*s\": data_offsets end %" PRIu64 " is past the end of the data section (%" PRIu64 " bytes)",
				NAME(t->name), end, data_len);
		return 0;
	}
	t->offset = begin;
	t->nbytes = end - begin;
	return 1;
}

/* qsort order of tensor pointers by data span, then name. */
static int
cmp_span(const void *a, const void *b)
{
	const BtTensor *x = *(const BtTensor *const *) a;
	const BtTensor *y = *(const BtTensor *const *) b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* qsort order of tensors by name. */
static int
cmp_name(const void *a, const void *b)
{
	return strcmp(((const BtTensor *) a)->name, ((const BtTensor *) b)->name);
}

/* Check that the spans tile the data section exactly: no overlap, no hole, no tail. */
static int
check_spans(BtSafetensors *st, char *err, size_t errlen)
{
	const BtTensor **order;
	const BtTensor *prev = NULL;
	uint64_t	pos = 0;
	int			ok = 1;

	if (st->n_tensors == 0)
	{
		if (st->data_len != 0)
		{
			set_err(err, errlen, "file has no tensors but a data section of %" PRIu64 " bytes",
					st->data_len);
			return 0;
		}
		return 1;
	}
	order = malloc(sizeof(BtTensor *) * (size_t) st->n_tensors);
	if (order == NULL)
	{
		set_err(err, errlen, "out of memory checking %d tensors", st->n_tensors);
		return 0;
	}
	for (int i = 0; i < st->n_tensors; i++)
		order[i] = &st->tensors[i];
	qsort(order, (size_t) st->n_tensors, sizeof(BtTensor *), cmp_span);
	for (int i = 0; i < st->n_tensors && ok; i++)
	{
		const BtTensor *t = order[i];

		if (t->offset < pos)
		{
			set_err(err, errlen, "tensor \"%.*s\" bytes [%" PRIu64 ", %" PRIu64 ") overlap tensor \"%.*s\" bytes [%" PRIu64 ", %" PRIu64 ")",
					NAME(t->name), t->offset, t->offset + t->nbytes,
					NAME(prev->name), prev->offset, prev->offset + prev->nbytes);
			ok = 0;
		}
		else if (t->offset > pos)
		{
			set_err(err, errlen, "hole in data section: bytes [%" PRIu64 ", %" PRIu64 ") before tensor \"%.*s\" belong to no tensor",
					pos, t->offset, NAME(t->name));
			ok = 0;
		}
		else
		{
			pos = t->offset + t->nbytes;
			prev = t;
		}
	}
	if (ok && pos != st->data_len)
	{
		set_err(err, errlen, "data section has %" PRIu64 " bytes but the tensors cover only %" PRIu64 " (after tensor \"%.*s\")",
				st->data_len, pos, NAME(prev->name));
		ok = 0;
	}
	free(order);
	return ok;
}

BtSafetensors *
bt_safetensors_parse(const uint8_t *file, size_t len, char *err, size_t errlen)
{
	uint64_t	hlen = 0;
	json_t	   *root;
	json_error_t jerr;
	const char *key;
	json_t	   *val;
	size_t		n = 0,
				names = 0,
				size;
	BtSafetensors *st;
	char	   *pool;
	int			i = 0;

	if (len < 8)
	{
		set_err(err, errlen, "file is %zu bytes, shorter than the 8-byte header length", len);
		return NULL;
	}
	for (int b = 7; b >= 0; b--)
		hlen = (hlen << 8) | file[b];
	if (hlen == 0)
	{
		set_err(err, errlen, "header length is 0");
		return NULL;
	}
	if (hlen > BT_SAFETENSORS_MAX_HEADER)
	{
		set_err(err, errlen, "header length %" PRIu64 " exceeds the limit of %d bytes",
				hlen, BT_SAFETENSORS_MAX_HEADER);
		return NULL;
	}
	if (hlen > len - 8)
	{
		set_err(err, errlen, "header length %" PRIu64 " is past the end of the file (%zu bytes follow the length)",
				hlen, len - 8);
		return NULL;
	}

	root = json_loadb((const char *) file + 8, (size_t) hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
	{
		set_err(err, errlen, "header is not valid json: %s (byte %d of %" PRIu64 ")",
				jerr.text, jerr.position, hlen);
		return NULL;
	}
	if (!json_is_object(root))
	{
		set_err(err, errlen, "header is not a json object");
		json_decref(root);
		return NULL;
	}
	json_object_foreach(root, key, val)
	{
		if (strcmp(key, METADATA_KEY) == 0)
		{
			if (!check_metadata(val, err, errlen))
			{
				json_decref(root);
				return NULL;
			}
			continue;
		}
		if (key[0] == '\0')
		{
			set_err(err, errlen, "tensor name is empty");
			json_decref(root);
			return NULL;
		}
		n++;
		names += strlen(key) + 1;
	}
	if (n > (size_t) INT32_MAX ||
		n > (SIZE_MAX - sizeof(BtSafetensors) - names) / sizeof(BtTensor))
	{
		set_err(err, errlen, "too many tensors (%zu)", n);
		json_decref(root);
		return NULL;
	}
	size = sizeof(BtSafetensors) + n * sizeof(BtTensor) + names;
	st = calloc(1, size);
	if (st == NULL)
	{
		set_err(err, errlen, "out of memory reading %zu tensors", n);
		json_decref(root);
		return NULL;
	}
	st->file = file;
	st->file_len = len;
	st->data = file + 8 + hlen;
	st->data_len = (uint64_t) (len - 8) - hlen;
	st->n_tensors = (int) n;
	st->tensors = (BtTensor *) (st + 1);
	pool = (char *) (st->tensors + n);

	json_object_foreach(root, key, val)
	{
		BtTensor   *t;
		size_t		klen;

		if (strcmp(key, METADATA_KEY) == 0)
			continue;
		t = &st->tensors[i++];
		klen = strlen(key);
		memcpy(pool, key, klen + 1);
		t->name = pool;
		pool += klen + 1;
		if (!parse_entry(t, val, st->data_len, err, errlen))
		{
			json_decref(root);
			free(st);
			return NULL;
		}
	}
	json_decref(root);

	if (!check_spans(st, err, errlen))
	{
		free(st);
		return NULL;
	}
	qsort(st->tensors, n, sizeof(BtTensor), cmp_name);
	for (size_t k = 1; k < n; k++)
	{
		if (strcmp(st->tensors[k - 1].name, st->tensors[k].name) == 0)
		{
			set_err(err, errlen, "tensor \"%.*s\" appears twice", NAME(st->tensors[k].name));
			free(st);
			return NULL;
		}
	}
	return st;
}

int
bt_safetensors_head_rows(const char *header, size_t len)
{
	json_error_t jerr;
	json_t	   *root = json_loadb(header, len, 0, &jerr);
	json_t	   *t,
			   *shape,
			   *rows;
	int			n = -1;

	if (root == NULL)
		return -1;
	if (!json_is_object(root))
		goto done;
	t = json_object_get(root, "classifier.weight");
	if (t == NULL)
	{
		n = 0;
		goto done;
	}
	/* the bounds bt_model_load accepts */
	shape = json_is_object(t) ? json_object_get(t, "shape") : NULL;
	if (shape == NULL || !json_is_array(shape) || json_array_size(shape) != 2)
		goto done;
	rows = json_array_get(shape, 0);
	if (json_is_integer(rows) && json_integer_value(rows) >= 1 && json_integer_value(rows) <= 100000)
		n = (int) json_integer_value(rows);
done:
	json_decref(root);
	return n;
}

void
bt_safetensors_free(BtSafetensors *st)
{
	free(st);					/* one block: struct, tensors, names */
}

const BtTensor *
bt_safetensors_find(const BtSafetensors *st, const char *name)
{
	int			lo = 0,
				hi = st->n_tensors - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = strcmp(name, st->tensors[mid].name);

		if (c == 0)
			return &st->tensors[mid];
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Exact IEEE binary16 to binary32 bits: subnormals normalized, inf and NaN payloads kept. */
static uint32_t
f16_to_f32_bits(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exp = (h >> 10) & 0x1f;
	uint32_t	mant = h & 0x3ff;

	if (exp == 0x1f)
		return sign | 0x7f800000u | (mant << 13);
	if (exp != 0)
		return sign | ((exp + 112) << 23) | (mant << 13);
	if (mant == 0)
		return sign;
	/* subnormal: mant * 2^-24; shift the leading 1 up to the implicit bit */
	exp = 113;
	while ((mant & 0x400) == 0)
	{
		mant <<= 1;
		exp--;
	}
	return sign | (exp << 23) | ((mant & 0x3ff) << 13);
}

int
bt_safetensors_read_f32(const BtSafetensors *st, const BtTensor *t, float *out, size_t n,
						char *err, size_t errlen)
{
	size_t		esize = bt_dtype_size(t->dtype);
	uintptr_t	first = (uintptr_t) st->tensors,
				addr = (uintptr_t) t;
	uint64_t	numel;
	const uint8_t *p;

	if (addr < first || addr >= (uintptr_t) (st->tensors + st->n_tensors) ||
		(addr - first) % sizeof(BtTensor) != 0)
	{
		set_err(err, errlen, "tensor does not belong to this safetensors file");
		return -1;
	}
	if (t->dtype != BT_F32 && t->dtype != BT_F16 && t->dtype != BT_BF16)
	{
		set_err(err, errlen, "tensor \"%.*s\" has dtype %s; only F32, F16 and BF16 convert to float32",
				NAME(t->name), t->dtype_name);
		return -1;
	}
	if (t->offset > st->data_len || t->nbytes > st->data_len - t->offset ||
		t->nbytes % esize != 0)
	{
		set_err(err, errlen, "tensor \"%.*s\": span [%" PRIu64 ", +%" PRIu64 ") is not within the data section (%" PRIu64 " bytes)",
				NAME(t->name), t->offset, t->nbytes, st->data_len);
		return -1;
	}
	numel = t->nbytes / esize;
	if ((uint64_t) n != numel)
	{
		set_err(err, errlen, "tensor \"%.*s\" has %" PRIu64 " elements, not %zu",
				NAME(t->name), numel, n);
		return -1;
	}
	p = st->data + t->offset;
	for (size_t i = 0; i < n; i++)
	{
		uint32_t	bits;

		switch (t->dtype)
		{
			case BT_F32:
				bits = (uint32_t) p[4 * i] | (uint32_t) p[4 * i + 1] << 8 |
					(uint32_t) p[4 * i + 2] << 16 | (uint32_t) p[4 * i + 3] << 24;
				break;
			case BT_F16:
				bits = f16_to_f32_bits((uint16_t) (p[2 * i] | p[2 * i + 1] << 8));
				break;
			default:			/* BT_BF16: the high half of a float32 */
				bits = ((uint32_t) p[2 * i] | (uint32_t) p[2 * i + 1] << 8) << 16;
				break;
		}
		memcpy(&out[i], &bits, sizeof bits);
	}
	return 0;
}
