/*
 * model.h - a BERT encoder with pooler and classification head, on the CPU.
 *
 * Parameters live in one float32 allocation (llm.c style) so an optimizer or
 * a device copy is one loop or one memcpy. The forward pass works on packed
 * batches: the tokens of all sequences back to back, no padding; only
 * attention looks at sequence boundaries. Numerics follow Hugging Face
 * transformers' BertModel. PostgreSQL-free.
 */
#ifndef PGBERT_MODEL_H
#define PGBERT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "safetensors.h"

/* Views into BtBertModel.params; per-layer tensors are stacked over layers (L first). */
typedef struct BtBertParams
{
	float	   *word_emb;		/* (V, H) */
	float	   *pos_emb;		/* (P, H) */
	float	   *type_emb;		/* (TV, H) */
	float	   *emb_ln_w;		/* (H) */
	float	   *emb_ln_b;		/* (H) */
	float	   *qkv_w;			/* (L, 3H, H): query, key, value rows */
	float	   *qkv_b;			/* (L, 3H) */
	float	   *attn_out_w;		/* (L, H, H) */
	float	   *attn_out_b;		/* (L, H) */
	float	   *attn_ln_w;		/* (L, H) */
	float	   *attn_ln_b;		/* (L, H) */
	float	   *ffn_in_w;		/* (L, I, H) */
	float	   *ffn_in_b;		/* (L, I) */
	float	   *ffn_out_w;		/* (L, H, I) */
	float	   *ffn_out_b;		/* (L, H) */
	float	   *ffn_ln_w;		/* (L, H) */
	float	   *ffn_ln_b;		/* (L, H) */
	float	   *pool_w;			/* (H, H), when has_pooler */
	float	   *pool_b;			/* (H) */
	float	   *cls_w;			/* (C, H), when has_classifier */
	float	   *cls_b;			/* (C) */
} BtBertParams;

/* Scratch arenas a model keeps between forward passes: one per chunk thread of a two-thread pass, and two more. */
#define BT_SPARE_ARENAS 4

typedef struct BtBertModel
{
	BtBertConfig cfg;			/* owned (labels freed with the model) */
	bool		has_pooler;
	bool		has_classifier;
	int			num_classes;	/* rows of the classifier, 0 without one */
	size_t		num_params;
	float	   *params;			/* one allocation holding every parameter */
	BtBertParams p;
	bool		packed;			/* dense layer weights in gemm.h's layout: inference only */
	bool		use_q8;			/* forward passes use them (set by bt_model_quantize) */
	int			n_q8;			/* encoder weights also held in 8 bits (bt_model_quantize) */
	struct BtQ8Weight *q8;		/* (n_q8), found by their float32 source */
	void	   *q8_mem;			/* one allocation behind them */
	bool		use_bf16;		/* forward passes use the bf16 weights (set by bt_model_to_bf16) */
	int			n_bf16;			/* encoder weights also held in bf16 */
	struct BtBf16Weight *bf16;	/* (n_bf16), found by their float32 source */
	void	   *bf16_mem;		/* one allocation behind them */
	/*
	 * Forward passes' scratch kept for the next ones (model.c's arena_take and
	 * arena_give): a cache under spare_lock, written through const models.
	 */
	void	   *spare_arenas[BT_SPARE_ARENAS];
	char		spare_lock;		/* a spin lock over them (0: free) */
} BtBertModel;

/* A packed batch: sequence s holds tokens offsets[s] .. offsets[s+1]-1. */
typedef struct BtBatch
{
	int			n_seq;
	const int32_t *offsets;		/* n_seq + 1 entries, offsets[0] = 0 */
	const int32_t *ids;			/* offsets[n_seq] token ids */
	const int32_t *type_ids;	/* token type ids, or NULL for all 0 */
} BtBatch;

/* What a forward pass writes; NULL members are not computed. */
typedef struct BtForwardOut
{
	float	   *hidden;			/* (tokens, H) last hidden state */
	float	   *pooled;			/* (n_seq, H) tanh(dense(CLS)); needs a pooler */
	float	   *mean;			/* (n_seq, H) mean of each sequence's hidden states */
	float	   *logits;			/* (n_seq, C); needs a pooler and a classifier */
} BtForwardOut;

