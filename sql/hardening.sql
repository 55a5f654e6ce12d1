-- Hardening: checkpoints the engine would compute wrong are refused at import,
-- errors quote a bounded prefix of a user-given model name, and a label column whose
-- equal values print differently is refused with both spellings named.
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixture :abs_srcdir '/test/fixtures/models/sql_cls'
\set weights_file :fixture '/model.safetensors'
\set cfg `cat :'fixture'/config.json`
\set vocab `cat :'fixture'/vocab.txt`
\set tok `cat :'fixture'/tokenizer_config.json`

SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgbert;
RESET client_min_messages;
SET pgbert.progress_interval = 0;

-- Errors as "SQLSTATE: message" with large-object OIDs (which vary) masked.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '\m\d{4,}\M', 'N', 'g');
END $$;
-- The same with the error's detail and hint.
CREATE FUNCTION pg_temp.err_full(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d text;
    h text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || SQLERRM || E'\nDETAIL: ' || d || E'\nHINT: ' || h;
END $$;

\lo_import :weights_file
\set good :LASTOID
SELECT lo_from_bytea(0, lo_get(:good)) AS copy1 \gset

-- 1. relative position embeddings and other model types: refused, nothing recorded
SELECT pg_temp.err(format('SELECT import_model(%L, %s, %L, %L)', 'rel', :copy1,
       jsonb_set(:'cfg'::jsonb, '{position_embedding_type}', '"relative_key"'), :'vocab'));
SELECT pg_temp.err(format('SELECT import_model(%L, %s, %L, %L)', 'rel', :copy1,
       jsonb_set(:'cfg'::jsonb, '{position_embedding_type}', '"relative_key_query"'), :'vocab'));
SELECT pg_temp.err(format('SELECT import_model(%L, %s, %L, %L)', 'rob', :copy1,
       jsonb_set(:'cfg'::jsonb, '{model_type}', '"roberta"'), :'vocab'));
SELECT pg_temp.err(format('SELECT import_model(%L, %s, %L, %L)', 'rob', :copy1,
       jsonb_set(:'cfg'::jsonb, '{model_type}', '"distilbert"'), :'vocab'));
SELECT count(*) AS versions FROM pgbert.model_versions;
-- "bert" with absolute positions, or neither key (older BERT checkpoints): accepted
SELECT :'cfg'::jsonb ->> 'model_type' AS fixture_model_type;
SELECT import_model('hard', :copy1,
       jsonb_set(:'cfg'::jsonb, '{position_embedding_type}', '"absolute"'), :'vocab', :'tok');
SELECT lo_from_bytea(0, lo_get(:good)) AS copy2 \gset
SELECT import_model('hard', :copy2, :'cfg'::jsonb - 'model_type', :'vocab', :'tok');

-- 2. a 100 kB model name is quoted as 64 characters and "..."
SELECT pg_temp.err(format('SELECT classify(%L, %L)', 'x', repeat('a', 100000)));
SELECT pg_temp.err(format('SELECT classify_scores(%L, %L)', 'x', repeat('b', 100000)));
SELECT pg_temp.err(format('SELECT bert_tokenize(%L, %L)', 'x', repeat('c', 100000)));
SELECT pg_temp.err(format('SELECT bert_token_ids(%L, %L)', 'x', repeat('d', 100000)));
SELECT pg_temp.err(format('SELECT embed(%L, %L)', 'x', repeat('e', 100000)));
-- multibyte characters are cut whole; 64 characters or fewer are quoted whole
SELECT pg_temp.err(format('SELECT classify(%L, %L)', 'x', repeat('é', 50000)));
SELECT pg_temp.err(format('SELECT classify(%L, %L)', 'x', repeat('f', 64)));
-- the setting names a model too
SET pgbert.default_model = 'ggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg';
SELECT pg_temp.err('SELECT classify(''x'')');
RESET pgbert.default_model;

-- 3. numeric labels 1.0 and 1.00 are equal but spelled differently: refused, naming both
CREATE TABLE num_labelled (body text, label numeric);
INSERT INTO num_labelled
SELECT 'text number ' || i, CASE WHEN i % 3 = 0 THEN 2 WHEN i % 3 = 1 THEN 1.0 ELSE 1.00 END
FROM generate_series(1, 30) i;
SELECT pg_temp.err_full($$SELECT train_classifier('num_labelled', 'body', 'label', model => 'numlab',
                                              base_model => 'hard', epochs => 1)$$);
-- the other way round: different values that print the same (float8 with few digits)
CREATE TABLE float_labelled AS
SELECT body, CASE WHEN label = 2 THEN 1.2::float8 ELSE 1.1::float8 END AS label FROM num_labelled;
SET extra_float_digits = -14;
SELECT pg_temp.err($$SELECT train_classifier('float_labelled', 'body', 'label', model => 'numlab',
                                              base_model => 'hard', epochs => 1)$$);
RESET extra_float_digits;
-- train_classifier quotes long model names too
SELECT pg_temp.err(format($$SELECT train_classifier('num_labelled', 'body', 'label', model => %L)$$,
                          repeat('h', 100000)));
SELECT pg_temp.err(format($$SELECT train_classifier('num_labelled', 'body', 'label', base_model => %L)$$,
                          repeat('i', 100000)));
-- one spelling per label (the hint's trim_scale) trains
CREATE VIEW num_labelled_v AS SELECT body, trim_scale(label) AS label FROM num_labelled;
SELECT r->>'model' AS model, r->>'version' AS version
FROM train_classifier('num_labelled_v', 'body', 'label', model => 'numlab', base_model => 'hard',
                      epochs => 1, validation_fraction => 0) r;
SELECT labels FROM pgbert.models WHERE name = 'numlab';
-- class weights naming a 100 kB label are quoted too
SELECT pg_temp.err(format($$SELECT train_classifier('num_labelled_v', 'body', 'label', model => 'numlab',
                          base_model => 'hard', epochs => 1, class_weights => %L)$$,
                          jsonb_build_object(repeat('j', 100000), 1)));

SELECT drop_model('numlab');
SELECT drop_model('hard');
SELECT lo_unlink(:good);
