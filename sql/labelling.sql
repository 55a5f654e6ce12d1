-- label_rows(), cluster_models() and distribute_model() on a server without Citus (the
-- Citus paths: test/client/check_citus.py). Labels are checked against transformers'
-- labels for the tiny fixture classifier (test/fixtures/sql_cls_probs.json), the weights'
-- digest against sha256sum of the fixture file.
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixture :abs_srcdir '/test/fixtures/models/sql_cls'
\set weights_file :fixture '/model.safetensors'
\set probs_file :abs_srcdir '/test/fixtures/sql_cls_probs.json'
\set cfg `cat :'fixture'/config.json`
\set vocab `cat :'fixture'/vocab.txt`
\set tok `cat :'fixture'/tokenizer_config.json`
\set weights_sha256 `sha256sum < :'weights_file' | cut -c1-64`
\set probs `cat :'probs_file'`

\lo_import :weights_file
SELECT import_model('lab', :LASTOID, :'cfg', :'vocab', :'tok') AS version;

CREATE TABLE oracle AS
SELECT ord, text, label FROM jsonb_to_recordset(:'probs'::jsonb) AS x(ord int, text text, label text);
CREATE TABLE inbox (id int PRIMARY KEY, body text, label text);
INSERT INTO inbox SELECT ord, text, NULL FROM oracle;
INSERT INTO inbox VALUES (1000, NULL, NULL);

-- every row with a text gets transformers' label; the row without one stays NULL
SELECT label_rows('inbox', 'body', 'label', 'lab') AS labelled;
SELECT count(*) AS rows, count(*) FILTER (WHERE i.label = o.label) AS as_transformers,
       count(*) FILTER (WHERE i.label IS NULL) AS unlabelled
FROM inbox i LEFT JOIN oracle o ON o.ord = i.id;

-- only the rows whose label is NULL, unless only_unlabelled => false
UPDATE inbox SET label = NULL WHERE id % 4 = 0;
SELECT label_rows('inbox', 'body', 'label', 'lab') AS labelled;
SELECT label_rows('inbox', 'body', 'label', 'lab', only_unlabelled => false) AS labelled;
SELECT count(*) FILTER (WHERE i.label = o.label) AS as_transformers FROM inbox i JOIN oracle o ON o.ord = i.id;

-- the model from pgbert.default_model, else the only stored name
UPDATE inbox SET label = NULL WHERE id < 10;
SET pgbert.default_model = 'lab';
SELECT label_rows('inbox', 'body', 'label') AS labelled;
RESET pgbert.default_model;
UPDATE inbox SET label = NULL WHERE id < 10;
SELECT label_rows('inbox', 'body', 'label') AS labelled;

-- a label column of an enum type (text is not assigned to an enum without a cast)
CREATE TYPE verdict AS ENUM ('ham', 'spam', 'phish');
CREATE TABLE typed (id int, body text, label verdict);
INSERT INTO typed SELECT ord, text FROM oracle WHERE ord < 20;
SELECT label_rows('typed', 'body', 'label', 'lab') AS labelled;
SELECT count(*) FILTER (WHERE t.label::text = o.label) AS as_transformers FROM typed t JOIN oracle o ON o.ord = t.id;
DROP TABLE typed;
DROP TYPE verdict;

-- bad input: clear errors, nothing labelled
\set VERBOSITY terse
UPDATE inbox SET label = NULL WHERE id < 10;
SELECT label_rows('inbox', 'body', 'label', 'absent');
SELECT label_rows('inbox', 'nobody', 'label', 'lab');
SELECT label_rows('inbox', 'body', 'nolabel', 'lab');
SELECT label_rows(NULL, 'body', 'label', 'lab');
SELECT label_rows('no_such_table', 'body', 'label', 'lab');
\set VERBOSITY default
SELECT count(*) AS still_unlabelled FROM inbox WHERE label IS NULL;

-- without Citus, the cluster is this node: its version, the file's digest, its labels
SELECT node, version, weights_sha256 = :'weights_sha256' AS digest_of_the_file, labels, matches, error
FROM cluster_models('lab');
SELECT count(*) AS nodes_copied_to FROM distribute_model('lab');
-- the same weights and labels with another truncation length: another setup digest
\set tok512 `sed 's/"model_max_length": *[0-9]*/"model_max_length": 512/' :'fixture'/tokenizer_config.json`
SELECT :'tok' <> :'tok512' AS tokenizer_config_differs;
SELECT import_model('lab', lo_from_bytea(0, lo_get(weights)), config, vocab, :'tok512'::jsonb)
FROM pgbert.model_versions WHERE name = 'lab' AND version = 1;
SELECT (SELECT setup_sha256 FROM cluster_models('lab')) AS v2 \gset
SELECT deploy_model('lab', 1);
SELECT weights_sha256 = :'weights_sha256' AS same_weights, setup_sha256 <> :'v2' AS other_setup
FROM cluster_models('lab');
SELECT drop_model('lab', 2);
\set VERBOSITY terse
SELECT * FROM cluster_models('absent');
SELECT * FROM cluster_models(NULL);
SELECT * FROM distribute_model('lab', chunk_bytes => 10);
\set VERBOSITY default

-- a role the model is not granted to can neither label with it nor read its digest
CREATE ROLE regress_labeller;
GRANT SELECT, UPDATE ON inbox TO regress_labeller;
SET ROLE regress_labeller;
\set VERBOSITY terse
SELECT label_rows('inbox', 'body', 'label', 'lab');
SELECT * FROM cluster_models('lab');
SELECT * FROM distribute_model('lab');
\set VERBOSITY default
RESET ROLE;
SELECT grant_model('lab', 'regress_labeller');
SET ROLE regress_labeller;
SELECT label_rows('inbox', 'body', 'label', 'lab') AS labelled;
SELECT matches FROM cluster_models('lab');
RESET ROLE;

DROP TABLE inbox, oracle;
SELECT drop_model('lab');
DROP ROLE regress_labeller;
