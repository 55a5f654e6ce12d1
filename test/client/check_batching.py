#!/usr/bin/env python3
"""Checks of transparent batching (PgbertBatch) that need more than one session or the
encoder worker, against a server started with shared_preload_libraries = 'pgbert'
(connection from the PG* environment, as pg_virtualenv sets it). sql/batching.sql covers
the single-session semantics in-process.

1. Batched plain SQL through the worker: SELECT classify_scores(body) over the 122 fixture
   texts equals the same statement unbatched and in-process (pgbert.batching = off,
   pgbert.worker = off) within testkit.P_TOL (5e-5, float32 rounding of two batch shapes),
   and the worker received multi-row requests.
2. Concurrent update (EvalPlanQual): UPDATE ... SET label = classify(body) waits for a
   transaction that changes one row's text, then classifies that row's new text, as the
   unbatched plan does.
3. Several sessions running batched statements at once each get their own results.
"""
import sys
import threading
import time

import psycopg

import testkit
from testkit import check


def connect():
    return psycopg.connect(autocommit=True)


def plan(conn, sql):
    return "\n".join(r[0] for r in conn.execute("EXPLAIN (COSTS OFF) " + sql))


def worker_counts(conn):
    return conn.execute("SELECT requests, rows FROM pgbert.worker").fetchone()


def wait_ready(conn):
    return testkit.wait_for(lambda: conn.execute("SELECT state FROM pgbert.worker").fetchone()[0] == "ready", 30)


def scores_close(a, b, tol=testkit.P_TOL):
    # the fixture model on its texts, computed in batches of other shapes (OpenBLAS may sum
    # them in another order): float32 rounding, testkit.P_TOL
    return a is None and b is None or (a is not None and b is not None and a.keys() == b.keys()
                                       and all(abs(a[k] - b[k]) < tol for k in a))


def through_worker(conn):
    sql = "SELECT id, classify_scores(body, 'bcls') FROM docs ORDER BY id"
    check("PgbertBatch" in plan(conn, sql), "plain SELECT is planned with PgbertBatch")
    req0, rows0 = worker_counts(conn)
    batched = conn.execute(sql).fetchall()
    req1, rows1 = worker_counts(conn)
    conn.execute("SET pgbert.batching = off")
    conn.execute("SET pgbert.worker = off")
    unbatched = conn.execute(sql).fetchall()
    conn.execute("RESET pgbert.batching")
    conn.execute("RESET pgbert.worker")
    same = len(batched) == len(unbatched) and all(
        a[0] == b[0] and scores_close(a[1], b[1]) for a, b in zip(batched, unbatched))
    worst = max((max(abs(a[1][k] - b[1][k]) for k in a[1]) for a, b in zip(batched, unbatched)
                 if a[1] is not None and b[1] is not None), default=0.0)
    check(same, "batched through the worker == unbatched in-process within %g (%d rows, max |dp| %.2g)"
          % (testkit.P_TOL, len(batched), worst))
    explain = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()[0][0]["Plan"]
    while explain.get("Custom Plan Provider") != "PgbertBatch" and explain.get("Plans"):
        explain = explain["Plans"][0]
    check(explain.get("Rows In Encoder Worker") == 122 and explain.get("Rows In Session") == 0,
          "EXPLAIN ANALYZE says the rows ran in the encoder worker (%s in the worker, %s in the session)"
          % (explain.get("Rows In Encoder Worker"), explain.get("Rows In Session")))
    requests, rows = req1 - req0, rows1 - rows0
    texts = sum(1 for r in unbatched if r[1] is not None)   # NULL inputs never reach the worker
    check(rows == texts and requests < rows / 4,
          "the worker got the rows in multi-row requests (%d rows in %d requests)" % (rows, requests))


def concurrent_update(conn):
    conn.execute("DROP TABLE IF EXISTS epq")
    conn.execute("CREATE TABLE epq AS SELECT id, body, NULL::text AS label FROM docs WHERE id < 10")
    new_body = conn.execute("SELECT body FROM docs WHERE id = 4").fetchone()[0]
    conn.execute("SET pgbert.batching = off")
    expected = {r[0]: r[1] for r in conn.execute(
        "SELECT id, classify(CASE WHEN id = 1 THEN %s ELSE body END, 'bcls') FROM epq WHERE id <= 3", (new_body,))}
    conn.execute("RESET pgbert.batching")
    update = "UPDATE epq SET label = classify(body, 'bcls') WHERE id <= 3 RETURNING id, label"
    check("PgbertBatch" in plan(conn, update), "the UPDATE is planned with PgbertBatch")

    blocker = connect()
    blocker.execute("BEGIN")
    blocker.execute("UPDATE epq SET body = %s WHERE id = 1", (new_body,))
    result = {}

    def run():
        with connect() as c:
            result["rows"] = dict(c.execute(update).fetchall())

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.0)
    waiting = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND query LIKE 'UPDATE epq SET label%%'").fetchone()[0]
    blocker.execute("COMMIT")
    blocker.close()
    t.join(60)
    check(waiting == 1, "the batched UPDATE waited for the concurrent update")
    check(result.get("rows") == expected,
          "after the wait, every row is updated and the changed row is classified on its new text (%s)"
          % result.get("rows"))
    conn.execute("DROP TABLE epq")


def sessions_at_once(conn):
    conn.execute("SET pgbert.batching = off")
    conn.execute("SET pgbert.worker = off")
    reference = dict(conn.execute("SELECT id, classify(body, 'bcls') FROM docs"))
    conn.execute("RESET pgbert.batching")
    conn.execute("RESET pgbert.worker")
    errors, wrong = [], []

    def client(k):
        try:
            with connect() as c:
                for _ in range(3):
                    # each session reads a different slice, in a different order
                    rows = c.execute("SELECT id, classify(body, 'bcls') FROM docs WHERE id %% 4 = %s "
                                     "ORDER BY id DESC", (k % 4,)).fetchall()
                    ids = [r[0] for r in rows]
                    if ids != sorted(ids, reverse=True) or any(reference[i] != l for i, l in rows):
                        wrong.append(k)
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    check(not errors and not wrong, "8 sessions × 3 batched statements: own rows, own order, reference labels "
          "(errors %s, wrong %s)" % (errors[:2], wrong))


def main():
    with connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgbert")
        testkit.import_fixture_model("bcls")
        conn.execute("DROP TABLE IF EXISTS docs")
        testkit.create_docs(conn)
        conn.execute("INSERT INTO docs VALUES (1000, NULL)")
        check(wait_ready(conn), "the encoder worker is ready")
        through_worker(conn)
        concurrent_update(conn)
        sessions_at_once(conn)
        conn.execute("DROP TABLE docs")
        conn.execute("SELECT drop_model('bcls')")
    return testkit.finish()


if __name__ == "__main__":
    sys.exit(main())
