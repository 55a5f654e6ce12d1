-- Transparent batching: per-row classify(), classify_scores() and embed() calls run a block
-- of rows at a time under a PgbertBatch node. Every statement must return what the same
-- statement returns unbatched (pgbert.batching = off), row for row, within float rounding
-- (a batch rounds a row's GEMMs differently from a one-row pass).
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixture :abs_srcdir '/test/fixtures/models/sql_cls'
\set weights_file :fixture '/model.safetensors'
\set probs_file :abs_srcdir '/test/fixtures/sql_cls_probs.json'
\set cfg `cat :'fixture'/config.json`
\set vocab `cat :'fixture'/vocab.txt`
\set tok `cat :'fixture'/tokenizer_config.json`
\set probs `cat :'probs_file'`
\lo_import :weights_file
SELECT import_model('bcls', :LASTOID, :'cfg', :'vocab', :'tok') AS version;

CREATE TABLE docs (id int PRIMARY KEY, body text, label text);
INSERT INTO docs SELECT ord, text FROM jsonb_to_recordset(:'probs'::jsonb) AS x(ord int, text text);
INSERT INTO docs VALUES (1000, NULL), (1001, '');
ANALYZE docs;

-- the reference: the same calls, one row at a time
SET pgbert.batching = off;
EXPLAIN (COSTS OFF) SELECT id, classify(body, 'bcls') FROM docs;
CREATE TABLE ref AS
SELECT id, classify(body, 'bcls') AS c, classify_scores(body, 'bcls') AS s,
       embed(body, 'bcls') AS e, embed(body, 'bcls', 'cls') AS ec
FROM docs;
RESET pgbert.batching;

-- how far a result may be from the reference; labels may differ only where the top two
-- probabilities of the reference are that close. From float32 rounding-error analysis (see
-- sql/classify.sql and test/engine/tolerance.h), so that they hold on every CPU: a batch's
-- GEMMs have other shapes than a row's, which OpenBLAS may block and sum in another order,
-- so two float32 passes of this model (2 layers, k = 64) differ in a value of magnitude up
-- to scale by at most 2 (2 + 1) 8 sqrt(64) 2^-24 scale = 2.29e-5 scale. Probabilities:
-- scale 3.86 (the classifier's terms on these texts), halved by softmax: 4.4e-5, so 5e-5.
-- Embeddings (the last hidden states, their mean or [CLS] row): LayerNorm outputs, at most
-- 4.015 on these texts (a float64 pass, test/oracle/tolerance_scales.py): 9.2e-5, so 1e-4. Labels: top two within 2 x 5e-5.
-- Measured: 1.4e-7 (probabilities) and 0 (embeddings); a slip in a batch's positions (each
-- token one further along) moves probabilities by up to 0.26 (in a float64 pass).
CREATE FUNCTION scores_close(a jsonb, b jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS
$$ SELECT (a IS NULL AND b IS NULL) OR
          (SELECT bool_and(abs((a ->> k)::float8 - (b ->> k)::float8) < 5e-5) FROM jsonb_object_keys(a) k) $$;
CREATE FUNCTION vectors_close(a real[], b real[]) RETURNS boolean LANGUAGE sql IMMUTABLE AS
$$ SELECT (a IS NULL AND b IS NULL) OR
          (cardinality(a) = cardinality(b) AND (SELECT max(abs(x - y)) < 1e-4 FROM unnest(a, b) u(x, y))) $$;
CREATE FUNCTION label_ok(id int, label text) RETURNS boolean LANGUAGE sql STABLE AS
$$ SELECT label IS NOT DISTINCT FROM r.c
          OR (SELECT (array_agg(v::float8 ORDER BY v::float8 DESC))[1] - (array_agg(v::float8 ORDER BY v::float8 DESC))[2]
              FROM jsonb_each_text(r.s) e(k, v)) < 1e-4
   FROM ref r WHERE r.id = label_ok.id $$;

-- a plain SELECT: one PgbertBatch above the scan, blocks of up to pgbert.batch_rows
EXPLAIN (COSTS OFF) SELECT id, classify(body, 'bcls') FROM docs;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id, classify(body, 'bcls') FROM docs;
CREATE TABLE got AS
SELECT id, classify(body, 'bcls') AS c, classify_scores(body, 'bcls') AS s,
       embed(body, 'bcls') AS e, embed(body, 'bcls', 'cls') AS ec
FROM docs;
SELECT count(*) AS rows,
       count(*) FILTER (WHERE NOT label_ok(id, g.c)) AS label_diffs,
       count(*) FILTER (WHERE NOT scores_close(g.s, r.s)) AS score_diffs,
       count(*) FILTER (WHERE NOT vectors_close(g.e, r.e) OR NOT vectors_close(g.ec, r.ec)) AS embedding_diffs,
       count(*) FILTER (WHERE g.c IS NULL) AS null_results
FROM got g JOIN ref r USING (id);

-- rows come out in their order with their own results
SELECT count(*) AS rows, count(*) FILTER (WHERE id IS DISTINCT FROM expected_id) AS out_of_order,
       count(*) FILTER (WHERE NOT label_ok(id, c)) AS label_diffs
FROM (SELECT id, c, row_number() OVER () - 1 AS expected_id
      FROM (SELECT id, classify(body, 'bcls') AS c FROM docs WHERE id < 1000 ORDER BY id) s) t;

-- EXPLAIN ANALYZE showing the plan and its counters only. 18 prints actual rows with two
-- decimals ("rows=5.00") where 15 to 17 print "rows=5", and buffers unless told not to:
-- shown here as 15 to 17 show them, so that one expected file holds on every version
CREATE FUNCTION explain_analyzed(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) ' || query LOOP
    -- the CPU path names this machine's instruction set: one expected output for every CPU
    RETURN NEXT regexp_replace(regexp_replace(line, 'rows=(\d+)\.00 ', 'rows=\1 ', 'g'),
                               'CPU Path: .*', 'CPU Path: (this CPU)');
  END LOOP;
END $$;
-- LIMIT: blocks of 1, 2, 4 rows, so 7 rows are read for 5. The models run in this session
-- here, for one expected output with and without the encoder worker; its counters through
-- the worker are in the worker suite
SET pgbert.worker = off;
SELECT * FROM explain_analyzed($$SELECT classify(body, 'bcls') FROM docs LIMIT 5$$) AS "QUERY PLAN";
-- a smaller largest block
SET pgbert.batch_rows = 16;
SELECT * FROM explain_analyzed($$SELECT classify(body, 'bcls') FROM docs$$) AS "QUERY PLAN";
RESET pgbert.batch_rows;
RESET pgbert.worker;

-- a call in WHERE: PgbertBatch filters, the scan keeps the other conditions
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE classify(body, 'bcls') = 'spam' AND id > 3;
SELECT (SELECT count(*) FROM docs WHERE classify(body, 'bcls') = 'spam' AND id > 3) =
       (SELECT count(*) FROM ref WHERE c = 'spam' AND id > 3) AS same_count;

-- a volatile target-list entry is evaluated once per row returned, as without batching
CREATE SEQUENCE batch_seq;
EXPLAIN (COSTS OFF) SELECT nextval('batch_seq'), classify(body, 'bcls') FROM docs LIMIT 5;
SELECT count(*) FROM (SELECT nextval('batch_seq'), classify(body, 'bcls') FROM docs LIMIT 5) s;
SELECT last_value FROM batch_seq;
-- a volatile condition elsewhere would run for rows read ahead: no batching
EXPLAIN (COSTS OFF) SELECT classify(body, 'bcls') FROM docs WHERE random() >= 0;
EXPLAIN (COSTS OFF) SELECT classify(body, 'bcls') FROM docs WHERE id IN (SELECT nextval('batch_seq'));
-- volatile arguments are not batched either
EXPLAIN (COSTS OFF) SELECT classify(body || random()::text, 'bcls') FROM docs;

-- calls that are evaluated only for some rows are not batched, so they never run for the
-- others (this model does not exist: evaluating the call would fail)
EXPLAIN (COSTS OFF) SELECT CASE WHEN id < 0 THEN classify(body, 'no such model') END FROM docs;
SELECT count(*) FROM (SELECT CASE WHEN id < 0 THEN classify(body, 'no such model') END FROM docs) s;
SELECT count(*) FROM (SELECT coalesce(id::text, classify(body, 'no such model')) FROM docs) s;
SELECT count(*) FROM docs WHERE id < 0 AND classify(body, 'no such model') = 'spam';
-- ... while unconditional ones fail as they would unbatched
SELECT classify(body, 'no such model') FROM docs;
-- coalesce's first argument is always evaluated: batched
EXPLAIN (COSTS OFF) SELECT coalesce(classify(body, 'bcls'), 'none') FROM docs;
SELECT count(*) FILTER (WHERE NOT label_ok(id, l) AND NOT (body IS NULL AND l = 'none')) AS label_diffs
FROM (SELECT id, body, coalesce(classify(body, 'bcls'), 'none') AS l FROM docs) s;

-- the default model (pgbert.default_model) and NULL model arguments
SET pgbert.default_model = 'bcls';
SELECT count(*) FILTER (WHERE NOT label_ok(id, c)) AS label_diffs
FROM (SELECT id, classify(body) AS c FROM docs) s;
SELECT count(*) FILTER (WHERE NOT label_ok(id, c)) AS label_diffs
FROM (SELECT id, classify(body, CASE WHEN id % 2 = 0 THEN 'bcls' END) AS c FROM docs) s;
RESET pgbert.default_model;

-- joins, rescans of a parameterized inner side, correlated subqueries
SELECT count(*) AS rows, count(*) FILTER (WHERE NOT label_ok(a.id, classify(b.body, 'bcls'))) AS label_diffs
FROM docs a JOIN docs b ON b.id = a.id;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
-- 18 removes a join of a table with itself on its key (self-join elimination), leaving no
-- rescan; the test is about rescans, so it keeps the join on every version
SELECT current_setting('server_version_num')::int >= 180000 AS eliminates_self_joins \gset
\if :eliminates_self_joins
SET enable_self_join_elimination = off;
\endif
EXPLAIN (COSTS OFF)
SELECT o.id, x.c FROM docs o, LATERAL (SELECT classify(i.body, 'bcls') AS c FROM docs i WHERE i.id = o.id) x;
SELECT count(*) AS rows, count(*) FILTER (WHERE NOT label_ok(o.id, x.c)) AS label_diffs
FROM docs o, LATERAL (SELECT classify(i.body, 'bcls') AS c FROM docs i WHERE i.id = o.id) x;
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_material;
\if :eliminates_self_joins
RESET enable_self_join_elimination;
\endif
SELECT count(*) AS rows, count(*) FILTER (WHERE NOT label_ok(o.id, c)) AS label_diffs
FROM (SELECT o.id, (SELECT classify(i.body, 'bcls') FROM docs i WHERE i.id = o.id) AS c FROM docs o) o;
-- a subquery beside a call stays where it was; one in the same expression as a call would
-- have to move up with it: not batched
EXPLAIN (COSTS OFF)
SELECT classify(body, 'bcls'), (SELECT count(*) FROM docs d2 WHERE d2.id < d.id) FROM docs d;
EXPLAIN (COSTS OFF)
SELECT classify(body, 'bcls') || (SELECT count(*) FROM docs d2 WHERE d2.id < d.id) FROM docs d;
-- aggregates over calls: a PgbertBatch under the aggregate adds the results to its input rows
EXPLAIN (COSTS OFF)
SELECT count(*) FILTER (WHERE classify(body, 'bcls') = 'spam'), string_agg(classify(body, 'bcls'), ',') FROM docs;
SELECT (SELECT count(*) FILTER (WHERE classify(body, 'bcls') = 'spam') FROM docs) =
       (SELECT count(*) FILTER (WHERE c = 'spam') FROM ref) AS same_count;
SELECT (SELECT string_agg(classify(body, 'bcls'), ',' ORDER BY id) FROM docs) =
       (SELECT string_agg(c, ',' ORDER BY id) FROM ref) AS same_labels;
SELECT (SELECT array_agg(g || ':' || n ORDER BY g) FROM
          (SELECT id % 3 AS g, count(*) FILTER (WHERE classify(body, 'bcls') = 'spam') AS n FROM docs GROUP BY 1) a) =
       (SELECT array_agg(g || ':' || n ORDER BY g) FROM
          (SELECT id % 3 AS g, count(*) FILTER (WHERE c = 'spam') AS n FROM ref GROUP BY 1) b) AS same_groups;
-- ... but not arguments of an aggregate with a FILTER, evaluated only for the rows it lets through
SELECT count(classify(body, 'no such model')) FILTER (WHERE id < 0) FROM docs;
-- calls over aggregates: a PgbertBatch above the aggregate. Since 16 the planner sorts
-- an ordered aggregate's input below it (presorted aggregates), which adds id to the Sort
-- Key; the test is about where PgbertBatch goes, so every version shows 15's plan
SELECT current_setting('server_version_num')::int >= 160000 AS presorts_aggregates \gset
\if :presorts_aggregates
SET enable_presorted_aggregate = off;
\endif
EXPLAIN (COSTS OFF)
SELECT id % 3 AS g, classify(string_agg(body, ' ' ORDER BY id), 'bcls') FROM docs GROUP BY id % 3;
\if :presorts_aggregates
RESET enable_presorted_aggregate;
\endif
CREATE TABLE agg_batched AS
SELECT id % 3 AS g, classify_scores(string_agg(body, ' ' ORDER BY id), 'bcls') AS s FROM docs GROUP BY id % 3;
SET pgbert.batching = off;
SELECT count(*) AS groups, bool_and(scores_close(a.s, x.s)) AS same_scores
FROM agg_batched a
JOIN (SELECT id % 3 AS g, classify_scores(string_agg(body, ' ' ORDER BY id), 'bcls') AS s
      FROM docs GROUP BY id % 3) x USING (g);
RESET pgbert.batching;
-- prepared statements
PREPARE one(int) AS SELECT classify(body, 'bcls') AS c FROM docs WHERE id >= $1 AND id < $1 + 10;
CREATE TABLE prepared AS EXECUTE one(3);
SELECT count(*) AS rows, count(*) FILTER (WHERE c NOT IN (SELECT c FROM ref WHERE id >= 3 AND id < 13)) AS unknown
FROM prepared;
DEALLOCATE one;
DROP TABLE prepared;

-- cursors: a plain cursor reads ahead as far as its block; FETCH sees every row once
BEGIN;
DECLARE cur CURSOR FOR SELECT d.id, classify(d.body, 'bcls') AS c FROM docs d ORDER BY d.id;
FETCH 3 FROM cur;
FETCH 2 FROM cur;
-- a cursor not declared SCROLL cannot go back (PostgreSQL allows it only for some plans)
FETCH BACKWARD 1 FROM cur;
ROLLBACK;
SELECT id, c FROM ref WHERE id < 5 ORDER BY id;
-- a SCROLL cursor is not batched and can go back
BEGIN;
DECLARE scur SCROLL CURSOR FOR SELECT d.id, classify(d.body, 'bcls') AS c FROM docs d ORDER BY d.id;
FETCH 3 FROM scur;
FETCH BACKWARD 2 FROM scur;
ROLLBACK;
-- PL/pgSQL loops fetch through a cursor
DO $$
DECLARE
  r record;
  n int := 0;
  bad int := 0;
BEGIN
  FOR r IN SELECT id, classify(body, 'bcls') AS c FROM docs ORDER BY id LOOP
    n := n + 1;
    IF NOT label_ok(r.id, r.c) THEN bad := bad + 1; END IF;
    EXIT WHEN n = 30;
  END LOOP;
  RAISE NOTICE 'rows %, label diffs %', n, bad;
END $$;

-- writing statements
EXPLAIN (COSTS OFF) UPDATE docs SET label = classify(body, 'bcls') WHERE label IS NULL;
UPDATE docs SET label = classify(body, 'bcls') WHERE label IS NULL AND id < 60;
WITH u AS (UPDATE docs SET label = classify(body, 'bcls') WHERE label IS NULL RETURNING id, label)
SELECT count(*) AS returned, count(*) FILTER (WHERE NOT label_ok(id, label)) AS label_diffs FROM u;
SELECT count(*) AS rows, count(*) FILTER (WHERE NOT label_ok(id, label)) AS label_diffs FROM docs;
-- UPDATE ... SET (a, b) = (SELECT ...) beside a call: the subquery's results are read in
-- the order the target list sets them
CREATE TABLE pairs AS SELECT id, body, NULL::text AS a, NULL::int AS b, NULL::text AS label FROM docs WHERE id < 6;
UPDATE pairs SET (a, b) = (SELECT 'row ' || pairs.id, pairs.id * 10), label = classify(body, 'bcls');
SELECT id, a, b, label_ok(id, label) AS label_ok FROM pairs ORDER BY id;
-- WHERE CURRENT OF needs the scan's current row, which a batching node has read past: a
-- plain cursor refuses it, a FOR UPDATE cursor (its row locks name the row) allows it
BEGIN;
DECLARE upd CURSOR FOR SELECT id, classify(body, 'bcls') IS NOT NULL AS classified FROM pairs ORDER BY id;
FETCH 2 FROM upd;
UPDATE pairs SET label = 'current' WHERE CURRENT OF upd;
ROLLBACK;
BEGIN;
DECLARE upd CURSOR FOR SELECT id, classify(body, 'bcls') IS NOT NULL AS classified FROM pairs ORDER BY id FOR UPDATE;
FETCH 2 FROM upd;
UPDATE pairs SET label = 'current' WHERE CURRENT OF upd RETURNING id;
ROLLBACK;
DROP TABLE pairs;
CREATE TABLE labelled (n serial, doc int, label text);
EXPLAIN (COSTS OFF) INSERT INTO labelled (doc, label) SELECT id, classify(body, 'bcls') FROM docs ORDER BY id;
INSERT INTO labelled (doc, label) SELECT id, classify(body, 'bcls') FROM docs ORDER BY id;
SELECT count(*) AS rows, count(*) FILTER (WHERE NOT label_ok(doc, label)) AS label_diffs,
       count(DISTINCT n) = count(*) AND min(n) = 1 AND max(n) = count(*) AS serials_once
FROM labelled;

-- parallel workers batch their own rows
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT id, classify(body, 'bcls') FROM docs;
SELECT count(*) AS rows, count(*) FILTER (WHERE NOT label_ok(id, c)) AS label_diffs
FROM (SELECT id, classify(body, 'bcls') AS c FROM docs) s;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- EXECUTE on the function is checked as calling it would be
CREATE ROLE regress_batch_reader;
GRANT SELECT ON docs, ref TO regress_batch_reader;
SELECT grant_model('bcls', 'regress_batch_reader');
REVOKE EXECUTE ON FUNCTION classify(text, text) FROM PUBLIC;
SET ROLE regress_batch_reader;
SELECT classify(body, 'bcls') FROM docs;
RESET ROLE;
GRANT EXECUTE ON FUNCTION classify(text, text) TO PUBLIC;
SET ROLE regress_batch_reader;
SELECT count(*) AS rows, count(*) FILTER (WHERE NOT label_ok(id, c)) AS label_diffs
FROM (SELECT id, classify(body, 'bcls') AS c FROM docs) s;
RESET ROLE;

-- turning it off
SET pgbert.batching = off;
EXPLAIN (COSTS OFF) SELECT classify(body, 'bcls') FROM docs;
RESET pgbert.batching;
SET pgbert.batch_rows = 1;
EXPLAIN (COSTS OFF) SELECT classify(body, 'bcls') FROM docs;
RESET pgbert.batch_rows;

REVOKE ALL ON docs, ref FROM regress_batch_reader;
SELECT revoke_model('bcls', 'regress_batch_reader');
DROP ROLE regress_batch_reader;
DROP TABLE docs, ref, got, agg_batched, labelled;
DROP SEQUENCE batch_seq;
DROP FUNCTION scores_close(jsonb, jsonb), vectors_close(real[], real[]), label_ok(int, text),
  explain_analyzed(text);
SELECT drop_model('bcls');
