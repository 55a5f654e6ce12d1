-- One seed of the drift benchmark (quality_drift.sh runs it; psql variables: model, seed,
-- epochs, lr, max_length, truncation, train, out). Tables train, calibration, later,
-- later_p15, later_p50 and later_p85 come from spam_time_split.py.
--
-- The same trained version is scored three ways on every later set:
--   argmax      the version as train_classifier leaves it (its decision: the most probable label)
--   calibrated  after calibrate_model() on the newest labelled rows (changes no label alone)
--   adapted     after estimate_label_priors(..., install => true) on that set's texts, unlabelled
\set ON_ERROR_STOP on
SET pgbert.progress_interval = 60;

\if :train
SELECT round((r->'metrics'->>'train_seconds')::numeric, 1) AS train_seconds
FROM train_classifier('train', 'text', 'label', model => :'model', base_model => 'minilm', epochs => :epochs,
                      batch_size => 32, learning_rate => :lr, max_length => :max_length, validation_fraction => 0,
                      seed => :seed, truncation => :'truncation') r;
\endif
-- a version trained before 0.7.0 has no recorded training mix: the train table's
SELECT set_decision_rule(:'model', jsonb_build_object('training_priors',
           (SELECT jsonb_object_agg(label, n) FROM (SELECT label, count(*) AS n FROM train GROUP BY label) c)))
FROM pgbert.models WHERE name = :'model' AND deployed AND NOT coalesce(decision_rule ? 'training_priors', false);

CREATE TEMP TABLE drift_results (method text, set_name text, accuracy float8, spam_recall float8,
                                 spam_prior float8, estimated_spam_prior float8, low float8, high float8);

-- evaluate_classifier on every later set, as the version decides now
CREATE FUNCTION pg_temp.score_sets(method text, adapt boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    model text := current_setting('drift.model');
    s text;
    v jsonb;
    p jsonb;
    share float8;
BEGIN
    FOREACH s IN ARRAY ARRAY['later', 'later_p15', 'later_p50', 'later_p85'] LOOP
        p := NULL;
        IF adapt THEN
            p := estimate_label_priors(s::regclass, 'text', model, install => true);
        END IF;
        v := evaluate_classifier(s::regclass, 'text', 'label', model);
        EXECUTE format('SELECT avg((label = ''spam'')::int)::float8 FROM %I', s) INTO STRICT share;
        INSERT INTO drift_results
        VALUES (method, s, (v->>'accuracy')::float8, (v->'per_class'->'spam'->>'recall')::float8, share,
                (p->'priors'->>'spam')::float8, (p->'low'->>'spam')::float8, (p->'high'->>'spam')::float8);
    END LOOP;
    IF adapt THEN
        PERFORM set_decision_rule(model, '{"priors": null}');
    END IF;
END
$$;
SELECT set_config('drift.model', :'model', false);

SELECT set_decision_rule(:'model', '{"temperature": null, "priors": null, "thresholds": null}') IS NOT NULL AS reset;
SELECT pg_temp.score_sets('argmax', false);
SELECT round((c->'calibration'->>'temperature')::numeric, 3) AS temperature
FROM calibrate_model('calibration', 'text', 'label', :'model') c;
SELECT pg_temp.score_sets('adapted', true);

\pset format unaligned
\pset tuples_only on
\o :out
SELECT json_build_object('method', 'pgbert ' || method, 'seed', :seed, 'truncation', :'truncation', 'set', set_name,
                         'accuracy', accuracy, 'spam_recall', spam_recall, 'spam_prior', spam_prior,
                         'estimated_spam_prior', estimated_spam_prior, 'low', low, 'high', high,
                         'temperature', (SELECT (decision_rule->>'temperature')::float8 FROM pgbert.models
                                         WHERE name = :'model' AND deployed))
FROM drift_results ORDER BY method, set_name;
\o
