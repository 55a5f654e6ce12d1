/*
 * kernels/gpu_batch_plan.h
 *     What the inference pass (gpu_model.cu) and the trainer (gpu_train.cu)
 *     share of planning a packed batch (gpu_batch_plan.cu): the length
 *     buckets of padded attention, the integers staged for the device, the
 *     checks of the sequence lengths, and growing the buffers a batch needs.
 *     Host code only; no PostgreSQL header may be included here.
 */
#ifndef PGBERT_KERNELS_GPU_BATCH_PLAN_H
#define PGBERT_KERNELS_GPU_BATCH_PLAN_H

#include "gpu_internal.h"

#include <stddef.h>

/* Bytes of padded attention scratch one bucket may use. */
#define BUCKET_ATTENTION_BUDGET ((size_t) 256 << 20)

/* Padded length of a bucket whose longest sequence has len tokens: a multiple of 8. */
static inline int
bucket_padded_len(int len)
{
	return (len + 7) & ~7;
}

/* order (n_seq) = the sequences longest first, ties in batch order: the order buckets take them in. */
void		sort_longest_first(int n_seq, const int *offsets, int *order);

/*
 * How many sequences, from position s of order on, go into the bucket that
 * order[s] (the longest left) opens with padded length P: a sequence joins
 * while its padded length wastes at most a quarter of P, and while the
 * bucket's scratch (per_seq_bytes each) fits BUCKET_ATTENTION_BUDGET; at least one.
 */
int			bucket_take(int n_seq, const int *offsets, const int *order, int s, int P, size_t per_seq_bytes);

/*
 * The token integers of a batch of T tokens: ids, types (0 when type_ids
 * is NULL), each token's position in its sequence, and cls[s], the first
 * token of sequence s.
 */
void		stage_tokens(int n_seq, const int *offsets, const int *ids, const int *type_ids,
						 int *s_ids, int *s_types, int *s_pos, int *s_cls);

/*
 * One bucket of B sequences (order[0 .. B)) padded to P: slots[b * P + p] is
 * the packed token of slot p of sequence b, or -1 past its end; lens[b] its length.
 */
void		stage_bucket(int B, int P, const int *order, const int *offsets, int *slots, int *lens);

/* Every sequence has 1 .. max_position tokens; 0, or -1 + message naming the first that has not. */
int			check_sequence_lengths(int n_seq, const int *offsets, int max_position, char *errbuf, size_t errlen);

/*
 * Replaces a device workspace too small for need bytes: frees it, then
 * allocates need + a quarter (headroom for the next batch), or exactly need
 * when only that fits. The caller synchronizes first. 0, or -1 + message.
 */
int			grow_workspace(PgbertGpuContext *ctx, char **ws, size_t *ws_bytes, size_t need, const char *what,
						   char *errbuf, size_t errlen);

/*
 * Replaces a pinned host buffer of *cap elements of elem_size bytes with one
 * of need + a quarter + slack elements (the old contents are lost). The
 * caller synchronizes first. 0, or -1 + message naming what.
 */
int			grow_pinned(void **buf, size_t *cap, size_t need, size_t elem_size, size_t slack, const char *what,
						char *errbuf, size_t errlen);

#endif							/* PGBERT_KERNELS_GPU_BATCH_PLAN_H */
