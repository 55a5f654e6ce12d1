-- Non-UTF8 databases: text is converted to UTF-8 for the tokenizer and pieces back.
\set regress_db :DBNAME
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

\c pgbert_sql_ascii
CREATE EXTENSION pgbert;
SHOW server_encoding;
-- SQL_ASCII text is taken as UTF-8 when it is valid UTF-8 ...
SELECT bert_tokenize(convert_from('\x68c3a96c6c6f'::bytea, 'SQL_ASCII'));
-- ... and rejected by PostgreSQL's UTF-8 check when it is not
SELECT bert_tokenize(convert_from('\x6162ff'::bytea, 'SQL_ASCII'));

\c :regress_db
DROP DATABASE pgbert_latin1;
DROP DATABASE pgbert_sql_ascii;
