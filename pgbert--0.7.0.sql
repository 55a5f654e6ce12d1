-- pgbert 0.7.0: everything CREATE EXTENSION pgbert installs, in one file.
--
-- A new database runs this script alone. A database created at an earlier release
-- reaches the same objects through pgbert--0.1.0.sql and the upgrade scripts
-- pgbert--A--B.sql, which stay as they were released; test/client/check_install_paths.sh
-- checks that both paths give the same catalog. A release after 0.7.0 adds its upgrade
-- script and replaces this file with pgbert--<new version>.sql.
--
-- Contents, in order:
--    1. the schema pgbert
--    2. catalog tables: models, deployments, grants, training log, training jobs
--    3. catalog helpers: ownership, version resolution, decision rules
--    4. catalog integrity: row-level security and triggers
--    5. tokenizer
--    6. model management: the definer functions and the doors users call
--    7. inference: classify, classify_scores, classify_batch, embed
--    8. decision rules and calibration
--    9. training
--   10. encoder and trainer workers
--   11. views
--   12. Citus
--   13. the DROP EXTENSION guard
--   14. privileges: what PUBLIC may use
-- Comments (COMMENT ON) sit beside the objects they describe.
--
-- Conventions: every plpgsql and sql function runs with search_path = pg_catalog, pg_temp
-- and names pgbert's objects by schema; @extschema@ is the schema of the user-facing
-- functions (CREATE EXTENSION ... SCHEMA).

\echo Use "CREATE EXTENSION pgbert" to load this file. \quit

-- ===========================================================================
-- 1. The schema pgbert: the catalog and the internal functions. The user-facing
--    functions (classify, import_model, train_classifier, ...) are created in the
--    extension's schema.
-- ===========================================================================

CREATE SCHEMA pgbert;

-- ===========================================================================
-- 2. Catalog tables. Model weights are large objects (the checkpoint's
--    model.safetensors unchanged), owned by the extension's owner and readable by
--    the model's owner role and its grantees. Only the extension's owner writes these
--    tables, through the definer functions of section 6; everyone reads them (training
--    jobs: their owners only). pg_dump dumps their rows (pg_extension_config_dump).
-- ===========================================================================

-- One row per model version; a version never changes after import (section 4), except
-- its metrics, written once by the training that created it, and its decision rule.
CREATE TABLE pgbert.model_versions (
    id               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    name             text NOT NULL CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$'),
    version          integer NOT NULL CHECK (version > 0),
    config           jsonb NOT NULL,
    vocab            bytea NOT NULL,
    tokenizer_config jsonb,
    labels           text[] NOT NULL,
    weights          oid NOT NULL UNIQUE,
    base_model       text,
    metrics          jsonb NOT NULL DEFAULT '{}',
    size_bytes       bigint NOT NULL,
    num_params       bigint NOT NULL,
    -- quote_ident: a bare current_user::regrole would parse "Bob Mixed" as an identifier
    owner            regrole NOT NULL DEFAULT quote_ident(current_user)::regrole,
    created_at       timestamptz NOT NULL DEFAULT now(),
    weights_sealed   boolean NOT NULL DEFAULT false,
    decision_rule    jsonb,
    PRIMARY KEY (name, version)
);

COMMENT ON TABLE pgbert.model_versions IS
'one row per model version: config.json, vocab.txt (UTF-8 bytes), tokenizer_config.json, labels in id order, and the large object holding model.safetensors';

COMMENT ON COLUMN pgbert.model_versions.weights_sealed IS
'pgbert holds the weights (sealed at import); drop_model and DROP EXTENSION CASCADE unlink only these';

COMMENT ON COLUMN pgbert.model_versions.decision_rule IS
'how classify() picks a label from the scores: temperature, training_priors, priors, thresholds (set_decision_rule); NULL: the most probable label';

-- A pinned version per name; names without a row serve their latest version.
CREATE TABLE pgbert.deployments (
    name        text PRIMARY KEY,
    version     integer NOT NULL,
    deployed_at timestamptz NOT NULL DEFAULT now(),
    deployed_by regrole NOT NULL DEFAULT quote_ident(current_user)::regrole,
    FOREIGN KEY (name, version) REFERENCES pgbert.model_versions (name, version) ON DELETE CASCADE
);

COMMENT ON TABLE pgbert.deployments IS
'pinned versions (deploy_model); a name without a row serves its latest version';

-- Roles that may read a model: applied to every version's large object, including later ones.
CREATE TABLE pgbert.model_grants (
    name    text NOT NULL,
    grantee regrole NOT NULL,
    PRIMARY KEY (name, grantee)
);

COMMENT ON TABLE pgbert.model_grants IS
'roles granted SELECT on the weights of every version of a model (grant_model)';

-- What train_classifier did: per optimizer step (train loss of the step's batches,
-- learning rate, gradient norm before clipping) and per epoch (mean train loss,
-- validation loss and accuracy; learning_rate and grad_norm NULL).
CREATE TABLE pgbert.training_log (
    name                text NOT NULL,
    version             integer NOT NULL,
    epoch               integer NOT NULL,
    step                integer NOT NULL,
    train_loss          float8,
    learning_rate       float8,
    grad_norm           float8,
    validation_loss     float8,
    validation_accuracy float8,
    FOREIGN KEY (name, version) REFERENCES pgbert.model_versions (name, version) ON DELETE CASCADE
);
CREATE INDEX ON pgbert.training_log (name, version, step);

COMMENT ON TABLE pgbert.training_log IS
'train_classifier''s per-step and per-epoch losses, learning rates and validation metrics of each trained version';

-- Training jobs run by background workers (start_training), each as the role that queued it.
CREATE TABLE pgbert.training_jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model        text NOT NULL,
    args         jsonb NOT NULL,
    cpu_threads  integer NOT NULL,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    pid          integer,
    result       jsonb,
    error        text,
    owner        regrole NOT NULL DEFAULT quote_ident(current_user)::regrole,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);

COMMENT ON TABLE pgbert.training_jobs IS
'train_classifier() calls started with start_training(): arguments, status, result or error';

