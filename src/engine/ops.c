/*
 * ops.c - the BERT layers, forward and backward, on packed batches (shapes in
 * comments; T tokens, H hidden, I intermediate, NH heads of d = H / NH, S
 * the length of one sequence).
 */
#include "ops.h"
#include "blas.h"
#include "cpu.h"
#include "simd.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- batches ---- */

int
bt_check_batch(const BtBertModel *m, const BtBatch *b, char *err, size_t errlen)
{
	if (b->n_seq < 1 || b->offsets[0] != 0)
	{
		snprintf(err, errlen, "batch has no sequences");
		return -1;
	}
	for (int s = 0; s < b->n_seq; s++)
	{
		/* in 64 bits: offsets from a message may be anything, and their difference overflow an int */
		int64_t		len = (int64_t) b->offsets[s + 1] - b->offsets[s];

		if (len < 1 || len > m->cfg.max_position)
		{
			snprintf(err, errlen, "sequence %d has %lld tokens; the model takes 1 to %d",
					 s, (long long) len, m->cfg.max_position);
			return -1;
		}
	}
	for (int t = 0; t < b->offsets[b->n_seq]; t++)
	{
		if (b->ids[t] < 0 || b->ids[t] >= m->cfg.vocab_size)
		{
			snprintf(err, errlen, "token id %d at position %d is outside the vocabulary of %d",
					 b->ids[t], t, m->cfg.vocab_size);
			return -1;
		}
		if (b->type_ids && (b->type_ids[t] < 0 || b->type_ids[t] >= m->cfg.type_vocab_size))
		{
			snprintf(err, errlen, "token type id %d at position %d is outside 0 to %d",
					 b->type_ids[t], t, m->cfg.type_vocab_size - 1);
			return -1;
		}
	}
	return 0;
}

int
bt_batch_max_len(const BtBatch *b)
{
	int			max_len = 0;

	for (int s = 0; s < b->n_seq; s++)
		if (b->offsets[s + 1] - b->offsets[s] > max_len)
			max_len = b->offsets[s + 1] - b->offsets[s];
	return max_len;
}

size_t
bt_batch_probs_size(const BtBatch *b, int NH)
{
	size_t		n = 0;

	for (int s = 0; s < b->n_seq; s++)
	{
		size_t		S = (size_t) (b->offsets[s + 1] - b->offsets[s]);

		n += S * S;
	}
	return n * (size_t) NH;
}

/* ---- dropout ---- */

/* Element idx's 32 random bits: one half of the hash of its pair (idx / 2) in d's stream. */
static inline uint32_t
dropout_bits(const BtDropout *d, uint64_t idx)
{
	uint64_t	h = bt_mix64(d->key + ((idx >> 1) + 1) * 0x9e3779b97f4a7c15ULL);

	return (uint32_t) ((idx & 1) ? h >> 32 : h);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(BT_PORTABLE)

#include <immintrin.h>

/*
 * bt_dropout_apply's loop on AVX-512, 16 elements (8 pairs) at a time from an
 * even index: each 64-bit lane hashes one pair as bt_mix64 does (vpmullq),
 * and read as sixteen 32-bit lanes the hashes are the elements' bits in
 * order (low half first), so the same elements drop as in the plain loop.
 * Returns how many elements it did.
 */
__attribute__((target("avx512f,avx512dq"))) static size_t
dropout_avx512(float *x, size_t n, const BtDropout *d, uint64_t base, uint32_t threshold, float scale)
{
	const __m512i step = _mm512_set1_epi64((long long) 0x9e3779b97f4a7c15ULL),
				m1 = _mm512_set1_epi64((long long) 0xbf58476d1ce4e5b9ULL),
				m2 = _mm512_set1_epi64((long long) 0x94d049bb133111ebULL),
				lanes = _mm512_setr_epi64(1, 2, 3, 4, 5, 6, 7, 8);
	const __m512i limit = _mm512_set1_epi32((int) threshold);
	const __m512 vscale = _mm512_set1_ps(scale);
	size_t		i = 0;

	for (; i + 16 <= n; i += 16)
	{
		/* pairs (base + i) / 2 + 0 .. 7, each as key + (pair + 1) * golden */
		__m512i		h = _mm512_add_epi64(_mm512_set1_epi64((long long) d->key),
										 _mm512_mullo_epi64(_mm512_add_epi64(_mm512_set1_epi64((long long) ((base + i) >> 1)),
																			 lanes), step));
		__mmask16	drop;

		h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 30));
		h = _mm512_mullo_epi64(h, m1);
		h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 27));
		h = _mm512_mullo_epi64(h, m2);
		h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 31));
		drop = _mm512_cmplt_epu32_mask(h, limit);
		_mm512_storeu_ps(x + i, _mm512_maskz_mul_ps((__mmask16) ~drop, _mm512_loadu_ps(x + i), vscale));
	}
	return i;
}

