/*
 * vocab.c - loading a WordPiece vocab.txt and looking pieces up by bytes.
 */
#include "vocab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOOKUP_SLOT(map, h, i) (((h) + (i)) & (map)->mask)

/* 32-bit hash of a byte string (FNV-1a folded with a final mix). */
static inline uint32_t
hash_bytes(const char *s, size_t len)
{
	uint32_t	h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char) s[i]) * 16777619u;
	h ^= h >> 15;
	h *= 0x2c1b3c6du;
	h ^= h >> 12;
	return h;
}

static inline int32_t
map_find(const BtVocab *v, const BtPieceMap *map, const char *s, size_t len,
		 size_t key_skip)
{
	uint32_t	h;

	if (len > map->max_len)
		return -1;
	h = hash_bytes(s, len);
	for (uint32_t i = 0;; i++)
	{
		uint32_t	slot = map->slots[LOOKUP_SLOT(map, h, i)];
		uint32_t	id;

		if (slot == 0)
			return -1;
		id = slot - 1;
		if (v->length[id] - key_skip == len &&
			memcmp(v->pool + v->offset[id] + key_skip, s, len) == 0)
			return (int32_t) id;
	}
}

/* Insert id under its key; a later id with the same key replaces an earlier one. */
static void
map_insert(BtVocab *v, BtPieceMap *map, uint32_t id, size_t key_skip)
{
	const char *key = v->pool + v->offset[id] + key_skip;
	size_t		len = v->length[id] - key_skip;
	uint32_t	h = hash_bytes(key, len);

	for (uint32_t i = 0;; i++)
	{
		uint32_t   *slot = &map->slots[LOOKUP_SLOT(map, h, i)];
		uint32_t	other;

		if (*slot == 0)
		{
			*slot = id + 1;
			break;
		}
		other = *slot - 1;
		if (v->length[other] - key_skip == len &&
			memcmp(v->pool + v->offset[other] + key_skip, key, len) == 0)
		{
			*slot = id + 1;
			break;
		}
	}
	if (len > map->max_len)
		map->max_len = (uint32_t) len;
}

/* An empty open-addressing table for n keys: a power of two above 2n, so probes stay short. */
static int
map_init(BtPieceMap *map, uint32_t n)
{
	uint32_t	cap = 16;

	while (cap < 2 * n + 1)
		cap <<= 1;
	map->slots = calloc(cap, sizeof(uint32_t));
	map->mask = cap - 1;
	map->max_len = 0;
	return map->slots != NULL;
}

/* Length of s[0..len) without trailing whitespace, as Rust's str::trim_end. */
static size_t
trim_end(const char *s, size_t len)
{
	for (;;)
	{
		const unsigned char *u = (const unsigned char *) s;

		if (len >= 1 && ((u[len - 1] >= 9 && u[len - 1] <= 13) || u[len - 1] == ' '))
			len--;
		else if (len >= 2 && u[len - 2] == 0xC2 && (u[len - 1] == 0x85 || u[len - 1] == 0xA0))
			len -= 2;
		else if (len >= 3 && u[len - 3] == 0xE1 && u[len - 2] == 0x9A && u[len - 1] == 0x80)
			len -= 3;			/* U+1680 */
		else if (len >= 3 && u[len - 3] == 0xE2 && u[len - 2] == 0x80 &&
				 (u[len - 1] <= 0x8A || u[len - 1] == 0xA8 || u[len - 1] == 0xA9 ||
				  u[len - 1] == 0xAF))
			len -= 3;			/* U+2000..200A, 2028, 2029, 202F */
		else if (len >= 3 && u[len - 3] == 0xE2 && u[len - 2] == 0x81 && u[len - 1] == 0x9F)
			len -= 3;			/* U+205F */
		else if (len >= 3 && u[len - 3] == 0xE3 && u[len - 2] == 0x80 && u[len - 1] == 0x80)
			len -= 3;			/* U+3000 */
		else
			return len;
	}
}

