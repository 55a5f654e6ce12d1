-- pgbert 0.1.0 -> 0.2.0: models in the database (catalog, large-object weights,
-- import/export, deployment, permissions) and inference (classify, classify_scores,
-- classify_batch, embed). A new install runs pgbert--0.1.0.sql and then this script.

\echo Use "ALTER EXTENSION pgbert UPDATE TO '0.2.0'" to load this file. \quit

COMMENT ON FUNCTION bert_tokenize(text, text, boolean) IS
'word pieces of input (no [CLS]/[SEP]), as Hugging Face BertTokenizer.tokenize(); model NULL = bundled uncased vocabulary, else that model''s vocabulary and settings';

COMMENT ON FUNCTION bert_token_ids(text, text, integer, boolean) IS
'input ids [CLS] ... [SEP] truncated to max_length, as Hugging Face BertTokenizer(input, truncation=True); model NULL = bundled uncased vocabulary, else that model''s';

-- ---------------------------------------------------------------------------
-- Models: a catalog in schema pgbert, weights in large objects.
--
-- Each model version's weights are one large object holding the checkpoint's
-- model.safetensors unchanged (Hugging Face layout), so lo_export gives back a
-- file transformers loads. Reading a model needs SELECT on its large object;
-- changing or dropping it needs the privileges of its owner role. Row-level
-- security on the catalog enforces the latter for direct DML as well.
-- ---------------------------------------------------------------------------

CREATE SCHEMA pgbert;
GRANT USAGE ON SCHEMA pgbert TO PUBLIC;

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
    owner            regrole NOT NULL DEFAULT current_user::regrole,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

COMMENT ON TABLE pgbert.model_versions IS
'one row per model version: config.json, vocab.txt (UTF-8 bytes), tokenizer_config.json, labels in id order, and the large object holding model.safetensors';

