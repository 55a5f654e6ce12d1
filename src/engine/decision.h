/*
 * decision.h - from a classifier's logits to a label: calibration, class
 * priors and thresholds, and estimating the priors of unlabelled traffic.
 *
 * A version's decision rule (pgbert.model_versions.decision_rule) has up to
 * four parts: a temperature T (scores are softmax(logits / T), fitted on
 * labelled held-out rows), the label mix the model was trained on, the label
 * mix to decide under (priors), and per-label thresholds. The decided label
 * is the one with the largest
 *
 *     softmax(z / T)_c * (prior_c / training_prior_c) / threshold_c
 *
 * which for two labels and a threshold t on one of them is "p >= t". With
 * neither priors nor thresholds it is the plain argmax of the logits.
 * PostgreSQL-free.
 */
#ifndef PGBERT_DECISION_H
#define PGBERT_DECISION_H

#include <stdint.h>

/* softmax(logits / temperature) into probs (C of each), in double precision. */
extern void bt_softmax_scaled(const float *logits, int C, double temperature, double *probs);

/* Index of the largest probs[c] * weights[c] (weights NULL: all 1); the first on ties. */
extern int	bt_decide(const double *probs, const double *weights, int C);

/*
 * Temperature minimizing the mean cross-entropy of softmax(logits / T) on n
 * labelled rows (logits n x C, labels in [0, C)), as Guo et al. (2017) fit it
 * on a validation set. Searched in (1/1000, 1000); the result is clamped there.
 */
extern double bt_fit_temperature(const float *logits, const int *labels, int n, int C);

/* Mean cross-entropy of softmax(logits / T) on labelled rows. */
extern double bt_cross_entropy(const float *logits, const int *labels, int n, int C, double temperature);

/*
 * Expected calibration error: rows binned by their top probability into
 * n_bins equal-width bins; the mean over rows of |accuracy - confidence| of
 * their bin.
 */
extern double bt_calibration_error(const float *logits, const int *labels, int n, int C, double temperature,
								   int n_bins);

/*
 * Label priors of unlabelled rows by EM (Saerens, Latinne and Decaestecker,
 * 2002): probs (n x C) are the model's calibrated posteriors under the
 * training priors train (C, summing to 1). Each step re-weighs every row's
 * posterior by priors / train and takes the mean as the new priors, until no
 * prior moves by more than tol or after max_iter steps. Writes priors (C);
 * returns the steps taken.
 */
extern int	bt_estimate_priors(const double *probs, int n, int C, const double *train, double *priors,
							   int max_iter, double tol);

/* Asked between bootstrap resamples: nonzero stops the work (a cancelled query). */
typedef int (*BtStopFn) (void *arg);

/*
 * Percentile bootstrap interval of those priors: n_boot resamples of the rows
 * (with replacement, from a generator seeded with seed), EM on each, started
 * from estimate (the full rows' priors, so each takes a few steps); low and
 * high (C each) are the (1 - level) / 2 and (1 + level) / 2 quantiles.
 * stop (may be NULL) is asked before each resample. Returns 0, -1 when memory
 * runs out, -2 when stopped.
 */
extern int	bt_prior_interval(const double *probs, int n, int C, const double *train, const double *estimate,
							  int n_boot, uint64_t seed, double level, double *low, double *high,
							  BtStopFn stop, void *stop_arg);

#endif
