-- train_classifier and evaluate_classifier: learning a generated task from scratch,
-- determinism, versions, metrics, fine-tuning a stored model with a frozen encoder,
-- cancellation, and every error case.
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixture :abs_srcdir '/test/fixtures/models/sql_cls'
\set weights_file :fixture '/model.safetensors'
\set cfg `cat :'fixture'/config.json`
\set vocab `cat :'fixture'/vocab.txt`
\set tok `cat :'fixture'/tokenizer_config.json`

-- progress notices depend on timing; the tests keep them off
SET pgbert.progress_interval = 0;

-- A task a model must learn from the words: reviews made of positive or negative words
-- (with neutral filler), labelled by which kind they use. Deterministic rows.
CREATE TABLE reviews (id int, body text, sentiment text);
INSERT INTO reviews
SELECT i,
       concat_ws(' ', f[1 + (i * 7) % 6],
                 CASE WHEN i % 2 = 0 THEN p[1 + (i * 3) % 8] ELSE n[1 + (i * 3) % 8] END,
                 f[1 + (i * 5) % 6],
                 CASE WHEN i % 2 = 0 THEN p[1 + (i * 11) % 8] ELSE n[1 + (i * 11) % 8] END),
       CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END
FROM generate_series(1, 240) i,
     (SELECT '{great,wonderful,excellent,loved,fantastic,superb,enjoyable,brilliant}'::text[] AS p,
             '{terrible,awful,boring,hated,dreadful,poor,disappointing,worst}'::text[] AS n,
             '{the,movie,was,really,plot,acting}'::text[] AS f) w;
INSERT INTO reviews VALUES (241, NULL, 'positive'), (242, 'no label', NULL);
CREATE TABLE reviews_test AS
SELECT id + 1000 AS id,
       replace(replace(body, 'movie', 'film'), 'plot', 'story') AS body, sentiment
FROM reviews WHERE body IS NOT NULL AND sentiment IS NOT NULL;

-- from scratch: a small BERT over the bundled vocabulary learns it
SELECT r->>'model' AS model, r->>'version' AS version,
       (r->'metrics'->'validation'->>'accuracy')::float8 >= 0.9 AS learned,
       (r->'metrics'->>'rows_used')::int AS rows_used,
       (r->'metrics'->>'rows_skipped')::int AS rows_skipped,
       (r->'metrics'->>'train_rows')::int AS train_rows,
       (r->'metrics'->>'validation_rows')::int AS validation_rows,
       (r->'metrics'->>'steps')::int AS steps
FROM train_classifier('reviews', 'body', 'sentiment', model => 'sentiment',
                      epochs => 4, batch_size => 16, learning_rate => 1e-3, max_length => 16,
                      validation_fraction => 0.25, warmup_ratio => 0.1) r;
-- the metrics are stored with the version, in this shape
SELECT jsonb_object_keys(metrics) AS key FROM pgbert.models WHERE name = 'sentiment' ORDER BY 1;
SELECT jsonb_object_keys(metrics->'validation') AS key FROM pgbert.models WHERE name = 'sentiment' ORDER BY 1;
SELECT labels, metrics->'validation'->'labels' AS metric_labels,
       jsonb_array_length(metrics->'validation'->'confusion_matrix') AS matrix_rows
FROM pgbert.models WHERE name = 'sentiment';
-- and it classifies new text
SELECT (evaluate_classifier('reviews_test', 'body', 'sentiment', 'sentiment')->>'accuracy')::float8 >= 0.9
       AS generalizes;
SELECT classify('the story was wonderful and brilliant', 'sentiment') AS pos,
       classify('really awful acting, the worst', 'sentiment') AS neg;

-- the same seed, rows and settings give the same weights, byte for byte, as a new version
SELECT (r->>'version')::int AS version
FROM train_classifier('reviews', 'body', 'sentiment', model => 'sentiment',
                      epochs => 4, batch_size => 16, learning_rate => 1e-3, max_length => 16,
                      validation_fraction => 0.25, warmup_ratio => 0.1) r;
SELECT count(DISTINCT md5(lo_get(weights))) AS distinct_weights, count(*) AS versions
FROM pgbert.models WHERE name = 'sentiment';