#endif

void
bt_dropout_apply(float *x, size_t n, const BtDropout *d, uint64_t base)
{
	uint64_t	threshold;		/* element i drops when its 32 random bits are below this */
	float		scale;
	size_t		i = 0;

	if (!bt_dropout_active(d))
		return;
	if (d->p >= 1.0f)
	{
		memset(x, 0, n * sizeof(float));
		return;
	}
	threshold = (uint64_t) ((double) d->p * 4294967296.0);
	scale = 1.0f / (1.0f - d->p);
	if (n > 0 && (base & 1))	/* an odd first index: the vector loop starts on a pair */
	{
		x[0] = dropout_bits(d, base) < threshold ? 0.0f : x[0] * scale;
		i = 1;
	}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(BT_PORTABLE)
	if (bt_cpu_path() >= BT_CPU_AVX512)
		i += dropout_avx512(x + i, n - i, d, base + i, (uint32_t) threshold, scale);
#endif
	for (; i < n; i++)
		x[i] = dropout_bits(d, base + i) < threshold ? 0.0f : x[i] * scale;
}

/* ---- dense (nn.Linear) ---- */

/* mode's own GEMM when it has one and it could get its memory, else false (nothing done). */
static bool
dense_gemm(const BtDenseMode *mode, bool trans_a, bool trans_b, int M, int N, int K, const float *A, int lda,
		  const float *B, int ldb, float beta, float *C, int ldc, const float *bias)
{
	return mode && mode->gemm &&
		mode->gemm(mode->team, trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc, bias) == 0;
}

void
bt_dense_forward(const BtDenseMode *mode, float *out, const float *in, const float *w, const float *b, int T, int O,
				 int K)
{
	if (dense_gemm(mode, false, true, T, O, K, in, K, w, K, 0.0f, out, O, b))
		return;

	/*
	 * The bias goes in first and sgemm adds the product to it (beta 1): one
	 * write pass instead of sgemm zeroing out (beta 0) and a read-add-write
	 * pass after. Same sum, same single rounding.
	 */
	if (b)
		for (int t = 0; t < T; t++)
			memcpy(out + (size_t) t * O, b, (size_t) O * sizeof(float));
	bt_sgemm(BT_ROW_MAJOR, BT_NO_TRANS, BT_TRANS, T, O, K, 1.0f, in, K, w, K, b ? 1.0f : 0.0f, out, O);
}

void
bt_dense_backward(const BtDenseMode *mode, float *din, bool accumulate, float *dw, float *db, const float *dout,
				  const float *in, const float *w, int T, int O, int K)
{
	/* din (T, K) = dout (T, O) @ w (O, K) */
	if (din && !dense_gemm(mode, false, false, T, K, O, dout, O, w, K, accumulate ? 1.0f : 0.0f, din, K, NULL))
		bt_sgemm(BT_ROW_MAJOR, BT_NO_TRANS, BT_NO_TRANS, T, K, O, 1.0f, dout, O, w, K,
				 accumulate ? 1.0f : 0.0f, din, K);
	/* dw (O, K) += dout^T (O, T) @ in (T, K) */
	if (!dense_gemm(mode, true, false, O, K, T, dout, O, in, K, 1.0f, dw, K, NULL))
		bt_sgemm(BT_ROW_MAJOR, BT_TRANS, BT_NO_TRANS, O, K, T, 1.0f, dout, O, in, K, 1.0f, dw, K);
	/* db += each row of dout: bt_residual_forward is that add (AVX2 where it can, the same order) */
	if (db)
		for (int t = 0; t < T; t++)
			bt_residual_forward(db, dout + (size_t) t * O, O);
}

/* ---- residual connection ---- */