/*
 * Build a model from a config (taken over: freed with the model, or on
 * failure) and a checkpoint in Hugging Face layout, converting tensors to
 * float32. Accepts the "bert." prefix or none, legacy LayerNorm gamma/beta,
 * BertForSequenceClassification heads and checkpoints without a pooler.
 * Missing tensors, wrong shapes and non-finite weights are errors; tensors
 * that are not used are listed in notes (may be NULL).
 */
extern BtBertModel *bt_model_load(BtBertConfig *cfg, const BtSafetensors *st,
								  char *notes, size_t noteslen, char *err, size_t errlen);

extern void bt_model_free(BtBertModel *m);

/*
 * Allocate m->params (uninitialized, 64-byte aligned) for m->cfg, m->has_pooler
 * and m->num_classes (has_classifier is set to num_classes > 0), set num_params
 * and point the views of m->p into it. 0, or -1 when out of memory.
 */
extern int	bt_model_alloc_params(BtBertModel *m);

/*
 * Run the encoder over a packed batch; 0, or -1 with err (bad ids, lengths,
 * memory). OpenBLAS's thread count (bt_blas_threads) is the thread budget: a
 * batch of several sequences is split by sequence over that many threads of
 * the engine's own, each with single-threaded GEMMs, joined before this
 * returns; one sequence runs on OpenBLAS's threads, or, when the model is
 * packed (bt_model_pack), on a team of the engine's own threads sharing every
 * GEMM (with its GELU), the attention heads and LayerNorm. The thread count is
 * process-wide and set to 1 meanwhile, so passes run from several threads at
 * once stay correct but may share the cores poorly.
 */
extern int	bt_model_forward(const BtBertModel *m, const BtBatch *batch, BtForwardOut *out,
							 char *err, size_t errlen);

/*
 * Make m a model for forward passes on this CPU: when it has AVX2+FMA, pack
 * the encoder's dense weights in place for gemm.h's kernel (no second copy).
 * Its forward passes then run the dense layers there, one sequence on a team
 * of the engine's own threads instead of OpenBLAS's; it can no longer be
 * trained nor uploaded to a GPU (both refuse a packed model). Without AVX2
 * nothing changes. 0, or -1 out of memory (the model is unchanged then).
 */
extern int	bt_model_pack(BtBertModel *m, char *err, size_t errlen);

/*
 * Opt in to 8-bit dense layers (gemm_q8.h) for m's forward passes: packs m
 * (bt_model_pack), then quantizes each encoder weight whose shape allows it
 * (outputs a multiple of 16, inputs of 4) into a second allocation of about a
 * quarter of the weights' size; the float32 weights stay, for everything else
 * and as the reference. Faster and less exact than float32: the accuracy
 * against it is in docs/benchmarks.md. Sets use_q8, which its owner may clear
 * and set again between passes to switch precision. Without AVX2 nothing
 * changes. 0, or -1 out of memory (the model then stays float32).
 */
extern int	bt_model_quantize(BtBertModel *m, char *err, size_t errlen);

/* Bytes bt_model_quantize added (0 when it has not run or quantized nothing). */
extern size_t bt_model_q8_bytes(const BtBertModel *m);

/*
 * Opt in to bf16 products in the encoder's dense layers (gemm_bf16.h): packs
 * m, then converts each encoder weight whose shape allows it into a second
 * allocation of half the weights' size; the float32 weights stay, as
 * bt_model_quantize's do. Sets use_bf16 (and clears use_q8), which its owner
 * may clear and set again between passes. 0; -1 out of memory; -2 when this
 * CPU has no AVX512-BF16 (cpu.h), err saying so; the model stays float32.
 */
extern int	bt_model_to_bf16(BtBertModel *m, char *err, size_t errlen);

/* Bytes bt_model_to_bf16 added (0 when it has not run). */
extern size_t bt_model_bf16_bytes(const BtBertModel *m);

#endif
