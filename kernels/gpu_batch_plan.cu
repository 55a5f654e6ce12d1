/*
 * kernels/gpu_batch_plan.cu
 *     Planning a packed batch for the device, shared by the inference pass
 *     and the trainer (see gpu_batch_plan.h): one bucketing rule, one layout
 *     of the staged token integers, one way of growing the buffers.
 *
 * No PostgreSQL header may be included here.
 */
#include "gpu_batch_plan.h"

#include <stdlib.h>
#include <string.h>

/* qsort_r order: longer first, ties by index, so that the order is the same on every run. */
static int
compare_len_desc(const void *a, const void *b, void *arg)
{
	const int  *offsets = (const int *) arg;
	int			sa = *(const int *) a,
				sb = *(const int *) b;
	int			la = offsets[sa + 1] - offsets[sa],
				lb = offsets[sb + 1] - offsets[sb];

	return la != lb ? lb - la : sa - sb;
}

void
sort_longest_first(int n_seq, const int *offsets, int *order)
{
	for (int s = 0; s < n_seq; s++)
		order[s] = s;
	qsort_r(order, n_seq, sizeof(int), compare_len_desc, (void *) offsets);
}

int
bucket_take(int n_seq, const int *offsets, const int *order, int s, int P, size_t per_seq_bytes)
{
	size_t		cap = BUCKET_ATTENTION_BUDGET / per_seq_bytes;
	int			B = 0;

	if (cap < 1)
		cap = 1;
	while (s + B < n_seq && (size_t) B < cap)
	{
		int			l = offsets[order[s + B] + 1] - offsets[order[s + B]];

		if (B > 0 && (size_t) bucket_padded_len(l) * 4 < (size_t) P * 3)
			break;
		B++;
	}
	return B;
}

void
stage_tokens(int n_seq, const int *offsets, const int *ids, const int *type_ids,
			 int *s_ids, int *s_types, int *s_pos, int *s_cls)
{
	int			T = offsets[n_seq];

	memcpy(s_ids, ids, sizeof(int) * T);
	if (type_ids)
		memcpy(s_types, type_ids, sizeof(int) * T);
	else
		memset(s_types, 0, sizeof(int) * T);
	for (int s = 0; s < n_seq; s++)
	{
		for (int t = offsets[s]; t < offsets[s + 1]; t++)
			s_pos[t] = t - offsets[s];
		s_cls[s] = offsets[s];
	}
}

void
stage_bucket(int B, int P, const int *order, const int *offsets, int *slots, int *lens)
{
	for (int b = 0; b < B; b++)
	{
		int			s = order[b];
		int			len = offsets[s + 1] - offsets[s];

		for (int p = 0; p < P; p++)
			slots[(size_t) b * P + p] = p < len ? offsets[s] + p : -1;
		lens[b] = len;
	}
}

int
check_sequence_lengths(int n_seq, const int *offsets, int max_position, char *errbuf, size_t errlen)
{
	for (int s = 0; s < n_seq; s++)
	{
		int			len = offsets[s + 1] - offsets[s];

		if (len < 1 || len > max_position)
		{
			set_error(errbuf, errlen, "sequence %d has %d tokens; the model takes 1 to %d", s, len,
					  max_position);
			return -1;
		}
	}
	return 0;
}

int
grow_workspace(PgbertGpuContext *ctx, char **ws, size_t *ws_bytes, size_t need, const char *what,
			   char *errbuf, size_t errlen)
{
	size_t		want = need + need / 4;

	gpu_free(ctx, *ws, *ws_bytes);
	*ws = NULL;
	*ws_bytes = 0;
	/* without the headroom when only the exact size fits */
	if (gpu_alloc(ctx, (void **) ws, want, what, NULL, 0) == 0)
		*ws_bytes = want;
	else if (gpu_alloc(ctx, (void **) ws, need, what, errbuf, errlen) == 0)
		*ws_bytes = need;
	else
		return -1;
	return 0;
}

int
grow_pinned(void **buf, size_t *cap, size_t need, size_t elem_size, size_t slack, const char *what,
			char *errbuf, size_t errlen)
{
	size_t		want = need + need / 4 + slack;
	cudaError_t err;

	if (*buf)
		(void) cudaFreeHost(*buf);
	*buf = NULL;
	*cap = 0;
	if ((err = cudaHostAlloc(buf, want * elem_size, cudaHostAllocDefault)) != cudaSuccess)
	{
		char		call[128];

		*buf = NULL;
		snprintf(call, sizeof(call), "cudaHostAlloc of %s", what);
		set_cuda_error(errbuf, errlen, call, err);
		return -1;
	}
	*cap = want;
	return 0;
}