void
bt_residual_forward(float *x, const float *add, size_t n)
{
	if (bt_simd_avx2())
	{
		bt_avx2_add(x, add, n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		x[i] += add[i];
}

/* ---- LayerNorm ---- */

void
bt_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
					 const float *b, int T, int H, float eps)
{
	if (bt_simd_avx2())
	{
		bt_avx2_layernorm(out, mean, rstd, in, NULL, w, b, T, H, eps);
		return;
	}
	for (int t = 0; t < T; t++)
	{
		const float *x = in + (size_t) t * H;
		float	   *y = out + (size_t) t * H;
		double		mu = 0.0,
					var = 0.0;
		float		r;

		for (int i = 0; i < H; i++)
			mu += x[i];
		mu /= H;
		for (int i = 0; i < H; i++)
		{
			double		dx = x[i] - mu;

			var += dx * dx;
		}
		var /= H;
		r = (float) (1.0 / sqrt(var + eps));
		for (int i = 0; i < H; i++)
			y[i] = ((x[i] - (float) mu) * r) * w[i] + b[i];
		if (mean)
			mean[t] = (float) mu;
		if (rstd)
			rstd[t] = r;
	}
}

void
bt_residual_layernorm_forward(float *x, const float *add, const float *w, const float *b, int T, int H,
							  float eps)
{
	if (bt_simd_avx2())
	{
		/* one pass over x and add instead of two */
		bt_avx2_layernorm(x, NULL, NULL, x, add, w, b, T, H, eps);
		return;
	}
	bt_residual_forward(x, add, (size_t) T * H);
	bt_layernorm_forward(x, NULL, NULL, x, w, b, T, H, eps);
}

void
bt_layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in,
					  const float *mean, const float *rstd, const float *w, int T, int H)
{
	if (bt_simd_avx2())
	{
		bt_avx2_layernorm_backward(din, dw, db, dout, in, mean, rstd, w, T, H);
		return;
	}
	for (int t = 0; t < T; t++)
	{
		const float *x = in + (size_t) t * H;
		const float *dy = dout + (size_t) t * H;
		float	   *dx = din + (size_t) t * H;
		float		mu = mean[t],
					r = rstd[t];
		float		sum_g = 0.0f,	/* sum of dy * w */
					sum_gx = 0.0f;	/* sum of dy * w * xhat */

		/* y = xhat * w + b with xhat = (x - mean) * rstd */
		for (int i = 0; i < H; i++)
		{
			float		xhat = (x[i] - mu) * r;
			float		g = dy[i] * w[i];

			sum_g += g;
			sum_gx += g * xhat;
			dw[i] += dy[i] * xhat;
			db[i] += dy[i];
		}
		sum_g /= H;
		sum_gx /= H;
		/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) */
		for (int i = 0; i < H; i++)
		{
			float		xhat = (x[i] - mu) * r;

			dx[i] = r * (dy[i] * w[i] - sum_g - xhat * sum_gx);
		}
	}
}

/* ---- embeddings ---- */

void
bt_embeddings_forward(float *x, const BtBertModel *m, const BtBatch *b)
{
	const BtBertParams *p = &m->p;
	int			H = m->cfg.hidden_size;

	for (int s = 0; s < b->n_seq; s++)
		for (int t = b->offsets[s]; t < b->offsets[s + 1]; t++)
		{
			const float *we = p->word_emb + (size_t) b->ids[t] * H;
			const float *pe = p->pos_emb + (size_t) (t - b->offsets[s]) * H;
			const float *te = p->type_emb + (size_t) (b->type_ids ? b->type_ids[t] : 0) * H;
			float	   *row = x + (size_t) t * H;

			for (int i = 0; i < H; i++)
				row[i] = we[i] + pe[i] + te[i];
		}
}

void
bt_embeddings_backward(float *dword, float *dpos, float *dtype, const float *dx, const BtBatch *b,
					   int H, int pad_id)
{
	for (int s = 0; s < b->n_seq; s++)
		for (int t = b->offsets[s]; t < b->offsets[s + 1]; t++)
		{
			const float *g = dx + (size_t) t * H;
			float	   *pe = dpos + (size_t) (t - b->offsets[s]) * H;
			float	   *te = dtype + (size_t) (b->type_ids ? b->type_ids[t] : 0) * H;

			for (int i = 0; i < H; i++)
			{
				pe[i] += g[i];
				te[i] += g[i];
			}
			if (b->ids[t] != pad_id)
			{
				float	   *we = dword + (size_t) b->ids[t] * H;

				for (int i = 0; i < H; i++)
					we[i] += g[i];
			}
		}
}

/* ---- attention ---- */

