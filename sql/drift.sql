-- Classifiers under drift: the decision rule a trained version records (training label
-- mix, temperature fitted on its validation rows), thresholds and priors applied alike by
-- classify(), classify_batch(), the batching node and evaluate_classifier(); calibration;
-- label priors of unlabelled rows (EM); export and import of the rule; validation on the
-- newest rows (split_by); long texts cut head + tail; and every error case.

-- progress notices depend on timing; the tests keep them off
SET pgbert.progress_interval = 0;

-- The generated sentiment task of train.sql, one positive review in four, with one label
-- in ten flipped: a model cannot be sure of every row, so its scores need calibrating.
CREATE TABLE all_moods (id int, body text, mood text);
INSERT INTO all_moods
SELECT i,
       concat_ws(' ', f[1 + (i * 7) % 6],
                 CASE WHEN i % 4 = 0 THEN p[1 + (i * 3) % 8] ELSE n[1 + (i * 3) % 8] END,
                 f[1 + (i * 5) % 6],
                 CASE WHEN i % 4 = 0 THEN p[1 + (i * 11) % 8] ELSE n[1 + (i * 11) % 8] END),
       CASE WHEN (i % 4 = 0) <> (i % 10 = 3) THEN 'positive' ELSE 'negative' END
FROM generate_series(1, 1200) i,
     (SELECT '{great,wonderful,excellent,loved,fantastic,superb,enjoyable,brilliant}'::text[] AS p,
             '{terrible,awful,boring,hated,dreadful,poor,disappointing,worst}'::text[] AS n,
             '{the,movie,was,really,plot,acting}'::text[] AS f) w;
CREATE TABLE moods AS SELECT * FROM all_moods WHERE id <= 320;
-- later traffic: the same kind of text, mostly positive (picked by label, so each label's
-- texts look as they did: a shift of the label mix alone)
CREATE TABLE later_moods AS
SELECT id, replace(body, 'movie', 'film') AS body, mood
FROM all_moods WHERE id > 320 AND (mood = 'positive' OR id % 9 = 0);
SELECT count(*) AS later_rows, round(avg((mood = 'positive')::int), 2) AS later_positive FROM later_moods;

SELECT (r->'metrics'->'validation'->>'accuracy')::float8 >= 0.8 AS learned,
       (r->'metrics'->>'train_rows')::int AS train_rows
FROM train_classifier('moods', 'body', 'mood', model => 'moods', epochs => 4, batch_size => 16,
                      learning_rate => 1e-3, max_length => 16, validation_fraction => 0.25,
                      warmup_ratio => 0.1) r;

-- the rule it recorded: the training rows' label mix (the stratified split keeps 75% of
-- each label's rows) and a temperature from the validation rows
SELECT jsonb_object_keys(decision_rule) AS key FROM pgbert.models WHERE name = 'moods' ORDER BY 1;
WITH kept AS (SELECT mood, count(*) - floor(0.25 * count(*) + 0.5) AS n FROM moods GROUP BY mood)
SELECT abs((decision_rule->'training_priors'->>'positive')::float8 -
           (SELECT n FROM kept WHERE mood = 'positive') / (SELECT sum(n) FROM kept)) < 1e-12 AS positive_share,
       abs((decision_rule->'training_priors'->>'negative')::float8 -
           (SELECT n FROM kept WHERE mood = 'negative') / (SELECT sum(n) FROM kept)) < 1e-12 AS negative_share,
       (decision_rule->>'temperature')::float8 > 0.05 AND (decision_rule->>'temperature')::float8 < 20
       AS temperature_inside,
       decision_rule->>'temperature' = metrics->'calibration'->>'temperature' AS same_temperature
FROM pgbert.models WHERE name = 'moods';
SELECT jsonb_object_keys(metrics->'calibration') AS key FROM pgbert.models WHERE name = 'moods' ORDER BY 1;
-- the fitted temperature is a minimum of the validation loss: no worse than T = 1
SELECT (metrics->'calibration'->>'loss_calibrated')::float8 <= (metrics->'calibration'->>'loss')::float8 AS no_worse,
       (metrics->'calibration'->>'rows')::int AS rows
FROM pgbert.models WHERE name = 'moods';

