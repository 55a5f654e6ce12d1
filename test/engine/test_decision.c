/*
 * test_decision.c - decision rules, temperature scaling and EM prior
 * estimation (src/engine/decision.c) against data whose truth is known:
 * labels drawn from softmax(z / T0) must give back T0, and mixtures drawn
 * at known label priors must give back those priors.
 *
 *   test_decision
 */
#include <math.h>

#include "decision.h"
#include "testing.h"

static uint64_t rng_state = 12345;

/* Uniform in [0, 1) from splitmix64. */
static double
uniform(void)
{
	uint64_t	z = (rng_state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return ((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller). */
static double
normal(void)
{
	double		u = uniform(),
				v = uniform();

	return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

/* A label drawn from probs. */
static int
draw(const double *probs, int C)
{
	double		u = uniform(),
				acc = 0.0;

	for (int c = 0; c < C; c++)
	{
		acc += probs[c];
		if (u < acc)
			return c;
	}
	return C - 1;
}

static void
test_decide(void)
{
	float		z[3] = {1.0f, 3.0f, 2.0f};
	double		p[3],
				q[3];
	double		t = 0.3,
				w[2] = {1.0 / (1.0 - t), 1.0 / t};	/* ham, spam: "spam when p(spam) >= 0.3" */
	int			flips = 0;

	bt_softmax_scaled(z, 3, 1.0, p);
	bt_softmax_scaled(z, 3, 4.0, q);
	check(fabs(p[0] + p[1] + p[2] - 1.0) < 1e-12 && fabs(p[1] / p[2] - exp(1.0)) < 1e-12,
		  "softmax at T=1 is the plain softmax");
	check(fabs(q[1] / q[2] - exp(0.25)) < 1e-12 && q[1] < p[1], "T=4 flattens the scores");
	check(bt_decide(p, NULL, 3) == 1 && bt_decide(q, NULL, 3) == 1, "no weights: the argmax, whatever T");
	for (int k = 0; k <= 1000; k++)
	{
		double		ps = k / 1000.0,
					two[2] = {1.0 - ps, ps};

		if (fabs(ps - t) > 1e-9)	/* at t itself rounding decides */
			flips += bt_decide(two, w, 2) != (ps > t);
	}
	check(flips == 0, "a threshold of 0.3 on one of two labels decides it exactly when p >= 0.3");
}

static void
test_temperature(void)
{
	enum
	{
		N = 20000, C = 3
	};
	static float logits[N * C];
	static int	labels[N];
	double		T0 = 2.5,
				probs[C],
				fit;

	for (int i = 0; i < N; i++)
	{
		for (int c = 0; c < C; c++)
			logits[i * C + c] = (float) (3.0 * normal());
		bt_softmax_scaled(logits + i * C, C, T0, probs);
		labels[i] = draw(probs, C);
	}
	fit = bt_fit_temperature(logits, labels, N, C);
	check(fabs(fit / T0 - 1.0) < 0.05, "labels drawn at T0 = 2.5 give back T = %.3f (within 5%%)", fit);
	check(bt_cross_entropy(logits, labels, N, C, fit) <= bt_cross_entropy(logits, labels, N, C, fit * 1.01) &&
		  bt_cross_entropy(logits, labels, N, C, fit) <= bt_cross_entropy(logits, labels, N, C, fit * 0.99),
		  "the fitted T is a minimum of the cross-entropy");
	check(bt_calibration_error(logits, labels, N, C, fit, 15) < 0.02 &&
		  bt_calibration_error(logits, labels, N, C, 1.0, 15) > 0.1,
		  "calibration error %.4f at the fit, %.4f at T=1",
		  bt_calibration_error(logits, labels, N, C, fit, 15), bt_calibration_error(logits, labels, N, C, 1.0, 15));
	for (int i = 0; i < N; i++)
	{
		labels[i] = 0;
		for (int c = 1; c < C; c++)
			if (logits[i * C + c] > logits[i * C + labels[i]])
				labels[i] = c;
	}
	check(bt_fit_temperature(logits, labels, N, C) == 0.05, "always right: the sharpest temperature searched");
	check(bt_fit_temperature(logits, labels, 0, C) == 1.0, "no rows: T = 1");
}

/*
 * Scores x ~ N(+1, 1) for label 1 and N(-1, 1) for label 0, mixed at prior
 * pi; the model's posterior is the exact one under the training prior.
 */
static void
mixture(double *probs, int n, double pi, double train_pi)
{
	for (int i = 0; i < n; i++)
	{
		int			y = uniform() < pi;
		double		x = normal() + (y ? 1.0 : -1.0);
		double		f1 = train_pi * exp(-0.5 * (x - 1) * (x - 1)),
					f0 = (1 - train_pi) * exp(-0.5 * (x + 1) * (x + 1));

		probs[2 * i] = f0 / (f0 + f1);
		probs[2 * i + 1] = f1 / (f0 + f1);
	}
}

/* A stop callback that stops at its fourth call. */
static int
stop_after_three(void *arg)
{
	return ++*(int *) arg > 3;
}

static void
test_priors(void)
{
	enum
	{
		N = 4000
	};
	static double probs[N * 2];
	double		train[2] = {0.85, 0.15};
	double		truths[3] = {0.15, 0.5, 0.85};

	for (int k = 0; k < 3; k++)
	{
		double		priors[2],
					low[2],
					high[2],
					naive = 0.0;
		int			steps,
					rc;

		mixture(probs, N, truths[k], train[1]);
		steps = bt_estimate_priors(probs, N, 2, train, priors, 1000, 1e-8);
		for (int i = 0; i < N; i++)
			naive += probs[2 * i + 1] > 0.5;
		check(fabs(priors[1] - truths[k]) < 0.03 && fabs(priors[0] + priors[1] - 1.0) < 1e-9,
			  "prior %.2f estimated as %.4f in %d steps (argmax mix %.4f)", truths[k], priors[1], steps,
			  naive / N);
		rc = bt_prior_interval(probs, N, 2, train, priors, 200, 7, 0.95, low, high, NULL, NULL);
		check(rc == 0 && low[1] <= truths[k] && truths[k] <= high[1] && high[1] - low[1] < 0.08 &&
			  low[1] <= priors[1] && priors[1] <= high[1],
			  "its 95%% bootstrap interval [%.4f, %.4f] holds the truth and the estimate", low[1], high[1]);
	}

	/* three labels, trained at (0.6, 0.3, 0.1), served at (0.2, 0.2, 0.6) */
	{
		double		tr[3] = {0.6, 0.3, 0.1},
					truth[3] = {0.2, 0.2, 0.6},
					mean[3][2] = {{2, 0}, {-1, 1.7}, {-1, -1.7}},
					est[3];
		static double p3[N * 3];
		double		worst = 0.0;

		for (int i = 0; i < N; i++)
		{
			int			y = draw(truth, 3);
			double		x = normal() + mean[y][0],
						v = normal() + mean[y][1],
						sum = 0.0;

			for (int c = 0; c < 3; c++)
			{
				double		dx = x - mean[c][0],
							dv = v - mean[c][1];

				p3[i * 3 + c] = tr[c] * exp(-0.5 * (dx * dx + dv * dv));
				sum += p3[i * 3 + c];
			}
			for (int c = 0; c < 3; c++)
				p3[i * 3 + c] /= sum;
		}
		bt_estimate_priors(p3, N, 3, tr, est, 1000, 1e-8);
		for (int c = 0; c < 3; c++)
			worst = fmax(worst, fabs(est[c] - truth[c]));
		check(worst < 0.03, "three labels: (%.3f, %.3f, %.3f) for (0.2, 0.2, 0.6)", est[0], est[1], est[2]);
	}
	check(bt_estimate_priors(probs, 0, 2, train, truths, 10, 1e-8) == 0 && truths[1] == 0.15,
		  "no rows: the training priors");
	{
		double		low[2],
					high[2];
		int			asked = 0;
		int			rc = bt_prior_interval(probs, N, 2, train, NULL, 200, 7, 0.95, low, high, stop_after_three, &asked);

		check(rc == -2 && asked == 4, "a stop callback ends the bootstrap (asked %d times, stopped at the fourth)",
			  asked);
	}
}

int
main(void)
{
	test_decide();
	test_temperature();
	test_priors();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
