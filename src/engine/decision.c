/*
 * decision.c - calibration, decision rules and prior estimation (decision.h).
 */
#include "decision.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Temperatures searched by bt_fit_temperature: sharper than 1/20 or flatter than 20 is not a fit. */
#define MIN_TEMPERATURE 0.05
#define MAX_TEMPERATURE 20.0

void
bt_softmax_scaled(const float *logits, int C, double temperature, double *probs)
{
	double		max = -DBL_MAX,
				sum = 0.0;

	for (int c = 0; c < C; c++)
		max = fmax(max, (double) logits[c] / temperature);
	for (int c = 0; c < C; c++)
	{
		probs[c] = exp((double) logits[c] / temperature - max);
		sum += probs[c];
	}
	for (int c = 0; c < C; c++)
		probs[c] /= sum;
}

int
bt_decide(const double *probs, const double *weights, int C)
{
	int			best = 0;
	double		best_value = weights ? probs[0] * weights[0] : probs[0];

	for (int c = 1; c < C; c++)
	{
		double		v = weights ? probs[c] * weights[c] : probs[c];

		if (v > best_value)
		{
			best = c;
			best_value = v;
		}
	}
	return best;
}

double
bt_cross_entropy(const float *logits, const int *labels, int n, int C, double temperature)
{
	double		loss = 0.0;

	for (int i = 0; i < n; i++)
	{
		const float *z = logits + (size_t) i * C;
		double		max = -DBL_MAX,
					sum = 0.0;

		for (int c = 0; c < C; c++)
			max = fmax(max, z[c] / temperature);
		for (int c = 0; c < C; c++)
			sum += exp(z[c] / temperature - max);
		loss += log(sum) + max - z[labels[i]] / temperature;
	}
	return n ? loss / n : 0.0;
}

/*
 * d/d(beta) of the mean cross-entropy at inverse temperature beta: the mean of
 * E[z] under softmax(beta z) minus the true label's logit. It grows with beta
 * (the loss is convex in beta), so its root is found by bisection.
 */
static double
loss_slope(const float *logits, const int *labels, int n, int C, double beta)
{
	double		slope = 0.0;

	for (int i = 0; i < n; i++)
	{
		const float *z = logits + (size_t) i * C;
		double		max = -DBL_MAX,
					sum = 0.0,
					mean = 0.0;

		for (int c = 0; c < C; c++)
			max = fmax(max, beta * z[c]);
		for (int c = 0; c < C; c++)
		{
			double		e = exp(beta * z[c] - max);

			sum += e;
			mean += e * z[c];
		}
		slope += mean / sum - z[labels[i]];
	}
	return slope;
}

double
bt_fit_temperature(const float *logits, const int *labels, int n, int C)
{
	double		lo = log(1.0 / MAX_TEMPERATURE),
				hi = log(1.0 / MIN_TEMPERATURE);

	if (n == 0 || C < 2)
		return 1.0;
	if (loss_slope(logits, labels, n, C, exp(lo)) >= 0.0)
		return MAX_TEMPERATURE;
	if (loss_slope(logits, labels, n, C, exp(hi)) <= 0.0)
		return MIN_TEMPERATURE;
	for (int step = 0; step < 60; step++)
	{
		double		mid = 0.5 * (lo + hi);

		if (loss_slope(logits, labels, n, C, exp(mid)) < 0.0)
			lo = mid;
		else
			hi = mid;
	}
	return 1.0 / exp(0.5 * (lo + hi));
}

double
bt_calibration_error(const float *logits, const int *labels, int n, int C, double temperature, int n_bins)
{
	double	   *confidence = calloc(n_bins, sizeof(double));
	double	   *correct = calloc(n_bins, sizeof(double));
	int		   *count = calloc(n_bins, sizeof(int));
	double	   *probs = malloc(sizeof(double) * C);
	double		ece = 0.0;

	if (!confidence || !correct || !count || !probs)
		ece = NAN;
	else
	{
		for (int i = 0; i < n; i++)
		{
			int			best,
						bin;

			bt_softmax_scaled(logits + (size_t) i * C, C, temperature, probs);
			best = bt_decide(probs, NULL, C);
			bin = (int) (probs[best] * n_bins);
			bin = bin >= n_bins ? n_bins - 1 : bin;
			confidence[bin] += probs[best];
			correct[bin] += best == labels[i];
			count[bin]++;
		}
		for (int b = 0; b < n_bins; b++)
			ece += fabs(correct[b] - confidence[b]);
		ece = n ? ece / n : 0.0;
	}
	free(confidence);
	free(correct);
	free(count);
	free(probs);
	return ece;
}

/*
 * EM over rows with multiplicities (counts NULL: each row once), from the
 * priors start; see bt_estimate_priors. ratio holds each row's posterior over
 * its training prior, probs[i][c] / train[c], computed once by the caller.
 */
