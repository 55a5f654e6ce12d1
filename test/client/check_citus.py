#!/usr/bin/env python3
"""pgbert under Citus: a coordinator and two workers on this machine (Citus connects
between them over loopback TCP, clients use unix sockets in a temporary directory), all
with shared_preload_libraries = 'citus,pgbert'. The model is imported on the coordinator
and copied to the workers with pgbert_sync; a table is distributed by id, and a plain
local table holds the same rows.

1. The query of issue 26 (two subqueries calling classify, one over the distributed table
   and one over the local table, joined): Citus plans the local side as a distributed
   subplan whose plan holds a PgbertBatch scan, and walks that plan reading the first
   element of every CustomScan's custom_private as a Node. It returns 0 differing labels
   with batching on, off on the coordinator and off on every node, and EXPLAIN shows that
   shape.
2. Other statements that Citus splits into subplans or repartitions: distributed joined
   with distributed through a subquery that cannot be pushed down, a MATERIALIZED CTE
   over the local table, a subquery in WHERE, INSERT ... SELECT from local into
   distributed and from distributed into local, the outer query over a distributed
   subquery with LIMIT (classify on the coordinator), repartition joins on a
   non-distribution column. Each gives the labels the same statement gives on local
   tables only.
3. No node crashed: pg_postmaster_start_time() unchanged, and, since a backend dying of a
   signal makes the postmaster reinitialize without changing that time, the checkpointer
   started at the beginning still runs and a session opened then still answers; no server
   log reports a process terminated by a signal.

Needs the PostgreSQL 15 server binaries (pg_config --bindir), Citus (scripts/citus.sh)
and pgbert installed. Run as root, the servers run as the postgres user.
"""
import os
import shutil
import subprocess
import sys
import threading
import time

import psycopg

import testkit
from testkit import BINDIR, Server, check

MODEL = "m"
REPEAT = 3          # the 122 fixture texts 3 times: 366 rows
SHARDS = 8
# a SET on the coordinator stays there; SET LOCAL in a transaction block is sent on to the
# workers' sessions when citus.propagate_set_commands = 'local'
UNBATCHED = {"on the coordinator": ["SET pgbert.batching = off"],
             "on every node": ["SET citus.propagate_set_commands = 'local'", "BEGIN",
                               "SET LOCAL pgbert.batching = off"]}


def connect(server):
    """A new connection, waiting for the server to accept one (after a crash it restarts)."""
    conn = []
    testkit.wait_for(lambda: conn.append(server.connect()) or True, seconds=60)
    if not conn:
        raise RuntimeError("cannot connect to %s (port %d)" % (server.dir, server.port))
    return conn[0]


def query(server, sql, setup=(), fetch=True):
    """Rows of sql in a new session on server after the statements of setup, or the error
    (a crashed backend included) as a string."""
    try:
        with connect(server) as c:
            for s in setup:
                c.execute(s)
            cur = c.execute(sql)
            return cur.fetchall() if fetch else None
    except psycopg.Error as e:
        return "error: %s" % (str(e).strip().splitlines() or [type(e).__name__])[0]


def start_times(nodes):
    """Per node: the postmaster's start time, and the checkpointer's. A backend that dies of
    a signal makes the postmaster reinitialize without restarting itself (its start time
    stays), but the checkpointer and every session are started anew."""
    return {n.dir: query(n, "SELECT pg_postmaster_start_time(), (SELECT backend_start FROM pg_stat_activity "
                            "WHERE backend_type = 'checkpointer')") for n in nodes}


def subplans_with_batch(plan_lines):
    """How many 'Distributed Subplan' blocks of an EXPLAIN text hold a PgbertBatch scan."""
    found = 0
    for i, line in enumerate(plan_lines):
        if "Distributed Subplan" not in line:
            continue
        indent = len(line) - len(line.lstrip())
        for below in plan_lines[i + 1:]:
            if len(below) - len(below.lstrip()) <= indent:
                break
            if "PgbertBatch" in below:
                found += 1
                break
    return found


