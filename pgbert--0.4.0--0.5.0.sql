-- pgbert 0.5.0: training runs in its own worker and engine process, "pgbert
-- trainer", beside the encoder's, so that classify() never waits behind a
-- training step; this view shows each engine and what it is doing.
\echo Use "ALTER EXTENSION pgbert UPDATE TO '0.5.0'" to load this file. \quit

CREATE FUNCTION pgbert.worker_engines_all(OUT role text, OUT state text, OUT message text,
                                          OUT worker_pid integer, OUT engine_pid integer, OUT device text,
                                          OUT threads integer, OUT nice integer, OUT activity text,
                                          OUT activity_since timestamptz, OUT queued integer,
                                          OUT running integer, OUT requests bigint, OUT errors bigint,
                                          OUT engine_restarts bigint, OUT busy_seconds float8,
                                          OUT latency_p99_ms float8, OUT trainings integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pgbert_worker_engines'
LANGUAGE C VOLATILE;

CREATE VIEW pgbert.worker_engines AS SELECT * FROM pgbert.worker_engines_all();

COMMENT ON VIEW pgbert.worker_engines IS
'one row per worker (serve: the encoder, train: the trainer): its engine process, threads, priority, what it is doing and since when, queue, requests, errors, restarts';
GRANT SELECT ON pgbert.worker_engines TO PUBLIC;

COMMENT ON VIEW pgbert.worker IS
'the encoder worker: state, engine process, models held, queue, batches, rows, latency percentiles, restarts; trainings and training_requests are the trainer''s';
