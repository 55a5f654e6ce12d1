-- 100% parity with Hugging Face's BertTokenizer on the generated corpus, through SQL.
-- Fixtures come from test/oracle/gen_tokenizer_fixtures.py (see tokenizer_fixtures.json).
CREATE TEMP TABLE corpus (n bigserial PRIMARY KEY, t text);
\copy corpus (t) FROM 'test/fixtures/tokenizer_corpus.txt'
CREATE TEMP TABLE want_uncased (n bigserial PRIMARY KEY, ids int[]);
\copy want_uncased (ids) FROM PROGRAM 'gzip -dc test/fixtures/tokenizer_ids_uncased.txt.gz'
CREATE TEMP TABLE want_cased (n bigserial PRIMARY KEY, ids int[]);
\copy want_cased (ids) FROM PROGRAM 'gzip -dc test/fixtures/tokenizer_ids_cased.txt.gz'

SELECT count(*) >= 20000 AS enough_lines,
       count(*) = (SELECT count(*) FROM want_uncased) AS fixtures_complete
FROM corpus;

-- uncased (the bundled vocabulary's own setting)
SELECT count(*) AS uncased_mismatches
FROM corpus JOIN want_uncased USING (n)
WHERE bert_token_ids(t, max_length => NULL) IS DISTINCT FROM ids;

-- cased (do_lower_case => false)
SELECT count(*) AS cased_mismatches
FROM corpus JOIN want_cased USING (n)
WHERE bert_token_ids(t, max_length => NULL, do_lower_case => false) IS DISTINCT FROM ids;

-- bert_tokenize gives the same pieces as the ids, minus [CLS]/[SEP]
SELECT count(*) AS piece_count_mismatches
FROM corpus JOIN want_uncased USING (n)
WHERE coalesce(array_length(bert_tokenize(t), 1), 0) <> array_length(ids, 1) - 2;

-- truncation to max_length, as BertTokenizer(text, truncation=True, max_length=L)
CREATE TEMP TABLE want_truncated (n bigint, max_length int, ids int[]);
\copy want_truncated FROM 'test/fixtures/tokenizer_truncation.txt'
SELECT count(*) > 1000 AS enough_cases,
       count(*) FILTER (WHERE bert_token_ids(c.t, max_length => w.max_length) IS DISTINCT FROM w.ids)
         AS truncation_mismatches
FROM want_truncated w JOIN corpus c USING (n);

-- Hugging Face's test strings and the literals shown in the other suites: pieces and ids
CREATE TEMP TABLE hf_cases (lower boolean, t text, pieces text[], ids int[]);
\copy hf_cases FROM 'test/fixtures/tokenizer_cases.txt'
SELECT count(*) AS cases,
       count(*) FILTER (WHERE bert_tokenize(t, do_lower_case => lower) IS DISTINCT FROM pieces)
         AS piece_mismatches,
       count(*) FILTER (WHERE bert_token_ids(t, do_lower_case => lower) IS DISTINCT FROM ids)
         AS id_mismatches
FROM hf_cases;