def compare(server, what, dist_sql, local_sql, setup=(), before=None):
    """dist_sql on the Citus tables gives the rows local_sql gives on local tables only
    (after the statement before, when given)."""
    failed = before and query(server, before, setup, fetch=False)
    got = failed or query(server, dist_sql, setup)
    want = query(server, local_sql, setup)
    ok = isinstance(got, list) and isinstance(want, list) and got == want and len(got) > 0
    detail = "%d rows" % len(got) if isinstance(got, list) else got
    if isinstance(got, list) and isinstance(want, list) and got != want:
        diff = sum(a != b for a, b in zip(got, want)) + abs(len(got) - len(want))
        detail = "%d rows, %d differ from the local statement's %d" % (len(got), diff, len(want))
    elif isinstance(got, list):
        detail = "%d rows, as the local statement" % len(got)
    check(ok, "%s: the local statement's labels (%s)" % (what, detail))


def error_of(server, sql, setup=()):
    """The error sql raises on server after setup as (message, hint, context), or None."""
    try:
        with connect(server) as c:
            for st in setup:
                c.execute(st)
            c.execute(sql).fetchall()
    except psycopg.Error as e:
        return (str(e).strip().splitlines() or [""])[0], e.diag.message_hint or "", e.diag.context or ""
    return None


def cluster_state(coord, name=MODEL):
    """cluster_models(name) on the coordinator: {node: (version, matches, error)}, or the error."""
    rows = query(coord, "SELECT node, version, matches, error FROM cluster_models('%s')" % name)
    if not isinstance(rows, list):
        return rows
    return {node: (version, matches, error) for node, version, matches, error in rows}


def distribute(coord, name=MODEL):
    """distribute_model(name) on the coordinator: {node: (status, node_version, detail)}, or the error."""
    rows = query(coord, "SELECT node, status, node_version, detail FROM distribute_model('%s', chunk_bytes => 65536)"
                 % name)
    if not isinstance(rows, list):
        return rows
    return {node: (status, version, detail) for node, status, version, detail in rows}


def node_key(server):
    return "localhost:%d" % server.port


