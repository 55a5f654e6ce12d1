#!/usr/bin/env python3
"""Faults while pgbert works, on a throw-away server that preloads pgbert (it is restarted
here). After each: the postmaster did not restart on its own, no wrong answer was returned,
no large object is orphaned, and the next query is right.

1. pg_terminate_backend of a client in the middle of a batched query, through the encoder
   worker and in-process.
2. A model dropped while a long query uses it: the query finishes with right results or
   fails cleanly; afterwards the name is gone and its large object too.
3. A model redeployed while a long query uses it: that statement keeps the version it
   started with for every row; the next statement uses the new one.
4. A disk-full error (SQLSTATE 53100, raised by a trigger where the model version row is
   written, after its large object) at the end of train_classifier and of a
   start_training job: the error is reported, nothing is stored, no large object is left.
5. A server restart in the middle of a start_training job: the job is recorded as failed
   (interrupted), no version or large object is left, and training works afterwards. A
   job that a crash left 'running' is marked failed by the next start_training.

Needs the PostgreSQL 15 server binaries (pg_config --bindir) and pgbert installed.
"""
import os
import shutil
import sys
import threading
import time

import psycopg

import testkit
from testkit import Server, check

REPEAT = 250                # the fixture texts x REPEAT rows: a query of seconds (under 1.5 s in-process now)

def import_model(server, name):
    return testkit.import_fixture_model(name, server.env())


def postmaster_start(conn):
    """When the server last started: the postmaster's start time, which a crash restart (a
    backend killed by a signal, all backends reset) keeps, and the checkpointer's, which it
    does not."""
    return conn.execute("SELECT pg_postmaster_start_time(), (SELECT backend_start FROM pg_stat_activity "
                        "WHERE backend_type = 'checkpointer')").fetchone()


def orphans(conn):
    """Large objects no model version points at (this database has no others)."""
    return conn.execute("SELECT count(*) FROM pg_largeobject_metadata m "
                        "WHERE NOT EXISTS (SELECT 1 FROM pgbert.model_versions v WHERE v.weights = m.oid)"
                        ).fetchone()[0]


def reference(conn, model):
    """Per-text probabilities, one row at a time in this session."""
    conn.execute("SET pgbert.batching = off")
    conn.execute("SET pgbert.worker = off")
    ref = {i: s for i, s in conn.execute("SELECT id, classify_scores(body, %s) FROM docs", (model,))}
    conn.execute("RESET pgbert.batching")
    conn.execute("RESET pgbert.worker")
    return ref


def close(a, b, tol=testkit.P_TOL):
    """Within float32 rounding of one another: testkit.P_TOL for the fixture model on its
    texts (a trained version passes its own, testkit.deployed_probability_tolerance)."""
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < tol for k in a)


def long_query(server, model, result, worker=True, started=None):
    """SELECT every row of big through classify_scores; result gets rows or the error."""
    try:
        with server.connect() as c:
            if not worker:
                c.execute("SET pgbert.worker = off")
            result["pid"] = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            if started:
                started.set()
            result["rows"] = c.execute("SELECT doc, classify_scores(body, %s) FROM big", (model,)).fetchall()
    except psycopg.Error as e:
        result["error"] = e
    finally:
        if started:
            started.set()


def wait_running(conn, result):
    """Wait until long_query's statement runs in its backend, then a moment more: mid-query.

    A fixed sleep after the connection opened was not enough once the engine got faster: the
    in-process query over big could finish before it (CI, 2026-11-29)."""
    check(testkit.wait_for(lambda: conn.execute(
        "SELECT state = 'active' AND query LIKE '%%FROM big%%' FROM pg_stat_activity WHERE pid = %s",
        (result["pid"],)).fetchone()[0], 30, 0.02), "the long query is running")
    time.sleep(0.3)


def all_right(rows, ref):
    return all(close(s, ref[d]) for d, s in rows)


def terminate_mid_batch(server, conn, ref):
    for worker in (True, False):
        where = "through the worker" if worker else "in-process"
        before = postmaster_start(conn)
        result, started = {}, threading.Event()
        t = threading.Thread(target=long_query, args=(server, "cls", result, worker, started))
        t.start()
        started.wait(30)
        wait_running(conn, result)
        conn.execute("SELECT pg_terminate_backend(%s)", (result["pid"],))
        t.join(120)
        err = result.get("error")
        check(err is not None and "rows" not in result,
              "%s: pg_terminate_backend mid-batch ends that query (%s)"
              % (where, str(err).splitlines()[0] if err else "it finished"))
        check(postmaster_start(conn) == before, "%s: the postmaster did not restart" % where)
        rows = conn.execute("SELECT id, classify_scores(body, 'cls') FROM docs").fetchall()
        check(all(close(s, ref[i]) for i, s in rows), "%s: the next query is right" % where)
        if worker:
            check(testkit.wait_for(lambda: conn.execute(
                "SELECT state = 'ready' AND queued = 0 AND running = 0 FROM pgbert.worker").fetchone()[0], 10),
                "the worker is ready with nothing left queued for the terminated session")