-- A pinned version per name; names without a row serve their latest version.
CREATE TABLE pgbert.deployments (
    name        text PRIMARY KEY,
    version     integer NOT NULL,
    deployed_at timestamptz NOT NULL DEFAULT now(),
    deployed_by regrole NOT NULL DEFAULT current_user::regrole,
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

SELECT pg_catalog.pg_extension_config_dump('pgbert.model_versions', '');
SELECT pg_catalog.pg_extension_config_dump('pgbert.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('pgbert.model_grants', '');
SELECT pg_catalog.pg_extension_config_dump('pgbert.model_versions_id_seq', '');

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
SELECT pg_catalog.pg_extension_config_dump('pgbert.training_log', '');

-- Owner role of a model name, NULL when no version exists. SECURITY DEFINER so
-- the row-level security policies below can ask without recursing into themselves.
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

ALTER TABLE pgbert.model_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgbert.deployments ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgbert.model_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgbert.training_log ENABLE ROW LEVEL SECURITY;

CREATE POLICY read_all ON pgbert.model_versions FOR SELECT USING (true);
-- a new version: by a member of its owner role, and a name keeps its first owner
CREATE POLICY add_version ON pgbert.model_versions FOR INSERT
    WITH CHECK (pg_has_role(current_user, owner::oid, 'USAGE')
                AND owner = coalesce(pgbert.name_owner(name), owner));
CREATE POLICY owner_update ON pgbert.model_versions FOR UPDATE
    USING (pg_has_role(current_user, owner::oid, 'USAGE'))
    WITH CHECK (pg_has_role(current_user, owner::oid, 'USAGE'));
CREATE POLICY owner_delete ON pgbert.model_versions FOR DELETE
    USING (pg_has_role(current_user, owner::oid, 'USAGE'));

CREATE POLICY read_all ON pgbert.deployments FOR SELECT USING (true);
CREATE POLICY owner_write ON pgbert.deployments FOR ALL
    USING (pgbert.owns_name(name)) WITH CHECK (pgbert.owns_name(name));

CREATE POLICY read_all ON pgbert.training_log FOR SELECT USING (true);
CREATE POLICY owner_write ON pgbert.training_log FOR ALL
    USING (pgbert.owns_name(name)) WITH CHECK (pgbert.owns_name(name));

CREATE POLICY read_all ON pgbert.model_grants FOR SELECT USING (true);
CREATE POLICY owner_write ON pgbert.model_grants FOR ALL
    USING (pgbert.owns_name(name)) WITH CHECK (pgbert.owns_name(name));

GRANT SELECT, INSERT, UPDATE, DELETE ON pgbert.model_versions, pgbert.deployments,
    pgbert.model_grants, pgbert.training_log TO PUBLIC;

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
       v.config
FROM pgbert.model_versions v
LEFT JOIN pgbert.deployments d USING (name);

COMMENT ON VIEW pgbert.models IS
'stored model versions; deployed marks the version classify() uses for each name';
GRANT SELECT ON pgbert.models TO PUBLIC;

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
            RAISE EXCEPTION 'model "%" has no version %', model_name, model_version
                USING ERRCODE = 'undefined_object';
        END IF;
        RETURN model_version;
    END IF;
    SELECT coalesce(d.version, max(v.version)) INTO v
    FROM pgbert.model_versions v LEFT JOIN pgbert.deployments d USING (name)
    WHERE v.name = model_name GROUP BY d.version;
    IF v IS NULL THEN
        RAISE EXCEPTION 'model "%" does not exist', model_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name, version FROM pgbert.models lists the stored models.';
    END IF;
    RETURN v;
END
$$;

-- Validate a checkpoint against its config and vocabulary (reads the weights as the caller).
CREATE FUNCTION pgbert.inspect_model(weights oid, config jsonb, vocab bytea,
                                     tokenizer_config jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_inspect_model'
LANGUAGE C STABLE;

-- Import a Hugging Face checkpoint whose model.safetensors is already a large object
-- (vocab as the bytes of vocab.txt: works whatever the database encoding).
CREATE FUNCTION import_model(name text, weights oid, config jsonb, vocab bytea,
                             tokenizer_config jsonb DEFAULT NULL, labels text[] DEFAULT NULL,
                             base_model text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := import_model.name;
    info jsonb;
    n_classes integer;
    use_labels text[] := import_model.labels;
    owner_role regrole;
    new_version integer;
    dup text;
    g regrole;
BEGIN
    IF model_name IS NULL OR import_model.weights IS NULL OR import_model.config IS NULL
       OR import_model.vocab IS NULL THEN
        RAISE EXCEPTION 'name, weights, config and vocab must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF model_name !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid model name "%"', model_name
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'Names are 1 to 63 characters: letters, digits, "_", "." and "-", not starting with "." or "-".';
    END IF;
    info := pgbert.inspect_model(import_model.weights, import_model.config,
                                 import_model.vocab, import_model.tokenizer_config);
    n_classes := (info ->> 'num_classes')::integer;
    IF use_labels IS NULL AND n_classes = 0 THEN
        use_labels := '{}';           -- an encoder without a classification head
    ELSIF use_labels IS NULL THEN
        use_labels := ARRAY(SELECT jsonb_array_elements_text(info -> 'config_labels'));
        IF cardinality(use_labels) <> n_classes THEN
            use_labels := ARRAY(SELECT 'LABEL_' || i FROM generate_series(0, n_classes - 1) i);
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

    SELECT format('version %s of model "%s"', v.version, v.name) INTO dup
    FROM pgbert.model_versions v WHERE v.weights = import_model.weights;
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'large object % already holds the weights of %', import_model.weights, dup
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Import a copy of the checkpoint (lo_import it again).';
    END IF;

    -- one import per name at a time, so versions are numbered without gaps or clashes
    PERFORM pg_advisory_xact_lock(hashtext('pgbert.model:' || model_name));
    owner_role := coalesce(pgbert.name_owner(model_name), current_user::regrole);
    IF NOT pg_has_role(current_user, owner_role::oid, 'USAGE') THEN
        RAISE EXCEPTION 'must be a member of role % to add a version to model "%"', owner_role, model_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT coalesce(max(version), 0) + 1 INTO new_version
    FROM pgbert.model_versions WHERE name = model_name;

    -- the weights belong to the model's owner role, so any member may drop them later
    EXECUTE format('ALTER LARGE OBJECT %s OWNER TO %I', import_model.weights, owner_role);
    INSERT INTO pgbert.model_versions (name, version, config, vocab, tokenizer_config, labels,
                                       weights, base_model, size_bytes, num_params, owner)
    VALUES (model_name, new_version, import_model.config, import_model.vocab,
            import_model.tokenizer_config, use_labels, import_model.weights, import_model.base_model,
            (info ->> 'size_bytes')::bigint, (info ->> 'num_params')::bigint, owner_role);
    FOR g IN SELECT grantee FROM pgbert.model_grants WHERE name = model_name LOOP
        EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO %I', import_model.weights, g);
    END LOOP;
    RETURN new_version;
END
$$;

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

-- Raise unless the current role has the privileges of a model's owner.
CREATE FUNCTION pgbert.check_owner(model_name text)
RETURNS regrole
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    o regrole := pgbert.name_owner(model_name);
BEGIN
    IF o IS NULL THEN
        RAISE EXCEPTION 'model "%" does not exist', model_name
            USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT pg_has_role(current_user, o::oid, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of model "%"', model_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The model belongs to role %s.', o);
    END IF;
    RETURN o;
END
$$;

-- Drop one version, or every version, of a model and unlink their weights.
CREATE FUNCTION drop_model(name text, version integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := drop_model.name;
    r record;
    n integer := 0;
BEGIN
    PERFORM pgbert.check_owner(model_name);
    IF version IS NOT NULL THEN
        PERFORM pgbert.resolve_version(model_name, version);
    END IF;
    FOR r IN SELECT v.version, v.weights FROM pgbert.model_versions v
             WHERE v.name = model_name AND (drop_model.version IS NULL OR v.version = drop_model.version)
             FOR UPDATE
    LOOP
        DELETE FROM pgbert.model_versions v WHERE v.name = model_name AND v.version = r.version;
        -- weights unlinked behind pgbert's back are already gone
        IF EXISTS (SELECT 1 FROM pg_largeobject_metadata WHERE oid = r.weights) THEN
            PERFORM lo_unlink(r.weights);
        END IF;
        n := n + 1;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pgbert.model_versions v WHERE v.name = model_name) THEN
        DELETE FROM pgbert.model_grants g WHERE g.name = model_name;
    END IF;
    RETURN n;
END
$$;

COMMENT ON FUNCTION drop_model(text, integer) IS
'drop a model version (or all versions when version is NULL) and unlink its weights; returns how many versions were dropped';

-- Pin the version a model serves (NULL: follow the latest again).
CREATE FUNCTION deploy_model(name text, version integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := deploy_model.name;
BEGIN
    PERFORM pgbert.check_owner(model_name);
    IF version IS NULL THEN
        DELETE FROM pgbert.deployments d WHERE d.name = model_name;
    ELSE
        PERFORM pgbert.resolve_version(model_name, version);
        INSERT INTO pgbert.deployments AS d (name, version) VALUES (model_name, deploy_model.version)
        ON CONFLICT ON CONSTRAINT deployments_pkey
        DO UPDATE SET version = excluded.version, deployed_at = now(), deployed_by = current_user::regrole;
    END IF;
    RETURN pgbert.resolve_version(model_name);
END
$$;

COMMENT ON FUNCTION deploy_model(text, integer) IS
'serve a given version of a model (pin, or roll back); version NULL serves the latest again; returns the version now served';

-- Let a role read (use) every current and future version of a model.
CREATE FUNCTION grant_model(name text, role regrole)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := grant_model.name;
    w oid;
BEGIN
    PERFORM pgbert.check_owner(model_name);
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO pgbert.model_grants (name, grantee) VALUES (model_name, grant_model.role)
    ON CONFLICT DO NOTHING;
    FOR w IN SELECT weights FROM pgbert.model_versions v WHERE v.name = model_name LOOP
        EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO %I', w, role);
    END LOOP;
END
$$;

COMMENT ON FUNCTION grant_model(text, regrole) IS
'allow a role to use a model: SELECT on the weights of every current and future version';

-- Undo grant_model.
CREATE FUNCTION revoke_model(name text, role regrole)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    model_name text := revoke_model.name;
    w oid;
BEGIN
    PERFORM pgbert.check_owner(model_name);
    DELETE FROM pgbert.model_grants g WHERE g.name = model_name AND g.grantee = revoke_model.role;
    FOR w IN SELECT weights FROM pgbert.model_versions v WHERE v.name = model_name LOOP
        EXECUTE format('REVOKE SELECT ON LARGE OBJECT %s FROM %I', w, role);
    END LOOP;
END
$$;

COMMENT ON FUNCTION revoke_model(text, regrole) IS
'withdraw what grant_model gave a role';

-- The files of a model version, as from_pretrained expects them in a directory.
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

-- ---------------------------------------------------------------------------
-- Inference. STABLE: a statement sees one deployed version throughout, and a
-- redeploy or drop is seen by the next statement; PARALLEL SAFE: parallel
-- workers read the weights themselves (each loads its own copy).
-- ---------------------------------------------------------------------------

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

-- ---------------------------------------------------------------------------
-- Training. VOLATILE and PARALLEL UNSAFE: they read a table as the caller and
-- train_classifier writes a new model version.
-- ---------------------------------------------------------------------------

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
                                 keep_better boolean DEFAULT false)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_train_classifier'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION train_classifier(regclass, name, name, text, text, integer, integer, float8,
                                     integer, float8, integer, float8, float8, boolean, integer, float8,
                                     jsonb, integer, boolean) IS
'fine-tune a BERT classifier on a table (base_model NULL: a small BERT from scratch) and store it as the next version of model; returns the metrics';

CREATE FUNCTION evaluate_classifier(relation regclass, text_column name, label_column name,
                                    model text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_evaluate_classifier'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION evaluate_classifier(regclass, name, name, text) IS
'accuracy, per-class precision/recall/F1, macro-F1, confusion matrix and loss of a model on a table';

-- Running train_classifier() calls of this cluster (others' need pg_read_all_stats).
CREATE FUNCTION pgbert.training_progress_slots(OUT pid integer, OUT datid oid, OUT usesysid oid,
                                               OUT model text, OUT epoch integer, OUT epochs integer,
                                               OUT step integer, OUT total_steps integer,
                                               OUT loss float8, OUT rows_per_s float8,
                                               OUT started timestamptz, OUT updated timestamptz,
                                               OUT eta timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pgbert_training_progress'
LANGUAGE C VOLATILE;

CREATE VIEW pgbert.training_progress AS
SELECT p.pid, d.datname, r.rolname AS usename, p.model, p.epoch, p.epochs, p.step, p.total_steps,
       round(100.0 * p.step / nullif(p.total_steps, 0), 1) AS percent, p.loss, p.rows_per_s,
       p.started, p.updated, p.eta
FROM pgbert.training_progress_slots() p
LEFT JOIN pg_catalog.pg_database d ON d.oid = p.datid
LEFT JOIN pg_catalog.pg_roles r ON r.oid = p.usesysid;

COMMENT ON VIEW pgbert.training_progress IS
'train_classifier() calls running now: epoch, step of total, last batch loss, rows/s, estimated end';
GRANT SELECT ON pgbert.training_progress TO PUBLIC;

-- Training jobs run by background workers (start_training). Owners see and change their own.
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
    owner        regrole NOT NULL DEFAULT current_user::regrole,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
COMMENT ON TABLE pgbert.training_jobs IS
'train_classifier() calls started with start_training(): arguments, status, result or error';
SELECT pg_catalog.pg_extension_config_dump('pgbert.training_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('pgbert.training_jobs_id_seq', '');
ALTER TABLE pgbert.training_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_all ON pgbert.training_jobs FOR ALL
    USING (pg_has_role(current_user, owner::oid, 'USAGE'))
    WITH CHECK (pg_has_role(current_user, owner::oid, 'USAGE'));
GRANT SELECT, INSERT, UPDATE ON pgbert.training_jobs TO PUBLIC;

CREATE FUNCTION pgbert.launch_training_worker(job bigint)
RETURNS integer
AS 'MODULE_PATHNAME', 'pgbert_launch_training_worker'
LANGUAGE C STRICT VOLATILE;

-- What a training job's worker runs: the recorded train_classifier() call.
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
           (a->>'early_stopping_patience')::int, (a->>'keep_better')::boolean)
FROM (SELECT args AS a FROM pgbert.training_jobs WHERE id = job) j
$$;

-- train_classifier() in a background worker: returns the job id at once.
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
                               keep_better boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job bigint;
BEGIN
    IF relation IS NULL OR text_column IS NULL OR label_column IS NULL OR model IS NULL THEN
        RAISE EXCEPTION 'relation, text_column, label_column and model must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO pgbert.training_jobs (model, args, cpu_threads)
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
            current_setting('pgbert.cpu_threads')::integer)
    RETURNING id INTO job;
    -- the worker waits until this transaction commits; a rollback leaves it nothing to do
    PERFORM pgbert.launch_training_worker(job);
    RETURN job;
END
$$;

COMMENT ON FUNCTION start_training(regclass, name, name, text, text, integer, integer, float8,
                                   integer, float8, integer, float8, float8, boolean, integer, float8,
                                   jsonb, integer, boolean) IS
'run train_classifier() with these arguments in a background worker; returns the job id (see pgbert.training_jobs)';

-- Stop a queued or running training job; true if it was stopped.
CREATE FUNCTION cancel_training(job bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j pgbert.training_jobs;
BEGIN
    SELECT * INTO j FROM pgbert.training_jobs WHERE id = job FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'training job % does not exist', job USING ERRCODE = 'undefined_object';
    END IF;
    IF j.status = 'queued' THEN
        UPDATE pgbert.training_jobs SET status = 'cancelled', finished_at = now() WHERE id = job;
        RETURN true;
    ELSIF j.status = 'running' THEN
        RETURN pg_cancel_backend(j.pid);
    END IF;
    RETURN false;
END
$$;

COMMENT ON FUNCTION cancel_training(bigint) IS
'cancel a training job started with start_training(); nothing of it is stored';

-- Which model versions this backend holds in memory.
CREATE FUNCTION pgbert.cached_models(OUT name text, OUT version integer, OUT bytes bigint,
                                     OUT uses bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pgbert_cached_models'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION pgbert.cached_models() IS
'model versions loaded in this backend, with their bytes and how many statements used them';

-- DROP EXTENSION pgbert refuses while model weights exist; CASCADE unlinks them.
CREATE FUNCTION pgbert.guard_drop_extension()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'pgbert_guard_drop_extension'
LANGUAGE C;

CREATE EVENT TRIGGER pgbert_guard_drop_extension ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION pgbert.guard_drop_extension();
