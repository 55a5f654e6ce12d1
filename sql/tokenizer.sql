-- bert_tokenize / bert_token_ids: behaviour, NULLs, errors, special tokens.
CREATE EXTENSION pgbert;

-- Hugging Face's own BERT tokenizer test strings (expected pieces from the oracle fixture)
SELECT bert_tokenize(E'UNwant\u00E9d,running');
SELECT bert_tokenize(E' \tHeLLo!how  \n Are yoU?  ');
SELECT bert_tokenize(E'ah\u535A\u63A8zz');
SELECT bert_token_ids(E'UNwant\u00E9d,running');

-- literal special tokens are split out before normalization, exact case only
SELECT bert_tokenize('Hello [SEP] world');
SELECT bert_token_ids('Hello [SEP] world');
SELECT bert_tokenize('[sep] is not special, nor is [SEP');

-- NULL input gives NULL; NULL model and do_lower_case mean the bundled defaults
SELECT bert_tokenize(NULL) IS NULL AS null_pieces, bert_token_ids(NULL) IS NULL AS null_ids;
SELECT bert_token_ids('hello', NULL, 8, NULL);

-- empty and whitespace-only strings give no pieces
SELECT bert_tokenize(''), bert_tokenize(E' \t\n\u00A0\u3000'), bert_token_ids('');

-- cased tokenization keeps case (the bundled vocabulary is uncased, so capitals are [UNK])
SELECT bert_tokenize('Hello hello', do_lower_case => false);

-- named and positional arguments
SELECT bert_token_ids(input => 'a b c d e f', max_length => 5);
SELECT bert_token_ids('a b c d e f', NULL, 3);

-- models do not exist yet: a named model is an error
SELECT bert_tokenize('hello', 'moderation');
SELECT bert_token_ids('hello', model => 'moderation');

-- max_length below 2 cannot hold [CLS] and [SEP]; NULL means no truncation
SELECT bert_token_ids('hello', max_length => 1);
SELECT bert_token_ids('hello', max_length => -5);
SELECT array_length(bert_token_ids(repeat('word ', 1000), max_length => NULL), 1) AS untruncated;
SELECT array_length(bert_token_ids(repeat('word ', 1000)), 1) AS default_truncation;

-- a 10 MB string works: every "hello world " gives two pieces
SELECT array_length(bert_tokenize(repeat('hello world ', 873813)), 1) = 2 * 873813 AS ten_mb_pieces;
SELECT array_length(bert_token_ids(repeat('hello world ', 873813), max_length => NULL), 1)
       = 2 * 873813 + 2 AS ten_mb_ids;

-- a long call can be cancelled: 300 MB of one word is stored first, then the
-- statement timeout must interrupt the tokenizer itself
CREATE TEMP TABLE big AS SELECT repeat('a', 300 * 1024 * 1024) AS t;
SET statement_timeout = '50ms';
SELECT bert_token_ids(t, max_length => NULL) FROM big;
RESET statement_timeout;
DROP TABLE big;

-- properties the planner relies on
SELECT proname, provolatile, proparallel, proisstrict
FROM pg_proc WHERE proname IN ('bert_tokenize', 'bert_token_ids') ORDER BY proname;

-- usable in an index expression (IMMUTABLE) and in a parallel query (PARALLEL SAFE)
CREATE TABLE docs (id int, body text);
INSERT INTO docs SELECT g, 'document number ' || g FROM generate_series(1, 1000) g;
CREATE INDEX docs_tokens ON docs USING gin (bert_token_ids(body));
CREATE TEMP TABLE probe AS SELECT (bert_token_ids('7', max_length => 3))[2:2] AS seven;
SELECT count(*) AS seqscan_matches FROM docs, probe WHERE bert_token_ids(body) @> seven \gset
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE bert_token_ids(body) @> '{1}';
SELECT count(*) = :seqscan_matches AS index_agrees, count(*) > 0 AS found
FROM docs, probe WHERE bert_token_ids(body) @> seven;
RESET enable_seqscan;
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET enable_bitmapscan = off;
SET enable_indexscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM docs WHERE bert_token_ids(body) @> '{1}';
SELECT count(*) = :seqscan_matches AS parallel_agrees
FROM docs, probe WHERE bert_token_ids(body) @> seven;
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET enable_bitmapscan;
RESET enable_indexscan;
DROP TABLE docs;

SELECT pgbert_info() ?& ARRAY['version', 'utf8proc_unicode', 'tokenizer_reference', 'cuda_compiled', 'cpu_path',
                             'cpu_bf16'] AS info_keys,
       (pgbert_info()->>'tokenizer_tables_current')::boolean AS tables_current;
-- the library reports the release it was built as, which is the installed extension's
SELECT pgbert_info()->>'version' = extversion AS library_matches_extension
FROM pg_extension WHERE extname = 'pgbert';
