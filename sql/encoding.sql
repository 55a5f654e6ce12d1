-- Non-UTF8 databases: text is converted to UTF-8 for the tokenizer and pieces back;
-- models store their vocabulary as UTF-8 bytes, so any vocabulary imports.
\set regress_db :DBNAME
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixture :abs_srcdir '/test/fixtures/models/sql_cls'
\set weights_file :fixture '/model.safetensors'
\set vocab_file :fixture '/vocab.txt'
\set cfg `cat :'fixture'/config.json`
\set tok `cat :'fixture'/tokenizer_config.json`
\set vocab_b64 `base64 -w0 :'vocab_file'`
CREATE DATABASE pgbert_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE pgbert_sql_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;

\c pgbert_latin1
SET client_encoding = 'UTF8';
CREATE EXTENSION pgbert;
SHOW server_encoding;
-- same pieces and ids as in a UTF8 database (see tokenizer.sql)
SELECT bert_tokenize(E'UNwant\u00E9d,running');
SELECT bert_token_ids(E'UNwant\u00E9d,running');
SELECT bert_tokenize('Grüße aus Köln, ça va?');
-- cased pieces with Latin-1 letters come back in the database encoding
SELECT bert_tokenize('ß é', do_lower_case => false);
-- the model's vocabulary has characters LATIN1 lacks: as text it cannot be imported ...
\set vocab `cat :'vocab_file'`
\set VERBOSITY terse
\lo_import :weights_file
SELECT import_model('m', :LASTOID, :'cfg', :'vocab', :'tok');
\set VERBOSITY default
-- ... as bytes (what pgbert_import sends) it can
SELECT import_model('m', :LASTOID, :'cfg', decode(:'vocab_b64', 'base64'), :'tok') AS version;
SELECT bert_tokenize('Grüße aus Köln, ça va?', 'm');
SELECT classify_scores('Grüße aus Köln, ça va?', 'm') AS latin1_scores \gset
SELECT classify('Grüße aus Köln, ça va?', 'm') IS NOT NULL AS classified;

\c pgbert_sql_ascii
CREATE EXTENSION pgbert;
SHOW server_encoding;
-- SQL_ASCII text is taken as UTF-8 when it is valid UTF-8 ...
SELECT bert_tokenize(convert_from('\x68c3a96c6c6f'::bytea, 'SQL_ASCII'));
-- ... and rejected by PostgreSQL's UTF-8 check when it is not
SELECT bert_tokenize(convert_from('\x6162ff'::bytea, 'SQL_ASCII'));

\c :regress_db
-- the same text and model in this UTF8 database give the same probabilities
\lo_import :weights_file
SELECT import_model('m', :LASTOID, :'cfg', decode(:'vocab_b64', 'base64'), :'tok') AS version;
SELECT bert_tokenize('Grüße aus Köln, ça va?', 'm');
SELECT classify_scores('Grüße aus Köln, ça va?', 'm') = :'latin1_scores'::jsonb AS same_scores;
SELECT drop_model('m');
DROP DATABASE pgbert_latin1;
DROP DATABASE pgbert_sql_ascii;
