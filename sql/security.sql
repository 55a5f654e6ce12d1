-- Trust boundaries: two roles that do not trust each other. alice owns the model 'cls';
-- mallory owns nothing but may create her own. Every attack must fail with the right
-- SQLSTATE and leave alice's model, the superuser's large objects and the catalog as
-- they were; at the end no large object is left behind.
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixture :abs_srcdir '/test/fixtures/models/sql_cls'
\set weights_file :fixture '/model.safetensors'
\set cfg `cat :'fixture'/config.json`
\set vocab `cat :'fixture'/vocab.txt`
SET pgbert.progress_interval = 0;

-- An error's SQLSTATE and message (large-object OIDs masked), or 'ok'.
CREATE FUNCTION pg_temp.err(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    code text;
    msg text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN code || ': ' || regexp_replace(msg, '\m\d{4,}\M', 'N', 'g');
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.err(text) TO PUBLIC;

-- What must not change: alice's model (row, weights' bytes, answers) and the large objects.
CREATE FUNCTION pg_temp.fingerprint() RETURNS text
LANGUAGE sql AS $$
SELECT string_agg(format('%s v%s %s %s %s', name, version, labels, owner, md5(vocab)), '; ' ORDER BY name, version)
FROM pgbert.model_versions
$$;
GRANT EXECUTE ON FUNCTION pg_temp.fingerprint() TO PUBLIC;

SELECT count(*) AS large_objects_before FROM pg_largeobject_metadata \gset
CREATE ROLE regress_alice;
CREATE ROLE regress_mallory;
CREATE ROLE "regress Bob Mixed";
GRANT CREATE ON DATABASE :"DBNAME" TO regress_mallory;

-- the superuser's own large object, which no model role may touch
SELECT lo_from_bytea(0, 'superuser secret') AS secret \gset
-- checkpoints uploaded by their roles (created here, then handed over)
\lo_import :weights_file
\set uploaded :LASTOID
SELECT lo_from_bytea(0, lo_get(:uploaded)) AS alice_w1 \gset
SELECT lo_from_bytea(0, lo_get(:uploaded)) AS alice_w2 \gset
SELECT lo_from_bytea(0, lo_get(:uploaded)) AS mallory_w1 \gset
SELECT lo_from_bytea(0, lo_get(:uploaded)) AS mallory_w2 \gset
SELECT lo_unlink(:uploaded);
ALTER LARGE OBJECT :alice_w1 OWNER TO regress_alice;
ALTER LARGE OBJECT :alice_w2 OWNER TO regress_alice;
ALTER LARGE OBJECT :mallory_w1 OWNER TO regress_mallory;
ALTER LARGE OBJECT :mallory_w2 OWNER TO regress_mallory;

SET ROLE regress_alice;
SELECT import_model('cls', :alice_w1, :'cfg', :'vocab') AS version;
SELECT classify('win a free phone', 'cls') AS alice_label \gset
-- a name that needs quoting (grant_model used %I on a regrole: ""Bob Mixed"" did not exist)
SELECT grant_model('cls', '"regress Bob Mixed"');
SELECT grantee FROM pgbert.model_grants WHERE name = 'cls';
RESET ROLE;
SELECT pg_temp.fingerprint() AS alice_before \gset
SELECT (SELECT lomowner::regrole FROM pg_largeobject_metadata WHERE oid = :alice_w1) = pgbert.weights_owner()
       AS weights_held_by_pgbert;

SET ROLE "regress Bob Mixed";
SELECT classify('win a free phone', 'cls') = :'alice_label' AS bob_mixed_can_classify;
-- and such a role owns what it imports (current_user::regrole would parse the name)
RESET ROLE;
SELECT lo_from_bytea(0, lo_get(:alice_w1)) AS bob_w \gset
ALTER LARGE OBJECT :bob_w OWNER TO "regress Bob Mixed";
SET ROLE "regress Bob Mixed";
SELECT import_model('bobs', :bob_w, :'cfg', :'vocab') AS version;
SELECT owner, (SELECT count(*) FROM pgbert.deployments) AS pins FROM pgbert.model_versions WHERE name = 'bobs';
SELECT deploy_model('bobs', 1);
SELECT deployed_by FROM pgbert.deployments WHERE name = 'bobs';
SELECT drop_model('bobs');
SELECT count(*) AS bobs_weights_left FROM pg_largeobject_metadata WHERE oid = :bob_w;

-- mallory's own model, labels chosen to show up if it ever serves alice's name
SET ROLE regress_mallory;
SELECT import_model('evil', :mallory_w1, :'cfg', :'vocab', labels => '{ham,HIJACKED,phish}') AS version;
SELECT grant_model('evil', 'regress_alice');

