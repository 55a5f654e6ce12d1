#!/usr/bin/env python3
"""A primary and a streaming hot standby on this machine (replication over loopback TCP,
clients on unix sockets in a temporary directory), both with shared_preload_libraries =
'pgbert':

1. A model imported on the primary is served on the standby by its own encoder worker
   (large objects and the catalog replicate), with the primary's results.
2. A classifier trained on the primary (train_classifier) is classified with on the
   standby once replayed, with the primary's results, plain and batched.
3. pgbert_sync copies the trained model to another database (as to a Citus worker node or
   an independent server) with the same results, and a second run finds it up to date.
4. On the standby, writing functions fail with PostgreSQL's read-only error and the
   standby keeps serving; a model dropped on the primary is gone on the standby.

Needs the PostgreSQL 15 server binaries (pg_config --bindir) and pgbert installed. Run as
root, the servers run as the postgres user.
"""
import os
import shutil
import subprocess
import sys

import psycopg

import testkit
from testkit import BINDIR, Server, as_server_user, check


def wait_for(what, fn, seconds=60):
    ok = testkit.wait_for(fn, seconds)
    if not ok:
        check(False, "timed out waiting for " + what)
    return ok


def replayed(primary, standby):
    lsn = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    return wait_for("the standby to replay %s" % lsn, lambda: standby.execute(
        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0])


def results(conn, model, batching="on"):
    conn.execute("SET pgbert.batching = " + batching)
    rows = conn.execute("SELECT id, classify(body, %s), classify_scores(body, %s) FROM docs ORDER BY id",
                        (model, model)).fetchall()
    conn.execute("RESET pgbert.batching")
    return rows


def same(a, b, tol):
    """Rows of results() equal within tol, a probability tolerance from float32 rounding
    (testkit): the same engine on the same CPU, but the batches may be cut differently.
    Labels equal too, except where a's top two probabilities are within 2 tol."""
    def label_ok(x, y):
        top = sorted(x[2].values(), reverse=True)
        return x[1] == y[1] or top[0] - top[1] <= 2 * tol
    return len(a) == len(b) and all(
        x[0] == y[0] and label_ok(x, y) and all(abs(x[2][k] - y[2][k]) <= tol for k in x[2])
        for x, y in zip(a, b))


def main():
    tmp = testkit.temp_dir("pgbert_standby_")
    base = testkit.free_ports(2)
    primary, standby = Server(tmp, "primary", base), Server(tmp, "standby", base + 1)
    try:
        primary.initdb(["shared_preload_libraries = 'pgbert'", "wal_level = replica", "max_wal_senders = 4"])
        primary.conf(["listen_addresses = '127.0.0.1'"])     # replication over loopback TCP
        primary.start()
        with primary.connect() as p:
            p.execute("CREATE EXTENSION pgbert")
            testkit.import_fixture_model("cls", primary.env())
            testkit.create_docs(p)

            as_server_user([os.path.join(BINDIR, "pg_basebackup"), "-D", standby.dir, "-R", "-X", "stream",
                            "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "--no-sync"])
            standby.conf(["port = %d" % standby.port, "hot_standby = on", "listen_addresses = ''"])
            standby.start()
            with standby.connect() as s:
                check(s.execute("SELECT pg_is_in_recovery()").fetchone()[0], "the standby is in recovery")
                replayed(p, s)
                addr = p.execute("SELECT client_addr::text FROM pg_stat_replication").fetchone()
                check(addr is not None and addr[0].startswith("127.0.0.1"),
                      "the standby streams from the primary over loopback TCP (%s)" % (addr,))
                ready = wait_for("the standby's encoder worker", lambda: s.execute(
                    "SELECT state FROM pgbert.worker").fetchone()[0] == "ready")
                check(ready, "the encoder worker runs on the standby")

                on_primary = results(p, "cls")
                on_standby = results(s, "cls")
                check(same(on_primary, on_standby, testkit.P_TOL),
                      "an imported model on the standby gives the primary's results (%d rows)" % len(on_standby))
                served = s.execute("SELECT requests FROM pgbert.worker").fetchone()[0]
                check(served > 0, "the standby's worker served them (%d requests)" % served)

                report = p.execute("SELECT train_classifier('docs', 'body', 'label', model => 'trained', "
                                   "base_model => 'cls', epochs => 1, batch_size => 16, max_length => 32)"
                                   ).fetchone()[0]
                check(report is not None, "trained on the primary")
                replayed(p, s)
                trained_primary = results(p, "trained")
                trained_standby = results(s, "trained")
                trained_unbatched = results(s, "trained", batching="off")
                tol = testkit.deployed_probability_tolerance("trained", primary.env())
                check(same(trained_primary, trained_standby, tol) and same(trained_standby, trained_unbatched, tol),
                      "the trained classifier on the standby gives the primary's results, batched and not "
                      "(tolerance %.2g)" % tol)

                # another database, as a Citus worker node or an independent server would be:
                # pgbert_sync copies the deployed version once, then finds it up to date
                p.execute("CREATE DATABASE other")
                with psycopg.connect(host=primary.sock, port=primary.port, user="postgres", dbname="other",
                                     autocommit=True) as o:
                    o.execute("CREATE EXTENSION pgbert")
                    testkit.create_docs(o)
                    sync = [os.path.join(BINDIR, "pgbert_sync"), "trained", "dbname=other"]
                    first = subprocess.run(sync, capture_output=True, text=True, env=primary.env())
                    second = subprocess.run(sync, capture_output=True, text=True, env=primary.env())
                    versions = o.execute("SELECT count(*) FROM pgbert.model_versions WHERE name = 'trained'"
                                         ).fetchone()[0]
                    check(first.returncode == 0 and "copied as version 1" in first.stdout,
                          "pgbert_sync copies the model: %s" % (first.stdout.strip() or first.stderr.strip()))
                    check(second.returncode == 0 and "up to date" in second.stdout and versions == 1,
                          "pgbert_sync again: %s (%d version)" % (second.stdout.strip(), versions))
                    check(same(results(o, "trained"), trained_primary, tol),
                          "the synced copy gives the primary's results")

                for sql in ("SELECT train_classifier('docs', 'body', 'label', model => 'nope', base_model => 'cls', "
                            "epochs => 1)", "SELECT drop_model('cls')", "SELECT deploy_model('cls', 1)",
                            "SELECT start_training('docs', 'body', 'label', model => 'nope', base_model => 'cls')"):
                    try:
                        s.execute(sql)
                        check(False, "on the standby, %s fails" % sql.split("(")[0])
                    except psycopg.Error as e:
                        check(e.sqlstate == "25006",
                              "on the standby, %s fails as read-only (%s: %s)"
                              % (sql.split("(")[0], e.sqlstate, str(e).splitlines()[0]))
                check(same(results(s, "cls"), on_standby, testkit.P_TOL), "the standby keeps serving after those errors")

                p.execute("SELECT drop_model('trained')")
                replayed(p, s)
                try:
                    s.execute("SELECT classify('x', 'trained')")
                    check(False, "a model dropped on the primary is gone on the standby")
                except psycopg.Error as e:
                    check(e.sqlstate == "42704", "a model dropped on the primary is gone on the standby (%s)"
                          % str(e).splitlines()[0])
    finally:
        standby.stop()
        primary.stop()
        if testkit.failures:
            for server in (primary, standby):
                print("---- " + server.dir + ".log")
                print(server.log_tail())
        shutil.rmtree(tmp, ignore_errors=True)
    return testkit.finish()


if __name__ == "__main__":
    sys.exit(main())
