/*
 * test/gpu/emu/test_kernels.cpp
 *     The row kernels of kernels/gpu_layers.cu, gpu_attention.cu and
 *     gpu_backward.cu run under host emulation (emu.h; the .cu files are
 *     rewritten by extract.py at build time, so this follows their edits),
 *     through their real launchers, against references in double written
 *     from the CPU engine's semantics (src/engine/ops.c, train.c). Outputs
 *     start as NaN: every element a kernel should write must be written, and
 *     what it should leave alone must stay NaN. Grid-stride kernels also run
 *     on a grid capped to a few blocks. Prints ok/FAIL per case and a count.
 */
#include "emu.h"
#include "gpu_train_internal.h"
#include "ops.h"					/* the engine's bt_mix64: the dropout masks must be its own */

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

/* tolerances: float kernels against double references; bf16 outputs within bf16 rounding */
struct Tol
{
	double		rtol,
				atol;
};
static const Tol EXACT = {0, 0};
static const Tol F32 = {1e-5, 1e-5};
static const Tol BF16 = {1.01 / 256, 1e-5};	/* half a bf16 ulp is up to 2^-8 of the value */

template <typename T> Tol tol_of();
template <> Tol tol_of<float>() { return F32; }
template <> Tol tol_of<bf16>() { return BF16; }

/* ---- one case ---- */

struct Case
{
	std::string name;
	int			bad = 0;
	std::string msg;
	double		worst = 0.0;	/* largest error / tolerance */
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

	/* got[i] against ref(i) for every i < n where ref(i) is not NaN */
	template <typename T, typename R>
	void
	expect(const char *what, const T *got, size_t n, R ref, Tol tol)
	{
		for (size_t i = 0; i < n; i++)
		{
			double		r = ref(i),
						g = val(got[i]),
						err = fabs(g - r),
						lim = tol.atol + tol.rtol * fabs(r);

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
			if (lim > 0 && err / lim > worst)
				worst = err / lim;
		}
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
			printf("ok   %s (worst %.2f of tolerance, %.0f ms)\n", name.c_str(), worst, ms);
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

/* LayerNorm of row v (H) into y: biased variance, eps inside the square root */
static void
ln_ref(std::vector<double> &y, double *mean, double *rstd, const std::vector<double> &v, const float *w,
	   const float *b, int H, float eps)
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

/* ==== gpu_layers.cu ==== */

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
	std::vector<double> ref((size_t) T * H);

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
					y;

		for (int i = 0; i < H; i++)
			v[i] = (double) word[(size_t) ids[t] * H + i] + posemb[(size_t) pos[t] * H + i]
				+ typeemb[(size_t) (types_given ? types[t] : 0) * H + i];
		ln_ref(y, NULL, NULL, v, w.data(), b.data(), H, eps);
		std::copy(y.begin(), y.end(), ref.begin() + (size_t) t * H);
	}
	c.expect("x", x.data(), x.size(), [&](size_t i) { return ref[i]; }, F32);
	c.expect("xin", xin.data(), xin.size(), [&](size_t i) { return ref[i]; }, tol_of<Tin>());
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
	std::vector<double> ref((size_t) T * H);

	launch_bias_residual_ln<Tin, Tin>(0, x.data(), xin.data(), y.data(), bias.data(), w.data(), b.data(), T, H, eps);
	for (int t = 0; t < T; t++)
	{
		std::vector<double> v(H),
					out;

		for (int i = 0; i < H; i++)
			v[i] = val(y[(size_t) t * H + i]) + bias[i] + x0[(size_t) t * H + i];
		ln_ref(out, NULL, NULL, v, w.data(), b.data(), H, eps);
		std::copy(out.begin(), out.end(), ref.begin() + (size_t) t * H);
	}
	c.expect("x", x.data(), x.size(), [&](size_t i) { return ref[i]; }, F32);
	c.expect("xin", xin.data(), xin.size(), [&](size_t i) { return ref[i]; }, tol_of<Tin>());
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
	c.expect("out", out.data(), out.size(), [&](size_t i) { return gelu_ref(val(y[i]) + bias[i % I], tanh_form); },
			 tol_of<Tin>());
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
	c.expect("dst", dst.data(), dst.size(), [&](size_t i) {
		int			s = (int) (i / H);
		double		sum = 0;

		for (int t = off[s]; t < off[s + 1]; t++)
			sum += x[(size_t) t * H + i % H];
		return sum / (off[s + 1] - off[s]);
	}, F32);
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
	c.expect("y", y.data(), y.size(), [&](size_t i) {
		double		v = (double) y0[i] + bias[i % cols];

		return act_tanh ? tanh(v) : v;
	}, F32);
}

/* ==== gpu_attention.cu ==== */

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
		c.expect(which == 0 ? "q" : which == 1 ? "k" : "v", out[which].data(), n, [&](size_t e) {
			int			dd = (int) (e % d),
						p = (int) (e / d % P),
						h = (int) (e / ((size_t) d * P) % NH),
						b = (int) (e / ((size_t) d * P * NH)),
						tok = bk.slot_token[(size_t) b * P + p],
						col = which * H + h * d + dd;

			return tok < 0 ? 0.0 : val(qkv[(size_t) tok * 3 * H + col]) + bias[col];
		}, tol_of<Tin>());
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
	c.expect("probs", probs.data(), n, [&](size_t e) {
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
	}, Tol{tol_of<Tin>().rtol, 1e-7});
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