-- 1. hijack: rename her row onto alice's name, or add a version to it
SELECT pg_temp.err($$UPDATE pgbert.model_versions SET name = 'cls', version = 99 WHERE name = 'evil'$$);
SELECT pg_temp.err(format('SELECT import_model(%L, %s, %L, %L)', 'cls', :mallory_w2, :'cfg', :'vocab'));
SELECT pg_temp.err($$INSERT INTO pgbert.deployments (name, version) VALUES ('cls', 1)$$);
SELECT pg_temp.err($$DELETE FROM pgbert.deployments$$);
SELECT pg_temp.err($$INSERT INTO pgbert.model_grants VALUES ('cls', 'regress_mallory')$$);
SELECT pg_temp.err($$INSERT INTO pgbert.training_log (name, version, epoch, step) VALUES ('cls', 1, 1, 1)$$);
SELECT pg_temp.err($$DELETE FROM pgbert.model_versions WHERE name = 'cls'$$);
SELECT pg_temp.err($$SELECT deploy_model('cls', 1)$$);
SELECT pg_temp.err($$SELECT drop_model('cls')$$);
SELECT pg_temp.err($$SELECT grant_model('cls', 'regress_mallory')$$);
SELECT pg_temp.err($$SELECT revoke_model('cls', '"regress Bob Mixed"')$$);

-- 2. large objects that are not hers: the superuser's, alice's upload
SELECT pg_temp.err($$UPDATE pgbert.model_versions SET weights = $$ || :secret || $$ WHERE name = 'evil'$$);
SELECT pg_temp.err(format('SELECT import_model(%L, %s, %L, %L)', 'evil2', :secret, :'cfg', :'vocab'));
SELECT pg_temp.err(format('SELECT import_model(%L, %s, %L, %L)', 'evil2', :alice_w2, :'cfg', :'vocab'));
-- nor the weights of a model she may use: they belong to pgbert, for reading only
SELECT pg_temp.err(format('SELECT lo_put(%s, 0, %L)', :mallory_w1, '\x00'));
SELECT pg_temp.err(format('SELECT lo_unlink(%s)', :mallory_w1));

-- the definer functions behind the doors are not hers to call, nor their helpers
SELECT pg_temp.err(format('SELECT pgbert.import_model_as(%L, %L, %s, %L, %L, NULL, NULL, NULL)',
                          'regress_alice', 'cls', :mallory_w2, :'cfg', convert_to(:'vocab', 'UTF8')));
SELECT pg_temp.err($$SELECT pgbert.drop_model_as('regress_alice', 'cls', NULL)$$);
SELECT pg_temp.err($$SELECT pgbert.seal_weights($$ || :secret || $$)$$);
SELECT pg_temp.err($$SELECT pgbert.record_training('cls', 1, '{"accuracy": 1}', '[]')$$);