-- pgbert.cpu_precision = bf16 trains with bf16 products (weights, gradients and AdamW state
-- stay float32): where the CPU has AVX512-BF16 the same run learns the task as well, its
-- metrics say bf16 and its weights are not float32's; elsewhere it is refused with 0A000
-- naming the CPU's path. Either way the block says nothing.
SET pgbert.cpu_precision = bf16;
SET client_min_messages = warning;
DO $$
DECLARE
  r jsonb;
BEGIN
  r := train_classifier('reviews', 'body', 'sentiment', model => 'sentiment_bf16',
                        epochs => 4, batch_size => 16, learning_rate => 1e-3, max_length => 16,
                        validation_fraction => 0.25, warmup_ratio => 0.1);
  IF NOT ((r->'metrics'->'validation'->>'accuracy')::float8 >= 0.9
          AND r->'metrics'->'settings'->>'precision' = 'bf16'
          AND (SELECT md5(lo_get(weights)) FROM pgbert.models WHERE name = 'sentiment_bf16')
              <> (SELECT md5(lo_get(weights)) FROM pgbert.models WHERE name = 'sentiment' AND version = 1)) THEN
    RAISE EXCEPTION 'bf16 training: %', r->'metrics';
  END IF;
  PERFORM drop_model('sentiment_bf16');
EXCEPTION WHEN feature_not_supported THEN
  IF SQLERRM <> 'pgbert.cpu_precision = bf16 is not available on this CPU' THEN
    RAISE;
  END IF;
END
$$;
RESET client_min_messages;
RESET pgbert.cpu_precision;
-- versions stay for rollback
SELECT deploy_model('sentiment', 1);
SELECT version, deployed FROM pgbert.models WHERE name = 'sentiment' ORDER BY version;
SELECT deploy_model('sentiment');

-- class weights: "balanced" on balanced classes is weight 1, so the same model as unweighted;
-- other weights change it
SELECT md5(lo_get(weights)) AS v1_md5 FROM pgbert.models WHERE name = 'sentiment' AND version = 1 \gset
SELECT r->'version' AS version
FROM train_classifier('reviews', 'body', 'sentiment', model => 'balanced', class_weights => '"balanced"',
                      epochs => 4, batch_size => 16, learning_rate => 1e-3, max_length => 16,
                      validation_fraction => 0.25, warmup_ratio => 0.1) r;
SELECT md5(lo_get(weights)) = :'v1_md5' AS same_as_unweighted FROM pgbert.models WHERE name = 'balanced';
SELECT r->'version' AS version
FROM train_classifier('reviews', 'body', 'sentiment', model => 'weighted', class_weights => '{"positive": 3}',
                      epochs => 4, batch_size => 16, learning_rate => 1e-3, max_length => 16,
                      validation_fraction => 0.25, warmup_ratio => 0.1) r;
SELECT md5(lo_get(weights)) <> :'v1_md5' AS differs FROM pgbert.models WHERE name = 'weighted';
\set VERBOSITY terse
SELECT train_classifier('reviews', 'body', 'sentiment', class_weights => '{"neutral": 2}');
SELECT train_classifier('reviews', 'body', 'sentiment', class_weights => '"even"');
SELECT train_classifier('reviews', 'body', 'sentiment', class_weights => '{"positive": -1}');
\set VERBOSITY default

-- early stopping: with a learning rate of 0 the validation loss never improves, so training
-- stops after `patience` epochs and keeps the first epoch's weights
SELECT r->'metrics'->'epochs' AS epochs_run, r->'metrics'->'best_epoch' AS best_epoch,
       r->'metrics'->'stopped_early' AS stopped_early
FROM train_classifier('reviews', 'body', 'sentiment', model => 'stopping', epochs => 10, learning_rate => 0,
                      early_stopping_patience => 2, max_length => 16) r;
SELECT count(*) FILTER (WHERE validation_loss IS NOT NULL) AS epochs_logged
FROM pgbert.training_log WHERE name = 'stopping';
\set VERBOSITY terse
SELECT train_classifier('reviews', 'body', 'sentiment', early_stopping_patience => 2, validation_fraction => 0);
\set VERBOSITY default