def drop_while_running(server, conn, ref):
    import_model(server, "victim")
    result, started = {}, threading.Event()
    t = threading.Thread(target=long_query, args=(server, "victim", result, True, started))
    t.start()
    started.wait(30)
    wait_running(conn, result)
    t0 = time.time()
    conn.execute("SELECT drop_model('victim')")
    dropped_after = time.time() - t0
    t.join(120)
    if "rows" in result:
        check(len(result["rows"]) == 122 * REPEAT and all_right(result["rows"], ref),
              "a model dropped mid-query: the query finished with right results (%d rows; the drop took %.1f s)"
              % (len(result["rows"]), dropped_after))
    else:
        check(result.get("error") is not None,
              "a model dropped mid-query: the query failed cleanly (%s)" % str(result.get("error")).splitlines()[0])
    try:
        conn.execute("SELECT classify('x', 'victim')")
        check(False, "after the drop the model is gone")
    except psycopg.Error as e:
        check(e.sqlstate == "42704", "after the drop the model is gone (%s)" % e.sqlstate)
    check(orphans(conn) == 0, "no large object left behind by the drop")


def redeploy_while_running(server, conn, ref):
    import_model(server, "flip")
    conn.execute("SELECT train_classifier('docs', 'body', 'label', model => 'flip', base_model => 'flip', "
                 "epochs => 1, learning_rate => 1e-2, max_length => 32)")
    conn.execute("SELECT deploy_model('flip', 1)")
    ref1 = reference(conn, "flip")
    conn.execute("SELECT deploy_model('flip', 2)")
    ref2 = reference(conn, "flip")
    tol2 = testkit.deployed_probability_tolerance("flip", server.env())
    conn.execute("SELECT deploy_model('flip', 1)")
    # a text tells the versions apart when its probabilities are more than the sum of the two
    # tolerances apart: a row of version 2 is then not within close() of version 1's
    differ = sum(not close(ref1[i], ref2[i], testkit.P_TOL + tol2) for i in ref1)
    result, started = {}, threading.Event()
    t = threading.Thread(target=long_query, args=(server, "flip", result, True, started))
    t.start()
    started.wait(30)
    wait_running(conn, result)
    conn.execute("SELECT deploy_model('flip', 2)")
    t.join(120)
    rows = result.get("rows", [])
    check(differ > 100 and len(rows) == 122 * REPEAT and all_right(rows, ref1),
          "redeployed mid-query: every row of that statement used the version it started with "
          "(%d rows; the versions differ on %d of 122 texts)" % (len(rows), differ))
    after = conn.execute("SELECT id, classify_scores(body, 'flip') FROM docs").fetchall()
    check(all(close(s, ref2[i], tol2) for i, s in after),
          "the next statement uses the redeployed version (tolerance %.2g)" % tol2)
    conn.execute("SELECT drop_model('flip')")


def disk_full(server, conn):
    conn.execute("""CREATE FUNCTION pgbert_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN RAISE EXCEPTION 'could not extend file: No space left on device (simulated)'
                          USING ERRCODE = 'disk_full'; END $$""")
    conn.execute("CREATE TRIGGER disk_full BEFORE INSERT ON pgbert.model_versions "
                 "FOR EACH ROW EXECUTE FUNCTION pgbert_test_disk_full()")
    versions = conn.execute("SELECT count(*) FROM pgbert.model_versions").fetchone()[0]
    try:
        conn.execute("SELECT train_classifier('docs', 'body', 'label', model => 'full', base_model => 'cls', "
                     "epochs => 1, max_length => 32)")
        check(False, "train_classifier reports the disk-full error")
    except psycopg.Error as e:
        check(e.sqlstate == "53100", "train_classifier reports the disk-full error (%s: %s)"
              % (e.sqlstate, str(e).splitlines()[0]))
    job = conn.execute("SELECT start_training('docs', 'body', 'label', model => 'full', base_model => 'cls', "
                       "epochs => 1, max_length => 32)").fetchone()[0]
    testkit.wait_for(lambda: conn.execute("SELECT status NOT IN ('queued', 'running') FROM pgbert.training_jobs "
                                          "WHERE id = %s", (job,)).fetchone()[0], 120)
    status, error = conn.execute("SELECT status, error FROM pgbert.training_jobs WHERE id = %s", (job,)).fetchone()
    check(status == "failed" and "No space left" in (error or ""),
          "a start_training job records the disk-full error (%s: %s)" % (status, error))
    check(conn.execute("SELECT count(*) FROM pgbert.model_versions").fetchone()[0] == versions and
          orphans(conn) == 0, "nothing stored and no large object left behind")
    conn.execute("DROP TRIGGER disk_full ON pgbert.model_versions")
    conn.execute("DROP FUNCTION pgbert_test_disk_full()")
    conn.execute("SELECT train_classifier('docs', 'body', 'label', model => 'full', base_model => 'cls', "
                 "epochs => 1, max_length => 32)")
    check(conn.execute("SELECT count(*) FROM pgbert.model_versions WHERE name = 'full'").fetchone()[0] == 1,
          "with space again, training stores its version")
    conn.execute("SELECT drop_model('full')")


