/*
 * evaluate_sql.h - a model's metrics and calibration on rows of a dataset
 * (evaluate_sql.c), shared by training and evaluation.
 */
#ifndef PGBERT_EVALUATE_SQL_H
#define PGBERT_EVALUATE_SQL_H

#include "lib/stringinfo.h"

#include "dataset.h"
#include "decision_rule.h"
#include "train_run.h"

/*
 * Predict rows[0..n): accuracy and mean cross-entropy, and (out not NULL)
 * the metrics as JSON members. Labels are picked by decision (NULL: the
 * most probable); logits_out, when not NULL, receives the n x C logits.
 */
extern void evaluate_rows(TrainRun *run, const Dataset *ds, const int *rows, int n, int max_tokens,
						  const PgbertDecision *decision, StringInfo out, double *accuracy_out,
						  double *loss_out, float *logits_out);

/* Fit the temperature on rows and append a "calibration" member; the temperature. */
extern double evaluate_append_calibration(StringInfo out, const Dataset *ds, const int *rows, int n,
										  const float *logits);

#endif