def rollout_and_labelling(nodes, n_rows):
    """4. Model rollout from the coordinator (cluster_models, distribute_model), labelling a
    distributed table (label_rows), settings on the workers, a node down, a worker
    restarted mid-query, training from the distributed table, and a node added later."""
    coord, w1, w2 = nodes[:3]
    local_labels = query(coord, "SELECT id, classify(body, 'm') FROM mails_local ORDER BY id")

    # push-down: the worker's plan for a shard batches the calls
    plan = query(coord, "EXPLAIN (COSTS OFF) SELECT id, classify(body, 'm') FROM mails")
    lines = [r[0] for r in plan] if isinstance(plan, list) else []
    node_at = next((i for i, x in enumerate(lines) if "Node: host=" in x), None)
    check(any("Custom Scan (Citus Adaptive)" in x for x in lines) and node_at is not None
          and any("PgbertBatch" in x for x in lines[node_at:]),
          "EXPLAIN of classify over the distributed table: pushed down, PgbertBatch in the worker's plan (%s)"
          % (" / ".join(x.strip() for x in lines) if lines else plan))

    state = cluster_state(coord)
    check(isinstance(state, dict) and len(state) == 3 and all(m for _, m, _ in state.values()),
          "cluster_models: the coordinator and both workers serve the same weights and labels (%s)" % state)

    # a stale worker: worker1 serves the same weights under other labels as its version 2,
    # and no longer stores version 1
    query(w1, "SELECT import_model('m', lo_from_bytea(0, lo_get(weights)), config, vocab, tokenizer_config, "
              "ARRAY(SELECT l FROM unnest(labels) WITH ORDINALITY u(l, i) ORDER BY i DESC)) "
              "FROM pgbert.model_versions WHERE name = 'm' AND version = 1", fetch=False)
    query(w1, "SELECT drop_model('m', 1)", fetch=False)
    state = cluster_state(coord)
    check(isinstance(state, dict) and state.get(node_key(w1), (None, True))[:2] == (2, False)
          and state.get(node_key(w2), (None, False))[1] is True,
          "cluster_models reports worker1's stale version 2 before any query runs, worker2 matching (%s)" % state)
    done = distribute(coord)
    check(isinstance(done, dict) and done.get(node_key(w1), ("",))[:2] == ("copied", 3)
          and done.get(node_key(w2), ("",))[0] == "up to date",
          "distribute_model copies the coordinator's version to worker1 only, verified there (%s)" % done)
    state = cluster_state(coord)
    check(isinstance(state, dict) and all(m for _, m, _ in state.values()),
          "cluster_models after distribute_model: every node matches (%s)" % state)
    again = distribute(coord)
    check(isinstance(again, dict) and all(st == "up to date" for st, _, _ in again.values()) and len(again) == 2,
          "a second distribute_model copies nothing (%s)" % again)
    compare(coord, "classify over the distributed table after the rollout",
            "SELECT id, classify(body, 'm') FROM mails ORDER BY id",
            "SELECT id, classify(body, 'm') FROM mails_local ORDER BY id")

    # a decision rule set on the coordinator: the workers serve the same weights but answer
    # otherwise until distribute_model brings them the rule
    query(coord, "SELECT set_decision_rule('m', jsonb_build_object('thresholds', jsonb_build_object(labels[1], 0.9))) "
                 "FROM pgbert.models WHERE name = 'm' AND deployed", fetch=False)
    ruled = query(coord, "SELECT id, classify(body, 'm') FROM mails_local ORDER BY id")
    state = cluster_state(coord)
    check(isinstance(state, dict) and not state.get(node_key(w1), (None, True))[1]
          and not state.get(node_key(w2), (None, True))[1] and isinstance(ruled, list)
          and sum(a != b for a, b in zip(ruled, local_labels)) > 0,
          "a decision rule set on the coordinator changes %s of its labels; cluster_models: the workers "
          "no longer match (%s)" % (sum(a != b for a, b in zip(ruled, local_labels)) if isinstance(ruled, list)
                                    else ruled, state))
    done = distribute(coord)
    check(isinstance(done, dict) and len(done) == 2
          and all(v[0] == "up to date" and v[2] == "decision rule copied" for v in done.values()),
          "distribute_model copies the rule to the workers and nothing else (%s)" % done)
    state = cluster_state(coord)
    check(isinstance(state, dict) and all(m for _, m, _ in state.values()),
          "cluster_models after the rule's rollout: every node matches (%s)" % state)
    compare(coord, "classify over the distributed table under the decision rule",
            "SELECT id, classify(body, 'm') FROM mails ORDER BY id",
            "SELECT id, classify(body, 'm') FROM mails_local ORDER BY id")
    query(coord, "SELECT set_decision_rule('m', NULL)", fetch=False)
    done = distribute(coord)
    check(isinstance(done, dict) and all(v[2] == "decision rule copied" for v in done.values()),
          "clearing the rule on the coordinator clears it on the workers (%s)" % done)

    # a rollback on the coordinator: each worker deploys the copy it already stores
    query(coord, "SELECT import_model('m', lo_from_bytea(0, lo_get(weights)), config, vocab, tokenizer_config, "
                 "ARRAY(SELECT l FROM unnest(labels) WITH ORDINALITY u(l, i) ORDER BY i DESC)) "
                 "FROM pgbert.model_versions WHERE name = 'm' AND version = 1", fetch=False)
    done = distribute(coord)
    check(isinstance(done, dict) and done.get(node_key(w1), ("",))[:2] == ("deployed", 2)
          and done.get(node_key(w2), ("",))[0] == "copied",
          "the coordinator's version 2 (worker1 stores its weights and labels as version 2, worker2 "
          "does not): deployed on worker1, copied to worker2 (%s)" % done)
    query(coord, "SELECT deploy_model('m', 1)", fetch=False)
    done = distribute(coord)
    check(isinstance(done, dict) and done.get(node_key(w1), ("",))[:2] == ("deployed", 3)
          and done.get(node_key(w2), ("",))[:2] == ("deployed", 1),
          "deploy_model('m', 1) on the coordinator, then distribute_model: each worker deploys the "
          "version it already stores, nothing copied (%s)" % done)
    state = cluster_state(coord)
    check(isinstance(state, dict) and all(m for _, m, _ in state.values()),
          "cluster_models after the rollback: every node matches (%s)" % state)

    # a worker without the model: the query fails naming that node; the check said so first
    query(w2, "SELECT drop_model('m')", fetch=False)
    state = cluster_state(coord)
    check(isinstance(state, dict) and state.get(node_key(w2)) == (None, False, "model not stored"),
          "cluster_models: worker2 'model not stored' (%s)" % ((state if not isinstance(state, dict)
                                                                else state.get(node_key(w2))),))
    err = error_of(coord, "SELECT id, classify(body, 'm') FROM mails")
    check(err is not None and 'model "m" does not exist' in err[0] and str(w2.port) in " ".join(err)
          and "distribute_model" in err[1],
          "a query reaching worker2 fails: model missing, the node named, the hint says what to run (%s)" % (err,))
    done = distribute(coord)
    check(isinstance(done, dict) and done.get(node_key(w2), ("",))[0] == "copied",
          "distribute_model copies it back to worker2 (%s)" % done)

    # settings: a SET on the coordinator stays there; label_rows resolves the name itself
    query(w1, "SELECT import_model('m_other', lo_from_bytea(0, lo_get(weights)), config, vocab, tokenizer_config) "
              "FROM pgbert.model_versions WHERE name = 'm' ORDER BY version DESC LIMIT 1", fetch=False)
    err = error_of(coord, "SELECT classify(body) FROM mails", ["SET pgbert.default_model = 'm'"])
    check(err is not None and "pgbert.default_model is not set" in err[0] and "ALTER DATABASE" in err[1]
          and str(w1.port) in " ".join(err),
          "SET pgbert.default_model on the coordinator only: worker1 (two models) fails, naming "
          "itself and the per-node setting (%s)" % (err,))
    compare(coord, "classify(body) with SET LOCAL pgbert.default_model sent on to the workers",
            "SELECT id, classify(body) FROM mails ORDER BY id", "SELECT id, classify(body, 'm') FROM mails_local ORDER BY id",
            setup=["SET citus.propagate_set_commands = 'local'", "BEGIN", "SET LOCAL pgbert.default_model = 'm'"])

    # labelling: label_rows on the distributed table and on the local one
    for t in ("mails", "mails_local"):
        query(coord, "ALTER TABLE %s ADD COLUMN label text" % t, fetch=False)
    err = error_of(coord, "UPDATE mails SET label = classify(body, 'm')")
    check(err is not None and "STABLE functions" in err[0],
          "Citus refuses UPDATE ... SET label = classify(...) on the distributed table (%s)" % (err,))
    got = query(coord, "SELECT label_rows('mails', 'body', 'label', 'm')")
    check(got == [(n_rows,)], "label_rows on the distributed table labels %d rows (%s)" % (n_rows, got))
    got = query(coord, "SELECT label_rows('mails_local', 'body', 'label', 'm')")
    check(got == [(n_rows,)], "label_rows on the local table labels %d rows (%s)" % (n_rows, got))
    compare(coord, "label_rows: the distributed table's labels", "SELECT id, label FROM mails ORDER BY id",
            "SELECT id, label FROM mails_local ORDER BY id")
    check(query(coord, "SELECT id, label FROM mails_local ORDER BY id") == local_labels,
          "label_rows: the local table's labels are classify()'s")
    got = query(coord, "SELECT label_rows('mails', 'body', 'label', 'm')")
    check(got == [(0,)], "label_rows again: no unlabelled row left (%s)" % got)
    query(coord, "UPDATE mails SET label = NULL WHERE k % 3 = 0", fetch=False)
    want = query(coord, "SELECT count(*) FROM mails WHERE label IS NULL")
    got = query(coord, "SELECT label_rows('mails', 'body', 'label')", ["SET pgbert.default_model = 'm'"])
    check(isinstance(want, list) and want[0][0] > 0 and got == want,
          "label_rows without a model under SET pgbert.default_model on the coordinator: the %s "
          "unlabelled rows (%s)" % (want, got))
    compare(coord, "label_rows after relabelling a third", "SELECT id, label FROM mails ORDER BY id",
            "SELECT id, label FROM mails_local ORDER BY id")
    err = error_of(coord, "SELECT label_rows('mails', 'body', 'label', 'm')",
                   ["BEGIN", "UPDATE mails SET label = NULL WHERE id = 1"])
    check(err is not None and "transaction block" in err[0],
          "label_rows on the distributed table after an UPDATE in the same transaction block: refused, "
          "not left waiting for that transaction's locks (%s)" % (err,))
    err = error_of(coord, "SELECT label_rows('mails', 'body', 'label', 'absent')")
    check(err is not None and 'model "absent" does not exist' in err[0],
          "label_rows with an unknown model fails before any shard is touched (%s)" % (err,))

    # training on the coordinator reads the distributed table as it would the local copy
    train = ("SELECT train_classifier('{t}', 'body', 'label', model => 't_{t}', base_model => 'm', epochs => 1, "
             "batch_size => 16, max_length => 16)")
    digest = "SELECT encode(sha256(lo_get(weights)), 'hex') FROM pgbert.model_versions WHERE name = 't_{t}'"
    for t in ("mails", "mails_local"):
        query(coord, train.format(t=t), fetch=False)
    a, b = query(coord, digest.format(t="mails")), query(coord, digest.format(t="mails_local"))
    check(isinstance(a, list) and a == b and len(a) == 1,
          "train_classifier on the coordinator: from the distributed table the same weights as "
          "from the local copy (%s, %s)" % (a, b))

    # a worker restarted while a distributed query runs: the query ends with an error or its
    # rows, the next one is right, and the coordinator does not crash
    reps = 60
    long_sql = "SELECT count(classify(body || g, 'm')) FROM mails, generate_series(1, %d) g" % reps
    coord_start = query(coord, "SELECT pg_postmaster_start_time()")
    result = []
    runner = threading.Thread(target=lambda: result.append(query(coord, long_sql)))
    t_start = time.time()
    runner.start()
    time.sleep(1.0)
    w1.pg_ctl("-m", "fast", "restart", check=False)
    runner.join()
    elapsed = time.time() - t_start
    check(len(result) == 1 and elapsed > 1.0 and (result[0] == [(n_rows * reps,)] or str(result[0]).startswith("error")),
          "a worker restarted mid-query (the query ran %.1f s, the restart began at 1 s): the query %s"
          % (elapsed, str(result[0])[:200]))
    compare(coord, "the query after worker1's restart", "SELECT id, classify(body, 'm') FROM mails ORDER BY id",
            "SELECT id, classify(body, 'm') FROM mails_local ORDER BY id")
    check(query(coord, "SELECT pg_postmaster_start_time()") == coord_start,
          "the coordinator did not restart")

    # a node down: reported by the check and the rollout, the other nodes still served
    w2.stop()
    state = cluster_state(coord)
    check(isinstance(state, dict) and state.get(node_key(w2), (0, True, None))[1] is False
          and state[node_key(w2)][2] and state.get(node_key(w1), (0, False))[1] is True,
          "worker2 down: cluster_models reports it unreachable, worker1 matching (%s)"
          % ((state if not isinstance(state, dict) else state.get(node_key(w2))),))
    done = distribute(coord)
    check(isinstance(done, dict) and done.get(node_key(w2), ("",))[0] == "failed"
          and done.get(node_key(w1), ("",))[0] == "up to date",
          "worker2 down: distribute_model reports it failed and leaves worker1 alone (%s)" % done)
    w2.start()

    return True


