-- The encoder worker as SQL sees it: the one suite whose output depends on how the server
-- was started, so it has two expected files. CI runs pg_regress twice (scripts/test.sh):
-- on a server without shared_preload_libraries (expected/worker.out: no worker, every
-- model runs in the session) and on one that preloads pgbert with the worker serving
-- (expected/worker_1.out: the worker's state, the NOTICE it does not need, the versions
-- its engine holds and the rows it served, EXPLAIN's path counters). Every other suite has
-- one expected file for both ways: the session checks each model (privilege, weights,
-- labels against the head, config) before either process runs it, and the results are
-- the same; only which process ran the pass differs, and that is shown here.
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixture :abs_srcdir '/test/fixtures/models/sql_cls'
\set weights_file :fixture '/model.safetensors'
\set cfg `cat :'fixture'/config.json`
\set vocab `cat :'fixture'/vocab.txt`
\set tok `cat :'fixture'/tokenizer_config.json`
\lo_import :weights_file
SELECT import_model('wcls', :LASTOID, :'cfg', :'vocab', :'tok') AS version;
CREATE TEMP TABLE texts (id int, body text);
INSERT INTO texts VALUES (1, 'hello'), (2, 'cheap meds, click here'), (3, 'the meeting moved to noon'),
                         (4, 'your account is locked, log in here'), (5, 'lunch?');

-- where the models run: without preload there is no worker, silently with
-- pgbert.worker = auto (the default); preloaded, the worker is ready
SELECT state, message FROM pgbert.worker;
SHOW pgbert.worker;
-- each worker with its own engine process: the encoder serves, the trainer trains at a
-- lower CPU priority (pgbert.training_nice), so a step never holds up a classify();
-- without preload there are none
SELECT role, state, engine_pid IS NOT NULL AS has_engine, threads, nice FROM pgbert.worker_engines ORDER BY role;
SELECT count(DISTINCT engine_pid) AS engine_processes FROM pgbert.worker_engines;
SELECT classify('hello', 'wcls') IS NOT NULL AS classified;

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
-- which process ran a batched statement's rows (pgbert.worker_models counts the worker's)
SELECT * FROM explain_analyzed($$SELECT classify(body, 'wcls') FROM texts$$) AS "QUERY PLAN";
SELECT name, version, rows > 0 AS served_rows FROM pgbert.worker_models WHERE name = 'wcls';
-- without the worker this backend holds the version's weights; through it, only the
-- vocabulary (it tokenizes)
SELECT name, bytes > 300000 AS holds_weights FROM pgbert.cached_models() WHERE name = 'wcls';

-- one row per request gives the same bits with and without the worker ("same batch, same
-- bits", docs/worker.md), in float32 and with pgbert.cpu_precision = int8, which the
-- worker honours per request: the engine keeps both forms of a version
SET pgbert.batching = off;
SET pgbert.worker = off;
CREATE TEMP TABLE in_session AS
SELECT id, classify_scores(body, 'wcls') AS s, embed(body, 'wcls') AS e FROM texts;
SET pgbert.cpu_precision = int8;
CREATE TEMP TABLE in_session_int8 AS
SELECT id, classify_scores(body, 'wcls') AS s, embed(body, 'wcls') AS e FROM texts;
RESET pgbert.worker;
SELECT count(*) AS rows, count(*) FILTER (WHERE q.s <> classify_scores(t.body, 'wcls')) AS scores_differ,
       count(*) FILTER (WHERE q.e <> embed(t.body, 'wcls')) AS embeddings_differ
FROM texts t JOIN in_session_int8 q USING (id);
RESET pgbert.cpu_precision;
SELECT count(*) AS rows, count(*) FILTER (WHERE q.s <> classify_scores(t.body, 'wcls')) AS scores_differ,
       count(*) FILTER (WHERE q.e <> embed(t.body, 'wcls')) AS embeddings_differ
FROM texts t JOIN in_session q USING (id);
-- and int8 did move them (as in the classify suite, a CPU with AVX2 is assumed)
SELECT count(*) FILTER (WHERE a.s <> b.s) > 0 AS int8_moved
FROM in_session a JOIN in_session_int8 b USING (id);
RESET pgbert.batching;

-- pgbert.worker = on: one NOTICE per session when the worker is not serving
SET pgbert.worker = on;
SELECT classify('hello', 'wcls') IS NOT NULL AS classified;
SELECT classify('hello again', 'wcls') IS NOT NULL AS no_second_notice;
SET pgbert.worker = off;
SELECT classify('hello', 'wcls') IS NOT NULL AS classified;
SET pgbert.worker = 'sometimes';
RESET pgbert.worker;

SELECT drop_model('wcls');
SELECT count(*) AS left_in_worker FROM pgbert.worker_models WHERE name = 'wcls';
DROP FUNCTION explain_analyzed(text);
