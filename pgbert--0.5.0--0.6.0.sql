-- pgbert 0.5.0 -> 0.6.0: scale-out on Citus. A model's fingerprint on one node, the same
-- for every node of a cluster seen from the coordinator, the coordinator's version copied
-- to the nodes that lack it (checked by digest there), and labelling a table's column in
-- a way Citus accepts for distributed tables.
\echo Use "ALTER EXTENSION pgbert UPDATE TO '0.6.0'" to load this file. \quit

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

-- What this node serves under a name: version, SHA-256 of the weights' safetensors blob,
-- labels and the digest of config, vocabulary and tokenizer config, as jsonb; NULL when the name is not stored here. Runs as the caller, who
-- must be able to read the weights (the model's owner role or a grantee), as classify().
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
                              'setup_sha256', pgbert.setup_digest(v.config, v.vocab, v.tokenizer_config));
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
-- weights' digest, labels and setup digest, whether they all match this node's, and why a node could not
-- answer. Run on a Citus coordinator; elsewhere it lists this node alone.
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

-- Copy the version this node serves under name (or the given version) to every Citus
-- worker node whose served version differs, verify the copy's digest there, and deploy it
-- where that node pins the name; where that node already stores a version with the same
-- weights and labels, deploy that one instead. One row per worker node: 'up to date',
-- 'deployed' or 'copied' (with the version number it serves now) or 'failed' (with why).
-- Each node's copy commits on its own: a node that is down is reported and the others
-- still get the model.
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
    import_sql := format('SELECT import_model(%L, %%s, %L::jsonb, decode(%L, ''base64''), %L::jsonb, %L::text[], %L)',
                         model_name, src.config, encode(src.vocab, 'base64'), src.tokenizer_config,
                         src.labels, src.base_model);
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
        IF r.result <> '' AND r.result::jsonb - 'version' = want THEN
            status := 'up to date';
            node_version := (r.result::jsonb ->> 'version')::integer;
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
COMMENT ON FUNCTION cluster_models(text) IS
'per node (this one, then each active Citus worker): the version served under name, its weights'' SHA-256, labels and config/vocabulary digest, whether they match this node''s, and why a node could not answer';
COMMENT ON FUNCTION distribute_model(text, integer, integer) IS
'copy this node''s served version of name (or version) to every Citus worker whose served version differs, verify it there by digest, deploy it where the node pins the name; one row per worker';
