/*
 * sgemm_bf16.c - a general bf16 GEMM for training (see sgemm_bf16.h).
 *
 * Three team jobs: convert op(B) to bf16 panels (members split the panels),
 * multiply (members split the rows, so each rounds and packs only its own
 * rows of op(A); splitting the panels instead made every member pack all of
 * op(A), and ran bf16 training at 2 threads a quarter slower), and, only
 * where C could not take the product directly, C = alpha S + beta C
 * (members split rows).
 */
#include "sgemm_bf16.h"

#include <stdlib.h>

#include "gemm_bf16.h"

typedef struct SgemmJob
{
	BtStrided	a;				/* op(A): M rows of K */
	BtStrided	b;				/* op(B)^T: N rows of K */
	int			M,
				N;
	BtBf16Weight bw;			/* op(B)^T in bf16 panels */
	float	   *out;			/* where the kernel writes: C, or the scratch S */
	int			ldo;
	const float *bias;			/* for the kernel, or for the combine step */
	bool		accumulate;		/* the kernel starts from C (beta 1) */
	float		alpha,
				beta;
	float	   *C;
	int			ldc;
	int			phase;			/* 0 convert, 1 multiply, 2 combine */
} SgemmJob;

/* Member's share [lo, hi) of n items in units of `unit` (the last share takes the rest). */
static void
share(int n, int unit, int member, int members, int *lo, int *hi)
{
	int			units = (n + unit - 1) / unit;

	*lo = units * member / members * unit;
	*hi = units * (member + 1) / members * unit;
	*hi = *hi < n ? *hi : n;
}

/* One member's part of the current phase. */
static void
sgemm_job(void *arg, int member, int members)
{
	SgemmJob   *j = arg;
	int			panels = j->bw.O / 16,
				lo,
				hi;

	if (j->phase == 0)
	{
		share(panels, 1, member, members, &lo, &hi);
		bt_bf16_convert_strided(&j->bw, &j->b, j->N, lo, hi);
	}
	else if (j->phase == 1)
	{
		/* rows, so that each member rounds and packs only its own rows of op(A) */
		BtStrided	rows = j->a;

		share(j->M, 12, member, members, &lo, &hi);
		rows.p += (size_t) lo * rows.rs;
		bt_gemm_bf16_strided(j->out + (size_t) lo * j->ldo, j->ldo, &rows, hi - lo, &j->bw,
							 j->out == j->C ? j->bias : NULL, 0, panels, j->accumulate);
	}
	else
	{
		share(j->M, 1, member, members, &lo, &hi);
		for (int m = lo; m < hi; m++)
		{
			const float *s = j->out + (size_t) m * j->ldo;
			float	   *c = j->C + (size_t) m * j->ldc;

			for (int n = 0; n < j->N; n++)
				c[n] = j->alpha * s[n] + (j->beta == 0.0f ? 0.0f : j->beta * c[n]) + (j->bias ? j->bias[n] : 0.0f);
		}
	}
}

/* Run the job's current phase on the team, or here alone. */
static void
run_phase(BtTeam *team, SgemmJob *j, int phase)
{
	j->phase = phase;
	if (team)
		bt_team_run(team, sgemm_job, j);
	else
		sgemm_job(j, 0, 1);
}

int
bt_sgemm_bf16(BtTeam *team, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
			  int lda, const float *B, int ldb, float beta, float *C, int ldc, const float *bias)
{
	SgemmJob	j = {0};
	int			N16 = (N + 15) / 16 * 16,
				K2 = (K + 1) / 2 * 2;
	bool		direct = alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && N % 16 == 0;
	void	   *w;

	if (M <= 0 || N <= 0)
		return 0;
	j.a = trans_a ? (BtStrided) {A, 1, (size_t) lda, K} : (BtStrided) {A, (size_t) lda, 1, K};
	j.b = trans_b ? (BtStrided) {B, (size_t) ldb, 1, K} : (BtStrided) {B, 1, (size_t) ldb, K};
	j.M = M;
	j.N = N;
	j.bw.O = N16;
	j.bw.K = K2;
	j.bias = bias;
	j.alpha = alpha;
	j.beta = beta;
	j.C = C;
	j.ldc = ldc;
	if (K2 == 0 || (w = aligned_alloc(64, bt_bf16_bytes(N16, K2))) == NULL)
	{
		if (K2 != 0)
			return -1;
		w = NULL;				/* K = 0: the product is zero; the scratch path scales C alone */
		direct = false;
	}
	j.bw.w = w;
	if (direct)
	{
		j.out = C;
		j.ldo = ldc;
		j.accumulate = beta == 1.0f;
	}
	else if ((j.out = calloc((size_t) M * N16, sizeof(float))) == NULL)
	{
		free(w);
		return -1;
	}
	else
		j.ldo = N16;
	if (K2 > 0)
	{
		run_phase(team, &j, 0);
		run_phase(team, &j, 1);
	}
	if (!direct)
	{
		run_phase(team, &j, 2);
		free(j.out);
	}
	free(w);
	return 0;
}