-- The model's own probabilities, and the calibrated ones: softmax(logits / T), which for
-- two labels is the logistic of the log-odds over T.
CREATE TEMP TABLE scored AS
SELECT id, body, mood, p,
       1 / (1 + exp(-ln(p / (1 - p)) / (SELECT (decision_rule->>'temperature')::float8
                                          FROM pgbert.models WHERE name = 'moods'))) AS p_cal
FROM (SELECT id, body, mood,
             least(greatest((classify_scores(body, 'moods')->>'positive')::float8, 1e-300), 1 - 1e-16) AS p
      FROM later_moods) s;

-- a temperature alone changes no label: without priors or thresholds it is the argmax
SELECT count(*) FILTER (WHERE classify(body, 'moods') <> CASE WHEN p > 0.5 THEN 'positive' ELSE 'negative' END)
       AS argmax_mismatches
FROM scored;

-- thresholds: "positive" exactly when its calibrated probability reaches 0.05 (a flag
-- raised on any doubt, as moderation may want)
SELECT set_decision_rule('moods', '{"thresholds": {"positive": 0.05}}') ? 'thresholds' AS has_thresholds;
SELECT count(*) FILTER (WHERE classify(body, 'moods') <> CASE WHEN p_cal >= 0.05 THEN 'positive' ELSE 'negative' END)
       AS per_call_mismatches,
       count(*) FILTER (WHERE abs(p_cal - 0.05) < 1e-6) AS too_close_to_call,
       count(*) FILTER (WHERE (p_cal >= 0.05) <> (p > 0.5)) > 0 AS threshold_matters
FROM scored;
-- the batching node and classify_batch decide the same; classify_batch's score stays the
-- model's own probability of the label it gives
SET pgbert.batching = on;
SELECT count(*) FILTER (WHERE label <> CASE WHEN p_cal >= 0.05 THEN 'positive' ELSE 'negative' END) AS batched_mismatches
FROM (SELECT classify(body, 'moods') AS label, p_cal FROM scored) b;
SELECT count(*) FILTER (WHERE b.label <> CASE WHEN s.p_cal >= 0.05 THEN 'positive' ELSE 'negative' END) AS batch_mismatches,
       count(*) FILTER (WHERE abs(b.score - CASE WHEN b.label = 'positive' THEN s.p ELSE 1 - s.p END) > 1e-6)
       AS score_mismatches
FROM classify_batch((SELECT array_agg(body ORDER BY id) FROM scored), 'moods') b
JOIN (SELECT row_number() OVER (ORDER BY id) AS ord, * FROM scored) s ON s.ord = b.ord;
-- evaluate_classifier scores the labels classify() gives
SELECT (evaluate_classifier('later_moods', 'body', 'mood', 'moods')->>'accuracy')::float8 =
       (SELECT avg((mood = CASE WHEN p_cal >= 0.05 THEN 'positive' ELSE 'negative' END)::int)::float8 FROM scored)
       AS evaluate_agrees;

-- priors: the calibrated scores re-weighed by prior / training prior, then the largest
SELECT set_decision_rule('moods', '{"thresholds": null, "priors": {"positive": 19, "negative": 1}}') -> 'priors'
       AS normalized_priors;
SELECT count(*) FILTER (WHERE classify(body, 'moods') <> decided) AS prior_mismatches,
       count(*) FILTER (WHERE decided <> CASE WHEN p > 0.5 THEN 'positive' ELSE 'negative' END) > 0 AS priors_matter
FROM (SELECT body, p, CASE WHEN p_cal * 0.95 / t.positive > (1 - p_cal) * 0.05 / t.negative
                           THEN 'positive' ELSE 'negative' END AS decided
      FROM scored,
           (SELECT (decision_rule->'training_priors'->>'positive')::float8 AS positive,
                   (decision_rule->'training_priors'->>'negative')::float8 AS negative
            FROM pgbert.models WHERE name = 'moods') t) d;
SELECT set_decision_rule('moods', '{"priors": null}') ? 'priors' AS priors_left;

-- The label mix of unlabelled rows: the training mix is a quarter positive, the later
-- rows over two thirds. EM on the calibrated scores finds it; the share of classify()'s
-- answers is beside it, and the 95% interval around the estimate.
SELECT abs((e->'priors'->>'positive')::float8 - (SELECT avg((mood = 'positive')::int)::float8 FROM later_moods)) < 0.1
       AS estimate_close,
       (e->'low'->>'positive')::float8 <= (e->'priors'->>'positive')::float8
       AND (e->'priors'->>'positive')::float8 <= (e->'high'->>'positive')::float8 AS estimate_in_interval,
       (e->'predicted_mix'->>'positive')::float8 > 0.5 AS mostly_positive_answers,
       e->'labels' AS labels, (e->>'rows')::int AS rows, e->>'installed' AS installed
