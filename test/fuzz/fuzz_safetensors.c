/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors parser and float32 reads.
 *
 * Byte 0 picks the mode. Even: the rest is the file as is. Odd: the rest is
 * header JSON, a NUL, then the data section, and the 8-byte length field is
 * written here, so mutations of the JSON keep a consistent length. Either way
 * the file is parsed from an exact-size buffer; when it parses, the result's
 * promises are checked (names sorted, unique and found, spans tiling the data
 * section, byte counts matching shapes) and every F32/F16/BF16 tensor is read;
 * when it does not, the message must be non-empty valid UTF-8. Any broken
 * promise aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "safetensors.h"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fixed jansson hash seed, so runs replay exactly. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	json_object_seed(1);
	return 0;
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

/* qsort order of tensor pointers by begin, then length. */
static int
cmp_span(const void *a, const void *b)
{
	const BtTensor *x = *(const BtTensor *const *) a;
	const BtTensor *y = *(const BtTensor *const *) b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return 0;
}

/* Abort unless the spans, sorted by begin, cover [0, data_len) end to end. */
static void
check_tiling(const BtSafetensors *st)
{
	const BtTensor **order = malloc(sizeof(BtTensor *) * (st->n_tensors + 1));
	uint64_t	pos = 0;

	if (order == NULL)
		return;
	for (int i = 0; i < st->n_tensors; i++)
		order[i] = &st->tensors[i];
	qsort(order, st->n_tensors, sizeof(BtTensor *), cmp_span);
	for (int i = 0; i < st->n_tensors; i++)
	{
		if (order[i]->offset != pos)
			abort();
		pos += order[i]->nbytes;
	}
	if (pos != st->data_len)
		abort();
	free(order);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		err[256];
	uint8_t    *copy;
	size_t		len;
	BtSafetensors *st;

	if (size < 1)
		return 0;
	if ((data[0] & 1) == 0)
	{
		len = size - 1;
		copy = malloc(len ? len : 1);
		if (copy == NULL)
			return 0;
		if (len)
			memcpy(copy, data + 1, len);
	}
	else
	{
		const uint8_t *nul = memchr(data + 1, 0, size - 1);
		size_t		hlen = nul ? (size_t) (nul - (data + 1)) : size - 1;
		size_t		dlen = nul ? size - 2 - hlen : 0;

		len = 8 + hlen + dlen;
		copy = malloc(len);
		if (copy == NULL)
			return 0;
		for (int b = 0; b < 8; b++)
			copy[b] = (uint8_t) ((uint64_t) hlen >> (8 * b));
		memcpy(copy + 8, data + 1, hlen);
		if (dlen)
			memcpy(copy + 8 + hlen, nul + 1, dlen);
	}
	err[0] = '\0';
	st = bt_safetensors_parse(copy, len, err, sizeof err);
	if (st == NULL)
	{
		if (err[0] == '\0' || !valid_utf8(err))
			abort();			/* every failure says why, in valid UTF-8 */
		free(copy);
		return 0;
	}
	if (st->file != copy || st->file_len != len || st->data_len > len ||
		st->data + st->data_len != copy + len)
		abort();
	check_tiling(st);
	for (int i = 0; i < st->n_tensors; i++)
	{
		const BtTensor *t = &st->tensors[i];
		size_t		esize = bt_dtype_size(t->dtype);
		uint64_t	numel = bt_tensor_numel(t);
		float	   *out;

		if (t->name[0] == '\0' || bt_safetensors_find(st, t->name) != t)
			abort();
		if (i > 0 && strcmp(st->tensors[i - 1].name, t->name) >= 0)
			abort();
		if (t->ndim < 0 || t->ndim > BT_SAFETENSORS_MAX_DIMS)
			abort();
		if (t->offset > st->data_len || t->nbytes > st->data_len - t->offset)
			abort();
		if (esize != 0 && numel * esize != t->nbytes)
			abort();
		if (t->dtype != BT_F32 && t->dtype != BT_F16 && t->dtype != BT_BF16)
		{
			float		one;

			if (bt_safetensors_read_f32(st, t, &one, 1, err, sizeof err) != -1)
				abort();
			continue;
		}
		out = malloc(sizeof(float) * (numel ? numel : 1));
		if (out == NULL)
			continue;
		if (bt_safetensors_read_f32(st, t, out, (size_t) numel, err, sizeof err) != 0)
			abort();
		if (bt_safetensors_read_f32(st, t, out, (size_t) numel + 1, err, sizeof err) != -1)
			abort();
		free(out);
	}
	bt_safetensors_free(st);
	free(copy);
	return 0;
}
