/*
 * test/gpu/emu/test_kernels.cpp
 *     The row kernels of the layers' files (kernels/gpu_embeddings.cu,
 *     gpu_layernorm.cu, gpu_gelu.cu, gpu_attention.cu, gpu_head.cu,
 *     gpu_dense.cu, gpu_optimizer.cu) run under host emulation (emu.h; the .cu files are
 *     rewritten by extract.py at build time, so this follows their edits),
 *     through their real launchers, against references in double written
 *     from the CPU engine's semantics (src/engine/ops.c, train.c). Outputs
 *     start as NaN: every element a kernel should write must be written, and
 *     what it should leave alone must stay NaN. Grid-stride kernels also run
 *     on a grid capped to a few blocks. Prints ok/FAIL per case and a count.
 *
 *     Tolerances: every float32 output is allowed the rounding error of the
 *     kernel's own operation on that element, derived in the case from the
 *     roundings on its path and the magnitudes of the values involved
 *     (test/engine/tolerance.h: u = 2^-24 per rounding, sum_bound32(n) for a
 *     sum of n terms in any order, math_err32(2) for CUDA's 2-ulp expf, erff,
 *     tanhf, rsqrtf); a bf16 output adds half a bf16 ulp of the value
 *     (BF16_U = 2^-8). The references are in double, whose own rounding is
 *     below these by 2^-29. Where a plausible slip is within reach (the other
 *     GELU), a kept mutant proves the bound does not accept it.
 */
#include "emu.h"
#include "gpu_train_internal.h"
#include "ops.h"					/* the engine's bt_mix64: the dropout masks must be its own */
#include "../../engine/tolerance.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

using bf16 = __nv_bfloat16;

static int	n_pass,
			n_fail;
static char case_name[256];

/* ---- values ---- */

static double val(float x) { return x; }
static double val(double x) { return x; }
static double val(bf16 x) { return __bfloat162float(x); }

template <typename T> T from_f(float x);
template <> float from_f<float>(float x) { return x; }
template <> bf16 from_f<bf16>(float x) { return __float2bfloat16_rn(x); }

template <typename T> const char *tname();
template <> const char *tname<float>() { return "float"; }
template <> const char *tname<bf16>() { return "bf16"; }

/* NaN in every type: all bytes 0xff */
template <typename T>
std::vector<T>
poisoned(size_t n)
{
	std::vector<T> v(n);

	memset((void *) v.data(), 0xff, n * sizeof(T));
	return v;
}

