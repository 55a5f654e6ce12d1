-- pgbert 0.3.0: the encoder worker. With pgbert in shared_preload_libraries, a
-- background worker runs every session's forward passes in one engine process,
-- batching requests across sessions; these views show it.
\echo Use "ALTER EXTENSION pgbert UPDATE TO '0.3.0'" to load this file. \quit

CREATE FUNCTION pgbert.worker_status(OUT state text, OUT message text, OUT worker_pid integer,
                                     OUT engine_pid integer, OUT device text, OUT started timestamptz,
                                     OUT models integer, OUT model_bytes bigint, OUT queued integer,
                                     OUT running integer, OUT batches bigint, OUT requests bigint,
                                     OUT rows bigint, OUT avg_batch_rows float8,
                                     OUT rows_per_busy_second float8, OUT latency_p50_ms float8,
                                     OUT latency_p99_ms float8, OUT errors bigint, OUT engine_restarts bigint,
                                     OUT busy_seconds float8, OUT trainings integer,
                                     OUT training_requests bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pgbert_worker_status'
LANGUAGE C VOLATILE;

CREATE VIEW pgbert.worker AS SELECT * FROM pgbert.worker_status();

COMMENT ON VIEW pgbert.worker IS
'the encoder worker: state, engine process, models held, queue, batches, rows, latency percentiles, restarts';
GRANT SELECT ON pgbert.worker TO PUBLIC;

CREATE FUNCTION pgbert.worker_models_all(OUT dboid oid, OUT version_id bigint, OUT name text,
                                         OUT version integer, OUT bytes bigint, OUT loaded timestamptz,
                                         OUT last_used timestamptz, OUT calls bigint, OUT rows bigint,
                                         OUT label_counts bigint[], OUT hidden_size integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pgbert_worker_models'
LANGUAGE C VOLATILE;

-- Only this database's models; label ids named from the catalog.
CREATE VIEW pgbert.worker_models AS
SELECT w.name, w.version, w.bytes, w.loaded, w.last_used, w.calls, w.rows,
       (SELECT jsonb_object_agg(v.labels[i], w.label_counts[i])
        FROM generate_subscripts(w.label_counts, 1) AS i) AS label_counts
FROM pgbert.worker_models_all() w
LEFT JOIN pgbert.model_versions v ON v.id = w.version_id
WHERE w.dboid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());

COMMENT ON VIEW pgbert.worker_models IS
'model versions of this database that the encoder worker holds, with calls, rows and classify() results per label';
GRANT SELECT ON pgbert.worker_models TO PUBLIC;

-- A deleted version (drop_model) leaves the encoder worker's engine at once.
CREATE FUNCTION pgbert.worker_forget_version()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pgbert_worker_forget_version'
LANGUAGE C;

CREATE TRIGGER worker_forget_version AFTER DELETE ON pgbert.model_versions
    FOR EACH ROW EXECUTE FUNCTION pgbert.worker_forget_version();
