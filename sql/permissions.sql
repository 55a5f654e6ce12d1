-- Permissions: reading a model needs SELECT on its weights (grant_model gives it for every
-- version); changing or dropping it needs the privileges of its owner role; nobody but the
-- extension's owner writes the catalog directly. Attacks are in the security suite.
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixture :abs_srcdir '/test/fixtures/models/sql_cls'
\set weights_file :fixture '/model.safetensors'
\set cfg `cat :'fixture'/config.json`
\set vocab `cat :'fixture'/vocab.txt`

-- An error's code, message, detail and hint, with large-object OIDs (which vary) masked.
CREATE FUNCTION pg_temp.err(q text) RETURNS TABLE (code text, message text, detail text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    code := 'ok';
    RETURN NEXT;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    message := regexp_replace(message, '\m\d{4,}\M', 'N', 'g');
    detail := regexp_replace(detail, '\m\d{4,}\M', 'N', 'g');
    RETURN NEXT;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.err(text) TO PUBLIC;

CREATE ROLE regress_alice;
CREATE ROLE regress_bob;
-- the weights are uploaded by their future owner (here: created, then handed over)
\lo_import :weights_file
\set uploaded :LASTOID
SELECT lo_from_bytea(0, lo_get(:uploaded)) AS w1 \gset
SELECT lo_from_bytea(0, lo_get(:uploaded)) AS w2 \gset
SELECT lo_from_bytea(0, lo_get(:uploaded)) AS w3 \gset
ALTER LARGE OBJECT :w1 OWNER TO regress_alice;
ALTER LARGE OBJECT :w2 OWNER TO regress_alice;
ALTER LARGE OBJECT :w3 OWNER TO regress_bob;
SELECT lo_unlink(:uploaded);

SET ROLE regress_alice;
SELECT import_model('alices', :w1, :'cfg', :'vocab') AS version;
SELECT classify('hello', 'alices') IS NOT NULL AS owner_can_classify;
SELECT name, version, owner FROM pgbert.models;

-- bob may see the catalog but not use, change or drop alice's model
SET ROLE regress_bob;
SELECT name, version, owner FROM pgbert.models;
\x on
SELECT * FROM pg_temp.err($$SELECT classify('hello', 'alices')$$);
SELECT * FROM pg_temp.err($$SELECT embed('hello', 'alices')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM export_model('alices')$$);
\x off
\set VERBOSITY terse
SELECT drop_model('alices');
SELECT deploy_model('alices', 1);
SELECT grant_model('alices', 'regress_bob');
-- adding a version to someone else's name
SELECT import_model('alices', :w3, :'cfg', :'vocab');
-- direct DML on the catalog is refused: only pgbert's own functions write it
DELETE FROM pgbert.model_versions WHERE name = 'alices';
UPDATE pgbert.model_versions SET labels = '{a,b,c}' WHERE name = 'alices';
INSERT INTO pgbert.model_versions (name, version, config, vocab, labels, weights, size_bytes, num_params)
VALUES ('alices', 9, '{}', '\x', '{}', :w3, 0, 0);
INSERT INTO pgbert.model_versions (name, version, config, vocab, labels, weights, size_bytes, num_params, owner)
VALUES ('bobs', 1, '{}', '\x', '{}', :w3, 0, 0, 'regress_alice');
INSERT INTO pgbert.deployments (name, version) VALUES ('alices', 1);
SELECT name, version, labels FROM pgbert.models;
-- bob's own model is his to manage
SELECT import_model('bobs', :w3, :'cfg', :'vocab') AS version;
SELECT name, owner FROM pgbert.models ORDER BY name;

-- a cached copy does not bypass the check: the superuser loads it, then bob tries
RESET ROLE;
SELECT classify('hello', 'alices') IS NOT NULL AS loaded;
SET ROLE regress_bob;
SELECT classify('hello', 'alices');

-- alice grants bob the model: every version, including later ones
SET ROLE regress_alice;
SELECT grant_model('alices', 'regress_bob');
SELECT import_model('alices', :w2, :'cfg', :'vocab') AS version;
SET ROLE regress_bob;
SELECT classify('hello', 'alices') IS NOT NULL AS bob_can_classify;
SELECT ord, label, round(score::numeric, 5) AS score FROM classify_batch(ARRAY['hello'], 'alices') WHERE label IS NOT NULL;
-- both versions' weights are readable now
SELECT length(lo_get(:w1)) = length(lo_get(:w2)) AS both_readable;
-- still not an owner
SELECT drop_model('alices', 1);

-- revoking takes it back
SET ROLE regress_alice;
SELECT revoke_model('alices', 'regress_bob');
SET ROLE regress_bob;
SELECT classify('hello', 'alices');

-- owners drop their own models (and their weights)
SELECT drop_model('bobs');
SET ROLE regress_alice;
SELECT drop_model('alices');
RESET ROLE;
SELECT count(*) AS models_left FROM pgbert.models;
SELECT count(*) AS weights_left FROM pg_largeobject_metadata WHERE oid IN (:w1, :w2, :w3);
DROP ROLE regress_alice;
DROP ROLE regress_bob;