template <typename T>
bool
is_poison(const T &x)
{
	const unsigned char *p = (const unsigned char *) &x;

	for (size_t i = 0; i < sizeof(T); i++)
		if (p[i] != 0xff)
			return false;
	return true;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
next_u64()
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static float
unif(float lo, float hi)
{
	return lo + (hi - lo) * (float) ((next_u64() >> 40) * (1.0 / 16777216.0));
}

static int
irand(int n)
{
	return (int) (next_u64() % (uint64_t) n);
}

static std::vector<float>
randv(size_t n, float lo = -1.0f, float hi = 1.0f)
{
	std::vector<float> v(n);

	for (auto &x : v)
		x = unif(lo, hi);
	return v;
}

template <typename T>
std::vector<T>
randt(size_t n, float lo = -1.0f, float hi = 1.0f)
{
	std::vector<T> v(n);

	for (auto &x : v)
		x = from_f<T>(unif(lo, hi));
	return v;
}

/* |error| <= atol + rtol |reference|: EXACT for copies and conversions, which must give the same bits */
struct Tol
{
	double		rtol,
				atol;
};
static const Tol EXACT = {0, 0};

static const double U = F32_U;

/*
 * The bound of an output of type T whose float32 value is within lim32 of
 * ref: a float is stored as is; a bf16 is that float rounded to nearest,
 * another BF16_U of its magnitude (at most |ref| + lim32).
 */
template <typename T> double out_lim(double ref, double lim32);
template <> double out_lim<float>(double, double lim32) { return lim32; }
template <> double out_lim<bf16>(double ref, double lim32) { return lim32 + BF16_U * (fabs(ref) + lim32); }

/* ---- one case ---- */

static std::string fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

struct Case
{
	std::string name;
	int			bad = 0;
	std::string msg;
	std::vector<std::pair<std::string, double>> worst;	/* each output's largest error / tolerance */
	std::chrono::steady_clock::time_point t0;

	explicit Case(std::string n) : name(std::move(n))
	{
		snprintf(case_name, sizeof case_name, "%s", name.c_str());
		alarm(120);
		t0 = std::chrono::steady_clock::now();
		(void) emu::take_error();
	}

	void
	fail(const std::string &m)
	{
		if (bad++ == 0)
			msg = m;
	}

	/* got[i] against ref(i) within tol, for every i < n where ref(i) is not NaN */
	template <typename T, typename R>
	void
	expect(const char *what, const T *got, size_t n, R ref, Tol tol)
	{
		expect_within(what, got, n, ref, [&](size_t i) { return tol.atol + tol.rtol * fabs(ref(i)); });
	}

	/* got[i] against ref(i) within the per-element bound lim(i), for every i < n where ref(i) is not NaN */
	template <typename T, typename R, typename L>
	void
	expect_within(const char *what, const T *got, size_t n, R ref, L lim_of)
	{
		for (size_t i = 0; i < n; i++)
		{
			double		r = ref(i),
						g = val(got[i]),
						err = fabs(g - r),
						lim = std::isnan(r) ? 0.0 : lim_of(i);

			if (std::isnan(r))
				continue;
			if (is_poison(got[i]))
			{
				fail(std::string(what) + "[" + std::to_string(i) + "] not written");
				return;
			}
			if (!(err <= lim))
			{
				char		b[256];

				snprintf(b, sizeof b, "%s[%zu] = %.9g, expected %.9g (error %.3g, allowed %.3g)",
						 what, i, g, r, err, lim);
				fail(b);
				return;
			}
			if (lim > 0)
				note(what, err / lim);
		}
	}

	void
	note(const char *what, double ratio)
	{
		for (auto &w : worst)
			if (w.first == what)
			{
				w.second = std::max(w.second, ratio);
				return;
			}
		worst.emplace_back(what, ratio);
	}

	/*
	 * A kept mutant: got must be outside the bound lim(i) of mutant(i), a
	 * plausible wrong reference, for at least one element; otherwise the
	 * bound is too loose to tell the right operation from the wrong one.
	 */
	template <typename T, typename R, typename L>
	void
	expect_caught(const char *what, const T *got, size_t n, R mutant, L lim_of)
	{
		for (size_t i = 0; i < n; i++)
			if (fabs(val(got[i]) - mutant(i)) > lim_of(i))
				return;
		fail(std::string(what) + ": the bound also accepts the mutant");
	}

	/* elements i with untouched(i) must still be poison */
	template <typename T, typename P>
	void
	expect_untouched(const char *what, const T *got, size_t n, P untouched)
	{
		for (size_t i = 0; i < n; i++)
			if (untouched(i) && !is_poison(got[i]))
			{
				fail(std::string(what) + "[" + std::to_string(i) + "] written, and should not be");
				return;
			}
	}

	~Case()
	{
		std::string e = emu::take_error();
		double		ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

		if (!e.empty())
			fail("emulator: " + e);
		if (bad)
		{
			n_fail++;
			printf("FAIL %s: %s\n", name.c_str(), msg.c_str());
		}
		else
		{
			n_pass++;
		{
			std::string w;

			for (auto &x : worst)
				w += fmt(" %s %.2f", x.first.c_str(), x.second);
			printf("ok   %s (worst of tolerance:%s; %.0f ms)\n", name.c_str(), w.empty() ? " -" : w.c_str(), ms);
		}
		}
		fflush(stdout);
		emu::grid_cap = 0;
	}
};

static std::string
fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static std::string
fmt(const char *f, ...)
{
	char		b[256];
	va_list		ap;

	va_start(ap, f);
	vsnprintf(b, sizeof b, f, ap);
	va_end(ap);
	return b;
}

/* ---- references (src/engine/ops.c, train.c) ---- */

/* The bounds of a float32 LayerNorm's outputs: each y[i], the mean, rstd. */
struct LnBound
{
	std::vector<double> y;
	double		mean = 0,
				rstd = 0;
};

/*
 * LayerNorm of row v (H) into y: biased variance, eps inside the square root.
 * With dv, the bound of each v[i] as the kernel forms it in float, also the
 * bounds of the kernels' float32 LayerNorm (layernorm_row and its training
 * twin: sum, mean, sum of squared deviations, rsqrtf), to first order in u:
 *  - mean: a sum of H terms, then a division:
 *      dmu = sum_bound32(H) mean|v| + u |mu| + mean(dv);
 *  - d_i = v_i - mu is off by dv_i + dmu, and rounded: u |d_i|;
 *  - var + eps: dmu drops out of sum d_i^2 to first order (sum d_i = 0); the
 *    squares and their sum are off by 2 sum |d_i| dv_i + (3u + sum_bound32(H))
 *    sum d_i^2, the division and "+ eps" round twice more: relative rho;
 *  - rstd = rsqrtf(var + eps): relative rho / 2 + math_err32(2);
 *  - y_i = d_i rstd w_i + b_i: two products and the sum round:
 *      |w_i| rstd (dv_i + dmu + |d_i| (rho / 2 + math_err32(2) + 3u)) + u |b_i|.
 */
static void
ln_ref(std::vector<double> &y, double *mean, double *rstd, const std::vector<double> &v, const float *w,
	   const float *b, int H, float eps, const std::vector<double> *dv = NULL, LnBound *bound = NULL)
{
	double		mu = 0,
				var = 0,
				r;

	for (int i = 0; i < H; i++)
		mu += v[i];
	mu /= H;
	for (int i = 0; i < H; i++)
		var += (v[i] - mu) * (v[i] - mu);
	var /= H;
	r = 1.0 / sqrt(var + eps);
	y.resize(H);
	for (int i = 0; i < H; i++)
		y[i] = (v[i] - mu) * r * w[i] + b[i];
	if (mean)
		*mean = mu;
	if (rstd)
		*rstd = r;
	if (bound)
	{
		double		abs_v = 0,
					mean_dv = 0,
					d_dv = 0,
					dmu,
					rho,
					rel_r;

		for (int i = 0; i < H; i++)
		{
			abs_v += fabs(v[i]);
			mean_dv += (*dv)[i];
			d_dv += fabs(v[i] - mu) * (*dv)[i];
		}
		dmu = sum_bound32(H) * abs_v / H + U * fabs(mu) + mean_dv / H;
		rho = (var > 0 ? 2 * d_dv / (var * H) : 0) + 3 * U + sum_bound32(H) + 2 * U;
		rel_r = rho / 2 + math_err32(2);
		bound->mean = dmu;
		bound->rstd = rel_r * r;
		bound->y.resize(H);
		for (int i = 0; i < H; i++)
			bound->y[i] = fabs(w[i]) * r * ((*dv)[i] + dmu + fabs(v[i] - mu) * (rel_r + 3 * U)) + U * fabs(b[i]);
	}
}

static double
gelu_ref(double x, int tanh_form)
{
	if (tanh_form)
		return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
	return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

static double
gelu_grad_ref(double x, int tanh_form)
{
	if (tanh_form)
	{
		double		c = sqrt(2.0 / M_PI),
					th = tanh(c * (x + 0.044715 * x * x * x)),
					du = c * (1.0 + 3.0 * 0.044715 * x * x);

		return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du;
	}
	return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

/*
 * The bound of the kernels' float GELU (gelu_f, bias_gelu) of a float v that
 * is itself off by dv:
 *  - erf form, 0.5f * v * (1 + erff(v * c)): z = v c rounds (u |z|, and c's
 *    own rounding to float another u |z|), which erf' = 2/sqrt(pi) e^-z^2
 *    carries; erff math_err32(2) |erf|; "1 +" u |1 + erf|;
 *  - tanh form, 0.5f * v * (1 + tanhf(k (v + 0.044715 v^3))): the inner
 *    polynomial's four products and one sum, each rounding relative to at
 *    most k (|v| + 0.044715 |v|^3), and the constants' roundings: 7u of that,
 *    which tanh' = 1 - tanh^2 carries; tanhf math_err32(2); "1 +" as above;
 *  - the last product u |g| (0.5f * v is exact), and dv through |gelu'(v)|.
 */
static double
gelu_lim(double v, double dv, int tanh_form)
{
	double		e;

	if (tanh_form)
	{
		double		k = sqrt(2.0 / M_PI),
					th = tanh(k * (v + 0.044715 * v * v * v)),
					dinner = 7 * U * k * (fabs(v) + 0.044715 * fabs(v * v * v));

		e = 0.5 * fabs(v) * (math_err32(2) * fabs(th) + (1 - th * th) * dinner + U * fabs(1 + th));
	}
	else
	{
		double		z = v / sqrt(2.0),
					er = erf(z);

		e = 0.5 * fabs(v) * (2 / sqrt(M_PI) * exp(-z * z) * 2 * U * fabs(z) + math_err32(2) * fabs(er) + U * fabs(1 + er));
	}
	return e + U * fabs(gelu_ref(v, tanh_form)) + fabs(gelu_grad_ref(v, tanh_form)) * dv;
}

/*
 * The bound of gpu_gelu.cu's float gelu_grad(x) = A + B:
 *  - erf form: A = 0.5 (1 + erff(x c)) off as the GELU's bracket above;
 *    B = x c' expf(-0.5 x x): the argument rounds (u x^2 / 2, absolute, so
 *    relative in the value), expf math_err32(2), two products and c' 3u;
 *  - tanh form: th off by dth = math_err32(2) |th| + (1 - th^2) dinner;
 *    A = 0.5 (1 + th); B = 0.5 x (1 - th^2) du: 1 - th^2 is off by
 *    2 |th| dth + 2u absolute (it cancels where |th| nears 1), du = k (1 + 3
 *    0.044715 x x) 6u relative, the two products 2u;
 *  - the sum u (|A| + |B|).
 */
static double
gelu_grad_lim(double x, int tanh_form)
{
	double		A,
				B,
				dA,
				dB;

	if (tanh_form)
	{
		double		k = sqrt(2.0 / M_PI),
					c3 = 0.044715,
					th = tanh(k * (x + c3 * x * x * x)),
					dinner = 7 * U * k * (fabs(x) + c3 * fabs(x * x * x)),
					dth = math_err32(2) * fabs(th) + (1 - th * th) * dinner,
					du = k * (1 + 3 * c3 * x * x);

		A = 0.5 * (1 + th);
		dA = 0.5 * (dth + U * fabs(1 + th));
		B = 0.5 * x * (1 - th * th) * du;
		dB = 0.5 * fabs(x) * du * (2 * fabs(th) * dth + 2 * U) + fabs(B) * 8 * U;
	}
	else
	{
		double		z = x / sqrt(2.0),
					er = erf(z);

		A = 0.5 * (1 + er);
		dA = 0.5 * (2 / sqrt(M_PI) * exp(-z * z) * 2 * U * fabs(z) + math_err32(2) * fabs(er) + U * fabs(1 + er));
		B = x / sqrt(2 * M_PI) * exp(-0.5 * x * x);
		dB = fabs(B) * (U * 0.5 * x * x + math_err32(2) + 3 * U);
	}
	return dA + dB + U * (fabs(A) + fabs(B));
}

/* A dropout site as the engine draws it (BtDropout p, key) and as gpu_train.cu's drop_at hands it to the kernels. */
struct Drop
{
	float		p;
	uint64_t	key;

	TrainDrop
	dev() const
	{
		TrainDrop	d;

		d.key = key;
		if (p <= 0.0f)
		{
			d.threshold = 0;
			d.scale = 1.0f;
		}
		else if (p >= 1.0f)
		{
			d.threshold = (uint64_t) 1 << 32;
			d.scale = 0.0f;
		}
		else
		{
			d.threshold = (uint64_t) ((double) p * 4294967296.0);
			d.scale = 1.0f / (1.0f - p);
		}
		return d;
	}

	/* ops.c's bt_dropout_apply on element idx of value v */
	double
	apply(uint64_t idx, double v) const
	{
		uint64_t	threshold,
					h;
		uint32_t	r;

		if (p <= 0.0f)
			return v;
		if (p >= 1.0f)
			return 0.0;
		threshold = (uint64_t) ((double) p * 4294967296.0);
		h = bt_mix64(key + ((idx >> 1) + 1) * 0x9e3779b97f4a7c15ULL);
		r = (uint32_t) ((idx & 1) ? h >> 32 : h);
		return r < threshold ? 0.0 : v * (double) (1.0f / (1.0f - p));
	}

	/* the relative rounding of drop_apply's product (none without dropout; 0 * v is exact) */
	double
	round() const
	{
		return p > 0.0f && p < 1.0f ? U : 0.0;
	}
};

static const Drop NO_DROP = {0.0f, 0};

static std::string
drop_name(const Drop &d)
{
	return d.p > 0 ? fmt(" p=%g", d.p) : "";
}

/* A bucket of B sequences padded to P, inside a packed batch of T tokens (gpu_model.cu's buckets). */
struct Bucket
{
	int			B,
				P,
				T;
	std::vector<int> lens,
				start,
				slot_token;		/* B * P: packed token or -1 */
	std::vector<unsigned long long> pbase;	/* dropout index of (b, h 0, i 0, j 0) */
	std::vector<char> in_bucket;	/* T: token belongs to one of the bucket's sequences */

	Bucket(int B_, int P_, int NH) : B(B_), P(P_)
	{
		std::vector<int> order(B + 2);
		int			extra_len[2] = {1 + irand(P), 1 + irand(P)};	/* two sequences of other buckets */
		unsigned long long pb = 1000;

		lens.resize(B);
		for (int b = 0; b < B; b++)
			lens[b] = b == 0 ? P : 1 + irand(P);
		/* packed order of the B + 2 sequences: shuffled, so bucket sequence b is not at b */
		for (int i = 0; i < B + 2; i++)
			order[i] = i;
		for (int i = B + 1; i > 0; i--)
			std::swap(order[i], order[irand(i + 1)]);
		start.assign(B, 0);
		T = 0;
		in_bucket.clear();
		for (int i = 0; i < B + 2; i++)
		{
			int			s = order[i],
						len = s < B ? lens[s] : extra_len[s - B];

			if (s < B)
				start[s] = T;
			for (int k = 0; k < len; k++)
				in_bucket.push_back(s < B);
			T += len;
		}
		slot_token.assign((size_t) B * P, -1);
		for (int b = 0; b < B; b++)
			for (int p = 0; p < lens[b]; p++)
				slot_token[(size_t) b * P + p] = start[b] + p;
		for (int b = 0; b < B; b++)
		{
			pbase.push_back(pb);
			pb += (unsigned long long) NH * lens[b] * lens[b];
		}
	}
};

/* ==== inference forward: gpu_embeddings.cu, gpu_layernorm.cu, gpu_gelu.cu, gpu_dense.cu, gpu_head.cu ==== */

template <typename Tin>
static void
test_embed_ln(int T, int H, bool types_given)
{
	Case		c(fmt("embed_ln<%s> T=%d H=%d%s", tname<Tin>(), T, H, types_given ? "" : " types=NULL"));
	int			V = 30,
				NP = 40;
	float		eps = 1e-3f;
	std::vector<int> ids(T),
				types(T),
				pos(T);
	auto		word = randv((size_t) V * H),
				posemb = randv((size_t) NP * H),
				typeemb = randv((size_t) 2 * H),
				w = randv(H, 0.5f, 1.5f),
				b = randv(H, -0.5f, 0.5f);
	auto		x = poisoned<float>((size_t) T * H);
	auto		xin = poisoned<Tin>((size_t) T * H);
	std::vector<double> ref((size_t) T * H),
				lim((size_t) T * H);

	for (int t = 0; t < T; t++)
	{
		ids[t] = irand(V);
		types[t] = irand(2);
		pos[t] = irand(NP);
	}
	launch_embed_ln<Tin>(0, x.data(), xin.data(), ids.data(), types_given ? types.data() : NULL, pos.data(),
						 word.data(), posemb.data(), typeemb.data(), w.data(), b.data(), T, H, eps);
	for (int t = 0; t < T; t++)
	{
		std::vector<double> v(H),
					dv(H),
					y;
		LnBound		lb;

		for (int i = 0; i < H; i++)
		{
			float		we = word[(size_t) ids[t] * H + i],
						pe = posemb[(size_t) pos[t] * H + i],
						te = typeemb[(size_t) (types_given ? types[t] : 0) * H + i];

			v[i] = (double) we + pe + te;
			dv[i] = gamma32(2) * (fabs(we) + fabs(pe) + fabs(te));	/* two float additions */
		}
		ln_ref(y, NULL, NULL, v, w.data(), b.data(), H, eps, &dv, &lb);
		std::copy(y.begin(), y.end(), ref.begin() + (size_t) t * H);
		std::copy(lb.y.begin(), lb.y.end(), lim.begin() + (size_t) t * H);
	}
	c.expect_within("x", x.data(), x.size(), [&](size_t i) { return ref[i]; }, [&](size_t i) { return lim[i]; });
	c.expect_within("xin", xin.data(), xin.size(), [&](size_t i) { return ref[i]; },
					[&](size_t i) { return out_lim<Tin>(ref[i], lim[i]); });
	c.expect("xin vs x", xin.data(), xin.size(), [&](size_t i) { return val(from_f<Tin>(x[i])); }, EXACT);
}

template <typename Tin>
static void
test_bias_residual_ln(int T, int H)
{
	Case		c(fmt("bias_residual_ln<%s,%s> T=%d H=%d", tname<Tin>(), tname<Tin>(), T, H));
	float		eps = 1e-3f;
	auto		x0 = randv((size_t) T * H, -2, 2),
				bias = randv(H),
				w = randv(H, 0.5f, 1.5f),
				b = randv(H, -0.5f, 0.5f);
	auto		y = randt<Tin>((size_t) T * H, -2, 2);
	auto		x = x0;
	auto		xin = poisoned<Tin>((size_t) T * H);
	std::vector<double> ref((size_t) T * H),
				lim((size_t) T * H);

	launch_bias_residual_ln<Tin, Tin>(0, x.data(), xin.data(), y.data(), bias.data(), w.data(), b.data(), T, H, eps);
	for (int t = 0; t < T; t++)
	{
		std::vector<double> v(H),
					dv(H),
					out;
		LnBound		lb;

		for (int i = 0; i < H; i++)
		{
			double		yv = val(y[(size_t) t * H + i]),
						xv = x0[(size_t) t * H + i];

			v[i] = yv + bias[i] + xv;
			dv[i] = gamma32(2) * (fabs(yv) + fabs(bias[i]) + fabs(xv));	/* two float additions */
		}
		ln_ref(out, NULL, NULL, v, w.data(), b.data(), H, eps, &dv, &lb);
		std::copy(out.begin(), out.end(), ref.begin() + (size_t) t * H);
		std::copy(lb.y.begin(), lb.y.end(), lim.begin() + (size_t) t * H);
	}
	c.expect_within("x", x.data(), x.size(), [&](size_t i) { return ref[i]; }, [&](size_t i) { return lim[i]; });
	c.expect_within("xin", xin.data(), xin.size(), [&](size_t i) { return ref[i]; },
					[&](size_t i) { return out_lim<Tin>(ref[i], lim[i]); });
	c.expect("xin vs x", xin.data(), xin.size(), [&](size_t i) { return val(from_f<Tin>(x[i])); }, EXACT);
}

template <typename Tin>
static void
test_bias_gelu(int T, int I, int tanh_form, unsigned cap)
{
	Case		c(fmt("bias_gelu<%s,%s> T=%d I=%d %s%s", tname<Tin>(), tname<Tin>(), T, I, tanh_form ? "tanh" : "erf",
					  cap ? fmt(" grid<=%u", cap).c_str() : ""));
	auto		y = randt<Tin>((size_t) T * I, -4, 4);
	auto		bias = randv(I);
	auto		out = poisoned<Tin>((size_t) T * I);

	emu::grid_cap = cap;
	launch_bias_gelu<Tin, Tin>(0, out.data(), y.data(), bias.data(), T, I, tanh_form);
	/* v = y + bias rounds once: u (|y| + |bias|) */
	auto		in = [&](size_t i) { return val(y[i]) + bias[i % I]; };
	auto		lim = [&](size_t i) {
		return out_lim<Tin>(gelu_ref(in(i), tanh_form),
							gelu_lim(in(i), U * (fabs(val(y[i])) + fabs(bias[i % I])), tanh_form));
	};

	c.expect_within("out", out.data(), out.size(), [&](size_t i) { return gelu_ref(in(i), tanh_form); }, lim);
	/* the mutant: the other GELU (erf and tanh differ by up to 5e-4; bf16 rounding hides that) */
	if (std::is_same<Tin, float>::value)
		c.expect_caught("out vs the other GELU", out.data(), out.size(),
						[&](size_t i) { return gelu_ref(in(i), !tanh_form); }, lim);
}

template <typename Tout>
static void
test_convert(size_t n, unsigned cap)
{
	Case		c(fmt("convert<%s> n=%zu%s", tname<Tout>(), n, cap ? fmt(" grid<=%u", cap).c_str() : ""));
	auto		src = randv(n, -100, 100);
	auto		dst = poisoned<Tout>(n + 7);

	emu::grid_cap = cap;
	launch_convert<Tout>(0, dst.data(), src.data(), n);
	c.expect("dst", dst.data(), n, [&](size_t i) { return val(from_f<Tout>(src[i])); }, EXACT);
	c.expect_untouched("dst", dst.data(), dst.size(), [&](size_t i) { return i >= n; });
}

static void
test_gather_rows(int T, int n, int H, unsigned cap)
{
	Case		c(fmt("gather_rows n=%d of T=%d H=%d%s", n, T, H, cap ? fmt(" grid<=%u", cap).c_str() : ""));
	auto		x = randv((size_t) T * H);
	std::vector<int> rows(n);
	auto		dst = poisoned<float>((size_t) n * H);

	for (auto &r : rows)
		r = irand(T);
	emu::grid_cap = cap;
	launch_gather_rows(0, dst.data(), x.data(), rows.data(), n, H);
	c.expect("dst", dst.data(), dst.size(), [&](size_t i) { return x[(size_t) rows[i / H] * H + i % H]; }, EXACT);
}

static void
test_mean_rows(int n, int H)
{
	Case		c(fmt("mean_rows n_seq=%d H=%d", n, H));
	std::vector<int> off(n + 1, 0);

	for (int s = 0; s < n; s++)
		off[s + 1] = off[s] + 1 + irand(9);

	auto		x = randv((size_t) off[n] * H);
	auto		dst = poisoned<float>((size_t) n * H);

	launch_mean_rows(0, dst.data(), x.data(), off.data(), n, H);
	/* a sum of the sequence's rows, then a division: sum_bound32(rows) of the mean magnitude, u of the mean */
	c.expect_within("dst", dst.data(), dst.size(), [&](size_t i) {
		int			s = (int) (i / H);
		double		sum = 0;

		for (int t = off[s]; t < off[s + 1]; t++)
			sum += x[(size_t) t * H + i % H];
		return sum / (off[s + 1] - off[s]);
	}, [&](size_t i) {
		int			s = (int) (i / H),
					rows = off[s + 1] - off[s];
		double		mag = 0,
					sum = 0;

		for (int t = off[s]; t < off[s + 1]; t++)
		{
			mag += fabs(x[(size_t) t * H + i % H]);
			sum += x[(size_t) t * H + i % H];
		}
		return sum_bound32(rows) * mag / rows + U * fabs(sum / rows);
	});
}

static void
test_bias_act(int rows, int cols, int act_tanh, unsigned cap)
{
	Case		c(fmt("bias_act rows=%d cols=%d%s%s", rows, cols, act_tanh ? " tanh" : "",
					  cap ? fmt(" grid<=%u", cap).c_str() : ""));
	auto		y0 = randv((size_t) rows * cols, -3, 3),
				bias = randv(cols);
	auto		y = y0;

	emu::grid_cap = cap;
	launch_bias_act(0, y.data(), bias.data(), rows, cols, act_tanh);
	/* v = y + bias rounds once (dv = u (|y| + |bias|)); tanhf adds math_err32(2) of its value, and tanh' <= 1 carries dv */
	c.expect_within("y", y.data(), y.size(), [&](size_t i) {
		double		v = (double) y0[i] + bias[i % cols];

		return act_tanh ? tanh(v) : v;
	}, [&](size_t i) {
		double		v = (double) y0[i] + bias[i % cols],
					dv = U * (fabs(y0[i]) + fabs(bias[i % cols]));

		return act_tanh ? math_err32(2) * fabs(tanh(v)) + (1 - tanh(v) * tanh(v)) * dv : dv;
	});
}

/* ==== inference forward: gpu_attention.cu ==== */

template <typename Tin, typename Ty>
static void
test_scatter_qkv(int B, int P, int H, int NH)
{
	Case		c(fmt("scatter_qkv<%s,%s> B=%d P=%d H=%d NH=%d", tname<Tin>(), tname<Ty>(), B, P, H, NH));
	Bucket		bk(B, P, NH);
	int			d = H / NH;
	size_t		n = (size_t) B * NH * P * d;
	auto		qkv = randt<Ty>((size_t) bk.T * 3 * H, -2, 2);
	auto		bias = randv(3 * H);
	std::vector<Tin> out[3] = {poisoned<Tin>(n), poisoned<Tin>(n), poisoned<Tin>(n)};

	launch_scatter_qkv<Tin, Ty>(0, out[0].data(), out[1].data(), out[2].data(), qkv.data(), bias.data(),
								bk.slot_token.data(), B, P, H, NH);
	for (int which = 0; which < 3; which++)
		c.expect_within(which == 0 ? "q" : which == 1 ? "k" : "v", out[which].data(), n, [&](size_t e) {
			int			dd = (int) (e % d),
						p = (int) (e / d % P),
						h = (int) (e / ((size_t) d * P) % NH),
						b = (int) (e / ((size_t) d * P * NH)),
						tok = bk.slot_token[(size_t) b * P + p],
						col = which * H + h * d + dd;

			return tok < 0 ? 0.0 : val(qkv[(size_t) tok * 3 * H + col]) + bias[col];
		}, [&](size_t e) {
			/* one float addition, then Tin */
			int			p = (int) (e / d % P),
						b = (int) (e / ((size_t) d * P * NH)),
						tok = bk.slot_token[(size_t) b * P + p],
						col = which * H + (int) (e / ((size_t) d * P) % NH) * d + (int) (e % d);
			double		q = tok < 0 ? 0.0 : val(qkv[(size_t) tok * 3 * H + col]),
						bb = tok < 0 ? 0.0 : bias[col];

			return out_lim<Tin>(q + bb, U * (fabs(q) + fabs(bb)));
		});
}

template <typename Tin>
static void
test_masked_softmax(int B, int NH, int P)
{
	Case		c(fmt("masked_softmax<%s> B=%d NH=%d P=%d", tname<Tin>(), B, NH, P));
	Bucket		bk(B, P, NH);
	size_t		n = (size_t) B * NH * P * P;
	auto		scores = randv(n, -6, 6);
	auto		probs = poisoned<Tin>(n + 5);

	launch_masked_softmax<Tin>(0, probs.data(), scores.data(), bk.lens.data(), B, NH, P);
	c.expect_within("probs", probs.data(), n, [&](size_t e) {
		size_t		row = e / P;
		int			j = (int) (e % P),
					i = (int) (row % P),
					len = bk.lens[row / ((size_t) NH * P)];
		const float *s = scores.data() + row * P;
		double		mx = -INFINITY,
					sum = 0;

		if (i >= len || j >= len)
			return 0.0;
		for (int k = 0; k < len; k++)
			mx = std::max(mx, (double) s[k]);
		for (int k = 0; k < len; k++)
			sum += exp(s[k] - mx);
		return exp(s[j] - mx) / sum;
	}, [&](size_t e) {
		/*
		 * s - max rounds (u |s - max|, absolute in expf's argument: relative in
		 * its value), expf math_err32(2): each exponential is off by
		 * u |s - max| + math_err32(2) relative, the one of j and, at most the
		 * largest of those, each term of the sum; the sum of len positive terms
		 * sum_bound32(len); 1 / sum and the product u each.
		 */
		size_t		row = e / P;
		int			j = (int) (e % P),
					i = (int) (row % P),
					len = bk.lens[row / ((size_t) NH * P)];
		const float *s = scores.data() + row * P;
		float		mx = -INFINITY;
		double		range = 0,
					sum = 0;

		if (i >= len || j >= len)
			return 0.0;
		for (int k = 0; k < len; k++)
			mx = std::max(mx, s[k]);
		for (int k = 0; k < len; k++)
		{
			range = std::max(range, (double) mx - s[k]);
			sum += exp((double) s[k] - mx);
		}

		double		p = exp((double) s[j] - mx) / sum,
					rel = U * ((double) mx - s[j]) + math_err32(2) + U * range + math_err32(2) + sum_bound32(len) + 2 * U;

		return out_lim<Tin>(p, rel * p);
	});
	c.expect_untouched("probs", probs.data(), probs.size(), [&](size_t i) { return i >= n; });
}

template <typename Tin>
static void
test_gather_ctx(int B, int P, int H, int NH)
{
	Case		c(fmt("gather_ctx<%s> B=%d P=%d H=%d NH=%d", tname<Tin>(), B, P, H, NH));
	Bucket		bk(B, P, NH);
	int			d = H / NH;
	auto		ctx = randt<Tin>((size_t) B * NH * P * d);
	auto		packed = poisoned<Tin>((size_t) bk.T * H);
	std::vector<long> src((size_t) bk.T * H, -1);

	for (int b = 0; b < B; b++)
		for (int p = 0; p < bk.lens[b]; p++)
			for (int col = 0; col < H; col++)
				src[(size_t) (bk.start[b] + p) * H + col] = (((long) b * NH + col / d) * P + p) * d + col % d;
	launch_gather_ctx<Tin>(0, packed.data(), ctx.data(), bk.slot_token.data(), B, P, H, NH);
	c.expect("ctx_packed", packed.data(), packed.size(),
			 [&](size_t i) { return src[i] < 0 ? NAN : val(ctx[src[i]]); }, EXACT);
	c.expect_untouched("ctx_packed", packed.data(), packed.size(), [&](size_t i) { return src[i] < 0; });
}

/* ==== training forward: gpu_embeddings.cu, gpu_layernorm.cu, gpu_gelu.cu, gpu_attention.cu, gpu_head.cu ==== */

template <typename Tin>
static void
test_train_embed_ln(int T, int H, Drop drop)
{
	Case		c(fmt("train_embed_ln<%s> T=%d H=%d%s", tname<Tin>(), T, H, drop_name(drop).c_str()));
	int			V = 30,
				NP = 40;
	float		eps = 1e-3f;
	std::vector<int> ids(T),
				types(T),
				pos(T);
	auto		word = randv((size_t) V * H),
				posemb = randv((size_t) NP * H),
				typeemb = randv((size_t) 2 * H),
				w = randv(H, 0.5f, 1.5f),
				b = randv(H, -0.5f, 0.5f);
	auto		emb = poisoned<float>((size_t) T * H),
				mean = poisoned<float>(T),
				rstd = poisoned<float>(T),
				xs = poisoned<float>((size_t) T * H);
	auto		xin = poisoned<Tin>((size_t) T * H);
	std::vector<double> ref_emb((size_t) T * H),
				ref((size_t) T * H),
				ref_mean(T),
				ref_rstd(T),
				lim_emb((size_t) T * H),
				lim((size_t) T * H);
	std::vector<LnBound> lb(T);

	for (int t = 0; t < T; t++)
	{
		ids[t] = irand(V);
		types[t] = irand(2);
		pos[t] = irand(NP);
	}
	launch_train_embed_ln<Tin>(0, emb.data(), mean.data(), rstd.data(), xs.data(), xin.data(), ids.data(),
							   types.data(), pos.data(), word.data(), posemb.data(), typeemb.data(), w.data(),
							   b.data(), T, H, eps, drop.dev());
	for (int t = 0; t < T; t++)
	{
		std::vector<double> v(H),
					y;

		for (int i = 0; i < H; i++)
		{
			float		we = word[(size_t) ids[t] * H + i],
						pe = posemb[(size_t) pos[t] * H + i],
						te = typeemb[(size_t) types[t] * H + i];

			v[i] = ref_emb[(size_t) t * H + i] = (double) we + pe + te;
			lim_emb[(size_t) t * H + i] = gamma32(2) * (fabs(we) + fabs(pe) + fabs(te));	/* two float additions */
		}
		std::vector<double> dv(lim_emb.begin() + (size_t) t * H, lim_emb.begin() + (size_t) (t + 1) * H);

		ln_ref(y, &ref_mean[t], &ref_rstd[t], v, w.data(), b.data(), H, eps, &dv, &lb[t]);
		/* the dropout's product: its scale times the LayerNorm's bound, and one rounding */
		for (int i = 0; i < H; i++)
		{
			size_t		e = (size_t) t * H + i;

			ref[e] = drop.apply(e, y[i]);
			lim[e] = drop.apply(e, lb[t].y[i]) + drop.round() * fabs(ref[e]);
		}
	}
	c.expect_within("emb", emb.data(), emb.size(), [&](size_t i) { return ref_emb[i]; }, [&](size_t i) { return lim_emb[i]; });
	c.expect_within("mean", mean.data(), T, [&](size_t i) { return ref_mean[i]; }, [&](size_t i) { return lb[i].mean; });
	c.expect_within("rstd", rstd.data(), T, [&](size_t i) { return ref_rstd[i]; }, [&](size_t i) { return lb[i].rstd; });
	c.expect_within("xs", xs.data(), xs.size(), [&](size_t i) { return ref[i]; }, [&](size_t i) { return lim[i]; });
	c.expect_within("xin", xin.data(), xin.size(), [&](size_t i) { return ref[i]; },
					[&](size_t i) { return out_lim<Tin>(ref[i], lim[i]); });
	c.expect("xin vs xs", xin.data(), xin.size(), [&](size_t i) { return val(from_f<Tin>(xs[i])); }, EXACT);
}

template <typename Tin>
static void
test_train_residual_ln(int T, int H, Drop drop)
{
	Case		c(fmt("train_residual_ln<%s> T=%d H=%d%s", tname<Tin>(), T, H, drop_name(drop).c_str()));
	float		eps = 1e-3f;
	auto		xs0 = randv((size_t) T * H, -2, 2),
				y = randv((size_t) T * H, -2, 2),
				bias = randv(H),
				w = randv(H, 0.5f, 1.5f),
				b = randv(H, -0.5f, 0.5f);
	auto		xs = xs0;
	auto		res = poisoned<float>((size_t) T * H),
				mean = poisoned<float>(T),
				rstd = poisoned<float>(T);
	auto		xin = poisoned<Tin>((size_t) T * H);
	std::vector<double> ref_res((size_t) T * H),
				ref((size_t) T * H),
				ref_mean(T),
				ref_rstd(T),
				lim_res((size_t) T * H),
				lim((size_t) T * H);
	std::vector<LnBound> lb(T);

	launch_train_residual_ln<Tin>(0, res.data(), mean.data(), rstd.data(), xs.data(), xin.data(), y.data(),
								  bias.data(), w.data(), b.data(), T, H, eps, drop.dev());
	for (int t = 0; t < T; t++)
	{
		std::vector<double> v(H),
					out;

		for (int i = 0; i < H; i++)
		{
			size_t		e = (size_t) t * H + i;
			double		kept = drop.apply(e, fabs(y[e]) + fabs(bias[i]));

			v[i] = ref_res[e] = xs0[e] + drop.apply(e, (double) y[e] + bias[i]);
			/* y + bias, the dropout's product, + xs: up to three roundings of the terms' magnitudes */
			lim_res[e] = gamma32(3) * (fabs(xs0[e]) + kept);
		}
		std::vector<double> dv(lim_res.begin() + (size_t) t * H, lim_res.begin() + (size_t) (t + 1) * H);

		ln_ref(out, &ref_mean[t], &ref_rstd[t], v, w.data(), b.data(), H, eps, &dv, &lb[t]);
		std::copy(out.begin(), out.end(), ref.begin() + (size_t) t * H);
		std::copy(lb[t].y.begin(), lb[t].y.end(), lim.begin() + (size_t) t * H);
	}
	c.expect_within("res", res.data(), res.size(), [&](size_t i) { return ref_res[i]; }, [&](size_t i) { return lim_res[i]; });
	c.expect_within("mean", mean.data(), T, [&](size_t i) { return ref_mean[i]; }, [&](size_t i) { return lb[i].mean; });
	c.expect_within("rstd", rstd.data(), T, [&](size_t i) { return ref_rstd[i]; }, [&](size_t i) { return lb[i].rstd; });
	c.expect_within("xs", xs.data(), xs.size(), [&](size_t i) { return ref[i]; }, [&](size_t i) { return lim[i]; });
	c.expect_within("xin", xin.data(), xin.size(), [&](size_t i) { return ref[i]; },
					[&](size_t i) { return out_lim<Tin>(ref[i], lim[i]); });
}

template <typename Tin>
static void
test_train_gelu(int T, int I, int tanh_form, bool with_bias, unsigned cap)
{
	Case		c(fmt("train_gelu<%s> T=%d I=%d %s%s%s", tname<Tin>(), T, I, tanh_form ? "tanh" : "erf",
					  with_bias ? " +bias" : "", cap ? fmt(" grid<=%u", cap).c_str() : ""));
	auto		ffn0 = randv((size_t) T * I, -4, 4),
				bias = randv(I);
	auto		ffn = ffn0;
	auto		act = poisoned<Tin>((size_t) T * I);

	emu::grid_cap = cap;
	launch_train_gelu<Tin>(0, act.data(), ffn.data(), with_bias ? bias.data() : NULL, T, I, tanh_form);
	auto		in = [&](size_t i) { return with_bias ? (double) ffn0[i] + bias[i % I] : (double) ffn0[i]; };
	/* the bias's addition rounds once */
	auto		dv = [&](size_t i) { return with_bias ? U * (fabs(ffn0[i]) + fabs(bias[i % I])) : 0.0; };
	auto		lim = [&](size_t i) { return out_lim<Tin>(gelu_ref(in(i), tanh_form), gelu_lim(in(i), dv(i), tanh_form)); };

	c.expect_within("ffn", ffn.data(), ffn.size(), in, dv);
	c.expect_within("act", act.data(), act.size(), [&](size_t i) { return gelu_ref(in(i), tanh_form); }, lim);
	if (std::is_same<Tin, float>::value)
		c.expect_caught("act vs the other GELU", act.data(), act.size(),
						[&](size_t i) { return gelu_ref(in(i), !tanh_form); }, lim);
}

template <typename Tin>
static void
test_train_attn_dropout(int B, int NH, int P, Drop drop, unsigned cap)
{
	Case		c(fmt("train_attn_dropout<%s> B=%d NH=%d P=%d%s%s", tname<Tin>(), B, NH, P, drop_name(drop).c_str(),
					  cap ? fmt(" grid<=%u", cap).c_str() : ""));
	Bucket		bk(B, P, NH);
	size_t		n = (size_t) B * NH * P * P;
	auto		probs = randv(n, 0, 1);
	auto		pin = poisoned<Tin>(n);

	emu::grid_cap = cap;
	launch_train_attn_dropout<Tin>(0, pin.data(), probs.data(), bk.lens.data(), bk.pbase.data(), B, NH, P, drop.dev());
	auto		ref = [&](size_t e) {
		int			j = (int) (e % P),
					i = (int) (e / P % P),
					h = (int) (e / ((size_t) P * P) % NH),
					b = (int) (e / ((size_t) P * P * NH)),
					S = bk.lens[b];

		if (i >= S || j >= S)
			return 0.0;
		return drop.apply(bk.pbase[b] + ((uint64_t) h * S + i) * S + j, probs[e]);
	};

	/* the dropout's product rounds once, then Tin */
	c.expect_within("pin", pin.data(), n, ref, [&](size_t e) { return out_lim<Tin>(ref(e), drop.round() * fabs(ref(e))); });
}

static void
test_train_dropout_copy(size_t n, Drop drop, unsigned cap)
{
	Case		c(fmt("train_dropout_copy n=%zu%s%s", n, drop_name(drop).c_str(), cap ? fmt(" grid<=%u", cap).c_str() : ""));
	auto		src = randv(n);
	auto		dst = poisoned<float>(n);

	emu::grid_cap = cap;
	launch_train_dropout_copy(0, dst.data(), src.data(), n, drop.dev());
	c.expect_within("dst", dst.data(), n, [&](size_t i) { return drop.apply(i, src[i]); },
					[&](size_t i) { return drop.round() * fabs(drop.apply(i, src[i])); });	/* one product */
}

/* ==== backward (each layer's file), gpu_dense.cu's bias gradient, gpu_optimizer.cu ==== */

template <typename Tin>
static void
test_train_ln_backward(int T, int H, Drop drop_in, Drop drop_br, bool with_br, bool with_dbias, unsigned cap)
{
	Case		c(fmt("train_ln_backward<%s> T=%d H=%d%s%s%s%s%s", tname<Tin>(), T, H,
					  drop_in.p > 0 ? fmt(" drop_in=%g", drop_in.p).c_str() : "",
					  with_br ? " dbr" : "", drop_br.p > 0 ? fmt(" drop_br=%g", drop_br.p).c_str() : "",
					  with_dbias ? " dbias" : "", cap ? fmt(" grid<=%u", cap).c_str() : ""));
	auto		in = randv((size_t) T * H, -2, 2),
				dy = randv((size_t) T * H),
				w = randv(H, 0.5f, 1.5f),
				dw0 = randv(H),
				db0 = randv(H),
				dbias0 = randv(H);
	std::vector<float> mean(T),
				rstd(T);
	auto		dw = dw0,
				db = db0,
				dbias = dbias0;
	auto		dx = poisoned<float>((size_t) T * H);
	auto		dbr = poisoned<Tin>((size_t) T * H);
	std::vector<double> ref_dx((size_t) T * H),
				ref_dbr((size_t) T * H),
				ref_dw(dw0.begin(), dw0.end()),
				ref_db(db0.begin(), db0.end()),
				ref_dbias(dbias0.begin(), dbias0.end()),
				lim_dx((size_t) T * H),
				lim_dbr((size_t) T * H),
				mag_dw(H, 0.0),		/* sum over the rows of |g xhat| */
				mag_db(H, 0.0),		/* of |g| */
				mag_dbias(H, 0.0),	/* of |dbr| */
				lim_dbias(H, 0.0);	/* of dbr's own bounds */

	/* the forward's saved statistics, as floats */
	for (int t = 0; t < T; t++)
	{
		double		mu = 0,
					var = 0;

		for (int i = 0; i < H; i++)
			mu += in[(size_t) t * H + i];
		mu /= H;
		for (int i = 0; i < H; i++)
			var += (in[(size_t) t * H + i] - mu) * (in[(size_t) t * H + i] - mu);
		mean[t] = (float) mu;
		rstd[t] = (float) (1.0 / sqrt(var / H + 1e-3));
	}
	emu::grid_cap = cap;
	launch_train_ln_backward<Tin>(0, dx.data(), with_br ? dbr.data() : NULL, dw.data(), db.data(),
								  with_dbias ? dbias.data() : NULL, dy.data(), in.data(), mean.data(), rstd.data(),
								  w.data(), T, H, drop_in.dev(), drop_br.dev());
	/* ops.c's bt_layernorm_backward on g = dropout_in(dy) (train.c applies the embeddings' dropout first) */
	for (int t = 0; t < T; t++)
	{
		size_t		row = (size_t) t * H;
		double		mu = mean[t],
					r = rstd[t],
					sum_g = 0,
					sum_gx = 0,
					mag_g = 0,
					mag_gx = 0;
		std::vector<double> g(H),
					xhat(H);

		for (int i = 0; i < H; i++)
		{
			g[i] = drop_in.apply(row + i, dy[row + i]);
			xhat[i] = (in[row + i] - mu) * r;
			sum_g += g[i] * w[i];
			sum_gx += g[i] * w[i] * xhat[i];
			mag_g += fabs(g[i] * w[i]);
			mag_gx += fabs(g[i] * w[i] * xhat[i]);
			ref_dw[i] += g[i] * xhat[i];
			ref_db[i] += g[i];
			mag_dw[i] += fabs(g[i] * xhat[i]);
			mag_db[i] += fabs(g[i]);
		}
		sum_g /= H;
		sum_gx /= H;

		/*
		 * The kernel's float roundings, to first order: g = dropout(dy) u |g|
		 * (drop.round()), xhat = (x - mean) rstd 2u (the saved mean and rstd
		 * are the reference's own floats), g w one more: 2u |g w| with g's.
		 * mean(g w), a sum of H terms and a division: dsg = (sum_bound32(H) +
		 * 3u) mean|g w|; mean(g w xhat), each term 5u: dsgx = (sum_bound32(H)
		 * + 6u) mean|g w xhat|. dx = rstd (a - sum_g - c), c = xhat sum_gx:
		 * a off by 2u |a|, c by |xhat| dsgx + 3u |c|, the two subtractions 2u
		 * of |a| + |sum_g| + |c|, the product u |dx|.
		 */
		double		dsg = (sum_bound32(H) + 3 * U) * mag_g / H,
					dsgx = (sum_bound32(H) + 6 * U) * mag_gx / H;

		for (int i = 0; i < H; i++)
		{
			double		a = g[i] * w[i],
						cc = xhat[i] * sum_gx;

			ref_dx[row + i] = r * (a - sum_g - cc);
			lim_dx[row + i] = r * (5 * U * (fabs(a) + fabs(sum_g) + fabs(cc)) + dsg + fabs(xhat[i]) * dsgx)
				+ U * fabs(ref_dx[row + i]);
			ref_dbr[row + i] = drop_br.apply(row + i, ref_dx[row + i]);
			/* dbr = dropout(dx): its scale times dx's bound, one product */
			lim_dbr[row + i] = drop_br.apply(row + i, lim_dx[row + i]) + drop_br.round() * fabs(ref_dbr[row + i]);
			if (with_br)
			{
				ref_dbias[i] += ref_dbr[row + i];
				mag_dbias[i] += fabs(ref_dbr[row + i]);
				lim_dbias[i] += lim_dbr[row + i];
			}
		}
	}

	c.expect_within("dx", dx.data(), dx.size(), [&](size_t i) { return ref_dx[i]; }, [&](size_t i) { return lim_dx[i]; });
	if (with_br)
		c.expect_within("dbr", dbr.data(), dbr.size(), [&](size_t i) { return ref_dbr[i]; },
						[&](size_t i) { return out_lim<Tin>(ref_dbr[i], lim_dbr[i]); });
	else
		c.expect_untouched("dbr", dbr.data(), dbr.size(), [](size_t) { return true; });

	/*
	 * dw, db, dbias: the initial value and T rows' terms summed in any order
	 * (the block's shared-memory atomics, then the global ones):
	 * sum_bound32(T + 1) of their magnitudes, plus each term's own error
	 * (g xhat: g's rounding, xhat's two, the product's: 4u; g: u; dbr: its bound).
	 */
	c.expect_within("dw", dw.data(), H, [&](size_t i) { return ref_dw[i]; }, [&](size_t i) {
		return sum_bound32(T + 1) * (fabs(dw0[i]) + mag_dw[i]) + 4 * U * mag_dw[i];
	});
	c.expect_within("db", db.data(), H, [&](size_t i) { return ref_db[i]; }, [&](size_t i) {
		return sum_bound32(T + 1) * (fabs(db0[i]) + mag_db[i]) + drop_in.round() * mag_db[i];
	});
	if (with_dbias)
		c.expect_within("dbias", dbias.data(), H, [&](size_t i) { return ref_dbias[i]; }, [&](size_t i) {
			return sum_bound32(T + 1) * (fabs(dbias0[i]) + mag_dbias[i]) + lim_dbias[i];
		});
}

static void
test_train_colsum(int rows, int cols)
{
	Case		c(fmt("train_colsum rows=%d cols=%d", rows, cols));
	auto		src = randv((size_t) rows * cols),
				dst0 = randv(cols);
	auto		dst = dst0;

	launch_train_colsum(0, dst.data(), src.data(), rows, cols);
	/* the initial value and rows terms, summed in any order: sum_bound32(rows + 1) of their magnitudes */
	c.expect_within("dst", dst.data(), cols, [&](size_t j) {
		double		s = dst0[j];

		for (int r = 0; r < rows; r++)
			s += src[(size_t) r * cols + j];
		return s;
	}, [&](size_t j) {
		double		mag = fabs(dst0[j]);

		for (int r = 0; r < rows; r++)
			mag += fabs(src[(size_t) r * cols + j]);
		return sum_bound32(rows + 1) * mag;
	});
}

template <typename Tin>
static void
test_train_gelu_backward(int T, int I, int tanh_form)
{
	Case		c(fmt("train_gelu_backward<%s> T=%d I=%d %s", tname<Tin>(), T, I, tanh_form ? "tanh" : "erf"));
	auto		g = randv((size_t) T * I),
				ffn = randv((size_t) T * I, -4, 4),
				dbias0 = randv(I);
	auto		dbias = dbias0;
	auto		gin = poisoned<Tin>((size_t) T * I);

	launch_train_gelu_backward<Tin>(0, gin.data(), g.data(), ffn.data(), dbias.data(), T, I, tanh_form);
	auto		ref = [&](size_t e) { return (double) g[e] * gelu_grad_ref(ffn[e], tanh_form); };
	/* gelu_grad's bound times |g|, and the product's rounding */
	auto		lim = [&](size_t e) { return fabs(g[e]) * gelu_grad_lim(ffn[e], tanh_form) + U * fabs(ref(e)); };

	c.expect_within("gin", gin.data(), gin.size(), ref, [&](size_t e) { return out_lim<Tin>(ref(e), lim(e)); });
	if (std::is_same<Tin, float>::value)
		c.expect_caught("gin vs the other GELU's derivative", gin.data(), gin.size(),
						[&](size_t e) { return (double) g[e] * gelu_grad_ref(ffn[e], !tanh_form); }, lim);
	/* the float products (not Tin's), summed with the initial value in any order */
	c.expect_within("dbias", dbias.data(), I, [&](size_t j) {
		double		s = dbias0[j];

		for (int r = 0; r < T; r++)
			s += ref((size_t) r * I + j);
		return s;
	}, [&](size_t j) {
		double		mag = fabs(dbias0[j]),
					own = 0;

		for (int r = 0; r < T; r++)
		{
			mag += fabs(ref((size_t) r * I + j));
			own += lim((size_t) r * I + j);
		}
		return sum_bound32(T + 1) * mag + own;
	});
}

static void
test_train_tanh_backward(int n, int H, Drop drop)
{
	Case		c(fmt("train_tanh_backward n=%d H=%d%s", n, H, drop_name(drop).c_str()));
	auto		g0 = randv((size_t) n * H),
				y = randv((size_t) n * H, -0.99f, 0.99f),
				dbias0 = randv(H);
	auto		g = g0,
				dbias = dbias0;

	launch_train_tanh_backward(0, g.data(), y.data(), dbias.data(), n, H, drop.dev());
	auto		ref = [&](size_t e) { return drop.apply(e, g0[e]) * (1.0 - (double) y[e] * y[e]); };
	/* dropout(g) (its product) * (1 - y y): y y rounds (u y^2, absolute), "1 -" u (1 - y^2), the product u */
	auto		lim = [&](size_t e) {
		double		gd = fabs(drop.apply(e, g0[e])),
					yy = (double) y[e] * y[e];

		return gd * (U * yy + U * (1 - yy)) + (drop.round() + U) * fabs(ref(e));
	};

	c.expect_within("g", g.data(), g.size(), ref, lim);
	/* summed with the initial value in any order */
	c.expect_within("dbias", dbias.data(), H, [&](size_t j) {
		double		s = dbias0[j];

		for (int r = 0; r < n; r++)
			s += ref((size_t) r * H + j);
		return s;
	}, [&](size_t j) {
		double		mag = fabs(dbias0[j]),
					own = 0;

		for (int r = 0; r < n; r++)
		{
			mag += fabs(ref((size_t) r * H + j));
			own += lim((size_t) r * H + j);
		}
		return sum_bound32(n + 1) * mag + own;
	});
}

static void
test_train_scatter_rows(int T, int n, int H, unsigned cap)
{
	Case		c(fmt("train_scatter_rows n=%d into T=%d H=%d%s", n, T, H, cap ? fmt(" grid<=%u", cap).c_str() : ""));
	auto		src = randv((size_t) n * H);
	std::vector<int> rows,
				which(T, -1);
	auto		dst = poisoned<float>((size_t) T * H);

	for (int t = 0; t < T && (int) rows.size() < n; t++)	/* n distinct rows, in shuffled order */
		if (irand(T) < 2 * n || T - t <= n - (int) rows.size())
			rows.push_back(t);
	for (int i = (int) rows.size() - 1; i > 0; i--)
		std::swap(rows[i], rows[irand(i + 1)]);
	for (int r = 0; r < n; r++)
		which[rows[r]] = r;
	emu::grid_cap = cap;
	launch_train_scatter_rows(0, dst.data(), src.data(), rows.data(), n, H);
	c.expect("dst", dst.data(), dst.size(), [&](size_t i) {
		int			r = which[i / H];

		return r < 0 ? NAN : (double) src[(size_t) r * H + i % H];
	}, EXACT);
	c.expect_untouched("dst", dst.data(), dst.size(), [&](size_t i) { return which[i / H] < 0; });
}

template <typename Tin>
static void
test_train_scatter_heads(int B, int P, int H, int NH)
{
	Case		c(fmt("train_scatter_heads<%s> B=%d P=%d H=%d NH=%d", tname<Tin>(), B, P, H, NH));
	Bucket		bk(B, P, NH);
	int			d = H / NH;
	size_t		n = (size_t) B * NH * P * d;
	auto		src = randv((size_t) bk.T * H);
	auto		dst = poisoned<Tin>(n);

	launch_train_scatter_heads<Tin>(0, dst.data(), src.data(), bk.slot_token.data(), B, P, H, NH);
	c.expect("dst", dst.data(), n, [&](size_t e) {
		int			dd = (int) (e % d),
					p = (int) (e / d % P),
					h = (int) (e / ((size_t) d * P) % NH),
					b = (int) (e / ((size_t) d * P * NH)),
					tok = bk.slot_token[(size_t) b * P + p];

		return tok < 0 ? 0.0 : val(from_f<Tin>(src[(size_t) tok * H + h * d + dd]));
	}, EXACT);
}

template <typename Tin>
static void
test_train_softmax_backward(int B, int NH, int P, Drop drop)
{
	Case		c(fmt("train_softmax_backward<%s> B=%d NH=%d P=%d%s", tname<Tin>(), B, NH, P, drop_name(drop).c_str()));
	Bucket		bk(B, P, NH);
	size_t		n = (size_t) B * NH * P * P;
	std::vector<float> probs(n, 0.0f);
	auto		dp0 = randv(n, -2, 2);
	auto		dp = dp0;
	auto		ds = poisoned<Tin>(n);
	std::vector<double> ref_g(n),
				ref_ds(n, 0.0),
				lim_ds(n, 0.0);

	/* probability rows over each sequence's S keys, 0 elsewhere (masked_softmax's output) */
	for (size_t row = 0; row < (size_t) B * NH * P; row++)
	{
		int			S = bk.lens[row / ((size_t) NH * P)];
		float		sum = 0;

		if ((int) (row % P) >= S)
			continue;
		for (int j = 0; j < S; j++)
			sum += probs[row * P + j] = unif(0.01f, 1);
		for (int j = 0; j < S; j++)
			probs[row * P + j] /= sum;
	}
	launch_train_softmax_backward<Tin>(0, ds.data(), dp.data(), probs.data(), bk.lens.data(), bk.pbase.data(),
									   B, NH, P, drop.dev());
	for (size_t row = 0; row < (size_t) B * NH * P; row++)
	{
		int			b = (int) (row / ((size_t) NH * P)),
					h = (int) (row / P % NH),
					i = (int) (row % P),
					S = bk.lens[b];
		double		dot = 0;

		for (int j = 0; j < P; j++)
			ref_g[row * P + j] = dp0[row * P + j];
		if (i >= S)
			continue;
		for (int j = 0; j < S; j++)
		{
			ref_g[row * P + j] = drop.apply(bk.pbase[b] + ((uint64_t) h * S + i) * S + j, dp0[row * P + j]);
			dot += probs[row * P + j] * ref_g[row * P + j];
		}
		/*
		 * g = dropout(dp) rounds (drop.round()); dot = sum of S products p g:
		 * sum_bound32(S) of sum p |g|, and each term g's and the product's
		 * rounding; ds = p (g - dot): g's and dot's errors times p, the
		 * subtraction's and the product's roundings.
		 */
		double		mag = 0,
					ddot;

		for (int j = 0; j < S; j++)
			mag += probs[row * P + j] * fabs(ref_g[row * P + j]);
		ddot = (sum_bound32(S) + U + drop.round()) * mag;
		for (int j = 0; j < S; j++)
		{
			double		p = probs[row * P + j],
						g = ref_g[row * P + j];

			ref_ds[row * P + j] = p * (g - dot);
			lim_ds[row * P + j] = p * (drop.round() * fabs(g) + ddot + U * fabs(g - dot)) + U * fabs(ref_ds[row * P + j]);
		}
	}
	c.expect_within("ds", ds.data(), n, [&](size_t e) { return ref_ds[e]; },
					[&](size_t e) { return out_lim<Tin>(ref_ds[e], lim_ds[e]); });
	c.expect_within("dp", dp.data(), n, [&](size_t e) { return ref_g[e]; },
					[&](size_t e) { return drop.round() * fabs(ref_g[e]); });	/* the dropout's product */
}

template <typename Tin>
static void
test_train_gather_qkv(int B, int P, int H, int NH, bool gin_is_g)
{
	Case		c(fmt("train_gather_qkv<%s> B=%d P=%d H=%d NH=%d%s", tname<Tin>(), B, P, H, NH,
					  gin_is_g ? " gin=g" : ""));
	Bucket		bk(B, P, NH);
	int			d = H / NH;
	size_t		n = (size_t) B * NH * P * d;
	auto		dq = randv(n),
				dk = randv(n),
				dv = randv(n);
	auto		g = poisoned<float>((size_t) bk.T * 3 * H);
	auto		gin = poisoned<Tin>((size_t) bk.T * 3 * H);
	std::vector<double> ref((size_t) bk.T * 3 * H, NAN);

	for (int b = 0; b < B; b++)
		for (int p = 0; p < bk.lens[b]; p++)
			for (int e = 0; e < 3 * H; e++)
			{
				const auto &src = e / H == 0 ? dq : e / H == 1 ? dk : dv;
				int			col = e % H;

				ref[(size_t) (bk.start[b] + p) * 3 * H + e] = src[(((size_t) b * NH + col / d) * P + p) * d + col % d];
			}
	launch_train_gather_qkv<Tin>(0, g.data(), gin_is_g ? (Tin *) (void *) g.data() : gin.data(), dq.data(), dk.data(),
								 dv.data(), bk.slot_token.data(), B, P, H, NH);
	c.expect("g", g.data(), g.size(), [&](size_t i) { return ref[i]; }, EXACT);
	c.expect_untouched("g", g.data(), g.size(), [&](size_t i) { return std::isnan(ref[i]); });
	if (!gin_is_g)
	{
		c.expect("gin", gin.data(), gin.size(),
				 [&](size_t i) { return std::isnan(ref[i]) ? NAN : val(from_f<Tin>((float) ref[i])); }, EXACT);
		c.expect_untouched("gin", gin.data(), gin.size(), [&](size_t i) { return std::isnan(ref[i]); });
	}
}

static void
test_train_embed_backward(int T, int H, unsigned cap)
{
	Case		c(fmt("train_embed_backward T=%d H=%d%s", T, H, cap ? fmt(" grid<=%u", cap).c_str() : ""));
	int			V = 12,
				NP = 20,
				pad = 0;
	std::vector<int> ids(T),
				types(T),
				pos(T);
	auto		dx = randv((size_t) T * H),
				dword0 = randv((size_t) V * H),
				dpos0 = randv((size_t) NP * H),
				dtype0 = randv((size_t) 2 * H);
	auto		dword = dword0,
				dpos = dpos0,
				dtype = dtype0;
	std::vector<double> rw(dword0.begin(), dword0.end()),
				rp(dpos0.begin(), dpos0.end()),
				rt(dtype0.begin(), dtype0.end());
	/* the magnitudes of each row's terms, starting from its initial value's */
	std::vector<double> mw(rw.size()),
				mp(rp.size()),
				mt(rt.size());

	for (size_t i = 0; i < mw.size(); i++)
		mw[i] = fabs(rw[i]);
	for (size_t i = 0; i < mp.size(); i++)
		mp[i] = fabs(rp[i]);
	for (size_t i = 0; i < mt.size(); i++)
		mt[i] = fabs(rt[i]);

	for (int t = 0; t < T; t++)
	{
		ids[t] = irand(V);		/* some are pad (0) */
		types[t] = irand(2);
		pos[t] = irand(NP);
		for (int i = 0; i < H; i++)
		{
			double		v = dx[(size_t) t * H + i];

			if (ids[t] != pad)
			{
				rw[(size_t) ids[t] * H + i] += v;
				mw[(size_t) ids[t] * H + i] += fabs(v);
			}
			rp[(size_t) pos[t] * H + i] += v;
			mp[(size_t) pos[t] * H + i] += fabs(v);
			rt[(size_t) types[t] * H + i] += v;
			mt[(size_t) types[t] * H + i] += fabs(v);
		}
	}
	emu::grid_cap = cap;
	launch_train_embed_backward(0, dword.data(), dpos.data(), dtype.data(), dx.data(), ids.data(), types.data(),
								pos.data(), T, H, pad);
	/* each element: its initial value and at most T rows' terms, added (atomically) in any order */
	c.expect_within("dword", dword.data(), dword.size(), [&](size_t i) { return rw[i]; },
					[&](size_t i) { return sum_bound32(T + 1) * mw[i]; });
	c.expect_within("dpos", dpos.data(), dpos.size(), [&](size_t i) { return rp[i]; },
					[&](size_t i) { return sum_bound32(T + 1) * mp[i]; });
	c.expect_within("dtype", dtype.data(), dtype.size(), [&](size_t i) { return rt[i]; },
					[&](size_t i) { return sum_bound32(T + 1) * mt[i]; });
}

static void
test_train_sumsq(size_t n)
{
	Case		c(fmt("train_sumsq n=%zu", n));
	auto		g = randv(n, -3, 3);
	auto		buf = poisoned<double>(1 + TRAIN_NORM_BLOCKS);
	double		ref = 0;

	for (float x : g)
		ref += (double) x * x;
	/* as gpu_train.cu calls it: out = norm[0], partials = norm + 1 */
	launch_train_sumsq(0, buf.data(), buf.data() + 1, g.data(), n);
	/*
	 * float squares are exact in double; the kernel's and the reference's
	 * double sums of n positive terms each round within sum_bound64(n) of the
	 * sum, independently (factor 2)
	 */
	c.expect("out", buf.data(), 1, [&](size_t) { return ref; }, Tol{2 * sum_bound64((double) n), 0});
}

static void
test_train_adamw(size_t n, int clip, int wd, unsigned cap)
{
	Case		c(fmt("train_adamw n=%zu%s%s%s", n, clip ? " clip" : "", wd ? " decay" : "",
					  cap ? fmt(" grid<=%u", cap).c_str() : ""));
	auto		p0 = randv(n),
				grad = randv(n, -0.1f, 0.1f),
				m0 = randv(n, -0.01f, 0.01f),
				v0 = randv(n, 0, 1e-4f);
	auto		p = p0,
				m = m0,
				v = v0;
	/* train.c's bt_trainer_step, step 3 */
	double		lr = 2e-5,
				b1 = 0.9,
				b2 = 0.999,
				wdecay = 0.01;
	int			step = 3;
	float		coef = 0.37f,
				decay = (float) (1.0 - lr * wdecay),
				step_size = (float) (lr / (1.0 - pow(b1, step))),
				bc2_sqrt = (float) sqrt(1.0 - pow(b2, step)),
				one_minus_b1 = (float) (1.0 - b1),
				one_minus_b2 = (float) (1.0 - b2),
				b2f = (float) b2,
				eps = 1e-8f;
	std::vector<float> rp(p0),
				rm(m0),
				rv(v0);

	emu::grid_cap = cap;
	launch_train_adamw(0, p.data(), grad.data(), m.data(), v.data(), n, clip, coef, wd, decay, one_minus_b1, b2f,
					   one_minus_b2, bc2_sqrt, eps, step_size);
	for (size_t i = 0; i < n; i++)
	{
		float		gg = grad[i],
					denom;

		if (clip)
			gg *= coef;
		if (wd)
			rp[i] *= decay;
		rm[i] += one_minus_b1 * (gg - rm[i]);
		rv[i] = rv[i] * b2f + one_minus_b2 * gg * gg;
		denom = sqrtf(rv[i]) / bc2_sqrt + eps;
		rp[i] += -step_size * (rm[i] / denom);
	}
	/* the same float expressions: the same bits */
	c.expect("p", p.data(), n, [&](size_t i) { return rp[i]; }, EXACT);
	c.expect("m", m.data(), n, [&](size_t i) { return rm[i]; }, EXACT);
	c.expect("v", v.data(), n, [&](size_t i) { return rv[i]; }, EXACT);
}

static void
on_alarm(int)
{
	static const char m1[] = "FAIL timed out in ";
	static const char m2[] = " (a barrier or shuffle some threads never reach?)\n";

	(void) !write(1, m1, sizeof m1 - 1);
	(void) !write(1, case_name, strlen(case_name));
	(void) !write(1, m2, sizeof m2 - 1);
	_exit(1);
}

int
main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : NULL;	/* run only cases of the kernels whose name contains this */
	auto		t0 = std::chrono::steady_clock::now();
	const int	Ts[] = {1, 5, 37},
				Hs[] = {48, 384, 768};
	const Drop	d10 = {0.1f, 0x1234abcd5678ef01ULL},
				d50 = {0.5f, 42},
				d100 = {1.0f, 7};

	signal(SIGALRM, on_alarm);
	setvbuf(stdout, NULL, _IOLBF, 0);
#define RUN(name, ...) do { if (!only || strstr(name, only)) { __VA_ARGS__; } } while (0)

	/* ---- inference forward: embeddings, LayerNorm, GELU, dense, head ---- */
	for (int T : Ts)
		for (int H : Hs)
		{
			RUN("embed_ln", test_embed_ln<float>(T, H, true); test_embed_ln<bf16>(T, H, T != 5));
			RUN("bias_residual_ln", test_bias_residual_ln<float>(T, H); test_bias_residual_ln<bf16>(T, H));
		}
	RUN("embed_ln", test_embed_ln<float>(300, 48, true));	/* 38 blocks, last one partly idle */
	for (int I : {96, 1536})
		for (int tf = 0; tf < 2; tf++)
		{
			RUN("bias_gelu", test_bias_gelu<float>(5, I, tf, 0); test_bias_gelu<bf16>(37, I, tf, 0));
			RUN("bias_gelu", test_bias_gelu<bf16>(5, I, tf, 3));
		}
	RUN("convert", test_convert<float>(1001, 0); test_convert<bf16>(1001, 0));
	RUN("convert", test_convert<float>(5000, 3); test_convert<bf16>(4099, 2));
	RUN("gather_rows", test_gather_rows(37, 5, 384, 0); test_gather_rows(37, 7, 768, 3); test_gather_rows(1, 1, 48, 0));
	RUN("mean_rows", test_mean_rows(1, 48); test_mean_rows(5, 384); test_mean_rows(3, 768));
	RUN("bias_act", test_bias_act(5, 768, 1, 0); test_bias_act(37, 3, 0, 0); test_bias_act(37, 384, 1, 2));

	/* ---- inference forward: attention ---- */
	RUN("scatter_qkv", test_scatter_qkv<float, float>(3, 37, 48, 3); test_scatter_qkv<bf16, float>(2, 5, 384, 6));
	RUN("scatter_qkv", test_scatter_qkv<bf16, bf16>(2, 9, 768, 12); test_scatter_qkv<float, float>(1, 1, 768, 12));
	for (int P : {1, 5, 37, 70})
		RUN("masked_softmax", test_masked_softmax<float>(3, 2, P); test_masked_softmax<bf16>(2, 3, P));
	RUN("gather_ctx", test_gather_ctx<float>(3, 37, 48, 3); test_gather_ctx<bf16>(2, 5, 384, 6));
	RUN("gather_ctx", test_gather_ctx<bf16>(2, 9, 768, 12); test_gather_ctx<float>(1, 1, 768, 12));

	/* ---- training forward ---- */
	for (int T : Ts)
		for (int H : Hs)
		{
			RUN("train_embed_ln", test_train_embed_ln<float>(T, H, d10); test_train_embed_ln<bf16>(T, H, T == 5 ? NO_DROP : d10));
			RUN("train_residual_ln", test_train_residual_ln<float>(T, H, d10); test_train_residual_ln<bf16>(T, H, T == 1 ? d100 : d50));
		}
	for (int tf = 0; tf < 2; tf++)
	{
		RUN("train_gelu", test_train_gelu<float>(5, 1536, tf, true, 0); test_train_gelu<bf16>(37, 96, tf, true, 0));
		RUN("train_gelu", test_train_gelu<bf16>(5, 96, tf, false, 2); test_train_gelu<float>(37, 1536, tf, false, 3));
	}
	for (int P : {1, 5, 37})
		RUN("train_attn_dropout", test_train_attn_dropout<float>(3, 2, P, d10, 0); test_train_attn_dropout<bf16>(2, 3, P, d50, 0));
	RUN("train_attn_dropout", test_train_attn_dropout<bf16>(3, 4, 37, d10, 2); test_train_attn_dropout<float>(2, 2, 9, NO_DROP, 0));
	RUN("train_dropout_copy", test_train_dropout_copy(1001, d10, 0); test_train_dropout_copy(5 * 768, d50, 2));
	RUN("train_dropout_copy", test_train_dropout_copy(77, NO_DROP, 0); test_train_dropout_copy(77, d100, 0));

	/* ---- backward and optimizer ---- */
	for (int T : Ts)
		for (int H : Hs)
		{
			RUN("train_ln_backward", test_train_ln_backward<float>(T, H, NO_DROP, d10, true, true, 0));
			RUN("train_ln_backward", test_train_ln_backward<bf16>(T, H, NO_DROP, d50, true, true, 0));
			RUN("train_ln_backward", test_train_ln_backward<float>(T, H, d10, NO_DROP, false, false, 0));
		}
	RUN("train_ln_backward", test_train_ln_backward<bf16>(37, 384, NO_DROP, NO_DROP, true, false, 2));
	RUN("train_ln_backward", test_train_ln_backward<float>(37, 48, d10, NO_DROP, true, true, 3));
	RUN("train_ln_backward", test_train_ln_backward<float>(3, 4096, NO_DROP, d10, true, true, 0));	/* 48 KiB of shared memory */
	for (int rows : {1, 37, 200})
		for (int cols : {3, 48, 300})
			RUN("train_colsum", test_train_colsum(rows, cols));
	for (int tf = 0; tf < 2; tf++)
	{
		RUN("train_gelu_backward", test_train_gelu_backward<float>(37, 96, tf); test_train_gelu_backward<bf16>(5, 1536, tf));
		RUN("train_gelu_backward", test_train_gelu_backward<float>(130, 300, tf));	/* 3 x 3 blocks */
	}
	RUN("train_tanh_backward", test_train_tanh_backward(5, 768, d10); test_train_tanh_backward(1, 48, NO_DROP));
	RUN("train_tanh_backward", test_train_tanh_backward(130, 300, d50));
	RUN("train_scatter_rows", test_train_scatter_rows(37, 5, 384, 0); test_train_scatter_rows(37, 37, 48, 2));
	RUN("train_scatter_rows", test_train_scatter_rows(1, 1, 768, 0));
	RUN("train_scatter_heads", test_train_scatter_heads<float>(3, 37, 48, 3); test_train_scatter_heads<bf16>(2, 5, 384, 6));
	RUN("train_scatter_heads", test_train_scatter_heads<bf16>(2, 9, 768, 12));
	for (int P : {1, 5, 37, 70})
		RUN("train_softmax_backward", test_train_softmax_backward<float>(3, 2, P, d10); test_train_softmax_backward<bf16>(2, 3, P, P == 5 ? NO_DROP : d50));
	RUN("train_gather_qkv", test_train_gather_qkv<float>(3, 37, 48, 3, false); test_train_gather_qkv<float>(2, 5, 384, 6, true));
	RUN("train_gather_qkv", test_train_gather_qkv<bf16>(2, 9, 768, 12, false); test_train_gather_qkv<bf16>(1, 1, 48, 3, false));
	RUN("train_embed_backward", test_train_embed_backward(37, 384, 0); test_train_embed_backward(5, 768, 2));
	RUN("train_embed_backward", test_train_embed_backward(1, 48, 0));
	RUN("train_sumsq", test_train_sumsq(1001); test_train_sumsq(300007));
	RUN("train_adamw", test_train_adamw(1001, 0, 0, 0); test_train_adamw(70001, 1, 1, 0); test_train_adamw(5000, 1, 0, 3));

	if (!only)
		for (auto &k : emu::never_launched())
		{
			printf("FAIL %s: a kernel this test never launches (add a case for it)\n", k.c_str());
			n_fail++;
		}
	printf("%d passed, %d failed (%ld launches, %ld blocks, %.1f s)\n", n_pass, n_fail, emu::launches.load(),
		   emu::blocks_run.load(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
	return n_fail != 0 || n_pass == 0;
}