/* x (rows, cols) = softmax of each row in place, with max subtraction */
static void
softmax_rows(float *x, int rows, int cols)
{
	if (bt_simd_avx2())
	{
		bt_avx2_softmax_rows(x, rows, cols);
		return;
	}
	for (int i = 0; i < rows; i++)
	{
		float	   *row = x + (size_t) i * cols;
		float		max = row[0],
					sum = 0.0f;

		for (int j = 1; j < cols; j++)
			max = row[j] > max ? row[j] : max;
		for (int j = 0; j < cols; j++)
		{
			row[j] = expf(row[j] - max);
			sum += row[j];
		}
		for (int j = 0; j < cols; j++)
			row[j] /= sum;
	}
}

/* p (S, S) = softmax(q @ k^T / sqrt d) for head h of the S tokens at base (S, 3H) */
static void
head_probs(float *p, const float *base, int S, int H, int NH, int h)
{
	int			d = H / NH;

	bt_sgemm(BT_ROW_MAJOR, BT_NO_TRANS, BT_TRANS, S, S, d, 1.0f / sqrtf((float) d),
			 base + h * d, 3 * H, base + H + h * d, 3 * H, 0.0f, p, S);
	softmax_rows(p, S, S);
}

/* ctx (S, d) of head h, row stride H = p (S, S) @ v (S, d) of the tokens at base (S, 3H) */
static void
head_context(float *ctx, const float *p, const float *base, int S, int H, int NH, int h)
{
	int			d = H / NH;

	bt_sgemm(BT_ROW_MAJOR, BT_NO_TRANS, BT_NO_TRANS, S, d, S, 1.0f,
			 p, S, base + 2 * H + h * d, 3 * H, 0.0f, ctx + h * d, H);
}

/* Can head h of these S tokens skip the BLAS calls (the path's short-sequence head)? */
static bool
small_head(int S, int H, int NH)
{
	int			d = H / NH,
				longest = bt_cpu_path() >= BT_CPU_AVX512 ? BT_SMALL_ATTN_S512 : BT_SMALL_ATTN_S;

	return S <= longest && d % 16 == 0 && d <= BT_SMALL_ATTN_D && bt_simd_avx2();
}

/*
 * ctx (S, d) of head h, row stride H, for the S tokens at base (S, 3H), on
 * the widest vectors the path has; with bf16 products where asked and the
 * CPU has them.
 */
static void
head_attention_small(float *ctx, const float *base, int S, int H, int NH, int h, bool bf16)
{
	int			d = H / NH;
	void		(*head) (float *, int, const float *, const float *, const float *, int, int, int, float) =
		bf16 && bt_cpu_bf16() ? bt_avx512_bf16_attention_head :
		bt_cpu_path() >= BT_CPU_AVX512 ? bt_avx512_attention_head : bt_avx2_attention_head;

	head(ctx + h * d, H, base + h * d, base + H + h * d, base + 2 * H + h * d, 3 * H, S, d, 1.0f / sqrtf((float) d));
}

void
bt_attention_forward(float *ctx, float *probs, bool save, float *pd, const BtDropout *drop,
					 const float *qkv, const BtBatch *b, int H, int NH, int part, int parts)
{
	size_t		off = 0;		/* of the current (S, S) block in the probabilities */
	int			pair = 0;		/* (sequence, head) pairs seen */

	for (int s = 0; s < b->n_seq; s++)
	{
		int			start = b->offsets[s],
					S = b->offsets[s + 1] - start;
		const float *base = qkv + (size_t) start * 3 * H;

		for (int h = 0; h < NH; h++, off += (size_t) S * S, pair++)
		{
			float	   *p = save ? probs + off : probs;
			const float *pv = p;

			if (pair % parts != part)
				continue;
			if (!save && !bt_dropout_active(drop) && small_head(S, H, NH))
			{
				head_attention_small(ctx + (size_t) start * H, base, S, H, NH, h, false);
				continue;
			}
			head_probs(p, base, S, H, NH, h);
			if (bt_dropout_active(drop))
			{
				memcpy(pd, p, (size_t) S * S * sizeof(float));
				bt_dropout_apply(pd, (size_t) S * S, drop, off);
				pv = pd;
			}
			head_context(ctx + (size_t) start * H, pv, base, S, H, NH, h);
		}
	}
}

