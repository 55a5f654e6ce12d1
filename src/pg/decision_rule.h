/*
 * decision_rule.h - a model version's decision rule in the SQL layer
 * (decision_rule.c): read from pgbert.model_versions.decision_rule, applied
 * by classify(), classify_batch(), the batching node and
 * evaluate_classifier(), and written only through set_decision_rule()
 * (catalog_calls.h). The arithmetic is the engine's (decision.h).
 */
#ifndef PGBERT_DECISION_RULE_H
#define PGBERT_DECISION_RULE_H

#include "lib/stringinfo.h"

/* A version's rule, ready to apply; every pointer NULL and temperature 1 without one. */
typedef struct PgbertDecision
{
	double		temperature;	/* scores are softmax(logits / temperature) */
	bool		calibrated;		/* the rule has a temperature (fitted, or set by hand) */
	double	   *training_priors;	/* the training rows' label mix, or NULL when unknown */
	double	   *weights;		/* per label: prior / training prior / threshold, or NULL: argmax */
} PgbertDecision;

/*
 * Parse a stored rule (JSON text, or NULL) for labels[0..C), allocating in
 * the current memory context. The catalog checks every rule it stores
 * (pgbert.checked_decision_rule); parts that do not fit are ignored here.
 */
extern void pgbert_decision_parse(const char *rule_json, char *const *labels, int C, PgbertDecision *out);

/* The label a rule decides for one logits row; probs (C) receives the calibrated scores. */
extern int	pgbert_decide(const PgbertDecision *d, const float *logits, int C, double *probs);

/* Append {"label": value, ...} for labels[0..C), as rules and scores are written. */
extern void pgbert_append_label_numbers(StringInfo out, char *const *labels, const double *values, int C);

#endif