FROM estimate_label_priors('later_moods', 'body', 'moods') e;
SELECT decision_rule ? 'priors' AS installed_without_asking FROM pgbert.models WHERE name = 'moods';
SELECT label, round(training_share::numeric, 4) AS training_share, estimated_share > training_share AS rose,
       low <= estimated_share AND estimated_share <= high AS in_interval
FROM label_drift('later_moods', 'body', 'moods');
-- install: the estimate becomes the version's priors
SELECT e->'priors' AS estimate, e->>'installed' AS installed
FROM estimate_label_priors('later_moods', 'body', 'moods', install => true) e \gset
SELECT abs((decision_rule->'priors'->>'positive')::float8 - (:'estimate'::jsonb->>'positive')::float8) < 1e-12
       AS priors_installed, :'installed' AS installed
FROM pgbert.models WHERE name = 'moods';
-- NULL texts are skipped and counted
CREATE TABLE later_with_nulls AS SELECT body FROM later_moods UNION ALL SELECT NULL;
SELECT (e->>'rows_skipped')::int AS skipped FROM estimate_label_priors('later_with_nulls', 'body', 'moods') e;

-- calibrate_model: a temperature fitted on labelled rows, stored when asked
SELECT (c->'calibration'->>'loss_calibrated')::float8 <= (c->'calibration'->>'loss')::float8 AS no_worse,
       (c->'calibration'->>'rows')::int AS rows, c->>'installed' AS installed,
       c->'calibration'->>'temperature' AS fitted
FROM calibrate_model('later_moods', 'body', 'mood', 'moods') c \gset
SELECT :'no_worse' AS no_worse, :'rows' AS rows, :'installed' AS installed,
       decision_rule->>'temperature' = :'fitted' AS stored
FROM pgbert.models WHERE name = 'moods';
SELECT c->>'installed' AS installed, c->'calibration'->>'temperature' AS fitted
FROM calibrate_model('moods', 'body', 'mood', 'moods', install => false) c \gset
SELECT :'installed' AS installed, decision_rule->>'temperature' <> :'fitted' AS left_alone
FROM pgbert.models WHERE name = 'moods';

-- export carries the rule in config.json; import takes it back into the column
SELECT convert_from(contents, 'UTF8')::jsonb -> 'pgbert_decision_rule' =
       (SELECT decision_rule FROM pgbert.models WHERE name = 'moods') AS exported
FROM export_model('moods') WHERE file = 'config.json';
SELECT import_model('moods_copy', lo_from_bytea(0, (SELECT contents FROM export_model('moods') WHERE file = 'model.safetensors')),
                    (SELECT convert_from(contents, 'UTF8')::jsonb FROM export_model('moods') WHERE file = 'config.json'),
                    (SELECT contents FROM export_model('moods') WHERE file = 'vocab.txt'),
                    (SELECT convert_from(contents, 'UTF8')::jsonb FROM export_model('moods') WHERE file = 'tokenizer_config.json'));
SELECT c.decision_rule = m.decision_rule AS same_rule, c.config ? 'pgbert_decision_rule' AS left_in_config
FROM pgbert.models c, pgbert.models m WHERE c.name = 'moods_copy' AND m.name = 'moods';
SELECT count(*) FILTER (WHERE classify(body, 'moods_copy') <> classify(body, 'moods')) AS copy_differs FROM later_moods;

-- clearing: NULL removes the whole rule, and classify() is the argmax again
SELECT set_decision_rule('moods_copy', NULL) AS cleared;
SELECT decision_rule IS NULL AS no_rule FROM pgbert.models WHERE name = 'moods_copy';
SELECT count(*) FILTER (WHERE classify(body, 'moods_copy') <> CASE WHEN p > 0.5 THEN 'positive' ELSE 'negative' END)
       AS argmax_mismatches
FROM scored;
-- a version without training priors has no mix to start EM from
SELECT estimate_label_priors('later_moods', 'body', 'moods_copy');
SELECT set_decision_rule('moods_copy', '{"priors": {"positive": 1, "negative": 1}}');