/* ==== gpu_backward.cu: training forward ==== */

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
				ref_rstd(T);

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
			v[i] = ref_emb[(size_t) t * H + i] = (double) word[(size_t) ids[t] * H + i]
				+ posemb[(size_t) pos[t] * H + i] + typeemb[(size_t) types[t] * H + i];
		ln_ref(y, &ref_mean[t], &ref_rstd[t], v, w.data(), b.data(), H, eps);
		for (int i = 0; i < H; i++)
			ref[(size_t) t * H + i] = drop.apply((uint64_t) t * H + i, y[i]);
	}
	c.expect("emb", emb.data(), emb.size(), [&](size_t i) { return ref_emb[i]; }, F32);
	c.expect("mean", mean.data(), T, [&](size_t i) { return ref_mean[i]; }, F32);
	c.expect("rstd", rstd.data(), T, [&](size_t i) { return ref_rstd[i]; }, F32);
	c.expect("xs", xs.data(), xs.size(), [&](size_t i) { return ref[i]; }, F32);
	c.expect("xin", xin.data(), xin.size(), [&](size_t i) { return ref[i]; }, tol_of<Tin>());
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
				ref_rstd(T);

	launch_train_residual_ln<Tin>(0, res.data(), mean.data(), rstd.data(), xs.data(), xin.data(), y.data(),
								  bias.data(), w.data(), b.data(), T, H, eps, drop.dev());
	for (int t = 0; t < T; t++)
	{
		std::vector<double> v(H),
					out;

		for (int i = 0; i < H; i++)
		{
			size_t		e = (size_t) t * H + i;

			v[i] = ref_res[e] = xs0[e] + drop.apply(e, (double) y[e] + bias[i]);
		}
		ln_ref(out, &ref_mean[t], &ref_rstd[t], v, w.data(), b.data(), H, eps);
		std::copy(out.begin(), out.end(), ref.begin() + (size_t) t * H);
	}
	c.expect("res", res.data(), res.size(), [&](size_t i) { return ref_res[i]; }, F32);
	c.expect("mean", mean.data(), T, [&](size_t i) { return ref_mean[i]; }, F32);
	c.expect("rstd", rstd.data(), T, [&](size_t i) { return ref_rstd[i]; }, F32);
	c.expect("xs", xs.data(), xs.size(), [&](size_t i) { return ref[i]; }, F32);
	c.expect("xin", xin.data(), xin.size(), [&](size_t i) { return ref[i]; }, tol_of<Tin>());
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

	c.expect("ffn", ffn.data(), ffn.size(), in, F32);
	c.expect("act", act.data(), act.size(), [&](size_t i) { return gelu_ref(in(i), tanh_form); }, tol_of<Tin>());
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
	c.expect("pin", pin.data(), n, [&](size_t e) {
		int			j = (int) (e % P),
					i = (int) (e / P % P),
					h = (int) (e / ((size_t) P * P) % NH),
					b = (int) (e / ((size_t) P * P * NH)),
					S = bk.lens[b];

		if (i >= S || j >= S)
			return 0.0;
		return drop.apply(bk.pbase[b] + ((uint64_t) h * S + i) * S + j, probs[e]);
	}, tol_of<Tin>());
}

static void
test_train_dropout_copy(size_t n, Drop drop, unsigned cap)
{
	Case		c(fmt("train_dropout_copy n=%zu%s%s", n, drop_name(drop).c_str(), cap ? fmt(" grid<=%u", cap).c_str() : ""));
	auto		src = randv(n);
	auto		dst = poisoned<float>(n);

	emu::grid_cap = cap;
	launch_train_dropout_copy(0, dst.data(), src.data(), n, drop.dev());
	c.expect("dst", dst.data(), n, [&](size_t i) { return drop.apply(i, src[i]); }, F32);
}