def restart_mid_training(server):
    with server.connect() as conn:
        versions = conn.execute("SELECT count(*) FROM pgbert.model_versions").fetchone()[0]
        job = conn.execute("SELECT start_training('big', 'body', 'label', model => 'interrupted', "
                           "base_model => 'cls', epochs => 50, max_length => 64)").fetchone()[0]
        running = testkit.wait_for(lambda: conn.execute(
            "SELECT status = 'running' FROM pgbert.training_jobs WHERE id = %s", (job,)).fetchone()[0], 60)
        time.sleep(2)
        before = postmaster_start(conn)
    check(running, "the training job is running")
    server.pg_ctl("-m", "fast", "restart")
    with server.connect() as conn:
        check(postmaster_start(conn) != before, "the server restarted")
        status, error = conn.execute("SELECT status, error FROM pgbert.training_jobs WHERE id = %s",
                                     (job,)).fetchone()
        check(status == "failed" and "interrupted" in (error or ""),
              "the job the restart interrupted is recorded as failed (%s: %s)" % (status, error))
        check(conn.execute("SELECT count(*) FROM pgbert.model_versions").fetchone()[0] == versions and
              orphans(conn) == 0, "no version and no large object left by the interrupted job")

        # a crash leaves no chance to record anything: the next start_training does
        conn.execute("UPDATE pgbert.training_jobs SET status = 'running', error = NULL WHERE id = %s", (job,))
        job2 = conn.execute("SELECT start_training('docs', 'body', 'label', model => 'after', base_model => 'cls', "
                            "epochs => 1, max_length => 32)").fetchone()[0]
        status = conn.execute("SELECT status FROM pgbert.training_jobs WHERE id = %s", (job,)).fetchone()[0]
        check(status == "failed", "a job left 'running' from before the restart is marked failed by the next "
              "start_training (%s)" % status)
        done = testkit.wait_for(lambda: conn.execute(
            "SELECT status = 'succeeded' FROM pgbert.training_jobs WHERE id = %s", (job2,)).fetchone()[0], 120)
        check(done, "training works after the restart")
        rows = conn.execute("SELECT count(classify(body, 'after')) FROM docs").fetchone()[0]
        check(rows == 122, "and its model classifies (%d rows)" % rows)


def main():
    tmp = testkit.temp_dir("pgbert_faults_")
    server = Server(tmp, "faults", testkit.free_ports(1))
    try:
        server.initdb(["shared_preload_libraries = 'pgbert'", "max_worker_processes = 16"])
        server.start()
        with server.connect() as conn:
            conn.execute("CREATE EXTENSION pgbert")
            import_model(server, "cls")
            testkit.create_docs(conn)
            conn.execute("CREATE TABLE big AS SELECT d.id AS doc, d.body, d.label FROM docs d, "
                         "generate_series(1, %d) g" % REPEAT)
            check(testkit.wait_for(lambda: conn.execute("SELECT state = 'ready' FROM pgbert.worker").fetchone()[0]),
                  "the encoder worker is ready")
            ref = reference(conn, "cls")
            terminate_mid_batch(server, conn, ref)
            drop_while_running(server, conn, ref)
            redeploy_while_running(server, conn, ref)
            disk_full(server, conn)
        restart_mid_training(server)
    finally:
        server.stop()
        if testkit.failures:
            print("---- server log")
            print(server.log_tail())
        shutil.rmtree(tmp, ignore_errors=True)
    return testkit.finish()


if __name__ == "__main__":
    sys.exit(main())
