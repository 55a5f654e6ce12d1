/*
 * vocab.h - a WordPiece vocabulary: vocab.txt lines to ids and back.
 *
 * Two hash maps answer the WordPiece questions directly: "is this string a
 * word-initial piece?" and "is this string a '##' continuation piece?"
 * (keyed without the '##'), so lookups never build strings. PostgreSQL-free.
 */
#ifndef PGBERT_VOCAB_H
#define PGBERT_VOCAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct BtPieceMap
{
	uint32_t   *slots;			/* index+1 into entries; 0 = empty */
	uint32_t	mask;			/* slot count - 1 (power of two) */
	uint32_t	max_len;		/* longest key in bytes */
} BtPieceMap;

typedef struct BtVocab
{
	char	   *pool;			/* every token, NUL-terminated, back to back */
	uint32_t   *offset;			/* id -> token start in pool */
	uint32_t   *length;			/* id -> token length in bytes */
	uint32_t	size;			/* number of ids (lines) */
	BtPieceMap	initial;		/* token -> id */
	BtPieceMap	continuation;	/* token without leading "##" -> id */
} BtVocab;

/*
 * Parse vocab.txt bytes: line N is id N, trailing whitespace trimmed, a final
 * newline does not start another line; a repeated token keeps its last id,
 * as tokenizers does. Returns NULL and fills err on failure.
 */
extern BtVocab *bt_vocab_parse(const char *data, size_t len, char *err, size_t errlen);

/* Read and parse a vocab.txt file. */
extern BtVocab *bt_vocab_load(const char *path, char *err, size_t errlen);

extern void bt_vocab_free(BtVocab *v);

/* Id of a word-initial piece (whole token string), or -1. */
extern int32_t bt_vocab_find(const BtVocab *v, const char *s, size_t len);

/* Id of the continuation piece "##" + s, or -1. */
extern int32_t bt_vocab_find_continuation(const BtVocab *v, const char *s, size_t len);

/* Token string of an id (NUL-terminated), or NULL when out of range. */
extern const char *bt_vocab_token(const BtVocab *v, int32_t id, size_t *len);

#endif