-- keep_better: a version that validates worse than the deployed one is stored, not deployed
SET client_min_messages = warning;
SELECT r->'deployed' AS deployed, r->'version' AS version
FROM train_classifier('reviews', 'body', 'sentiment', model => 'sentiment', learning_rate => 0, epochs => 1,
                      max_length => 16, validation_fraction => 0.25, keep_better => true) r;
RESET client_min_messages;
SELECT version, deployed, pinned FROM pgbert.models WHERE name = 'sentiment' ORDER BY version;
SELECT deploy_model('sentiment');

-- fine-tuning a stored model with a frozen encoder: its sentence embeddings do not move
\lo_import :weights_file
SELECT import_model('base', :LASTOID, :'cfg', :'vocab', :'tok') AS version;
SELECT (r->>'version')::int AS version, r->'metrics'->'validation'->'labels' AS labels
FROM train_classifier('reviews', 'body', 'sentiment', model => 'tuned', base_model => 'base',
                      epochs => 1, freeze_encoder => true) r;
SELECT embed('the plot was great', 'tuned') = embed('the plot was great', 'base') AS encoder_frozen,
       classify('the plot was great', 'tuned') IN ('negative', 'positive') AS new_labels;
-- without freezing, the encoder changes
SELECT (r->>'version')::int AS version
FROM train_classifier('reviews', 'body', 'sentiment', model => 'tuned', base_model => 'base',
                      epochs => 1, learning_rate => 1e-3) r;
SELECT embed('the plot was great', 'tuned') <> embed('the plot was great', 'base') AS encoder_trained;

-- labels of other types keep their own order (false < true, numeric order)
CREATE TABLE flags AS SELECT body, sentiment = 'positive' AS good, (id % 3) * 5 AS bucket
FROM reviews WHERE body IS NOT NULL AND sentiment IS NOT NULL;
SELECT r->'metrics'->'validation'->'labels' AS labels
FROM train_classifier('flags', 'body', 'good', model => 'flags', epochs => 1, max_length => 8) r;
SELECT r->'metrics'->'validation'->'labels' AS labels
FROM train_classifier('flags', 'body', 'bucket', model => 'buckets', epochs => 1, max_length => 8) r;

-- errors
\set VERBOSITY terse
CREATE TABLE empty_t (body text, label text);
SELECT train_classifier('empty_t', 'body', 'label');
INSERT INTO empty_t VALUES ('one', 'a'), ('two', 'a');
SELECT train_classifier('empty_t', 'body', 'label');
SELECT train_classifier('reviews', 'nosuch', 'sentiment');
SELECT train_classifier('reviews', 'body', 'nosuch');
SELECT train_classifier('reviews', 'id', 'sentiment');
SELECT train_classifier('nosuch_table', 'body', 'sentiment');
SELECT train_classifier('reviews', 'body', 'sentiment', base_model => 'nosuch');
SELECT train_classifier('reviews', 'body', 'sentiment', model => NULL);
SELECT train_classifier('reviews', 'body', 'sentiment', epochs => 0);
SELECT train_classifier('reviews', 'body', 'sentiment', validation_fraction => 1.5);
SELECT train_classifier('reviews', 'body', 'sentiment', max_length => 1);
SELECT train_classifier('reviews', 'body', 'sentiment', model => 'bad name');
SELECT evaluate_classifier('reviews', 'body', 'sentiment', 'nosuch');
SELECT evaluate_classifier('flags', 'body', 'bucket', 'sentiment');
\set VERBOSITY default

-- cancellation leaves nothing behind: no new version, no new large object
SELECT count(*) AS versions_before FROM pgbert.model_versions \gset
SELECT count(*) AS objects_before FROM pg_largeobject_metadata \gset
SET statement_timeout = '300ms';
SELECT train_classifier('reviews', 'body', 'sentiment', model => 'cancelled', epochs => 50);
RESET statement_timeout;
SELECT count(*) = :versions_before AS no_new_version FROM pgbert.model_versions;
SELECT count(*) = :objects_before AS no_new_object FROM pg_largeobject_metadata;

