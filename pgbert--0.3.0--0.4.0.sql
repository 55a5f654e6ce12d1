-- pgbert 0.4.0: a catalog no role can subvert.
--
-- Only the extension's owner writes the catalog tables now. The management
-- functions users call are doors (C, pgbert_catalog_call) that pass the calling
-- role to SECURITY DEFINER functions pgbert.<name>_as(caller, ...), which nobody
-- else may execute: they check what the caller may do, then write. A model
-- version never changes after import (a trigger holds superusers to it too), and
-- its weights' large object belongs to the extension's owner, readable by the
-- model's owner role and its grantees, so no role can rewrite or repoint them.
\echo Use "ALTER EXTENSION pgbert UPDATE TO '0.4.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Privileges: read for everyone (training jobs: their owners), write for nobody
-- but the owner of the tables.
-- ---------------------------------------------------------------------------

REVOKE INSERT, UPDATE, DELETE ON pgbert.model_versions, pgbert.deployments,
    pgbert.model_grants, pgbert.training_log FROM PUBLIC;
REVOKE INSERT, UPDATE, DELETE ON pgbert.training_jobs FROM PUBLIC;
DROP POLICY add_version ON pgbert.model_versions;
DROP POLICY owner_update ON pgbert.model_versions;
DROP POLICY owner_delete ON pgbert.model_versions;
DROP POLICY owner_write ON pgbert.deployments;
DROP POLICY owner_write ON pgbert.training_log;
DROP POLICY owner_write ON pgbert.model_grants;
DROP POLICY owner_all ON pgbert.training_jobs;
CREATE POLICY owner_read ON pgbert.training_jobs FOR SELECT
    USING (pg_has_role(current_user, owner::oid, 'USAGE'));

-- Whether pgbert holds a version's weights: sealed at import (owned by the extension's
-- owner, read through grants). Only sealed weights are ever unlinked by pgbert. A 0.3.0
-- row repointed at another role's object is not sealed by the update below: that object
-- may be a superuser's, owned by the same role as the extension, so ownership alone
-- cannot tell.
ALTER TABLE pgbert.model_versions ADD COLUMN weights_sealed boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN pgbert.model_versions.weights_sealed IS
'pgbert holds the weights (sealed at import); drop_model and DROP EXTENSION CASCADE unlink only these';

-- current_user::regrole parses the name as an identifier: "Bob Mixed" fails and "Alice"
-- becomes alice. quote_ident first (the definer functions set these columns explicitly).
ALTER TABLE pgbert.model_versions ALTER COLUMN owner SET DEFAULT quote_ident(current_user)::regrole;
ALTER TABLE pgbert.deployments ALTER COLUMN deployed_by SET DEFAULT quote_ident(current_user)::regrole;
ALTER TABLE pgbert.training_jobs ALTER COLUMN owner SET DEFAULT quote_ident(current_user)::regrole;

-- What a model version is never changes after import; its metrics are written once,
-- by the training that created it. Superusers repairing a catalog by hand can set
-- session_replication_role = replica.
CREATE FUNCTION pgbert.keep_version_immutable()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (NEW.id, NEW.name, NEW.version, NEW.config, NEW.vocab, NEW.tokenizer_config, NEW.labels,
        NEW.weights, NEW.base_model, NEW.size_bytes, NEW.num_params, NEW.owner, NEW.created_at,
        NEW.weights_sealed)
       IS DISTINCT FROM
       (OLD.id, OLD.name, OLD.version, OLD.config, OLD.vocab, OLD.tokenizer_config, OLD.labels,
        OLD.weights, OLD.base_model, OLD.size_bytes, OLD.num_params, OLD.owner, OLD.created_at,
        OLD.weights_sealed)
       OR (NEW.metrics IS DISTINCT FROM OLD.metrics AND OLD.metrics <> '{}'::jsonb) THEN
        RAISE EXCEPTION 'model versions cannot be changed after import'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Version %s of model "%s" was updated.', OLD.version, OLD.name),
                  HINT = 'Import a new version instead.';
    END IF;
    RETURN NEW;
END
$$;


-- ---------------------------------------------------------------------------
-- Helpers of the definer functions.
-- ---------------------------------------------------------------------------

