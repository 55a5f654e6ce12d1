-- pgbert 0.6.0 -> 0.7.0: classifiers under drift. A version's decision rule (temperature,
-- training label mix, priors to decide under, thresholds) kept beside it and used by
-- classify(), batching and evaluate_classifier(); calibration on labelled rows; label
-- priors of unlabelled traffic estimated by EM; long texts cut head + tail; validation on
-- the newest rows.
\echo Use "ALTER EXTENSION pgbert UPDATE TO '0.7.0'" to load this file. \quit

-- The rule changes while the version stays (the immutability trigger names the columns
-- it guards, and this is not one of them): NULL is the plain argmax.
ALTER TABLE pgbert.model_versions ADD COLUMN decision_rule jsonb;
COMMENT ON COLUMN pgbert.model_versions.decision_rule IS
'how classify() picks a label from the scores: temperature, training_priors, priors, thresholds (set_decision_rule); NULL: the most probable label';

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
REVOKE ALL ON FUNCTION pgbert.set_decision_rule_as(regrole, text, jsonb, integer) FROM PUBLIC;

CREATE FUNCTION set_decision_rule(name text, rule jsonb, version integer DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgbert_catalog_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION set_decision_rule(text, jsonb, integer) IS
'merge keys into a version''s decision rule (temperature, training_priors, priors, thresholds; a null value removes one, rule NULL clears all); version NULL = deployed';

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

CREATE OR REPLACE FUNCTION export_model(name text, version integer DEFAULT NULL)
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

CREATE OR REPLACE VIEW pgbert.models AS
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

-- ---------------------------------------------------------------------------
-- Calibration and priors of unlabelled rows.
-- ---------------------------------------------------------------------------

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

-- ---------------------------------------------------------------------------
-- Training: split_by (validate on the newest rows) and truncation.
-- ---------------------------------------------------------------------------

DROP FUNCTION train_classifier(regclass, name, name, text, text, integer, integer, float8, integer, float8,
                               integer, float8, float8, boolean, integer, float8, jsonb, integer, boolean);

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

DROP FUNCTION start_training(regclass, name, name, text, text, integer, integer, float8, integer, float8,
                             integer, float8, float8, boolean, integer, float8, jsonb, integer, boolean);
DROP FUNCTION pgbert.start_training_as(regrole, regclass, name, name, text, text, integer, integer, float8,
                                       integer, float8, integer, float8, float8, boolean, integer, float8,
                                       jsonb, integer, boolean);

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
REVOKE ALL ON FUNCTION pgbert.start_training_as(regrole, regclass, name, name, text, text, integer, integer,
                                                float8, integer, float8, integer, float8, float8, boolean,
                                                integer, float8, jsonb, integer, boolean, name, text)
    FROM PUBLIC;

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
           (a->>'early_stopping_patience')::int, (a->>'keep_better')::boolean,
           (a->>'split_by')::name, a->>'truncation')
FROM (SELECT args AS a FROM pgbert.training_jobs
      WHERE id = job AND status = 'running' AND pid = pg_backend_pid()
        AND owner = quote_ident(current_user)::regrole) j
$$;

-- ---------------------------------------------------------------------------
-- Citus: a node serving the same weights under another decision rule answers
-- differently, so the rule is part of a node's fingerprint and travels with the model.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgbert.model_fingerprint(name text)
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

-- As in 0.6.0, and the version's decision rule copied with it (in the imported config, or
-- set on a node that already serves the same weights).
CREATE OR REPLACE FUNCTION distribute_model(name text, version integer DEFAULT NULL,
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