-- start_training: the same call in a background worker gives the same model, byte for byte
CREATE FUNCTION pg_temp.wait_job(job bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text;
BEGIN
    FOR i IN 1..1200 LOOP
        SELECT status INTO st FROM pgbert.training_jobs WHERE id = job;
        EXIT WHEN st NOT IN ('queued', 'running');
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN st;
END $$;
CREATE FUNCTION pg_temp.wait_running(job bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text;
BEGIN
    FOR i IN 1..600 LOOP
        SELECT status INTO st FROM pgbert.training_jobs WHERE id = job;
        EXIT WHEN st <> 'queued';
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN st;
END $$;
SELECT start_training('reviews', 'body', 'sentiment', model => 'in_background',
                      epochs => 4, batch_size => 16, learning_rate => 1e-3, max_length => 16,
                      validation_fraction => 0.25, warmup_ratio => 0.1) AS job \gset
SELECT pg_temp.wait_job(:job) AS status;
SELECT result->>'model' AS model, result->>'version' AS version, error, pid IS NOT NULL AS had_worker,
       finished_at >= started_at AS timed
FROM pgbert.training_jobs WHERE id = :job;
SELECT (SELECT md5(lo_get(weights)) FROM pgbert.models WHERE name = 'in_background')
     = (SELECT md5(lo_get(weights)) FROM pgbert.models WHERE name = 'sentiment' AND version = 1)
       AS same_as_synchronous;
-- a failing job records its error and leaves nothing
SELECT start_training('reviews', 'body', 'sentiment', model => 'failing', base_model => 'nosuch') AS job \gset
SELECT pg_temp.wait_job(:job) AS status;
SELECT error FROM pgbert.training_jobs WHERE id = :job;
-- cancelling a running job
SELECT start_training('reviews', 'body', 'sentiment', model => 'cancelled_bg', epochs => 1000) AS job \gset
SELECT pg_temp.wait_running(:job) AS status;
SELECT cancel_training(:job);
SELECT pg_temp.wait_job(:job) AS status;
SELECT error FROM pgbert.training_jobs WHERE id = :job;
SELECT count(*) AS versions FROM pgbert.models WHERE name = 'cancelled_bg';
SELECT cancel_training(:job) AS cancel_again;
SELECT cancel_training(-1);
-- a job started in a transaction that rolls back never runs
BEGIN;
SELECT start_training('reviews', 'body', 'sentiment', model => 'rolled_back') IS NOT NULL AS started;
ROLLBACK;
SELECT count(*) AS rolled_back_jobs FROM pgbert.training_jobs WHERE model = 'rolled_back';
-- its worker notices the rollback and leaves
SELECT pg_sleep(0.5);
SELECT count(*) AS waiting_workers FROM pg_stat_activity WHERE backend_type = 'pgbert training';

-- privileges: the caller must be able to read the table
CREATE ROLE regress_trainer;
SET ROLE regress_trainer;
\set VERBOSITY terse
SELECT train_classifier('reviews', 'body', 'sentiment', model => 'mine');
RESET ROLE;
GRANT SELECT ON reviews TO regress_trainer;
SET ROLE regress_trainer;
-- nor train a new version of someone else's model (refused before training)
SELECT train_classifier('reviews', 'body', 'sentiment', model => 'sentiment');
\set VERBOSITY default
RESET ROLE;
REVOKE SELECT ON reviews FROM regress_trainer;
-- row-level security applies: this role sees only positive reviews, so only one label
CREATE TABLE secured AS SELECT body, sentiment FROM reviews WHERE body IS NOT NULL AND sentiment IS NOT NULL;
ALTER TABLE secured ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_positive ON secured FOR SELECT TO regress_trainer USING (sentiment = 'positive');
GRANT SELECT ON secured TO regress_trainer;
SET ROLE regress_trainer;
\set VERBOSITY terse
SELECT train_classifier('secured', 'body', 'sentiment', model => 'mine');
\set VERBOSITY default
RESET ROLE;
DROP TABLE secured;
DROP ROLE regress_trainer;

-- training ends by storing a model version: a read-only transaction (as on a hot standby)
-- refuses it before any work
BEGIN READ ONLY;
SELECT train_classifier('reviews', 'body', 'sentiment', model => 'read_only');
ROLLBACK;

SELECT drop_model(name) FROM (SELECT DISTINCT name FROM pgbert.models) m ORDER BY name;
DROP TABLE reviews, reviews_test, flags, empty_t;