-- search_path: her own pg_has_role and operators first on the path change nothing
CREATE SCHEMA mallory_s;
CREATE FUNCTION mallory_s.pg_has_role(oid, oid, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION mallory_s.pg_has_role(name, oid, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION mallory_s.texteq_any(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR mallory_s.= (LEFTARG = text, RIGHTARG = text, FUNCTION = mallory_s.texteq_any);
SET search_path = mallory_s, public;
SELECT pg_temp.err($$SELECT public.deploy_model('cls', 1)$$);
SELECT pg_temp.err($$SELECT public.drop_model('cls', 1)$$);
RESET search_path;
DROP SCHEMA mallory_s CASCADE;

-- a huge name is shown cut, not echoed whole
SELECT length(pg_temp.err(format('SELECT deploy_model(%L)', repeat('n', 100000)))) < 200 AS short_error;
SELECT length(pg_temp.err(format('SELECT drop_model(%L, 1)', repeat('n', 100000)))) < 200 AS short_error;
SELECT length(pg_temp.err(format('SELECT * FROM export_model(%L)', repeat('n', 100000)))) < 200 AS short_error;
SELECT length(pg_temp.err(format('SELECT grant_model(%L, %L)', repeat('n', 100000), 'regress_alice'))) < 200
       AS short_error;
SELECT length(pg_temp.err(format('SELECT import_model(%L, %s, %L, %L)', repeat('n', 100000), :mallory_w2,
                                 :'cfg', :'vocab'))) < 300 AS short_error;

-- 5. another role's training job: no worker slot, no cancel, no run
RESET ROLE;
CREATE TABLE alice_docs (body text, label text);
INSERT INTO alice_docs SELECT 'alice text ' || i, CASE WHEN i % 2 = 0 THEN 'ham' ELSE 'spam' END
FROM generate_series(1, 20) i;
ALTER TABLE alice_docs OWNER TO regress_alice;
BEGIN;
SET LOCAL ROLE regress_alice;
SELECT start_training('alice_docs', 'body', 'label', model => 'alice_job', epochs => 1) AS alice_job \gset
SET LOCAL ROLE regress_mallory;
SELECT count(*) AS jobs_mallory_sees FROM pgbert.training_jobs;
SELECT pg_temp.err($$SELECT pgbert.launch_training_worker($$ || :alice_job || $$)$$);
SELECT regexp_replace(pg_temp.err($$SELECT cancel_training($$ || :alice_job || $$)$$), 'job \d+', 'job N') AS err;
SELECT pg_temp.err($$UPDATE pgbert.training_jobs SET status = 'cancelled'$$);
SELECT pgbert.run_training_job(:alice_job) IS NULL AS runs_nothing;
ROLLBACK;

-- alice cannot log in (a group role, say): her own job still runs, as her, not as the
-- role its worker connects as
CREATE FUNCTION pg_temp.wait_job(job bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text;
BEGIN
    FOR i IN 1..1200 LOOP
        SELECT status INTO st FROM pgbert.training_jobs WHERE id = job;
        EXIT WHEN st NOT IN ('queued', 'running');
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN st;
END $$;
SET ROLE regress_alice;
SELECT start_training('alice_docs', 'body', 'label', model => 'alice_bg', epochs => 1, batch_size => 8,
                      max_length => 16) AS bg_job \gset
RESET ROLE;
SELECT pg_temp.wait_job(:bg_job) AS status;
SELECT j.owner, j.error, v.owner AS model_owner FROM pgbert.training_jobs j
LEFT JOIN pgbert.model_versions v ON v.name = 'alice_bg' WHERE j.id = :bg_job;
SET ROLE regress_alice;
SELECT drop_model('alice_bg');
RESET ROLE;

-- training from a table she may not read: refused, no job and no model left
SET ROLE regress_mallory;
SELECT pg_temp.err($$SELECT train_classifier('alice_docs', 'body', 'label', model => 'stolen', epochs => 1)$$);
SELECT pg_temp.err($$SELECT start_training('alice_docs', 'body', 'label', model => 'stolen', epochs => 1)$$);
SELECT count(*) AS stolen_models FROM pgbert.model_versions WHERE name = 'stolen';
RESET ROLE;
SELECT count(*) AS stolen_jobs FROM pgbert.training_jobs WHERE model = 'stolen';

-- row-level security on the training table holds: mallory reads her rows only, one label
CREATE TABLE shared_docs (body text, label text, author name);
INSERT INTO shared_docs SELECT 'shared text ' || i, CASE WHEN i % 2 = 0 THEN 'ham' ELSE 'spam' END,
       CASE WHEN i % 2 = 0 THEN 'regress_mallory' ELSE 'regress_alice' END
FROM generate_series(1, 20) i;
ALTER TABLE shared_docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON shared_docs USING (author = current_user);
GRANT SELECT ON shared_docs TO regress_mallory;
SET ROLE regress_mallory;
SELECT pg_temp.err($$SELECT train_classifier('shared_docs', 'body', 'label', model => 'rls', epochs => 1)$$);
RESET ROLE;

-- the LO privileges follow grant_model and revoke_model
SET ROLE regress_alice;
SELECT grant_model('cls', 'regress_mallory');
SET ROLE regress_mallory;
SELECT length(lo_get(:alice_w1)) > 0 AS mallory_reads_after_grant;
SELECT classify('win a free phone', 'cls') = :'alice_label' AS mallory_gets_alices_answer;
SELECT pg_temp.err(format('SELECT lo_put(%s, 0, %L)', :alice_w1, '\x00'));
SET ROLE regress_alice;
-- the owner reads but cannot rewrite or unlink them either: only drop_model does
SELECT pg_temp.err(format('SELECT lo_put(%s, 0, %L)', :alice_w1, '\x00'));
SELECT pg_temp.err(format('SELECT lo_unlink(%s)', :alice_w1));
SELECT pg_temp.err($$SELECT revoke_model('cls', 'regress_alice')$$);
SELECT revoke_model('cls', 'regress_mallory');
-- a later version carries the remaining grants only
SELECT import_model('cls', :alice_w2, :'cfg', :'vocab') AS version;
SET ROLE regress_mallory;
SELECT pg_temp.err(format('SELECT lo_get(%s)', :alice_w1));
SELECT pg_temp.err($$SELECT classify('win a free phone', 'cls')$$);
SET ROLE "regress Bob Mixed";
SELECT classify('win a free phone', 'cls') = :'alice_label' AS bob_mixed_still_can;
SELECT length(lo_get(:alice_w2)) > 0 AS bob_mixed_reads_new_version;

-- the training that creates a version records its results; nobody rewrites them later
SET ROLE regress_alice;
SELECT pg_temp.err($$SELECT pgbert.record_training('cls', 1, '{"accuracy": 1}', '[]')$$);
RESET ROLE;

-- after all that: alice's versions as they were (plus her v2), her answer unchanged,
-- the superuser's object intact
SELECT pg_temp.fingerprint() = :'alice_before' || '; cls v2 {ham,spam,phish} regress_alice '
       || md5(:'vocab') || '; evil v1 {ham,HIJACKED,phish} regress_mallory ' || md5(:'vocab') AS catalog_unchanged;
SET ROLE regress_alice;
SELECT classify('win a free phone', 'cls') = :'alice_label' AS alice_answer_unchanged;
RESET ROLE;
SELECT convert_from(lo_get(:secret), 'UTF8') AS secret;

-- a 0.3.0 catalog that was tampered with: the update hands legitimate weights to pgbert,
-- leaves a repointed row alone, and DROP EXTENSION CASCADE never unlinks what is not pgbert's
\set regress_db :DBNAME
CREATE DATABASE pgbert_upgrade_test;
\c pgbert_upgrade_test
SET client_min_messages = warning;
CREATE EXTENSION pgbert VERSION '0.3.0';
\lo_import :weights_file
\set w_old :LASTOID
ALTER LARGE OBJECT :w_old OWNER TO regress_alice;
SELECT lo_from_bytea(0, 'superuser secret') AS secret_old \gset
SELECT lo_from_bytea(0, lo_get(:w_old)) AS w_evil \gset
ALTER LARGE OBJECT :w_evil OWNER TO regress_mallory;
SET ROLE regress_alice;
SELECT import_model('cls', :w_old, :'cfg', :'vocab') AS version;
SELECT classify('win a free phone', 'cls') AS old_label \gset
SET ROLE regress_mallory;
SELECT import_model('evil', :w_evil, :'cfg', :'vocab') AS version;
-- 0.3.0 let her repoint her row at the superuser's object
UPDATE pgbert.model_versions SET weights = :secret_old WHERE name = 'evil';
RESET ROLE;
-- the new library with the old SQL objects: training says to update first, before any work
CREATE TABLE docs AS
SELECT 'text ' || i AS body, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END AS label FROM generate_series(1, 10) i;
SELECT train_classifier('docs', 'body', 'label', model => 'early', epochs => 1);
SELECT lo_unlink(:w_evil);
-- (its warning names the repointed row, with OIDs that vary: the queries below check it)
SET client_min_messages = error;
ALTER EXTENSION pgbert UPDATE;
SET client_min_messages = notice;
SELECT extversion FROM pg_extension WHERE extname = 'pgbert';
SELECT name, version, weights_sealed,
       (SELECT lomowner::regrole FROM pg_largeobject_metadata WHERE oid = weights) = pgbert.weights_owner()
       AS owned_by_extension_owner
FROM pgbert.model_versions ORDER BY name;
SET ROLE regress_alice;
SELECT classify('win a free phone', 'cls') = :'old_label' AS kept_after_update;
UPDATE pgbert.model_versions SET labels = '{a,b,c}';
RESET ROLE;
SET client_min_messages = warning;
DROP EXTENSION pgbert CASCADE;
SELECT convert_from(lo_get(:secret_old), 'UTF8') AS secret_survives_drop;
SELECT count(*) AS alices_weights_unlinked FROM pg_largeobject_metadata WHERE oid = :w_old;
SELECT lo_unlink(:secret_old);
\c :regress_db
DROP DATABASE pgbert_upgrade_test;

-- clean up: every model dropped by its owner, nothing left behind
SET ROLE regress_mallory;
SELECT drop_model('evil');
SET ROLE regress_alice;
SELECT drop_model('cls');
RESET ROLE;
SELECT lo_unlink(:secret);
SELECT lo_unlink(:mallory_w2);
DROP TABLE alice_docs, shared_docs;
SELECT count(*) - :large_objects_before AS large_objects_left FROM pg_largeobject_metadata;
SELECT count(*) AS models_left FROM pgbert.model_versions;
REVOKE CREATE ON DATABASE :"DBNAME" FROM regress_mallory;
DROP ROLE regress_alice;
DROP ROLE regress_mallory;
DROP ROLE "regress Bob Mixed";