def node_added_later(nodes, tmp, port):
    """A worker added after the rollout lacks the model until distribute_model copies it."""
    coord = nodes[0]
    w3 = Server(tmp, "worker3", port)
    nodes.append(w3)
    testkit.start_citus_node(w3)
    query(coord, "SELECT citus_add_node('localhost', %d)" % port)
    state = cluster_state(coord)
    check(isinstance(state, dict) and state.get(node_key(w3)) == (None, False, "model not stored"),
          "a worker added later: cluster_models says 'model not stored' there (%s)" % state)
    done = distribute(coord)
    check(isinstance(done, dict) and done.get(node_key(w3), ("",))[0] == "copied"
          and sum(st == "up to date" for st, _, _ in done.values()) == 2,
          "distribute_model copies the model to the new worker only (%s)" % done)


def setup_cluster(nodes):
    coord, workers = nodes[0], nodes[1:]
    for n in nodes:
        testkit.start_citus_node(n)
    with coord.connect() as c:
        c.execute("SELECT citus_set_coordinator_host('localhost', %s)", (coord.port,))
        for w in workers:
            c.execute("SELECT citus_add_node('localhost', %s)", (w.port,))
        active = c.execute("SELECT count(*) FROM citus_get_active_worker_nodes()").fetchone()[0]
    check(active == len(workers), "the coordinator has %d active workers" % active)

    # the model: imported on the coordinator, copied to the workers as docs/scale-out.md says
    testkit.import_fixture_model(MODEL, coord.env())
    targets = ["host=%s port=%d user=postgres dbname=postgres" % (w.sock, w.port) for w in workers]
    sync = subprocess.run([os.path.join(BINDIR, "pgbert_sync"), MODEL] + targets, capture_output=True,
                          text=True, env=coord.env())
    check(sync.returncode == 0 and sync.stdout.count("copied as version 1") == len(workers),
          "pgbert_sync copies the model to the workers: %s"
          % ("; ".join(sync.stdout.strip().splitlines()) or sync.stderr.strip()))
    digest = ("SELECT encode(sha256(lo_get(weights)), 'hex') FROM pgbert.model_versions "
              "WHERE name = '%s' AND version = pgbert.resolve_version('%s', NULL)" % (MODEL, MODEL))
    digests = {n.dir: query(n, digest) for n in nodes}
    check(len(set(map(str, digests.values()))) == 1 and isinstance(digests[coord.dir], list),
          "every node serves the same weights")

    texts = testkit.fixture_texts()
    n_rows = len(texts) * REPEAT
    rows = [(i + 1, (i + 1) * 37 % (n_rows + 1), texts[i % len(texts)]["text"]) for i in range(n_rows)]
    with coord.connect() as c:
        for table in ("mails", "mails_local"):
            c.execute("CREATE TABLE %s (id int PRIMARY KEY, k int NOT NULL, body text)" % table)
            with c.cursor().copy("COPY %s FROM STDIN" % table) as cp:
                for r in rows:
                    cp.write_row(r)
        c.execute("SELECT create_distributed_table('mails', 'id', shard_count => %s)", (SHARDS,))
        for table in ("dist_target", "local_target", "local_target_ref"):
            c.execute("CREATE TABLE %s (id int PRIMARY KEY, label text)" % table)
        c.execute("SELECT create_distributed_table('dist_target', 'id', shard_count => %s)", (SHARDS,))
        placed = c.execute("SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'mails'::regclass"
                           ).fetchone()[0]
        count = c.execute("SELECT count(*) FROM mails").fetchone()[0]
    check(placed == len(workers) and count == n_rows,
          "mails: %d rows in %d shards on %d workers, mails_local a plain copy" % (count, SHARDS, placed))
    return n_rows