void
bt_attention_forward_part(float *ctx, float *scratch, const float *qkv, const BtBatch *b, int H, int NH,
						  int part, int parts, bool bf16)
{
	int			i = 0;

	for (int s = 0; s < b->n_seq; s++)
	{
		int			start = b->offsets[s],
					S = b->offsets[s + 1] - start;
		const float *base = qkv + (size_t) start * 3 * H;

		for (int h = 0; h < NH; h++, i++)
		{
			if (i % parts != part)
				continue;
			if (small_head(S, H, NH))
				head_attention_small(ctx + (size_t) start * H, base, S, H, NH, h, bf16);
			else
			{
				head_probs(scratch, base, S, H, NH, h);
				head_context(ctx + (size_t) start * H, scratch, base, S, H, NH, h);
			}
		}
	}
}

void
bt_attention_first_forward(float *ctx, float *scores, const float *q, const float *kv,
						   const BtBatch *b, int H, int NH)
{
	int			d = H / NH;
	float		scale = 1.0f / sqrtf((float) d);

	for (int s = 0; s < b->n_seq; s++)
	{
		int			start = b->offsets[s],
					S = b->offsets[s + 1] - start;

		for (int h = 0; h < NH; h++)
		{
			const float *qh = q + (size_t) s * H + h * d;
			float	   *out = ctx + (size_t) s * H + h * d;

			/* scores (S) = softmax(k (S, d) @ q (d) * scale) */
			for (int j = 0; j < S; j++)
			{
				const float *k = kv + (size_t) (start + j) * 3 * H + H + h * d;
				float		dot = 0.0f;

				for (int i = 0; i < d; i++)
					dot += qh[i] * k[i];
				scores[j] = dot * scale;
			}
			softmax_rows(scores, 1, S);
			/* out (d) = scores (S) @ v (S, d) */
			memset(out, 0, d * sizeof(float));
			for (int j = 0; j < S; j++)
			{
				const float *v = kv + (size_t) (start + j) * 3 * H + 2 * H + h * d;
				float		p = scores[j];

				for (int i = 0; i < d; i++)
					out[i] += p * v[i];
			}
		}
	}
}

/* Softmax backward in place, row by row: g (rows, cols) = p * (g - sum_j p g), p the softmax's output. */
static void
softmax_backward_rows(float *g, const float *p, int rows, int cols)
{
	if (bt_simd_avx2())
	{
		bt_avx2_softmax_backward_rows(g, p, rows, cols);
		return;
	}
	for (int i = 0; i < rows; i++)
	{
		const float *pr = p + (size_t) i * cols;
		float	   *gr = g + (size_t) i * cols;
		float		dot = 0.0f;

		for (int j = 0; j < cols; j++)
			dot += pr[j] * gr[j];
		for (int j = 0; j < cols; j++)
			gr[j] = pr[j] * (gr[j] - dot);
	}
}

void
bt_attention_backward(float *dqkv, float *dp, float *pd, const float *dctx, const float *qkv,
					  const float *probs, const BtDropout *drop, const BtBatch *b, int H, int NH, int part,
					  int parts)
{
	int			d = H / NH,
				pair = 0;			/* (sequence, head) pairs seen */
	float		scale = 1.0f / sqrtf((float) d);
	size_t		off = 0;

	for (int s = 0; s < b->n_seq; s++)
	{
		int			start = b->offsets[s],
					S = b->offsets[s + 1] - start;
		const float *base = qkv + (size_t) start * 3 * H;
		float	   *dbase = dqkv + (size_t) start * 3 * H;

		for (int h = 0; h < NH; h++, off += (size_t) S * S, pair++)
		{
			const float *q = base + h * d;
			const float *k = base + H + h * d;
			const float *v = base + 2 * H + h * d;
			const float *dc = dctx + (size_t) start * H + h * d;
			const float *p = probs + off;
			const float *pv = p;

			if (pair % parts != part)
				continue;
			if (bt_dropout_active(drop))
			{
				memcpy(pd, p, (size_t) S * S * sizeof(float));
				bt_dropout_apply(pd, (size_t) S * S, drop, off);
				pv = pd;
			}
			/* dv (S, d) = pv^T (S, S) @ dctx (S, d) */
			bt_sgemm(BT_ROW_MAJOR, BT_TRANS, BT_NO_TRANS, S, d, S, 1.0f,
					 pv, S, dc, H, 0.0f, dbase + 2 * H + h * d, 3 * H);
			/* dp (S, S) = dctx (S, d) @ v (S, d)^T, then through the dropout */
			bt_sgemm(BT_ROW_MAJOR, BT_NO_TRANS, BT_TRANS, S, S, d, 1.0f,
					 dc, H, v, 3 * H, 0.0f, dp, S);
			bt_dropout_apply(dp, (size_t) S * S, drop, off);
			softmax_backward_rows(dp, p, S, S);
			/* dq (S, d) = scale * dscores (S, S) @ k (S, d) */
			bt_sgemm(BT_ROW_MAJOR, BT_NO_TRANS, BT_NO_TRANS, S, d, S, scale,
					 dp, S, k, 3 * H, 0.0f, dbase + h * d, 3 * H);
			/* dk (S, d) = scale * dscores^T (S, S) @ q (S, d) */
			bt_sgemm(BT_ROW_MAJOR, BT_TRANS, BT_NO_TRANS, S, d, S, scale,
					 dp, S, q, 3 * H, 0.0f, dbase + H + h * d, 3 * H);
		}
	}
}