-- bad rules
SELECT set_decision_rule('moods', '{"temperature": 0}');
SELECT set_decision_rule('moods', '{"temperature": "warm"}');
SELECT set_decision_rule('moods', '{"thresholds": {"positive": 1.5}}');
SELECT set_decision_rule('moods', '{"thresholds": {"neutral": 0.5}}');
SELECT set_decision_rule('moods', '{"thresholds": {}}');
SELECT set_decision_rule('moods', '{"priors": {"positive": 1}}');
SELECT set_decision_rule('moods', '{"priors": {"positive": -1, "negative": 2}}');
SELECT set_decision_rule('moods', '{"priors": {"positive": 0, "negative": 0}}');
SELECT set_decision_rule('moods', '{"training_priors": {"positive": 0, "negative": 1}}');
SELECT set_decision_rule('moods', '{"bias": 1}');
SELECT set_decision_rule('moods', '[1]');
SELECT set_decision_rule('moods', '{}', version => 9);
SELECT set_decision_rule('no_such_model', '{}');
SELECT import_model('moods_bad', lo_from_bytea(0, (SELECT contents FROM export_model('moods') WHERE file = 'model.safetensors')),
                    (SELECT convert_from(contents, 'UTF8')::jsonb || '{"pgbert_decision_rule": {"thresholds": {"x": 0.5}}}'
                     FROM export_model('moods') WHERE file = 'config.json'),
                    (SELECT contents FROM export_model('moods') WHERE file = 'vocab.txt'));
-- the rule stayed as it was through every refusal
SELECT jsonb_object_keys(decision_rule) AS key FROM pgbert.models WHERE name = 'moods' ORDER BY 1;
SELECT estimate_label_priors(NULL, 'body', 'moods');
SELECT estimate_label_priors('later_moods', 'no_such_column', 'moods');
SELECT estimate_label_priors('pg_class', 'relname', 'no_such_model');
CREATE TABLE no_rows (body text);
SELECT estimate_label_priors('no_rows', 'body', 'moods');

-- another role may read but not change a model's rule
CREATE ROLE regress_drift_reader;
SELECT grant_model('moods', 'regress_drift_reader');
GRANT SELECT ON later_moods TO regress_drift_reader;
SET ROLE regress_drift_reader;
SELECT (e->>'rows')::int AS rows FROM estimate_label_priors('later_moods', 'body', 'moods') e;
SELECT estimate_label_priors('later_moods', 'body', 'moods', install => true);
SELECT set_decision_rule('moods', NULL);
SELECT calibrate_model('later_moods', 'body', 'mood', 'moods');
UPDATE pgbert.model_versions SET decision_rule = NULL WHERE name = 'moods';
RESET ROLE;
SELECT decision_rule IS NOT NULL AS kept FROM pgbert.models WHERE name = 'moods';

-- split_by: the newest rows by a column are the validation rows (the last 80 ids here)
SELECT r->'metrics'->'settings'->>'split_by' AS split_by,
       (r->'metrics'->>'validation_rows')::int AS validation_rows,
       (r->'metrics'->'validation'->'per_class'->'positive'->>'support')::int AS positive_support,
       (SELECT count(*) FROM (SELECT mood FROM moods ORDER BY id DESC LIMIT 80) n WHERE mood = 'positive')
       AS newest_positive
FROM train_classifier('moods', 'body', 'mood', model => 'moods_timed', epochs => 1, batch_size => 16,
                      learning_rate => 1e-3, max_length => 16, validation_fraction => 0.25,
                      split_by => 'id') r;
-- rows whose split_by is NULL are skipped
UPDATE moods SET id = NULL WHERE id = 4;
SELECT (r->'metrics'->>'rows_skipped')::int AS skipped, (r->'metrics'->>'rows_used')::int AS used
FROM train_classifier('moods', 'body', 'mood', model => 'moods_timed', epochs => 1, batch_size => 16,
                      learning_rate => 1e-3, max_length => 16, validation_fraction => 0.25,
                      split_by => 'id') r;
UPDATE moods SET id = 4 WHERE id IS NULL;
SELECT train_classifier('moods', 'body', 'mood', split_by => 'no_such_column');
SELECT train_classifier('moods', 'body', 'mood', split_by => 'id', validation_fraction => 0);
CREATE TABLE late_label AS SELECT id, body, CASE WHEN id > 300 THEN 'new' ELSE mood END AS mood FROM moods;
SELECT train_classifier('late_label', 'body', 'mood', split_by => 'id', validation_fraction => 0.1);