static int
em_priors(const double *ratio, const int *counts, int n, int C, const double *start, double *priors,
		  double *next, int max_iter, double tol)
{
	double		total = 0.0;
	int			it;

	for (int i = 0; i < n; i++)
		total += counts ? counts[i] : 1;
	memcpy(priors, start, sizeof(double) * C);
	for (it = 1; it <= max_iter; it++)
	{
		double		moved = 0.0;

		memset(next, 0, sizeof(double) * C);
		for (int i = 0; i < n; i++)
		{
			const double *r = ratio + (size_t) i * C;
			double		sum = 0.0,
						weight;

			if (counts && counts[i] == 0)
				continue;
			for (int c = 0; c < C; c++)
				sum += r[c] * priors[c];
			if (!(sum > 0.0))
				continue;		/* every label the row could have is at prior 0 */
			weight = (counts ? counts[i] : 1) / sum;
			for (int c = 0; c < C; c++)
				next[c] += r[c] * priors[c] * weight;
		}
		for (int c = 0; c < C; c++)
		{
			next[c] /= total;
			moved = fmax(moved, fabs(next[c] - priors[c]));
			priors[c] = next[c];
		}
		if (moved < tol)
			break;
	}
	return it > max_iter ? max_iter : it;
}

/* probs[i][c] / train[c] for every row, malloc'd (NULL when memory runs out). */
static double *
training_ratios(const double *probs, int n, int C, const double *train)
{
	double	   *ratio = malloc(sizeof(double) * ((size_t) n * C + 1));

	if (ratio)
		for (size_t i = 0; i < (size_t) n * C; i++)
			ratio[i] = probs[i] / train[i % C];
	return ratio;
}

int
bt_estimate_priors(const double *probs, int n, int C, const double *train, double *priors, int max_iter,
				   double tol)
{
	double	   *next = malloc(sizeof(double) * C);
	double	   *ratio = n > 0 ? training_ratios(probs, n, C, train) : NULL;
	int			steps = 0;

	memcpy(priors, train, sizeof(double) * C);
	if (next && ratio)
		steps = em_priors(ratio, NULL, n, C, train, priors, next, max_iter, tol);
	free(next);
	free(ratio);
	return steps;
}

/* splitmix64: the resampling generator. */
static uint64_t
next_random(uint64_t *state)
{
	uint64_t	z = (*state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static int
compare_doubles(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n), interpolating between neighbours. */
static double
quantile(const double *v, int n, double q)
{
	double		pos = q * (n - 1);
	int			i = (int) floor(pos);

	if (i >= n - 1)
		return v[n - 1];
	return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

int
bt_prior_interval(const double *probs, int n, int C, const double *train, const double *estimate, int n_boot,
				  uint64_t seed, double level, double *low, double *high, BtStopFn stop, void *stop_arg)
{
	int		   *counts = malloc(sizeof(int) * (n > 0 ? n : 1));
	double	   *ratio = training_ratios(probs, n > 0 ? n : 0, C, train);
	double	   *draws = malloc(sizeof(double) * (size_t) n_boot * C);
	double	   *column = malloc(sizeof(double) * n_boot);
	double	   *priors = malloc(sizeof(double) * C);
	double	   *next = malloc(sizeof(double) * C);
	uint64_t	state = seed;
	int			rc = 0;

	if (!counts || !ratio || !draws || !column || !priors || !next)
		rc = -1;
	else if (n == 0 || n_boot < 2)
	{
		memcpy(low, train, sizeof(double) * C);
		memcpy(high, train, sizeof(double) * C);
	}
	else
	{
		for (int b = 0; b < n_boot && rc == 0; b++)
		{
			if (stop && stop(stop_arg))
			{
				rc = -2;
				break;
			}
			memset(counts, 0, sizeof(int) * n);
			for (int i = 0; i < n; i++)
				counts[next_random(&state) % (uint64_t) n]++;
			/* a resample's percentiles need no more digits than this */
			em_priors(ratio, counts, n, C, estimate ? estimate : train, priors, next, 1000, 1e-5);
			for (int c = 0; c < C; c++)
				draws[(size_t) c * n_boot + b] = priors[c];
		}
		for (int c = 0; c < C && rc == 0; c++)
		{
			memcpy(column, draws + (size_t) c * n_boot, sizeof(double) * n_boot);
			qsort(column, n_boot, sizeof(double), compare_doubles);
			low[c] = quantile(column, n_boot, (1.0 - level) / 2);
			high[c] = quantile(column, n_boot, (1.0 + level) / 2);
		}
	}
	free(counts);
	free(ratio);
	free(draws);
	free(column);
	free(priors);
	free(next);
	return rc;
}
