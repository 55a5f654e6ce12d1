/*
 * decision_rule.c - a model version's decision rule (decision_rule.h): parsed
 * from pgbert.model_versions.decision_rule, applied to logits with the
 * engine's arithmetic (decision.h).
 */
#include "postgres.h"

#include <math.h>

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "decision.h"
#include "decision_rule.h"

/* A number stored under key in an object container, or NAN when absent or not a number. */
static double
number_at(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvNumeric)
		return NAN;
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
}

/* The object stored under key, or NULL. */
static JsonbContainer *
object_at(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		return NULL;
	return v->val.binary.data;
}

/* Per-label numbers of an object (C of them, palloc'd), or NULL unless every label has a positive one. */
static double *
label_numbers(JsonbContainer *obj, char *const *labels, int C)
{
	double	   *out;

	if (obj == NULL)
		return NULL;
	out = palloc(sizeof(double) * C);
	for (int c = 0; c < C; c++)
	{
		out[c] = number_at(obj, labels[c]);
		if (!(out[c] >= 0.0))
		{
			pfree(out);
			return NULL;
		}
	}
	return out;
}

/* A stored rule ready to apply; unusable parts fall back to the plain argmax. */
void
pgbert_decision_parse(const char *rule_json, char *const *labels, int C, PgbertDecision *out)
{
	Jsonb	   *rule;
	JsonbContainer *thresholds;
	double	   *priors;
	double		t;

	out->temperature = 1.0;
	out->calibrated = false;
	out->training_priors = NULL;
	out->weights = NULL;
	if (rule_json == NULL || C < 2)
		return;
	rule = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(rule_json)));
	if (!JB_ROOT_IS_OBJECT(rule))
		return;
	t = number_at(&rule->root, "temperature");
	if (t > 0.0 && isfinite(t))
	{
		out->temperature = t;
		out->calibrated = true;
	}
	out->training_priors = label_numbers(object_at(&rule->root, "training_priors"), labels, C);
	priors = out->training_priors ? label_numbers(object_at(&rule->root, "priors"), labels, C) : NULL;
	thresholds = object_at(&rule->root, "thresholds");
	if (priors == NULL && thresholds == NULL)
		return;

	out->weights = palloc(sizeof(double) * C);
	for (int c = 0; c < C; c++)
		out->weights[c] = priors && out->training_priors[c] > 0.0 ? priors[c] / out->training_priors[c] : 1.0;
	if (thresholds)
	{
		double		named = 0.0,
					rest;
		int			unnamed = 0;

		for (int c = 0; c < C; c++)
		{
			double		th = number_at(thresholds, labels[c]);

			if (th > 0.0 && th < 1.0)
				named += th;
			else
				unnamed++;
		}
		/* labels without a threshold share what the named ones leave */
		rest = unnamed ? (1.0 - named) / unnamed : 0.0;
		for (int c = 0; c < C; c++)
		{
			double		th = number_at(thresholds, labels[c]);

			if (!(th > 0.0 && th < 1.0))
				th = rest > 0.0 ? rest : 1.0;
			out->weights[c] /= th;
		}
	}
}

/* Scale, weigh and pick: the label classify() returns for one row. */
int
pgbert_decide(const PgbertDecision *d, const float *logits, int C, double *probs)
{
	bt_softmax_scaled(logits, C, d->temperature, probs);
	return bt_decide(probs, d->weights, C);
}

/* The JSON object form of per-label numbers (scores, priors). */
void
pgbert_append_label_numbers(StringInfo out, char *const *labels, const double *values, int C)
{
	appendStringInfoChar(out, '{');
	for (int c = 0; c < C; c++)
	{
		if (c > 0)
			appendStringInfoString(out, ", ");
		escape_json(out, labels[c]);
		appendStringInfo(out, ": %s", float8out_internal(values[c]));
	}
	appendStringInfoChar(out, '}');
}