/* ==== gpu_backward.cu: backward ==== */

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
				mag(H, 0.0);

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
					sum_gx = 0;
		std::vector<double> g(H),
					xhat(H);

		for (int i = 0; i < H; i++)
		{
			g[i] = drop_in.apply(row + i, dy[row + i]);
			xhat[i] = (in[row + i] - mu) * r;
			sum_g += g[i] * w[i];
			sum_gx += g[i] * w[i] * xhat[i];
			ref_dw[i] += g[i] * xhat[i];
			ref_db[i] += g[i];
			mag[i] += fabs(g[i] * xhat[i]) + fabs(g[i]);
		}
		sum_g /= H;
		sum_gx /= H;
		for (int i = 0; i < H; i++)
		{
			ref_dx[row + i] = r * (g[i] * w[i] - sum_g - xhat[i] * sum_gx);
			ref_dbr[row + i] = drop_br.apply(row + i, ref_dx[row + i]);
			if (with_br)
				ref_dbias[i] += ref_dbr[row + i];
		}
	}
	/* sums over T rows: float rounding grows with the terms' magnitudes */
	Tol			sum_tol = {1e-5, 1e-6 * T};

	c.expect("dx", dx.data(), dx.size(), [&](size_t i) { return ref_dx[i]; }, Tol{1e-5, 2e-5});
	if (with_br)
		c.expect("dbr", dbr.data(), dbr.size(), [&](size_t i) { return ref_dbr[i]; },
				 Tol{tol_of<Tin>().rtol, 2e-5});
	else
		c.expect_untouched("dbr", dbr.data(), dbr.size(), [](size_t) { return true; });
	c.expect("dw", dw.data(), H, [&](size_t i) { return ref_dw[i]; }, sum_tol);
	c.expect("db", db.data(), H, [&](size_t i) { return ref_db[i]; }, sum_tol);
	if (with_dbias)
		c.expect("dbias", dbias.data(), H, [&](size_t i) { return ref_dbias[i]; }, sum_tol);
}

static void
test_train_colsum(int rows, int cols)
{
	Case		c(fmt("train_colsum rows=%d cols=%d", rows, cols));
	auto		src = randv((size_t) rows * cols),
				dst0 = randv(cols);
	auto		dst = dst0;

	launch_train_colsum(0, dst.data(), src.data(), rows, cols);
	c.expect("dst", dst.data(), cols, [&](size_t j) {
		double		s = dst0[j];

		for (int r = 0; r < rows; r++)
			s += src[(size_t) r * cols + j];
		return s;
	}, Tol{1e-5, 1e-6 * rows});
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

	c.expect("gin", gin.data(), gin.size(), ref, tol_of<Tin>());
	c.expect("dbias", dbias.data(), I, [&](size_t j) {
		double		s = dbias0[j];

		for (int r = 0; r < T; r++)
			s += ref((size_t) r * I + j);
		return s;
	}, Tol{1e-5, 2e-6 * T});
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

	c.expect("g", g.data(), g.size(), ref, F32);
	c.expect("dbias", dbias.data(), H, [&](size_t j) {
		double		s = dbias0[j];

		for (int r = 0; r < n; r++)
			s += ref((size_t) r * H + j);
		return s;
	}, Tol{1e-5, 2e-6 * n});
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
				ref_ds(n, 0.0);

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
		for (int j = 0; j < S; j++)
			ref_ds[row * P + j] = probs[row * P + j] * (ref_g[row * P + j] - dot);
	}
	c.expect("ds", ds.data(), n, [&](size_t e) { return ref_ds[e]; }, Tol{tol_of<Tin>().rtol, 1e-6});
	c.expect("dp", dp.data(), n, [&](size_t e) { return ref_g[e]; }, F32);
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

	for (int t = 0; t < T; t++)
	{
		ids[t] = irand(V);		/* some are pad (0) */
		types[t] = irand(2);
		pos[t] = irand(NP);
		for (int i = 0; i < H; i++)
		{
			double		v = dx[(size_t) t * H + i];

			if (ids[t] != pad)
				rw[(size_t) ids[t] * H + i] += v;
			rp[(size_t) pos[t] * H + i] += v;
			rt[(size_t) types[t] * H + i] += v;
		}
	}
	emu::grid_cap = cap;
	launch_train_embed_backward(0, dword.data(), dpos.data(), dtype.data(), dx.data(), ids.data(), types.data(),
								pos.data(), T, H, pad);
	Tol			sum_tol = {1e-5, 1e-6 * T};

	c.expect("dword", dword.data(), dword.size(), [&](size_t i) { return rw[i]; }, sum_tol);
	c.expect("dpos", dpos.data(), dpos.size(), [&](size_t i) { return rp[i]; }, sum_tol);
	c.expect("dtype", dtype.data(), dtype.size(), [&](size_t i) { return rt[i]; }, sum_tol);
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
	c.expect("out", buf.data(), 1, [&](size_t) { return ref; }, Tol{1e-12, 0});
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

	/* ---- gpu_layers.cu ---- */
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

	/* ---- gpu_attention.cu ---- */
	RUN("scatter_qkv", test_scatter_qkv<float, float>(3, 37, 48, 3); test_scatter_qkv<bf16, float>(2, 5, 384, 6));
	RUN("scatter_qkv", test_scatter_qkv<bf16, bf16>(2, 9, 768, 12); test_scatter_qkv<float, float>(1, 1, 768, 12));
	for (int P : {1, 5, 37, 70})
		RUN("masked_softmax", test_masked_softmax<float>(3, 2, P); test_masked_softmax<bf16>(2, 3, P));
	RUN("gather_ctx", test_gather_ctx<float>(3, 37, 48, 3); test_gather_ctx<bf16>(2, 5, 384, 6));
	RUN("gather_ctx", test_gather_ctx<bf16>(2, 9, 768, 12); test_gather_ctx<float>(1, 1, 768, 12));

	/* ---- gpu_backward.cu: training forward ---- */
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

	/* ---- gpu_backward.cu: backward ---- */
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
