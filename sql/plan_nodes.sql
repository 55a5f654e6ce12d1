-- PgbertBatch plan nodes as other code sees them: their private data are Nodes that
-- copyObject, nodeToString and stringToNode handle (a parallel worker reads its plan through
-- stringToNode), that plan walkers of other extensions may inspect (Citus reads the first
-- element of every CustomScan's custom_private as a Node), and that auto_explain prints,
-- verbose, in the leader and in the workers. Results must equal the unbatched statement's.
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixture :abs_srcdir '/test/fixtures/models/sql_cls'
\set weights_file :fixture '/model.safetensors'
\set probs_file :abs_srcdir '/test/fixtures/sql_cls_probs.json'
\set cfg `cat :'fixture'/config.json`
\set vocab `cat :'fixture'/vocab.txt`
\set tok `cat :'fixture'/tokenizer_config.json`
\set probs `cat :'probs_file'`
\lo_import :weights_file
SELECT import_model('ncls', :LASTOID, :'cfg', :'vocab', :'tok') AS version;

CREATE TABLE ndocs (id int PRIMARY KEY, body text);
INSERT INTO ndocs SELECT ord, text FROM jsonb_to_recordset(:'probs'::jsonb) AS x(ord int, text text);
ANALYZE ndocs;

-- the reference: one row at a time
SET pgbert.batching = off;
CREATE TABLE nref AS SELECT id, classify(body, 'ncls') AS c FROM ndocs;
RESET pgbert.batching;

-- auto_explain prints every plan, verbose and analyzed, nested statements too. The
-- PostgreSQL 16 and 17 builds CI tests against ship no contrib modules: there
-- scripts/pg_version_check.sh sets PGBERT_NO_AUTO_EXPLAIN (and says so), and the
-- statements below run without it
\getenv no_auto_explain PGBERT_NO_AUTO_EXPLAIN
\if :{?no_auto_explain}
\else
LOAD 'auto_explain';
\endif
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_verbose = on;
SET auto_explain.log_nested_statements = on;

-- the whole plan in a parallel worker: PgbertBatch goes there through nodeToString and
-- stringToNode (the setting's name changed in PostgreSQL 16)
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'on', false) AS forced;
EXPLAIN (COSTS OFF) SELECT id, classify(body, 'ncls') FROM ndocs;
SELECT count(*) AS rows, count(*) FILTER (WHERE b.c IS DISTINCT FROM r.c) AS differ
FROM (SELECT id, classify(body, 'ncls') AS c FROM ndocs) b JOIN nref r USING (id);

-- a join of two batched subqueries (the shape Citus crashed on when it ran one as a
-- subplan; OFFSET 0 keeps each a subquery of its own)
EXPLAIN (COSTS OFF)
SELECT count(*) FROM (SELECT id, classify(body, 'ncls') c FROM ndocs OFFSET 0) d
JOIN (SELECT id, classify(body, 'ncls') c FROM ndocs WHERE id % 2 = 0 OFFSET 0) l USING (id)
WHERE d.c IS DISTINCT FROM l.c;
SELECT count(*) FROM (SELECT id, classify(body, 'ncls') c FROM ndocs OFFSET 0) d
JOIN (SELECT id, classify(body, 'ncls') c FROM ndocs WHERE id % 2 = 0 OFFSET 0) l USING (id)
WHERE d.c IS DISTINCT FROM l.c;

-- an aggregate over batched calls
SELECT count(*) FILTER (WHERE classify(d.body, 'ncls') IS DISTINCT FROM r.c) AS differ
FROM ndocs d JOIN nref r USING (id);

-- a prepared statement: after five runs the plan cache keeps a generic plan and hands
-- each run a copy of it (copyObject)
SET plan_cache_mode = force_generic_plan;
PREPARE differ(int) AS
SELECT count(*) AS rows, count(*) FILTER (WHERE b.c IS DISTINCT FROM r.c) AS differ
FROM (SELECT id, classify(body, 'ncls') AS c FROM ndocs WHERE id < $1) b JOIN nref r USING (id);
EXECUTE differ(50);
EXECUTE differ(1000);
DEALLOCATE differ;

RESET ALL;
DROP TABLE ndocs, nref;
SELECT drop_model('ncls') IS NOT NULL AS dropped;