/* ---- activations ---- */

#define GELU_TANH_C 0.7978845608028654f	/* sqrt(2 / pi) */

void
bt_gelu_forward(float *out, const float *in, size_t n, BtActivation act)
{
	if (act == BT_ACT_GELU && bt_cpu_path() >= BT_CPU_AVX512)
		bt_avx512_gelu(out, in, n);
	else if (act == BT_ACT_GELU && bt_simd_avx2())
		bt_avx2_gelu(out, in, n);
	else if (act == BT_ACT_GELU)
		for (size_t i = 0; i < n; i++)
			out[i] = 0.5f * in[i] * (1.0f + erff(in[i] * (float) M_SQRT1_2));
	else
		for (size_t i = 0; i < n; i++)
			out[i] = 0.5f * in[i] * (1.0f + tanhf(GELU_TANH_C * (in[i] + 0.044715f * in[i] * in[i] * in[i])));
}

void
bt_gelu_backward(float *dx, const float *x, size_t n, BtActivation act)
{
	if (act == BT_ACT_GELU && bt_cpu_path() >= BT_CPU_AVX512)
		bt_avx512_gelu_backward(dx, x, n);
	else if (act == BT_ACT_GELU && bt_simd_avx2())
		bt_avx2_gelu_backward(dx, x, n);
	else if (act == BT_ACT_GELU)
	{
		const float c = 0.3989422804014327f;	/* 1 / sqrt(2 pi) */

		/* d/dx 0.5 x (1 + erf(x / sqrt 2)) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi) */
		for (size_t i = 0; i < n; i++)
			dx[i] *= 0.5f * (1.0f + erff(x[i] * (float) M_SQRT1_2)) + x[i] * c * expf(-0.5f * x[i] * x[i]);
	}
	else
		/* u = c (x + 0.044715 x^3): d/dx 0.5 x (1 + tanh u) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u' */
		for (size_t i = 0; i < n; i++)
		{
			float		xi = x[i],
						th = tanhf(GELU_TANH_C * (xi + 0.044715f * xi * xi * xi)),
						du = GELU_TANH_C * (1.0f + 3.0f * 0.044715f * xi * xi);

			dx[i] *= 0.5f * (1.0f + th) + 0.5f * xi * (1.0f - th * th) * du;
		}
}

void
bt_tanh_forward(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = tanhf(x[i]);
}

void
bt_tanh_backward(float *dy, const float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dy[i] *= 1.0f - y[i] * y[i];
}

/* ---- the optimizer ---- */

double
bt_sumsq(const float *x, size_t n)
{
	double		sum = 0.0;

	if (bt_simd_avx2())
		return bt_avx2_sumsq(x, n);
	for (size_t i = 0; i < n; i++)
		sum += (double) x[i] * x[i];
	return sum;
}

void
bt_adamw_update(float *p, float *g, float *m, float *v, size_t n, const BtAdamStep *s)
{
	size_t		i = bt_simd_avx2() ? bt_avx2_adamw(p, g, m, v, n, s) : 0;

	for (; i < n; i++)
	{
		float		gi = s->clip ? g[i] * s->grad_scale : g[i],
					denom;

		if (s->decay_on)
			p[i] *= s->decay;
		m[i] += s->one_minus_b1 * (gi - m[i]);
		v[i] = v[i] * s->b2 + s->one_minus_b2 * gi * gi;
		denom = sqrtf(v[i]) / s->bc2_sqrt + s->eps;
		p[i] += -s->step_size * (m[i] / denom);
		g[i] = 0.0f;
	}
}
