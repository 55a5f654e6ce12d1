/*
 * kernels/gpu_model_internal.h
 *     The layout of a PgbertGpuModel (gpu_model.cu), for the other .cu files
 *     that work on an uploaded model: the trainer (gpu_train.cu) reads its
 *     description and updates its float32 weights and their bf16 copy in
 *     place. CUDA code only; no PostgreSQL header may be included here.
 */
#ifndef PGBERT_KERNELS_GPU_MODEL_INTERNAL_H
#define PGBERT_KERNELS_GPU_MODEL_INTERNAL_H

#include "gpu_internal.h"

#include <stdint.h>

#define MAX_GRAPHS 64			/* captured shapes kept, least recently used dropped */
#define MAX_SEEN 256			/* shapes seen once (captured on their second run) */

typedef struct Graph
{
	uint64_t	hash;
	int			want;
	int			n_seq;
	int		   *offsets;		/* n_seq + 1, the exact shape */
	unsigned	generation;
	uint64_t	last_used;
	cudaGraphExec_t exec;
} Graph;

struct PgbertGpuModel
{
	PgbertGpuContext *ctx;
	PgbertGpuModelDesc d;
	PgbertGpuPrecision precision;
	float	   *params;			/* float32 copy, the engine's layout */
	size_t		params_bytes;
	__nv_bfloat16 *params_bf16; /* bf16 copy of the same, for BF16 */
	size_t		params_bf16_bytes;

	/* activations: one block, grown to the largest batch seen */
	char	   *ws;
	size_t		ws_bytes;
	/* pinned staging both ways */
	int		   *h_ints;
	size_t		h_ints_cap;		/* ints */
	float	   *h_out;
	size_t		h_out_cap;		/* floats */
	unsigned	generation;		/* bumped when ws, h_ints or h_out move */

	int			fused_attention;	/* bf16 pass: gpu_flash.cu's kernel instead of the buckets */
	int			use_graphs;
	Graph		graphs[MAX_GRAPHS];
	int			n_graphs;
	uint64_t	seen[MAX_SEEN];
	int			n_seen;
	uint64_t	tick;
};

#endif							/* PGBERT_KERNELS_GPU_MODEL_INTERNAL_H */