-- The catalog is user data: pg_dump dumps these tables' rows and the sequences' positions.
SELECT pg_catalog.pg_extension_config_dump('pgbert.model_versions', '');
SELECT pg_catalog.pg_extension_config_dump('pgbert.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('pgbert.model_grants', '');
SELECT pg_catalog.pg_extension_config_dump('pgbert.model_versions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgbert.training_log', '');
SELECT pg_catalog.pg_extension_config_dump('pgbert.training_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('pgbert.training_jobs_id_seq', '');

-- ===========================================================================
-- 3. Catalog helpers, used by the definer functions, the policies and the triggers.
-- ===========================================================================

-- Owner role of a model name, NULL when no version exists. SECURITY DEFINER so that it
-- sees the whole catalog whatever policies apply to the caller.
CREATE FUNCTION pgbert.name_owner(model_name text)
RETURNS regrole
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT owner FROM pgbert.model_versions WHERE name = model_name LIMIT 1 $$;

-- True when the current role has the privileges of the owner of a model name.
CREATE FUNCTION pgbert.owns_name(model_name text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_has_role(current_user, pgbert.name_owner(model_name)::oid, 'USAGE') $$;

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

-- The same check for the current role.
CREATE FUNCTION pgbert.check_owner(model_name text)
RETURNS regrole
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pgbert.require_owner(quote_ident(current_user)::regrole, model_name) $$;

-- The version a name serves: pinned, else latest; version given = that one (checked).
CREATE FUNCTION pgbert.resolve_version(model_name text, model_version integer DEFAULT NULL)
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

-- Refuse, naming the model, a caller who cannot read these weights: the check lo_get
-- would make (owner role or a SELECT grant, through role membership), with the model's
-- name in the message instead of the large object's OID.
CREATE FUNCTION pgbert.require_weights_readable(weights oid, model_name text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_largeobject_metadata l
                   WHERE l.oid = weights
                     AND (pg_has_role(l.lomowner, 'USAGE')
                          OR EXISTS (SELECT FROM aclexplode(l.lomacl) a
                                     WHERE a.privilege_type = 'SELECT'
                                       AND (a.grantee = 0 OR pg_has_role(a.grantee, 'USAGE'))))) THEN
        RAISE EXCEPTION 'permission denied for model "%"', pgbert.shown(model_name)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The model''s owner can grant it with grant_model().';
    END IF;
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

-- Label shares for every label of a model, each at least 0 (above 0 for
-- training_priors), scaled to sum to 1.
CREATE FUNCTION pgbert.checked_label_shares(labels text[], what text, shares jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total float8;
    bad text;
BEGIN
    IF jsonb_typeof(shares) <> 'object' THEN
        RAISE EXCEPTION '% must be an object of label shares, as {"ham": 0.85, "spam": 0.15}', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT min(k) INTO bad FROM jsonb_object_keys(shares) k WHERE k <> ALL (labels);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION '% names "%", which is not a label of the model', what, pgbert.shown(bad)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT min(l) INTO bad FROM unnest(labels) l WHERE NOT shares ? l;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION '% must give every label a share; "%" has none', what, pgbert.shown(bad)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT min(e.key) INTO bad FROM jsonb_each(shares) e
    WHERE jsonb_typeof(e.value) <> 'number'
       OR e.value::text::float8 < 0 OR (what = 'training_priors' AND e.value::text::float8 = 0);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION '% of "%" must be a number %', what, pgbert.shown(bad),
                        CASE WHEN what = 'training_priors' THEN 'above 0' ELSE 'of at least 0' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT sum(e.value::text::float8) INTO total FROM jsonb_each(shares) e;
    IF NOT total > 0 OR total = 'Infinity' THEN
        RAISE EXCEPTION '% must add up to a positive number', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN (SELECT jsonb_object_agg(e.key, e.value::text::float8 / total) FROM jsonb_each(shares) e);
END
$$;

-- A decision rule, checked against a model's labels; '{}' and NULL are NULL (no rule).
CREATE FUNCTION pgbert.checked_decision_rule(labels text[], rule jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
    v jsonb;
    result jsonb := '{}';
    named float8;
    bad text;
BEGIN
    IF rule IS NULL OR rule = 'null'::jsonb OR rule = '{}'::jsonb THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(rule) <> 'object' THEN
        RAISE EXCEPTION 'a decision rule must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It takes temperature, training_priors, priors and thresholds.';
    END IF;
    IF cardinality(labels) < 2 THEN
        RAISE EXCEPTION 'a decision rule needs a model with at least two labels'
            USING ERRCODE = 'wrong_object_type';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(rule) LOOP
        IF k = 'temperature' THEN
            IF jsonb_typeof(v) <> 'number' OR NOT v::text::float8 BETWEEN 0.01 AND 100 THEN
                RAISE EXCEPTION 'temperature must be a number between 0.01 and 100'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            result := result || jsonb_build_object(k, v);
        ELSIF k IN ('training_priors', 'priors') THEN
            result := result || jsonb_build_object(k, pgbert.checked_label_shares(labels, k, v));
        ELSIF k = 'thresholds' THEN
            IF jsonb_typeof(v) <> 'object' OR v = '{}'::jsonb THEN
                RAISE EXCEPTION 'thresholds must be an object of label thresholds, as {"spam": 0.3}'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            SELECT min(t) INTO bad FROM jsonb_object_keys(v) t WHERE t <> ALL (labels);
            IF bad IS NOT NULL THEN
                RAISE EXCEPTION 'thresholds names "%", which is not a label of the model', pgbert.shown(bad)
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            SELECT min(e.key) INTO bad FROM jsonb_each(v) e
            WHERE jsonb_typeof(e.value) <> 'number' OR NOT (e.value::text::float8 > 0 AND e.value::text::float8 < 1);
            IF bad IS NOT NULL THEN
                RAISE EXCEPTION 'the threshold of "%" must be a number between 0 and 1', pgbert.shown(bad)
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            SELECT sum(e.value::text::float8) INTO named FROM jsonb_each(v) e;
            -- labels without a threshold share what the named ones leave
            IF (SELECT count(*) FROM jsonb_object_keys(v)) < cardinality(labels) AND named >= 1 THEN
                RAISE EXCEPTION 'thresholds add up to %, leaving nothing for the labels they do not name', named
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            result := result || jsonb_build_object(k, v);
        ELSE
            RAISE EXCEPTION 'unknown key "%" in a decision rule', pgbert.shown(k)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'It takes temperature, training_priors, priors and thresholds.';
        END IF;
    END LOOP;
    IF result ? 'priors' AND NOT result ? 'training_priors' THEN
        RAISE EXCEPTION 'priors need the training_priors they replace'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'train_classifier records them; for an imported model, give training_priors too.';
    END IF;
    RETURN result;
END
$$;

-- ===========================================================================
-- 4. Catalog integrity: row-level security (reads: everyone, training jobs: their
--    owners; writes: only the tables' owner, who bypasses the policies) and triggers.
-- ===========================================================================

ALTER TABLE pgbert.model_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgbert.deployments ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgbert.model_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgbert.training_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgbert.training_jobs ENABLE ROW LEVEL SECURITY;

CREATE POLICY read_all ON pgbert.model_versions FOR SELECT USING (true);
CREATE POLICY read_all ON pgbert.deployments FOR SELECT USING (true);
CREATE POLICY read_all ON pgbert.model_grants FOR SELECT USING (true);
CREATE POLICY read_all ON pgbert.training_log FOR SELECT USING (true);
CREATE POLICY owner_read ON pgbert.training_jobs FOR SELECT
    USING (pg_has_role(current_user, owner::oid, 'USAGE'));

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

CREATE TRIGGER keep_version_immutable BEFORE UPDATE ON pgbert.model_versions
    FOR EACH ROW EXECUTE FUNCTION pgbert.keep_version_immutable();

-- An imported config.json may carry a rule (export_model writes it there): it moves to
-- the column, so a version's rule has one home.
CREATE FUNCTION pgbert.take_decision_rule()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.config ? 'pgbert_decision_rule' THEN
        NEW.decision_rule := pgbert.checked_decision_rule(NEW.labels, NEW.config -> 'pgbert_decision_rule');
        NEW.config := NEW.config - 'pgbert_decision_rule';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER take_decision_rule BEFORE INSERT ON pgbert.model_versions
    FOR EACH ROW EXECUTE FUNCTION pgbert.take_decision_rule();

-- A deleted version (drop_model) leaves the encoder worker's engine at once.
CREATE FUNCTION pgbert.worker_forget_version()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pgbert_worker_forget_version'
LANGUAGE C;

CREATE TRIGGER worker_forget_version AFTER DELETE ON pgbert.model_versions
    FOR EACH ROW EXECUTE FUNCTION pgbert.worker_forget_version();

-- ===========================================================================
-- 5. Tokenizer: Hugging Face BertTokenizer, exactly, over the bundled uncased
--    vocabulary or a stored model's.
-- ===========================================================================

-- Word pieces of input, exactly as Hugging Face's BertTokenizer.tokenize().
CREATE FUNCTION bert_tokenize(input text, model text DEFAULT NULL,
                              do_lower_case boolean DEFAULT NULL)
RETURNS text[]
AS 'MODULE_PATHNAME', 'pgbert_bert_tokenize'
LANGUAGE C IMMUTABLE PARALLEL SAFE COST 100;

COMMENT ON FUNCTION bert_tokenize(text, text, boolean) IS
'word pieces of input (no [CLS]/[SEP]), as Hugging Face BertTokenizer.tokenize(); model NULL = bundled uncased vocabulary, else that model''s vocabulary and settings';

-- Input ids with [CLS] and [SEP], truncated to max_length, as BertTokenizer(input, truncation=True).
CREATE FUNCTION bert_token_ids(input text, model text DEFAULT NULL,
                               max_length integer DEFAULT 512,
                               do_lower_case boolean DEFAULT NULL)
RETURNS integer[]
AS 'MODULE_PATHNAME', 'pgbert_bert_token_ids'
LANGUAGE C IMMUTABLE PARALLEL SAFE COST 100;

COMMENT ON FUNCTION bert_token_ids(text, text, integer, boolean) IS
'input ids [CLS] ... [SEP] truncated to max_length, as Hugging Face BertTokenizer(input, truncation=True); model NULL = bundled uncased vocabulary, else that model''s';

-- Build facts: versions, Unicode tables, whether CUDA was compiled in.
CREATE FUNCTION pgbert_info()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_info'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION pgbert_info() IS
'build facts of the loaded pgbert library: version, utf8proc Unicode version, tokenizer reference tables, CUDA';

-- ===========================================================================
-- 6. Model management. The functions users call (import_model, drop_model, ...) are
--    doors (C, pgbert_catalog_call) that pass the calling role to a SECURITY DEFINER
--    function pgbert.<name>_as(caller, ...), which no one else may execute (section
--    14): it checks what the caller may do, then writes as the extension's owner.
--    The definer functions build SQL from identifiers only through regrole output and
--    %s of oids.
-- ===========================================================================

-- Validate a checkpoint against its config and vocabulary (reads the weights as the caller).
CREATE FUNCTION pgbert.inspect_model(weights oid, config jsonb, vocab bytea,
                                     tokenizer_config jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_inspect_model'
LANGUAGE C STABLE;

-- A new version: the caller's large object becomes sealed weights (section 3).
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

-- Drop one version, or every version, of a model; unlink the weights pgbert holds.
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

-- Pin the version a model serves (NULL: follow the latest again).
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

-- Let a role read every current and future version of a model, or stop it.
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

-- Set, change or clear (rule NULL) a version's decision rule: the given keys replace
-- the stored ones, a key given as null is removed.
CREATE FUNCTION pgbert.set_decision_rule_as(caller regrole, name text, rule jsonb, version integer)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := set_decision_rule_as.name;
    v pgbert.model_versions;
    merged jsonb;
BEGIN
    IF model_name IS NULL THEN
        RAISE EXCEPTION 'name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pgbert.require_owner(caller, model_name);
    SELECT * INTO v FROM pgbert.model_versions m
    WHERE m.name = model_name AND m.version = pgbert.resolve_version(model_name, set_decision_rule_as.version)
    FOR UPDATE;
    IF rule IS NOT NULL AND jsonb_typeof(rule) <> 'object' THEN
        RAISE EXCEPTION 'a decision rule must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It takes temperature, training_priors, priors and thresholds; NULL clears it.';
    END IF;
    IF rule IS NOT NULL THEN
        merged := pgbert.checked_decision_rule(v.labels,
                                               jsonb_strip_nulls(coalesce(v.decision_rule, '{}') || rule));
    END IF;
    UPDATE pgbert.model_versions m SET decision_rule = merged WHERE m.id = v.id;
    RETURN merged;
END
$$;

-- The doors.
CREATE FUNCTION import_model(name text, weights oid, config jsonb, vocab bytea,
                             tokenizer_config jsonb DEFAULT NULL, labels text[] DEFAULT NULL,
                             base_model text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION import_model(text, oid, jsonb, bytea, jsonb, text[], text) IS
'record a Hugging Face BERT checkpoint (model.safetensors already in large object weights, vocab.txt as bytes) as the next version of a model; validated first; returns the version';

-- The same, with vocab.txt as text (its characters must exist in the database encoding).
CREATE FUNCTION import_model(name text, weights oid, config jsonb, vocab text,
                             tokenizer_config jsonb DEFAULT NULL, labels text[] DEFAULT NULL,
                             base_model text DEFAULT NULL)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.import_model(name, weights, config, convert_to(vocab, 'UTF8'),
                                      tokenizer_config, labels, base_model) $$;

COMMENT ON FUNCTION import_model(text, oid, jsonb, text, jsonb, text[], text) IS
'record a Hugging Face BERT checkpoint (model.safetensors already in large object weights) as the next version of a model; validated first; returns the version';

CREATE FUNCTION drop_model(name text, version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION drop_model(text, integer) IS
'drop a model version (or all versions when version is NULL) and unlink its weights; returns how many versions were dropped';

CREATE FUNCTION deploy_model(name text, version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION deploy_model(text, integer) IS
'serve a given version of a model (pin, or roll back); version NULL serves the latest again; returns the version now served';

CREATE FUNCTION grant_model(name text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION grant_model(text, regrole) IS
'allow a role to use a model: SELECT on the weights of every current and future version';

CREATE FUNCTION revoke_model(name text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION revoke_model(text, regrole) IS
'withdraw what grant_model gave a role';

CREATE FUNCTION set_decision_rule(name text, rule jsonb, version integer DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION set_decision_rule(text, jsonb, integer) IS
'merge keys into a version''s decision rule (temperature, training_priors, priors, thresholds; a null value removes one, rule NULL clears all); version NULL = deployed';

-- The files of a model version, as from_pretrained expects them in a directory; the
-- decision rule travels in config.json (pgbert_decision_rule).
CREATE FUNCTION export_model(name text, version integer DEFAULT NULL)
RETURNS TABLE (file text, contents bytea)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r pgbert.model_versions;
    cfg jsonb;
BEGIN
    SELECT * INTO r FROM pgbert.model_versions v
    WHERE v.name = export_model.name
      AND v.version = pgbert.resolve_version(export_model.name, export_model.version);
    cfg := r.config;
    IF cardinality(r.labels) > 0 THEN
        cfg := cfg || jsonb_build_object(
            'id2label', (SELECT jsonb_object_agg((i - 1)::text, r.labels[i])
                         FROM generate_subscripts(r.labels, 1) i),
            'label2id', (SELECT jsonb_object_agg(r.labels[i], i - 1)
                         FROM generate_subscripts(r.labels, 1) i));
    END IF;
    IF r.decision_rule IS NOT NULL THEN
        cfg := cfg || jsonb_build_object('pgbert_decision_rule', r.decision_rule);
    END IF;
    file := 'config.json'; contents := convert_to(jsonb_pretty(cfg), 'UTF8'); RETURN NEXT;
    file := 'vocab.txt'; contents := r.vocab; RETURN NEXT;
    IF r.tokenizer_config IS NOT NULL THEN
        file := 'tokenizer_config.json';
        contents := convert_to(jsonb_pretty(r.tokenizer_config), 'UTF8');
        RETURN NEXT;
    END IF;
    file := 'model.safetensors'; contents := lo_get(r.weights); RETURN NEXT;
END
$$;

COMMENT ON FUNCTION export_model(text, integer) IS
'files of a model version (config.json, vocab.txt, tokenizer_config.json, model.safetensors) for transformers from_pretrained; version NULL = deployed';

-- ===========================================================================
-- 7. Inference. STABLE: a statement sees one deployed version throughout, and a
--    redeploy or drop is seen by the next statement; PARALLEL SAFE: parallel
--    workers read the weights themselves (each loads its own copy), unless the
--    encoder worker serves them.
-- ===========================================================================

CREATE FUNCTION classify(input text, model text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'pgbert_classify'
LANGUAGE C STABLE PARALLEL SAFE COST 10000;

COMMENT ON FUNCTION classify(text, text) IS
'most probable label of input under a classification model; model NULL = pgbert.default_model (or the only stored model)';

CREATE FUNCTION classify_scores(input text, model text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_classify_scores'
LANGUAGE C STABLE PARALLEL SAFE COST 10000;

COMMENT ON FUNCTION classify_scores(text, text) IS
'probability of every label of input, as {"label": probability}';

CREATE FUNCTION classify_batch(inputs text[], model text DEFAULT NULL)
RETURNS TABLE (ord integer, label text, score real)
AS 'MODULE_PATHNAME', 'pgbert_classify_batch'
LANGUAGE C STABLE PARALLEL SAFE COST 10000 ROWS 100;

COMMENT ON FUNCTION classify_batch(text[], text) IS
'label and its probability for every element of inputs (ord = array position), computed in batches';

CREATE FUNCTION embed(input text, model text DEFAULT NULL, pooling text DEFAULT NULL)
RETURNS real[]
AS 'MODULE_PATHNAME', 'pgbert_embed'
LANGUAGE C STABLE PARALLEL SAFE COST 10000;

COMMENT ON FUNCTION embed(text, text, text) IS
'sentence embedding of input: pooling ''mean'' (default; mean of the last hidden states), ''cls'' (hidden state of [CLS]) or ''pooler'' (tanh(dense(CLS)))';

-- Which model versions this backend holds in memory.
CREATE FUNCTION pgbert.cached_models(OUT name text, OUT version integer, OUT bytes bigint,
                                     OUT uses bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pgbert_cached_models'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION pgbert.cached_models() IS
'model versions loaded in this backend, with their bytes and how many statements used them';

-- ===========================================================================
-- 8. Decision rules and calibration: a version's temperature, training label mix,
--    priors to decide under and thresholds (pgbert.model_versions.decision_rule,
--    set_decision_rule in section 6), fitted on labelled rows or estimated by EM on
--    unlabelled ones.
-- ===========================================================================

CREATE FUNCTION calibrate_model(relation regclass, text_column name, label_column name,
                                model text, install boolean DEFAULT true)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_calibrate_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION calibrate_model(regclass, name, name, text, boolean) IS
'fit the temperature of the deployed version on labelled rows (cross-entropy, as Guo et al. 2017) and, with install, store it in its decision rule';

CREATE FUNCTION estimate_label_priors(relation regclass, text_column name, model text DEFAULT NULL,
                                      install boolean DEFAULT false)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_estimate_label_priors'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION estimate_label_priors(regclass, name, text, boolean) IS
'label mix of unlabelled rows estimated from the deployed version''s calibrated scores by EM (Saerens et al. 2002), with a 95% bootstrap interval; install sets it as the version''s priors';

CREATE FUNCTION label_drift(relation regclass, text_column name, model text DEFAULT NULL)
RETURNS TABLE (label text, training_share float8, predicted_share float8, estimated_share float8,
               low float8, high float8)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.label, (e -> 'training_priors' ->> l.label)::float8, (e -> 'predicted_mix' ->> l.label)::float8,
           (e -> 'priors' ->> l.label)::float8, (e -> 'low' ->> l.label)::float8,
           (e -> 'high' ->> l.label)::float8
    FROM @extschema@.estimate_label_priors(relation, text_column, model) e,
         jsonb_array_elements_text(e -> 'labels') WITH ORDINALITY l(label, n)
    ORDER BY l.n
$$;

COMMENT ON FUNCTION label_drift(regclass, name, text) IS
'per label: its share of the training rows, of classify()''s answers on the rows given, and the EM estimate of its true share there with a 95% interval';

-- ===========================================================================
-- 9. Training. VOLATILE and PARALLEL UNSAFE: they read a table as the caller and
--    train_classifier writes a new model version.
-- ===========================================================================

CREATE FUNCTION train_classifier(relation regclass, text_column name, label_column name,
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
                                 keep_better boolean DEFAULT false,
                                 split_by name DEFAULT NULL,
                                 truncation text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_train_classifier'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION train_classifier(regclass, name, name, text, text, integer, integer, float8,
                                     integer, float8, integer, float8, float8, boolean, integer, float8,
                                     jsonb, integer, boolean, name, text) IS
'fine-tune a BERT classifier on a table (base_model NULL: a small BERT from scratch) and store it as the next version of model; returns the metrics';

CREATE FUNCTION evaluate_classifier(relation regclass, text_column name, label_column name,
                                    model text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_evaluate_classifier'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION evaluate_classifier(regclass, name, name, text) IS
'accuracy, per-class precision/recall/F1, macro-F1, confusion matrix and loss of a model on a table';

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

CREATE FUNCTION pgbert.record_training(name text, version integer, metrics jsonb, log jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION pgbert.record_training(text, integer, jsonb, jsonb) IS
'store the metrics and training log of a version in the transaction that created it (train_classifier does)';

-- Running train_classifier() calls of this cluster (others' need pg_read_all_stats);
-- the view pgbert.training_progress (section 11) reads it.
CREATE FUNCTION pgbert.training_progress_slots(OUT pid integer, OUT datid oid, OUT usesysid oid,
                                               OUT model text, OUT epoch integer, OUT epochs integer,
                                               OUT step integer, OUT total_steps integer,
                                               OUT loss float8, OUT rows_per_s float8,
                                               OUT started timestamptz, OUT updated timestamptz,
                                               OUT eta timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pgbert_training_progress'
LANGUAGE C VOLATILE;

-- Training jobs: start_training queues one (start_training_as, a definer function, writes
-- the row) and launches a background worker, which claims the job and runs it as its
-- owner through run_training_job.
CREATE FUNCTION pgbert.launch_training_worker(job bigint)
RETURNS integer
AS 'MODULE_PATHNAME', 'pgbert_launch_training_worker'
LANGUAGE C STRICT VOLATILE;

-- A job's worker runs its own job only: the one it claimed, as its owner.
CREATE FUNCTION pgbert.run_training_job(job bigint)
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
           (a->>'early_stopping_patience')::int, (a->>'keep_better')::boolean,
           (a->>'split_by')::name, a->>'truncation')
FROM (SELECT args AS a FROM pgbert.training_jobs
      WHERE id = job AND status = 'running' AND pid = pg_backend_pid()
        AND owner = quote_ident(current_user)::regrole) j
$$;

CREATE FUNCTION pgbert.start_training_as(caller regrole, relation regclass, text_column name,
                                         label_column name, model text, base_model text,
                                         epochs integer, batch_size integer, learning_rate float8,
                                         max_length integer, validation_fraction float8, seed integer,
                                         weight_decay float8, warmup_ratio float8,
                                         freeze_encoder boolean, gradient_accumulation integer,
                                         max_grad_norm float8, class_weights jsonb,
                                         early_stopping_patience integer, keep_better boolean,
                                         split_by name, truncation text)
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
            AND pg_catalog.has_column_privilege(caller::oid, relation::oid, label_column::text, 'SELECT')
            AND (split_by IS NULL
                 OR pg_catalog.has_column_privilege(caller::oid, relation::oid, split_by::text, 'SELECT'))) THEN
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
                               'keep_better', keep_better, 'split_by', split_by, 'truncation', truncation),
            current_setting('pgbert.cpu_threads')::integer, caller)
    RETURNING id INTO job;
    -- the worker waits until this transaction commits; a rollback leaves it nothing to do
    PERFORM pgbert.launch_training_worker(job);
    RETURN job;
END
$$;

CREATE FUNCTION start_training(relation regclass, text_column name, label_column name,
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
                               keep_better boolean DEFAULT false,
                               split_by name DEFAULT NULL,
                               truncation text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION start_training(regclass, name, name, text, text, integer, integer, float8, integer,
                                   float8, integer, float8, float8, boolean, integer, float8, jsonb,
                                   integer, boolean, name, text) IS
'queue train_classifier(...) with these arguments in a background worker running as the caller; returns the job id (pgbert.training_jobs)';

-- Stop a queued or running training job; true if it was stopped.
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

CREATE FUNCTION cancel_training(job bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION cancel_training(bigint) IS
'cancel a training job started with start_training(); nothing of it is stored';

-- ===========================================================================
-- 10. The encoder worker and the trainer. With pgbert in shared_preload_libraries, a
--     background worker runs every session's forward passes in one engine process,
--     batching requests across sessions, and a second one ("pgbert trainer") runs
--     training jobs in its own engine. These functions read their shared state; the
--     views of section 11 show it.
-- ===========================================================================

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

CREATE FUNCTION pgbert.worker_models_all(OUT dboid oid, OUT version_id bigint, OUT name text,
                                         OUT version integer, OUT bytes bigint, OUT loaded timestamptz,
                                         OUT last_used timestamptz, OUT calls bigint, OUT rows bigint,
                                         OUT label_counts bigint[], OUT hidden_size integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pgbert_worker_models'
LANGUAGE C VOLATILE;

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

-- ===========================================================================
-- 11. Views.
-- ===========================================================================

-- Every version with whether it is the one served.
CREATE VIEW pgbert.models AS
SELECT v.name,
       v.version,
       v.version = coalesce(d.version, max(v.version) OVER (PARTITION BY v.name)) AS deployed,
       coalesce(d.version = v.version, false) AS pinned,
       v.labels,
       v.base_model,
       (v.config ->> 'hidden_size')::int AS hidden_size,
       (v.config ->> 'num_hidden_layers')::int AS num_layers,
       v.num_params,
       v.size_bytes,
       v.metrics,
       v.weights,
       v.owner,
       v.created_at,
       v.config,
       v.decision_rule
FROM pgbert.model_versions v
LEFT JOIN pgbert.deployments d USING (name);

COMMENT ON VIEW pgbert.models IS
'stored model versions; deployed marks the version classify() uses for each name';

CREATE VIEW pgbert.training_progress AS
SELECT p.pid, d.datname, r.rolname AS usename, p.model, p.epoch, p.epochs, p.step, p.total_steps,
       round(100.0 * p.step / nullif(p.total_steps, 0), 1) AS percent, p.loss, p.rows_per_s,
       p.started, p.updated, p.eta
FROM pgbert.training_progress_slots() p
LEFT JOIN pg_catalog.pg_database d ON d.oid = p.datid
LEFT JOIN pg_catalog.pg_roles r ON r.oid = p.usesysid;

COMMENT ON VIEW pgbert.training_progress IS
'train_classifier() calls running now: epoch, step of total, last batch loss, rows/s, estimated end';

CREATE VIEW pgbert.worker AS SELECT * FROM pgbert.worker_status();

COMMENT ON VIEW pgbert.worker IS
'the encoder worker: state, engine process, models held, queue, batches, rows, latency percentiles, restarts; trainings and training_requests are the trainer''s';

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

CREATE VIEW pgbert.worker_engines AS SELECT * FROM pgbert.worker_engines_all();

COMMENT ON VIEW pgbert.worker_engines IS
'one row per worker (serve: the encoder, train: the trainer): its engine process, threads, priority, what it is doing and since when, queue, requests, errors, restarts';

-- ===========================================================================
-- 12. Citus: a model's fingerprint on one node, the same for every node of a cluster
--     seen from the coordinator, the coordinator's version copied to the nodes that
--     lack it (checked by digest there), and labelling a table's column in a way
--     Citus accepts for distributed tables. Without Citus they work on this node alone.
-- ===========================================================================

-- SHA-256 of what a version reads besides its weights and labels (config.json, vocab.txt
-- and tokenizer_config.json): two nodes serving the same weights under another vocabulary
-- or truncation length would answer differently. jsonb prints canonically, so equal
-- configs give equal digests on every node.
CREATE FUNCTION pgbert.setup_digest(config jsonb, vocab bytea, tokenizer_config jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(sha256(convert_to(config::text, 'UTF8') || '\x00'::bytea || vocab || '\x00'::bytea
                         || convert_to(coalesce(tokenizer_config::text, ''), 'UTF8')), 'hex')
$$;

-- What this node serves under a name: version, SHA-256 of the weights, labels, the
-- digest of config, vocabulary and tokenizer config, and the decision rule, as jsonb;
-- NULL when the name is not stored here. Runs as the caller, who must be able to read
-- the weights (the model's owner role or a grantee), as classify().
CREATE FUNCTION pgbert.model_fingerprint(name text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v pgbert.model_versions;
BEGIN
    SELECT * INTO v FROM pgbert.model_versions m
    WHERE m.name = model_fingerprint.name
      AND m.version = (SELECT coalesce((SELECT d.version FROM pgbert.deployments d
                                        WHERE d.name = model_fingerprint.name),
                                       max(x.version))
                       FROM pgbert.model_versions x WHERE x.name = model_fingerprint.name);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM pgbert.require_weights_readable(v.weights, v.name);
    RETURN jsonb_build_object('version', v.version,
                              'sha256', encode(sha256(lo_get(v.weights)), 'hex'),
                              'labels', to_jsonb(v.labels),
                              'setup_sha256', pgbert.setup_digest(v.config, v.vocab, v.tokenizer_config),
                              'decision_rule', v.decision_rule);
END
$$;

-- The Citus worker nodes a model must reach: active primaries other than the coordinator.
-- Empty where Citus is not installed in this database.
CREATE FUNCTION pgbert.citus_worker_nodes(OUT node_name text, OUT node_port integer)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE
        'SELECT nodename::text, nodeport FROM pg_dist_node
         WHERE noderole = ''primary'' AND isactive AND groupid <> 0 ORDER BY nodeid';
END
$$;

-- One command on one Citus node, in its own connection and transaction there (Citus's
-- master_run_on_worker): whether it succeeded, and its single value or error text.
CREATE FUNCTION pgbert.run_on_node(node_name text, node_port integer, command text,
                                   OUT success boolean, OUT result text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE 'SELECT r.success, r.result
             FROM master_run_on_worker(ARRAY[$1], ARRAY[$2], ARRAY[$3], false) r'
        INTO success, result USING node_name, node_port, command;
END
$$;

-- Per node of the cluster (this one first): the version it serves under name, the
-- weights' digest, labels and setup digest, whether they all match this node's, and why
-- a node could not answer. Run on a Citus coordinator; elsewhere it lists this node alone.
CREATE FUNCTION cluster_models(name text)
RETURNS TABLE (node text, version integer, weights_sha256 text, labels text[], setup_sha256 text,
               matches boolean, error text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    want jsonb;
    have jsonb;
    n record;
    r record;
BEGIN
    IF cluster_models.name IS NULL THEN
        RAISE EXCEPTION 'name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    want := pgbert.model_fingerprint(cluster_models.name);
    IF want IS NULL THEN
        RAISE EXCEPTION 'model "%" does not exist on this node', pgbert.shown(cluster_models.name)
            USING ERRCODE = 'undefined_object';
    END IF;
    node := 'this node';
    version := (want ->> 'version')::integer;
    weights_sha256 := want ->> 'sha256';
    labels := ARRAY(SELECT jsonb_array_elements_text(want -> 'labels'));
    setup_sha256 := want ->> 'setup_sha256';
    matches := true;
    error := NULL;
    RETURN NEXT;
    FOR n IN SELECT * FROM pgbert.citus_worker_nodes() LOOP
        r := pgbert.run_on_node(n.node_name, n.node_port,
                                format('SELECT pgbert.model_fingerprint(%L)', cluster_models.name));
        node := n.node_name || ':' || n.node_port;
        have := CASE WHEN r.success AND r.result <> '' THEN r.result::jsonb END;
        version := (have ->> 'version')::integer;
        weights_sha256 := have ->> 'sha256';
        labels := CASE WHEN have IS NOT NULL
                       THEN ARRAY(SELECT jsonb_array_elements_text(have -> 'labels')) END;
        setup_sha256 := have ->> 'setup_sha256';
        matches := r.success AND have IS NOT NULL AND have - 'version' = want - 'version';
        error := CASE WHEN NOT r.success THEN r.result
                      WHEN have IS NULL THEN 'model not stored' END;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION cluster_models(text) IS
'per node (this one, then each active Citus worker): the version served under name, its weights'' SHA-256, labels and config/vocabulary digest, whether they match this node''s, and why a node could not answer';

-- Copy the version this node serves under name (or the given version), with its decision
-- rule, to every Citus worker node whose served version differs, verify the copy's digest
-- there, and deploy it where that node pins the name; where that node already stores a
-- version with the same weights and labels, deploy that one instead. One row per worker
-- node: 'up to date', 'deployed' or 'copied' (with the version number it serves now) or
-- 'failed' (with why). Each node's copy commits on its own: a node that is down is
-- reported and the others still get the model.
CREATE FUNCTION distribute_model(name text, version integer DEFAULT NULL,
                                 chunk_bytes integer DEFAULT 16777216)
RETURNS TABLE (node text, status text, node_version integer, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    model_name text := distribute_model.name;
    src pgbert.model_versions;
    want jsonb;
    blob bytea;
    total integer;
    n record;
    r record;
    lo oid;
    pos integer;
    import_sql text;
    set_rule_sql text;
BEGIN
    IF model_name IS NULL THEN
        RAISE EXCEPTION 'name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF chunk_bytes IS NULL OR chunk_bytes < 1024 OR chunk_bytes > 256 * 1024 * 1024 THEN
        RAISE EXCEPTION 'chunk_bytes must be between 1 kB and 256 MB'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO src FROM pgbert.model_versions v
    WHERE v.name = model_name
      AND v.version = pgbert.resolve_version(model_name, distribute_model.version);
    PERFORM pgbert.require_weights_readable(src.weights, model_name);
    blob := lo_get(src.weights);
    total := length(blob);
    want := jsonb_build_object('sha256', encode(sha256(blob), 'hex'), 'labels', to_jsonb(src.labels),
                               'setup_sha256', pgbert.setup_digest(src.config, src.vocab, src.tokenizer_config));
    -- the copy carries the decision rule in its config, as an export does
    import_sql := format('SELECT import_model(%L, %%s, %L::jsonb, decode(%L, ''base64''), %L::jsonb, %L::text[], %L)',
                         model_name,
                         src.config || coalesce(jsonb_build_object('pgbert_decision_rule', src.decision_rule), '{}'),
                         encode(src.vocab, 'base64'), src.tokenizer_config, src.labels, src.base_model);
    -- set_decision_rule merges: every key absent here is removed there
    set_rule_sql := format('SELECT set_decision_rule(%L, %L::jsonb, %%s) IS NULL', model_name,
                           '{"temperature": null, "training_priors": null, "priors": null, "thresholds": null}'::jsonb
                           || coalesce(src.decision_rule, '{}'));
    FOR n IN SELECT * FROM pgbert.citus_worker_nodes() LOOP
        node := n.node_name || ':' || n.node_port;
        node_version := NULL;
        detail := NULL;
        r := pgbert.run_on_node(n.node_name, n.node_port, format('SELECT pgbert.model_fingerprint(%L)', model_name));
        IF NOT r.success THEN
            status := 'failed';
            detail := r.result;
            RAISE WARNING 'could not reach node %: %', node, r.result;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF r.result <> '' AND r.result::jsonb - 'version' - 'decision_rule' = want THEN
            status := 'up to date';
            node_version := (r.result::jsonb ->> 'version')::integer;
            -- the same weights deciding by another rule answer differently: bring the rule
            IF (r.result::jsonb -> 'decision_rule') IS DISTINCT FROM coalesce(src.decision_rule, 'null'::jsonb) THEN
                r := pgbert.run_on_node(n.node_name, n.node_port, format(set_rule_sql, node_version));
                IF r.success THEN
                    detail := 'decision rule copied';
                ELSE
                    status := 'failed';
                    detail := r.result;
                    RAISE WARNING 'could not copy the decision rule of model "%" to node %: %', model_name, node, r.result;
                END IF;
            END IF;
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- a version that node already stores with these weights and labels (a rollback on
        -- this node, say) is deployed there rather than copied again
        -- (only versions of the same size are hashed)
        r := pgbert.run_on_node(n.node_name, n.node_port, format(
                'SELECT deploy_model(%L, s.v) FROM (SELECT max(v.version) v FROM pgbert.model_versions v
                                                    WHERE v.name = %L AND v.size_bytes = %s AND v.labels = %L::text[]
                                                      AND pgbert.setup_digest(v.config, v.vocab, v.tokenizer_config) = %L
                                                      AND encode(sha256(lo_get(v.weights)), ''hex'') = %L) s
                 WHERE s.v IS NOT NULL',
                model_name, model_name, src.size_bytes, src.labels, want ->> 'setup_sha256', want ->> 'sha256'));
        IF r.success AND r.result <> '' THEN
            status := 'deployed';
            node_version := r.result::integer;
            detail := 'a version it already stored';
            r := pgbert.run_on_node(n.node_name, n.node_port, format(set_rule_sql, node_version));
            IF NOT r.success THEN
                status := 'failed';
                detail := r.result;
                RAISE WARNING 'could not copy the decision rule of model "%" to node %: %', model_name, node, r.result;
            END IF;
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- the weights in chunks into a new large object there, then imported as the next version
        lo := NULL;
        pos := 0;
        WHILE pos < total OR lo IS NULL LOOP
            IF lo IS NULL THEN
                r := pgbert.run_on_node(n.node_name, n.node_port,
                        format('SELECT lo_from_bytea(0, decode(%L, ''base64''))',
                               encode(substring(blob FROM 1 FOR chunk_bytes), 'base64')));
                IF r.success THEN lo := r.result::oid; END IF;
            ELSE
                r := pgbert.run_on_node(n.node_name, n.node_port,
                        format('SELECT lo_put(%s, %s, decode(%L, ''base64''))', lo, pos,
                               encode(substring(blob FROM (pos + 1)::integer FOR chunk_bytes), 'base64')));
            END IF;
            EXIT WHEN NOT r.success;
            pos := pos + chunk_bytes;
        END LOOP;
        IF r.success THEN
            r := pgbert.run_on_node(n.node_name, n.node_port, format(import_sql, lo));
        END IF;
        IF r.success THEN
            node_version := r.result::integer;
            -- the copy as that node stores it: the same digest and labels, or it is dropped
            r := pgbert.run_on_node(n.node_name, n.node_port, format(
                    'SELECT CASE WHEN encode(sha256(lo_get(v.weights)), ''hex'') = %L AND v.labels = %L::text[]
                                      AND pgbert.setup_digest(v.config, v.vocab, v.tokenizer_config) = %L
                                 THEN ''ok'' ELSE ''dropped '' || drop_model(%L, %s) END
                     FROM pgbert.model_versions v WHERE v.name = %L AND v.version = %s',
                    want ->> 'sha256', src.labels, want ->> 'setup_sha256', model_name, node_version,
                    model_name, node_version));
            IF r.success AND r.result <> 'ok' THEN
                r.success := false;
                r.result := 'the copy''s digests or labels differ from this node''s; it was dropped there';
            END IF;
        END IF;
        IF r.success THEN
            -- a node that pins the name serves the copy from now on, as one that does not
            r := pgbert.run_on_node(n.node_name, n.node_port, format(
                    'SELECT deploy_model(%L, %s) FROM pgbert.deployments WHERE name = %L',
                    model_name, node_version, model_name));
        END IF;
        IF NOT r.success THEN
            IF lo IS NOT NULL AND node_version IS NULL THEN  -- an unfinished upload
                PERFORM pgbert.run_on_node(n.node_name, n.node_port, format('SELECT lo_unlink(%s)', lo));
            END IF;
            status := 'failed';
            detail := r.result;
            RAISE WARNING 'could not copy model "%" to node %: %', model_name, node, r.result;
        ELSE
            status := 'copied';
            detail := format('%s bytes', total);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION distribute_model(text, integer, integer) IS
'copy this node''s served version of name (or version) to every Citus worker whose served version differs, verify it there by digest, deploy it where the node pins the name; one row per worker';

-- Set label_column to classify(text_column, model) for the rows of relation, only those
-- whose label is NULL and text is not unless only_unlabelled is false; the number of rows
-- set. On a Citus table distributed by hash, where Citus refuses an UPDATE calling a
-- STABLE function on a column, each shard is updated on its node (run_command_on_shards):
-- every shard commits on its own, so when one fails the others stay labelled, and a
-- second call with only_unlabelled finishes the rest. Elsewhere one UPDATE.
-- The model name is resolved here (the argument, else pgbert.default_model, else the
-- only stored name), so the workers need no setting.
CREATE FUNCTION label_rows(relation regclass, text_column name, label_column name,
                           model text DEFAULT NULL, only_unlabelled boolean DEFAULT true)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    use_model text := label_rows.model;
    partition_kind "char";
    placements bigint;
    shards bigint;
    assignment text;
    done bigint := 0;
    failed text[] := '{}';
    label_type text;
    r record;
BEGIN
    IF relation IS NULL OR text_column IS NULL OR label_column IS NULL OR only_unlabelled IS NULL THEN
        RAISE EXCEPTION 'relation, text_column, label_column and only_unlabelled must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = text_column
                   AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', text_column, relation
            USING ERRCODE = 'undefined_column';
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod) INTO label_type
    FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = label_column
     AND a.attnum > 0 AND NOT a.attisdropped;
    IF label_type IS NULL THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', label_column, relation
            USING ERRCODE = 'undefined_column';
    END IF;
    IF use_model IS NULL THEN
        use_model := nullif(current_setting('pgbert.default_model', true), '');
    END IF;
    IF use_model IS NULL THEN
        SELECT min(v.name) INTO use_model FROM pgbert.model_versions v HAVING count(DISTINCT v.name) = 1;
    END IF;
    IF use_model IS NULL THEN
        RAISE EXCEPTION 'no model given and pgbert.default_model is not set'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass model => ''name''.';
    END IF;
    -- the name must resolve here, so that a typo fails before any shard is touched
    PERFORM pgbert.resolve_version(use_model, NULL);

    -- cast to the column's type: a label column may be an enum, which text is not assigned to
    assignment := format('SET %I = @extschema@.classify(%I, %L)::%s', label_column, text_column, use_model,
                         label_type)
                  || CASE WHEN only_unlabelled
                          THEN format(' WHERE %I IS NULL AND %I IS NOT NULL', label_column, text_column)
                          ELSE '' END;

    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        EXECUTE 'SELECT partmethod FROM pg_dist_partition WHERE logicalrelid = $1'
            INTO partition_kind USING relation;
    END IF;
    IF partition_kind IS NULL THEN
        EXECUTE format('UPDATE %s ', relation) || assignment;
        GET DIAGNOSTICS done = ROW_COUNT;
        RETURN done;
    END IF;
    IF partition_kind <> 'h' THEN
        RAISE EXCEPTION 'label_rows() supports local tables and tables distributed by hash; % is a Citus % table',
            relation, CASE partition_kind WHEN 'n' THEN 'reference or local' ELSE 'range or append' END
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Label it with an INSERT ... SELECT ... ON CONFLICT DO UPDATE from a query that calls classify().';
    END IF;
    -- the shard updates run in connections of their own, outside this transaction: after
    -- an earlier statement of the same transaction block (which may hold row locks on
    -- those shards) they could wait for it forever, and they commit whatever it does
    IF transaction_timestamp() <> statement_timestamp() THEN
        RAISE EXCEPTION 'label_rows() on the distributed table % cannot run after other statements in a transaction block',
            relation
            USING ERRCODE = 'active_sql_transaction',
                  DETAIL = 'Each shard is updated and committed in a connection of its own, which would wait for this transaction''s locks.',
                  HINT = 'Run it on its own, outside BEGIN ... COMMIT.';
    END IF;
    EXECUTE 'SELECT count(*), count(DISTINCT shardid) FROM pg_dist_placement
             WHERE shardid IN (SELECT shardid FROM pg_dist_shard WHERE logicalrelid = $1)'
        INTO placements, shards USING relation;
    IF placements <> shards THEN
        RAISE EXCEPTION 'label_rows() needs one placement per shard; % has % placements for % shards',
            relation, placements, shards
            USING ERRCODE = 'feature_not_supported';
    END IF;
    -- every shard at once, each in a connection of its own (Citus's default), so that each
    -- node's encoder worker merges its shards' rows into shared batches.
    -- run_command_on_shards formats the command with the shard's name for %s: every other
    -- % (in a quoted model or column name) is doubled
    FOR r IN EXECUTE 'SELECT shardid, success, result FROM run_command_on_shards($1, $2)'
        USING relation, 'UPDATE %s ' || replace(assignment, '%', '%%')
    LOOP
        IF r.success THEN
            done := done + coalesce(substring(r.result FROM '^UPDATE ([0-9]+)$')::bigint, 0);
        ELSE
            failed := failed || format('shard %s: %s', r.shardid, r.result);
        END IF;
    END LOOP;
    IF cardinality(failed) > 0 THEN
        RAISE EXCEPTION 'labelling % of the shards of % failed', cardinality(failed), relation
            USING DETAIL = array_to_string(failed, E'\n') || E'\n'
                           || format('The other shards were labelled (%s rows) and stay labelled.', done),
                  HINT = CASE WHEN only_unlabelled THEN 'Call label_rows() again to label the rest.' END;
    END IF;
    RETURN done;
END
$$;

COMMENT ON FUNCTION label_rows(regclass, name, name, text, boolean) IS
'set label_column = classify(text_column, model) where the label is NULL (all rows when only_unlabelled is false); shard by shard on a Citus table distributed by hash; returns the rows set';

-- ===========================================================================
-- 13. DROP EXTENSION pgbert refuses while model weights exist; CASCADE unlinks them.
-- ===========================================================================

CREATE FUNCTION pgbert.guard_drop_extension()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'pgbert_guard_drop_extension'
LANGUAGE C;

CREATE EVENT TRIGGER pgbert_guard_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION pgbert.guard_drop_extension();

-- ===========================================================================
-- 14. Privileges. PUBLIC may use the schema, read the catalog tables and the views, and
--     execute every function except these: the definer functions (section 6, through
--     their doors only), seal_weights, and launch_training_worker (start_training only,
--     which checks the job is the caller's).
-- ===========================================================================

GRANT USAGE ON SCHEMA pgbert TO PUBLIC;

GRANT SELECT ON pgbert.model_versions, pgbert.deployments, pgbert.model_grants,
    pgbert.training_log, pgbert.training_jobs TO PUBLIC;

GRANT SELECT ON pgbert.models, pgbert.training_progress, pgbert.worker, pgbert.worker_models,
    pgbert.worker_engines TO PUBLIC;

REVOKE ALL ON FUNCTION pgbert.import_model_as(regrole, text, oid, jsonb, bytea, jsonb, text[], text),
    pgbert.drop_model_as(regrole, text, integer),
    pgbert.deploy_model_as(regrole, text, integer),
    pgbert.grant_model_as(regrole, text, regrole),
    pgbert.revoke_model_as(regrole, text, regrole),
    pgbert.set_decision_rule_as(regrole, text, jsonb, integer),
    pgbert.record_training_as(regrole, text, integer, jsonb, jsonb),
    pgbert.start_training_as(regrole, regclass, name, name, text, text, integer, integer, float8, integer,
                             float8, integer, float8, float8, boolean, integer, float8, jsonb, integer,
                             boolean, name, text),
    pgbert.cancel_training_as(regrole, bigint)
    FROM PUBLIC;

REVOKE ALL ON FUNCTION pgbert.seal_weights(oid), pgbert.launch_training_worker(bigint) FROM PUBLIC;
