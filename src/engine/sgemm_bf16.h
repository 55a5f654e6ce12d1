/*
 * sgemm_bf16.h - cblas_sgemm's contract (row-major) with bf16 products and
 * float32 sums, its work shared by a team: the dense layers of training under
 * pgbert.cpu_precision = bf16 (float32 master weights, gradients and AdamW
 * state stay in train.c).
 *
 * Both operands are rounded to bf16 on every call (training's weights change
 * every step): op(B) into gemm_bf16.h's panel layout, op(A) as the kernel
 * packs its rows, read in place through strides when transposed. Where a
 * product can go straight into C (alpha 1, beta 0 or 1, N a multiple of 16)
 * it does, otherwise through a scratch matrix. PostgreSQL-free.
 */
#ifndef PGBERT_SGEMM_BF16_H
#define PGBERT_SGEMM_BF16_H

#include <stdbool.h>

#include "team.h"

/*
 * C (M, N) = alpha op(A) (M, K) op(B) (K, N) + beta C, row-major, with
 * trans_a/trans_b as cblas's; bias (N floats) may be given only with alpha 1
 * and beta 0 and is added to every row. team (NULL: this thread alone) splits
 * the rows; every output is summed by one thread in one order, so the result
 * does not depend on the team's size. 0, or -1 when memory for the bf16 copies could not be had
 * (C untouched).
 */
extern int	bt_sgemm_bf16(BtTeam *team, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
						  int lda, const float *B, int ldb, float beta, float *C, int ldc, const float *bias);

#endif