def main():
    t0 = time.time()
    tmp = testkit.temp_dir("pgbert_citus_")
    base = testkit.free_ports(4)
    nodes = [Server(tmp, "coordinator", base), Server(tmp, "worker1", base + 1), Server(tmp, "worker2", base + 2)]
    coord, sentinels = nodes[0], []
    try:
        n_rows = setup_cluster(nodes)
        started = start_times(nodes)
        check(all(isinstance(v, list) and None not in v[0] for v in started.values()),
              "postmaster and checkpointer start times recorded on the coordinator and both workers")
        sentinels += [connect(n) for n in nodes]    # a crash restart would end these sessions
        labels = query(coord, "SELECT classify(body, 'm'), count(*) FROM mails_local GROUP BY 1 ORDER BY 2")
        check(isinstance(labels, list) and sum(n for _, n in labels) == n_rows,
              "labels of the local table: %s" % labels)
        rare = labels[0][0] if isinstance(labels, list) else "spam"

        # 1. issue 26
        issue = ("SELECT count(*) FROM (SELECT id, classify(body, 'm') c FROM mails) d "
                 "JOIN (SELECT id, classify(body, 'm') c FROM mails_local) l USING (id) "
                 "WHERE d.c IS DISTINCT FROM l.c")
        for batching, setup in [("on", [])] + [("off " + where, sets) for where, sets in UNBATCHED.items()]:
            got = query(coord, issue, setup)
            check(got == [(0,)], "issue 26's query, batching %s: 0 differing labels (%s)" % (batching, got))
        plan = query(coord, "EXPLAIN " + issue)
        lines = [r[0] for r in plan] if isinstance(plan, list) else []
        with_batch = subplans_with_batch(lines)
        check(with_batch > 0, "EXPLAIN of issue 26's query: a Distributed Subplan holding PgbertBatch (%s)"
              % (plan if not lines else "%d of %d subplans" % (with_batch, sum("Distributed Subplan" in x
                                                                               for x in lines))))
        if not with_batch:
            print("\n".join(lines))
        joined = ("SELECT id, d.c, l.c FROM (SELECT id, classify(body, 'm') c FROM {t}) d "
                  "JOIN (SELECT id, classify(body, 'm') c FROM mails_local) l USING (id) ORDER BY id")
        compare(coord, "issue 26's join, its rows", joined.format(t="mails"), joined.format(t="mails_local"))

        # 2. other shapes; each against the same statement on local tables only
        shapes = [
            ("distributed joined with distributed, one side a subplan (OFFSET 0)",
             "SELECT id, a.c, b.c FROM (SELECT id, classify(body, 'm') c FROM {t} OFFSET 0) a "
             "JOIN (SELECT id, classify(body, 'm') c FROM {t}) b USING (id) ORDER BY id"),
            ("distributed joined with distributed, one side a MATERIALIZED CTE",
             "WITH a AS MATERIALIZED (SELECT id, classify(body, 'm') c FROM {t} ORDER BY id LIMIT 1000) "
             "SELECT id, a.c, classify(b.body, 'm') FROM a JOIN {t} b USING (id) ORDER BY id"),
            ("a MATERIALIZED CTE over the local table joined with the distributed one",
             "WITH l AS MATERIALIZED (SELECT id, classify(body, 'm') c FROM mails_local) "
             "SELECT id, l.c, classify(m.body, 'm') FROM l JOIN {t} m USING (id) ORDER BY id"),
            ("a subquery in WHERE classifying the local table",
             "SELECT id, classify(body, 'm') FROM {t} WHERE id IN "
             "(SELECT id FROM mails_local WHERE classify(body, 'm') = '%s') ORDER BY id" % rare),
            ("classify on the coordinator over a distributed subquery with LIMIT",
             "SELECT id, classify(body, 'm') FROM (SELECT id, body FROM {t} ORDER BY id LIMIT 200) s ORDER BY id"),
            ("an aggregate over classify of the distributed table",
             "SELECT classify(body, 'm'), count(*) FROM {t} GROUP BY 1 ORDER BY 1"),
        ]
        for what, sql in shapes:
            compare(coord, what, sql.format(t="mails"), sql.format(t="mails_local"))

        reference = "SELECT id, classify(body, 'm') FROM mails_local ORDER BY id"
        compare(coord, "INSERT INTO a distributed table SELECT classify over the local table",
                "SELECT id, label FROM dist_target ORDER BY id", reference,
                before="INSERT INTO dist_target SELECT id, classify(body, 'm') FROM mails_local")
        compare(coord, "INSERT INTO a local table SELECT classify over the distributed table",
                "SELECT id, label FROM local_target ORDER BY id", reference,
                before="INSERT INTO local_target SELECT id, classify(body, 'm') FROM mails")
        compare(coord, "INSERT ... ON CONFLICT into a local table from the distributed table",
                "SELECT id, label FROM local_target_ref ORDER BY id",
                "SELECT id, classify(body, 'm') FROM mails_local WHERE k % 2 = 0 ORDER BY id",
                before="INSERT INTO local_target_ref SELECT id, classify(body, 'm') FROM mails WHERE k % 2 = 0 "
                       "ON CONFLICT (id) DO UPDATE SET label = excluded.label")

        repartition = ["SET citus.enable_repartition_joins = on"]
        for what, sql in [
            ("repartition join, one side on a non-distribution column",
             "SELECT a.id, b.id, classify(a.body, 'm'), classify(b.body, 'm') FROM {t} a JOIN {t} b ON a.k = b.id "
             "ORDER BY a.id"),
            ("repartition join, both sides on a non-distribution column",
             "SELECT a.id, classify(a.body, 'm'), classify(b.body, 'm') FROM {t} a JOIN {t} b ON a.k = b.k "
             "WHERE classify(b.body, 'm') IS NOT NULL ORDER BY a.id")]:
            compare(coord, what, sql.format(t="mails"), sql.format(t="mails_local"), setup=repartition)
        plan = query(coord, "EXPLAIN SELECT a.id, classify(a.body, 'm') FROM mails a JOIN mails b ON a.k = b.k",
                     repartition)
        check(isinstance(plan, list) and any("MapMergeJob" in r[0] for r in plan),
              "EXPLAIN of the repartition join shows a MapMergeJob")

        for what, sql in shapes[:3]:
            compare(coord, what + ", batching off on every node", sql.format(t="mails"),
                    sql.format(t="mails_local"), setup=UNBATCHED["on every node"])

        # 3. no crash anywhere
        ended = start_times(nodes)
        for n, sentinel in zip(nodes, sentinels):
            name = os.path.basename(n.dir)
            before = started[n.dir][0]
            after = ended[n.dir][0] if isinstance(ended[n.dir], list) else (ended[n.dir], ended[n.dir])
            check(after[0] == before[0], "%s: pg_postmaster_start_time() unchanged (%s)" % (name, after[0]))
            try:
                alive = sentinel.execute("SELECT 1").fetchone() == (1,)
            except psycopg.Error as e:
                alive = str(e).strip().splitlines()[0]
            check(after[1] == before[1] and alive is True,
                  "%s: no crash restart (the checkpointer started at %s still runs; a session open since "
                  "then: %s)" % (name, before[1], "answers" if alive is True else alive))
            with open(n.dir + ".log", errors="replace") as f:
                signalled = [line.strip() for line in f if "terminated by signal" in line]
            check(not signalled, "%s's log: no process terminated by a signal%s"
                  % (name, (" (" + signalled[0] + ")") if signalled else ""))

        # 4. rollout, labelling, settings, faults (these restart and stop nodes)
        for sentinel in sentinels:
            sentinel.close()
        sentinels = []
        rollout_and_labelling(nodes, n_rows)
        node_added_later(nodes, tmp, base + 3)
    finally:
        for sentinel in sentinels:
            sentinel.close()
        for n in reversed(nodes):
            n.stop()
        if testkit.failures:
            for n in nodes:
                print("---- " + n.dir + ".log")
                print(n.log_tail())
        shutil.rmtree(tmp, ignore_errors=True)
    print("%.0f s" % (time.time() - t0))
    return testkit.finish()


if __name__ == "__main__":
    sys.exit(main())