-- truncation => 'head_tail': the word that decides sits at the end of a long text. Cut
-- to 8 tokens from the start, a model never sees it; head + tail (1 + 5 word pieces
-- between [CLS] and [SEP]) does.
CREATE TABLE long_moods AS
SELECT id, 'the movie was ' || repeat('really ', 20) || split_part(body, ' ', 2) AS body, mood FROM moods;
SELECT (r->'metrics'->'validation'->>'accuracy')::float8 >= 0.9 AS learned,
       r->'metrics'->'settings'->>'truncation' AS truncation
FROM train_classifier('long_moods', 'body', 'mood', model => 'long_tail', epochs => 4, batch_size => 16,
                      learning_rate => 1e-3, max_length => 8, validation_fraction => 0.25,
                      truncation => 'head_tail') r;
SELECT (r->'metrics'->'validation'->>'accuracy')::float8 < 0.9 AS head_only_cannot,
       r->'metrics'->'settings'->>'truncation' AS truncation
FROM train_classifier('long_moods', 'body', 'mood', model => 'long_head', epochs => 4, batch_size => 16,
                      learning_rate => 1e-3, max_length => 8, validation_fraction => 0.25) r;
SELECT name, config->>'pgbert_truncation' AS truncation FROM pgbert.models
WHERE name IN ('long_tail', 'long_head') ORDER BY name;
-- classify() cuts as the version was trained
SELECT (evaluate_classifier('long_moods', 'body', 'mood', 'long_tail')->>'accuracy')::float8 >= 0.9 AS tail_serves,
       (SELECT count(*) FILTER (WHERE classify(body, 'long_tail') = mood)::float8 / count(*) FROM long_moods) >= 0.9
       AS classify_agrees;
-- fine-tuning keeps the base model's cut unless told otherwise
SELECT r->'metrics'->'settings'->>'truncation' AS inherited
FROM train_classifier('long_moods', 'body', 'mood', model => 'long_tail', base_model => 'long_tail', epochs => 1,
                      max_length => 8, freeze_encoder => true) r;
SELECT r->'metrics'->'settings'->>'truncation' AS overridden
FROM train_classifier('long_moods', 'body', 'mood', model => 'long_tail2', base_model => 'long_tail', epochs => 1,
                      max_length => 8, freeze_encoder => true, truncation => 'head') r;
SELECT config ? 'pgbert_truncation' AS overridden_config FROM pgbert.models WHERE name = 'long_tail2';
SELECT train_classifier('long_moods', 'body', 'mood', truncation => 'middle');

-- class_weights => '"balanced"' trains as if the classes were even: that is the mix the
-- rule records
SELECT (r->>'version')::int AS version
FROM train_classifier('moods', 'body', 'mood', model => 'moods_balanced', epochs => 1, batch_size => 16,
                      learning_rate => 1e-3, max_length => 16, class_weights => '"balanced"') r;
SELECT round((decision_rule->'training_priors'->>'positive')::numeric, 6) AS positive,
       round((decision_rule->'training_priors'->>'negative')::numeric, 6) AS negative
FROM pgbert.models WHERE name = 'moods_balanced';

-- a model trained without validation rows records the mix but no temperature
SELECT (r->>'version')::int AS version
FROM train_classifier('moods', 'body', 'mood', model => 'moods_noval', epochs => 1, batch_size => 16,
                      learning_rate => 1e-3, max_length => 16, validation_fraction => 0) r;
SELECT jsonb_object_keys(decision_rule) AS key FROM pgbert.models WHERE name = 'moods_noval' ORDER BY 1;
-- its prior estimate says the scores were not calibrated
SELECT (e->>'rows')::int AS rows FROM estimate_label_priors('later_moods', 'body', 'moods_noval') e;

RESET pgbert.batching;
SELECT drop_model(name) FROM (SELECT DISTINCT name FROM pgbert.models
                              WHERE name IN ('moods', 'moods_copy', 'moods_timed', 'long_tail', 'long_head',
                                             'long_tail2', 'moods_balanced', 'moods_noval')) m ORDER BY name;
DROP TABLE all_moods, moods, later_moods, later_with_nulls, no_rows, late_label, long_moods;
DROP ROLE regress_drift_reader;
