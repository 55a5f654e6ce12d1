/*
 * safetensors.h - a strict, bounds-checked reader of the safetensors format.
 *
 * The blob stays the caller's (typically a mapped file); the parse result
 * only points into it. Every span, shape and dtype is validated up front, so
 * a parsed tensor can be read without further checks. PostgreSQL-free.
 */
#ifndef PGBERT_SAFETENSORS_H
#define PGBERT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define BT_SAFETENSORS_MAX_DIMS 8
#define BT_SAFETENSORS_MAX_HEADER 100000000	/* bytes, as the reference reader */

typedef enum BtDType
{
	BT_F32,
	BT_F16,
	BT_BF16,
	BT_F64,
	BT_I64,
	BT_I32,
	BT_I16,
	BT_I8,
	BT_U8,
	BT_BOOL,
	BT_OTHER					/* a spec dtype the engine does not compute with */
} BtDType;

typedef struct BtTensor
{
	char	   *name;			/* NUL-terminated, non-empty */
	BtDType		dtype;
	char		dtype_name[16];	/* as written in the header, e.g. "F8_E4M3" */
	int			ndim;			/* 0 for a scalar */
	int64_t		shape[BT_SAFETENSORS_MAX_DIMS];
	uint64_t	offset;			/* into the data section */
	uint64_t	nbytes;
} BtTensor;

typedef struct BtSafetensors
{
	const uint8_t *file;		/* the caller's blob */
	size_t		file_len;
	const uint8_t *data;		/* data section: file + 8 + header length */
	uint64_t	data_len;
	int			n_tensors;
	BtTensor   *tensors;		/* sorted by name (strcmp) */
} BtSafetensors;

/*
 * Parse and validate a safetensors blob held by the caller (not copied; it
 * must outlive the result). Dtypes of the safetensors spec that BtDType does
 * not name (U16, U32, U64, C64, the F8, F6 and F4 kinds) parse as BT_OTHER
 * and are size-checked by their bit width; any other dtype string is an
 * error. Returns NULL and fills err on failure.
 */
extern BtSafetensors *bt_safetensors_parse(const uint8_t *file, size_t len, char *err, size_t errlen);

extern void bt_safetensors_free(BtSafetensors *st);

/*
 * From a safetensors header alone (the JSON text after the 8-byte length, so
 * without reading the tensors): the rows of "classifier.weight", the outputs
 * of the classification head bt_model_load would build; 0 when there is no
 * such tensor; -1 when the header is not a JSON object or the tensor's shape
 * is not a usable head (loading the checkpoint then refuses it anyway).
 */
extern int	bt_safetensors_head_rows(const char *header, size_t len);

/* Tensor of that name (binary search), or NULL. */
extern const BtTensor *bt_safetensors_find(const BtSafetensors *st, const char *name);

/* Bytes per element; 0 for BT_OTHER. */
extern size_t bt_dtype_size(BtDType dt);

/* Element count of a tensor (product of its shape; 1 for a scalar). */
extern uint64_t bt_tensor_numel(const BtTensor *t);

/*
 * Convert a F32/F16/BF16 tensor to float32 into out; n (element count) must
 * equal the tensor's. Widening is exact, NaN payloads included. Returns 0, or
 * -1 with err.
 */
extern int	bt_safetensors_read_f32(const BtSafetensors *st, const BtTensor *t, float *out, size_t n,
									char *err, size_t errlen);

#endif