-- A user-given name as errors show it: at most 64 characters.
CREATE FUNCTION pgbert.shown(s text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN length(s) > 64 THEN left(s, 64) || '...' ELSE s END $$;

-- The role owning the extension: it owns the catalog and every model's weights.
CREATE FUNCTION pgbert.weights_owner()
RETURNS regrole
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT extowner::regrole FROM pg_catalog.pg_extension WHERE extname = 'pgbert' $$;

-- Raise unless role caller has the privileges of a model's owner; return the owner.
CREATE FUNCTION pgbert.require_owner(caller regrole, model_name text)
RETURNS regrole
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o regrole := pgbert.name_owner(model_name);
BEGIN
    IF o IS NULL THEN
        RAISE EXCEPTION 'model "%" does not exist', pgbert.shown(model_name)
            USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT pg_catalog.pg_has_role(caller::oid, o::oid, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of model "%"', model_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The model belongs to role %s.', o);
    END IF;
    RETURN o;
END
$$;

-- The old check, for the current role.
CREATE OR REPLACE FUNCTION pgbert.check_owner(model_name text)
RETURNS regrole
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pgbert.require_owner(quote_ident(current_user)::regrole, model_name) $$;

CREATE OR REPLACE FUNCTION pgbert.resolve_version(model_name text, model_version integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v integer;
BEGIN
    IF model_version IS NOT NULL THEN
        PERFORM 1 FROM pgbert.model_versions WHERE name = model_name AND version = model_version;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'model "%" has no version %', pgbert.shown(model_name), model_version
                USING ERRCODE = 'undefined_object';
        END IF;
        RETURN model_version;
    END IF;
    SELECT coalesce(d.version, max(v.version)) INTO v
    FROM pgbert.model_versions v LEFT JOIN pgbert.deployments d USING (name)
    WHERE v.name = model_name GROUP BY d.version;
    IF v IS NULL THEN
        RAISE EXCEPTION 'model "%" does not exist', pgbert.shown(model_name)
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name, version FROM pgbert.models lists the stored models.';
    END IF;
    RETURN v;
END
$$;

-- Make pgbert (the extension's owner) the only owner of a large object and take
-- every privilege anyone else held on it: weights are read through grants pgbert makes.
CREATE FUNCTION pgbert.seal_weights(w oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keeper regrole := pgbert.weights_owner();
    g oid;
BEGIN
    EXECUTE format('ALTER LARGE OBJECT %s OWNER TO %s', w, keeper);
    FOR g IN SELECT DISTINCT a.grantee
             FROM pg_catalog.pg_largeobject_metadata m, pg_catalog.aclexplode(m.lomacl) a
             WHERE m.oid = w AND a.grantee <> keeper::oid
    LOOP
        IF g = 0 THEN
            EXECUTE format('REVOKE ALL ON LARGE OBJECT %s FROM PUBLIC', w);
        ELSE
            EXECUTE format('REVOKE ALL ON LARGE OBJECT %s FROM %s', w, g::regrole);
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pgbert.seal_weights(oid) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- The definer functions. Each takes the calling role first (the door supplies it),
-- runs as the extension's owner with a fixed search_path, names every object by
-- schema, and builds SQL from identifiers only through regrole output and %s of oids.
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgbert.import_model_as(caller regrole, name text, weights oid, config jsonb, vocab bytea,
                                       tokenizer_config jsonb, labels text[], base_model text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := import_model_as.name;
    w oid := import_model_as.weights;
    uploader oid;
    info jsonb;
    n_classes integer;
    use_labels text[] := import_model_as.labels;
    owner_role regrole;
    new_version integer;
    dup text;
    g regrole;
BEGIN
    IF model_name IS NULL OR w IS NULL OR import_model_as.config IS NULL
       OR import_model_as.vocab IS NULL THEN
        RAISE EXCEPTION 'name, weights, config and vocab must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF model_name !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid model name "%"', pgbert.shown(model_name)
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'Names are 1 to 63 characters: letters, digits, "_", "." and "-", not starting with "." or "-".';
    END IF;

    -- the weights: a large object the caller owns (uploaded for this), not in use by a model
    SELECT lomowner INTO uploader FROM pg_catalog.pg_largeobject_metadata WHERE oid = w;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'large object % does not exist', w USING ERRCODE = 'undefined_object';
    END IF;
    SELECT format('version %s of model "%s"', v.version, v.name) INTO dup
    FROM pgbert.model_versions v WHERE v.weights = w;
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'large object % already holds the weights of %', w, dup
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Import a copy of the checkpoint (lo_import it again).';
    END IF;
    IF NOT pg_catalog.pg_has_role(caller::oid, uploader, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of large object % to import it as weights', w
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Upload the checkpoint yourself (lo_import or \lo_import) and import that large object.';
    END IF;

    info := pgbert.inspect_model(w, import_model_as.config, import_model_as.vocab,
                                 import_model_as.tokenizer_config);
    n_classes := (info ->> 'num_classes')::integer;
    IF use_labels IS NULL AND n_classes = 0 THEN
        use_labels := '{}';           -- an encoder without a classification head
    ELSIF use_labels IS NULL THEN
        use_labels := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(info -> 'config_labels'));
        IF cardinality(use_labels) <> n_classes THEN
            use_labels := ARRAY(SELECT 'LABEL_' || i FROM pg_catalog.generate_series(0, n_classes - 1) i);
        END IF;
    END IF;
    IF cardinality(use_labels) <> n_classes THEN
        RAISE EXCEPTION 'label set mismatch: the classifier has % outputs but % labels were given',
            n_classes, cardinality(use_labels)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(use_labels, NULL) IS NOT NULL
       OR (SELECT count(DISTINCT l) FROM unnest(use_labels) l) <> cardinality(use_labels) THEN
        RAISE EXCEPTION 'labels must be distinct and not null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- one import per name at a time, so versions are numbered without gaps or clashes
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgbert.model:' || model_name));
    owner_role := coalesce(pgbert.name_owner(model_name), caller);
    IF NOT pg_catalog.pg_has_role(caller::oid, owner_role::oid, 'USAGE') THEN
        RAISE EXCEPTION 'must be a member of role % to add a version to model "%"', owner_role, model_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT coalesce(max(version), 0) + 1 INTO new_version
    FROM pgbert.model_versions WHERE name = model_name;

    -- the weights now belong to pgbert: readable by the owner role and grantees, written by none
    PERFORM pgbert.seal_weights(w);
    EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO %s', w, owner_role);
    INSERT INTO pgbert.model_versions (name, version, config, vocab, tokenizer_config, labels,
                                       weights, base_model, size_bytes, num_params, owner, weights_sealed)
    VALUES (model_name, new_version, import_model_as.config, import_model_as.vocab,
            import_model_as.tokenizer_config, use_labels, w, import_model_as.base_model,
            (info ->> 'size_bytes')::bigint, (info ->> 'num_params')::bigint, owner_role, true);
    FOR g IN SELECT grantee FROM pgbert.model_grants WHERE name = model_name LOOP
        EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO %s', w, g);
    END LOOP;
    RETURN new_version;
END
$$;

CREATE FUNCTION pgbert.drop_model_as(caller regrole, name text, version integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := drop_model_as.name;
    r record;
    n integer := 0;
BEGIN
    PERFORM pgbert.require_owner(caller, model_name);
    IF drop_model_as.version IS NOT NULL THEN
        PERFORM pgbert.resolve_version(model_name, drop_model_as.version);
    END IF;
    FOR r IN SELECT v.version, v.weights, v.weights_sealed, m.lomowner FROM pgbert.model_versions v
             LEFT JOIN pg_catalog.pg_largeobject_metadata m ON m.oid = v.weights
             WHERE v.name = model_name
               AND (drop_model_as.version IS NULL OR v.version = drop_model_as.version)
             FOR UPDATE OF v
    LOOP
        DELETE FROM pgbert.model_versions v WHERE v.name = model_name AND v.version = r.version;
        -- only weights pgbert holds are unlinked; ones already gone, or never handed
        -- over (a 0.3.0 row repointed at another role's object), are left alone
        IF r.weights_sealed AND r.lomowner IS NOT NULL THEN
            PERFORM pg_catalog.lo_unlink(r.weights);
        ELSIF r.lomowner IS NOT NULL THEN
            RAISE NOTICE 'large object % of model "%" version % belongs to role %, not to pgbert: not unlinked',
                r.weights, model_name, r.version, r.lomowner::regrole;
        END IF;
        n := n + 1;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pgbert.model_versions v WHERE v.name = model_name) THEN
        DELETE FROM pgbert.model_grants g WHERE g.name = model_name;
    END IF;
    RETURN n;
END
$$;

CREATE FUNCTION pgbert.deploy_model_as(caller regrole, name text, version integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := deploy_model_as.name;
BEGIN
    PERFORM pgbert.require_owner(caller, model_name);
    IF deploy_model_as.version IS NULL THEN
        DELETE FROM pgbert.deployments d WHERE d.name = model_name;
    ELSE
        PERFORM pgbert.resolve_version(model_name, deploy_model_as.version);
        INSERT INTO pgbert.deployments AS d (name, version, deployed_by)
        VALUES (model_name, deploy_model_as.version, caller)
        ON CONFLICT ON CONSTRAINT deployments_pkey
        DO UPDATE SET version = excluded.version, deployed_at = pg_catalog.now(), deployed_by = excluded.deployed_by;
    END IF;
    RETURN pgbert.resolve_version(model_name);
END
$$;

CREATE FUNCTION pgbert.grant_model_as(caller regrole, name text, role regrole)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := grant_model_as.name;
    w oid;
BEGIN
    PERFORM pgbert.require_owner(caller, model_name);
    IF grant_model_as.role IS NULL THEN
        RAISE EXCEPTION 'role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO pgbert.model_grants (name, grantee) VALUES (model_name, grant_model_as.role)
    ON CONFLICT DO NOTHING;
    FOR w IN SELECT weights FROM pgbert.model_versions v WHERE v.name = model_name LOOP
        EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO %s', w, grant_model_as.role);
    END LOOP;
END
$$;

CREATE FUNCTION pgbert.revoke_model_as(caller regrole, name text, role regrole)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := revoke_model_as.name;
    o regrole := pgbert.require_owner(caller, revoke_model_as.name);
    w oid;
BEGIN
    IF revoke_model_as.role IS NULL THEN
        RAISE EXCEPTION 'role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF revoke_model_as.role = o THEN
        RAISE EXCEPTION 'cannot revoke model "%" from its owner role %', model_name, o
            USING ERRCODE = 'invalid_grant_operation';
    END IF;
    DELETE FROM pgbert.model_grants g WHERE g.name = model_name AND g.grantee = revoke_model_as.role;
    FOR w IN SELECT weights FROM pgbert.model_versions v WHERE v.name = model_name LOOP
        EXECUTE format('REVOKE SELECT ON LARGE OBJECT %s FROM %s', w, revoke_model_as.role);
    END LOOP;
END
$$;

-- Results of the training that created a version, recorded by train_classifier in
-- that same transaction: metrics and the per-step/per-epoch log (rows of
-- [epoch, step, train_loss, learning_rate, grad_norm, validation_loss, validation_accuracy]).
CREATE FUNCTION pgbert.record_training_as(caller regrole, name text, version integer, metrics jsonb,
                                          log jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := record_training_as.name;
BEGIN
    PERFORM pgbert.require_owner(caller, model_name);
    -- created_at is the creating transaction's start time: now() in that transaction
    UPDATE pgbert.model_versions v SET metrics = record_training_as.metrics
    WHERE v.name = model_name AND v.version = record_training_as.version AND v.metrics = '{}'::jsonb
      AND v.created_at = pg_catalog.now();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'training results of model "%" version % can only be recorded by the training that created it',
            model_name, record_training_as.version
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO pgbert.training_log (name, version, epoch, step, train_loss, learning_rate, grad_norm,
                                     validation_loss, validation_accuracy)
    SELECT model_name, record_training_as.version, (r ->> 0)::integer, (r ->> 1)::integer,
           (r ->> 2)::float8, (r ->> 3)::float8, (r ->> 4)::float8, (r ->> 5)::float8, (r ->> 6)::float8
    FROM pg_catalog.jsonb_array_elements(coalesce(record_training_as.log, '[]'::jsonb)) r;
END
$$;

CREATE FUNCTION pgbert.start_training_as(caller regrole, relation regclass, text_column name,
                                         label_column name, model text, base_model text,
                                         epochs integer, batch_size integer, learning_rate float8,
                                         max_length integer, validation_fraction float8, seed integer,
                                         weight_decay float8, warmup_ratio float8,
                                         freeze_encoder boolean, gradient_accumulation integer,
                                         max_grad_norm float8, class_weights jsonb,
                                         early_stopping_patience integer, keep_better boolean)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job bigint;
BEGIN
    IF relation IS NULL OR text_column IS NULL OR label_column IS NULL OR model IS NULL THEN
        RAISE EXCEPTION 'relation, text_column, label_column and model must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- the job runs as the caller: it will read the table with the caller's privileges
    -- and policies; refuse now what it could not do then
    IF NOT (pg_catalog.has_column_privilege(caller::oid, relation::oid, text_column::text, 'SELECT')
            AND pg_catalog.has_column_privilege(caller::oid, relation::oid, label_column::text, 'SELECT')) THEN
        RAISE EXCEPTION 'permission denied for table %', relation
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO pgbert.training_jobs (model, args, cpu_threads, owner)
    VALUES (model,
            jsonb_build_object('relation', relation::oid, 'text_column', text_column,
                               'label_column', label_column, 'model', model, 'base_model', base_model,
                               'epochs', epochs, 'batch_size', batch_size, 'learning_rate', learning_rate,
                               'max_length', max_length, 'validation_fraction', validation_fraction,
                               'seed', seed, 'weight_decay', weight_decay, 'warmup_ratio', warmup_ratio,
                               'freeze_encoder', freeze_encoder,
                               'gradient_accumulation', gradient_accumulation,
                               'max_grad_norm', max_grad_norm, 'class_weights', class_weights,
                               'early_stopping_patience', early_stopping_patience,
                               'keep_better', keep_better),
            current_setting('pgbert.cpu_threads')::integer, caller)
    RETURNING id INTO job;
    -- the worker waits until this transaction commits; a rollback leaves it nothing to do
    PERFORM pgbert.launch_training_worker(job);
    RETURN job;
END
$$;

CREATE FUNCTION pgbert.cancel_training_as(caller regrole, job bigint)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j pgbert.training_jobs;
BEGIN
    SELECT * INTO j FROM pgbert.training_jobs WHERE id = job FOR UPDATE;
    -- others' jobs are invisible to the caller, so they "do not exist" for it either
    IF NOT FOUND OR NOT pg_catalog.pg_has_role(caller::oid, j.owner::oid, 'USAGE') THEN
        RAISE EXCEPTION 'training job % does not exist', job USING ERRCODE = 'undefined_object';
    END IF;
    IF j.status = 'queued' THEN
        UPDATE pgbert.training_jobs SET status = 'cancelled', finished_at = pg_catalog.now() WHERE id = job;
        RETURN true;
    ELSIF j.status = 'running' THEN
        RETURN pg_catalog.pg_cancel_backend(j.pid);
    END IF;
    RETURN false;
END
$$;

REVOKE ALL ON FUNCTION pgbert.import_model_as(regrole, text, oid, jsonb, bytea, jsonb, text[], text),
    pgbert.drop_model_as(regrole, text, integer), pgbert.deploy_model_as(regrole, text, integer),
    pgbert.grant_model_as(regrole, text, regrole), pgbert.revoke_model_as(regrole, text, regrole),
    pgbert.record_training_as(regrole, text, integer, jsonb, jsonb),
    pgbert.start_training_as(regrole, regclass, name, name, text, text, integer, integer, float8, integer,
                             float8, integer, float8, float8, boolean, integer, float8, jsonb, integer, boolean),
    pgbert.cancel_training_as(regrole, bigint)
    FROM PUBLIC;

-- A job's worker is launched by start_training only (and checks the job is the caller's).
REVOKE ALL ON FUNCTION pgbert.launch_training_worker(bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- The doors: same names, arguments and defaults as in 0.3.0.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION import_model(name text, weights oid, config jsonb, vocab bytea,
                                        tokenizer_config jsonb DEFAULT NULL, labels text[] DEFAULT NULL,
                                        base_model text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION drop_model(name text, version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION deploy_model(name text, version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION grant_model(name text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION revoke_model(name text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

CREATE FUNCTION pgbert.record_training(name text, version integer, metrics jsonb, log jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION pgbert.record_training(text, integer, jsonb, jsonb) IS
'store the metrics and training log of a version in the transaction that created it (train_classifier does)';

CREATE OR REPLACE FUNCTION start_training(relation regclass, text_column name, label_column name,
                               model text DEFAULT 'default', base_model text DEFAULT NULL,
                               epochs integer DEFAULT 3, batch_size integer DEFAULT 32,
                               learning_rate float8 DEFAULT 5e-5, max_length integer DEFAULT 128,
                               validation_fraction float8 DEFAULT 0.1, seed integer DEFAULT 42,
                               weight_decay float8 DEFAULT 0.0, warmup_ratio float8 DEFAULT 0.0,
                               freeze_encoder boolean DEFAULT false,
                               gradient_accumulation integer DEFAULT 1,
                               max_grad_norm float8 DEFAULT 1.0,
                               class_weights jsonb DEFAULT NULL,
                               early_stopping_patience integer DEFAULT 0,
                               keep_better boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION cancel_training(job bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

-- A job's worker runs its own job only: the one it claimed, as its owner.
CREATE OR REPLACE FUNCTION pgbert.run_training_job(job bigint)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT @extschema@.train_classifier(
           (a->>'relation')::oid::regclass, (a->>'text_column')::name, (a->>'label_column')::name,
           a->>'model', a->>'base_model', (a->>'epochs')::int, (a->>'batch_size')::int,
           (a->>'learning_rate')::float8, (a->>'max_length')::int, (a->>'validation_fraction')::float8,
           (a->>'seed')::int, (a->>'weight_decay')::float8, (a->>'warmup_ratio')::float8,
           (a->>'freeze_encoder')::boolean, (a->>'gradient_accumulation')::int,
           (a->>'max_grad_norm')::float8, nullif(a->'class_weights', 'null'::jsonb),
           (a->>'early_stopping_patience')::int, (a->>'keep_better')::boolean)
FROM (SELECT args AS a FROM pgbert.training_jobs
      WHERE id = job AND status = 'running' AND pid = pg_backend_pid()
        AND owner = quote_ident(current_user)::regrole) j
$$;

-- ---------------------------------------------------------------------------
-- Existing models: hand their weights to pgbert (the owner role keeps SELECT).
-- A 0.3.0 row whose weights belong to a role other than its owner was repointed
-- at someone else's large object: it is left as it is, and pgbert will never
-- unlink that object.
-- ---------------------------------------------------------------------------

DO $$
DECLARE
    r record;
    g regrole;
BEGIN
    FOR r IN SELECT v.name, v.version, v.weights, v.owner, m.lomowner
             FROM pgbert.model_versions v
             JOIN pg_catalog.pg_largeobject_metadata m ON m.oid = v.weights
             ORDER BY v.name, v.version
    LOOP
        IF r.lomowner = r.owner::oid THEN
            PERFORM pgbert.seal_weights(r.weights);
            EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO %s', r.weights, r.owner);
            FOR g IN SELECT grantee FROM pgbert.model_grants WHERE name = r.name LOOP
                EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO %s', r.weights, g);
            END LOOP;
            UPDATE pgbert.model_versions SET weights_sealed = true WHERE weights = r.weights;
        ELSE
            RAISE WARNING 'model "%" version %: its weights, large object %, belong to role %, not to the model''s owner %; left unchanged',
                r.name, r.version, r.weights, r.lomowner::regrole, r.owner;
        END IF;
    END LOOP;
END
$$;

CREATE TRIGGER keep_version_immutable BEFORE UPDATE ON pgbert.model_versions
    FOR EACH ROW EXECUTE FUNCTION pgbert.keep_version_immutable();