BtVocab *
bt_vocab_parse(const char *data, size_t len, char *err, size_t errlen)
{
	BtVocab    *v;
	uint32_t	n = 0;
	size_t		pos = 0;

	if (len > UINT32_MAX / 2)
	{
		snprintf(err, errlen, "vocabulary is too large (%zu bytes)", len);
		return NULL;
	}
	for (size_t i = 0; i < len; i++)
		n += data[i] == '\n';
	if (len > 0 && data[len - 1] != '\n')
		n++;
	if (n == 0)
	{
		snprintf(err, errlen, "vocabulary is empty");
		return NULL;
	}

	v = calloc(1, sizeof(BtVocab));
	if (v == NULL)
		goto oom;
	v->size = n;
	v->pool = malloc(len + n + 1);
	v->offset = malloc(sizeof(uint32_t) * n);
	v->length = malloc(sizeof(uint32_t) * n);
	if (!v->pool || !v->offset || !v->length ||
		!map_init(&v->initial, n) || !map_init(&v->continuation, n))
		goto oom;

	for (uint32_t id = 0; id < n; id++)
	{
		const char *line = data + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t		line_len = nl ? (size_t) (nl - line) : len - pos;
		size_t		tok_len = trim_end(line, line_len);
		uint32_t	off = (uint32_t) (pos + id);	/* room for one NUL per line */

		memcpy(v->pool + off, line, tok_len);
		v->pool[off + tok_len] = '\0';
		v->offset[id] = off;
		v->length[id] = (uint32_t) tok_len;
		pos += line_len + (nl != NULL);
	}
	for (uint32_t id = 0; id < n; id++)
	{
		map_insert(v, &v->initial, id, 0);
		if (v->length[id] > 2 && memcmp(v->pool + v->offset[id], "##", 2) == 0)
			map_insert(v, &v->continuation, id, 2);
	}
	return v;

oom:
	bt_vocab_free(v);
	snprintf(err, errlen, "out of memory loading vocabulary of %u tokens", n);
	return NULL;
}

BtVocab *
bt_vocab_load(const char *path, char *err, size_t errlen)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf = NULL;
	size_t		len = 0,
				cap = 0;
	BtVocab    *v;

	if (f == NULL)
	{
		snprintf(err, errlen, "could not open vocabulary \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	for (;;)
	{
		size_t		got;

		if (len == cap)
		{
			char	   *nbuf;

			cap = cap ? cap * 2 : 1 << 20;
			nbuf = realloc(buf, cap);
			if (nbuf == NULL)
			{
				free(buf);
				fclose(f);
				snprintf(err, errlen, "out of memory reading vocabulary \"%s\"", path);
				return NULL;
			}
			buf = nbuf;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f))
	{
		free(buf);
		fclose(f);
		snprintf(err, errlen, "could not read vocabulary \"%s\"", path);
		return NULL;
	}
	fclose(f);
	v = bt_vocab_parse(buf, len, err, errlen);
	free(buf);
	return v;
}

void
bt_vocab_free(BtVocab *v)
{
	if (v == NULL)
		return;
	free(v->pool);
	free(v->offset);
	free(v->length);
	free(v->initial.slots);
	free(v->continuation.slots);
	free(v);
}

int32_t
bt_vocab_find(const BtVocab *v, const char *s, size_t len)
{
	return map_find(v, &v->initial, s, len, 0);
}

int32_t
bt_vocab_find_continuation(const BtVocab *v, const char *s, size_t len)
{
	return map_find(v, &v->continuation, s, len, 2);
}

const char *
bt_vocab_token(const BtVocab *v, int32_t id, size_t *len)
{
	if (id < 0 || (uint32_t) id >= v->size)
		return NULL;
	if (len)
		*len = v->length[id];
	return v->pool + v->offset[id];
}
