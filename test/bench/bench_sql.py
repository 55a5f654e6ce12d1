#!/usr/bin/env python3
"""Rows/s of classify() and classify_batch() in SQL, and a backend's memory for the model.

    python test/bench/bench_sql.py TEXTS_TXT ROWS MODEL

Connects with the PG* environment to a server on this machine with pgbert installed and
MODEL imported, loads the first ROWS lines of TEXTS_TXT (COPY text format) into a table,
and times (pgbert.cpu_threads = 1, the model already loaded, all rows fetched):
  SELECT id, classify(body, MODEL) FROM mails      pgbert.batching off, then on
  SELECT ord, label FROM classify_batch((SELECT array_agg(body) FROM mails), MODEL)
  the first statement again as a parallel plan (leader + 1 parallel worker)
Also reports the backend's memory before and after loading MODEL (from /proc: RSS, its
private part RssAnon, and RssShmem, the shared buffers it touched reading the large
object). JSON lines.
"""
import json
import sys
import time

import psycopg

texts_file, rows, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def rss(pid):
    status = dict(line.split(":", 1) for line in open("/proc/%d/status" % pid))
    return {k: int(status[k].split()[0]) / 1024.0 for k in ("VmRSS", "VmHWM", "RssAnon", "RssShmem")}


with psycopg.connect(autocommit=True) as conn, conn.cursor() as cur:
    cur.execute("SET pgbert.cpu_threads = 1")
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    cur.execute("SELECT bert_tokenize('warm up the tokenizer')")
    before = rss(pid)
    cur.execute("SELECT classify('load the model', %s)", (model,))
    after = rss(pid)
    cur.execute("SELECT bytes FROM pgbert.cached_models() WHERE name = %s", (model,))
    cached = cur.fetchone()[0]
    print(json.dumps({"memory": True, "model": model, "rss_before_mib": round(before["VmRSS"], 1),
                      "rss_after_mib": round(after["VmRSS"], 1), "peak_rss_mib": round(after["VmHWM"], 1),
                      "anon_before_mib": round(before["RssAnon"], 1), "anon_after_mib": round(after["RssAnon"], 1),
                      "shmem_after_mib": round(after["RssShmem"], 1), "cached_mib": round(cached / 2**20, 1)}))

    cur.execute("DROP TABLE IF EXISTS bench_mails")
    cur.execute("CREATE TABLE bench_mails (id serial, body text)")
    with open(texts_file, encoding="utf-8") as f:
        lines = [next(f) for _ in range(rows)]
    with cur.copy("COPY bench_mails (body) FROM STDIN") as cp:
        for line in lines:
            cp.write(line)
    cur.execute("ANALYZE bench_mails")
    cur.execute("SET max_parallel_workers_per_gather = 0")

    # plain SQL returns every row to the client, as an application reading labels would
    plain = "SELECT id, classify(body, %s) FROM bench_mails"
    for mode, batching, sql in (
            ("per row", "off", plain),
            ("plain SQL, batched", "on", plain),
            ("batched", "on", "SELECT ord, label FROM classify_batch((SELECT array_agg(body ORDER BY id) FROM bench_mails), %s)")):
        cur.execute("SET pgbert.batching = " + batching)
        t0 = time.perf_counter()
        cur.execute(sql, (model,))
        n = len(cur.fetchall())
        dt = time.perf_counter() - t0
        print(json.dumps({"impl": "sql", "mode": mode, "rows": n, "seconds": round(dt, 3),
                          "rows_per_s": round(n / dt, 2)}))
    cur.execute("RESET pgbert.batching")

    # the plain statement in a parallel plan: the leader and one parallel worker (2 processes
    # for this machine's 2 cores), each batching its share; each loads its own model copy,
    # which the timing includes as a user would see it
    for k, v in (("parallel_setup_cost", "0"), ("parallel_tuple_cost", "0"),
                 ("min_parallel_table_scan_size", "0"), ("max_parallel_workers_per_gather", "1")):
        cur.execute("SET %s = %s" % (k, v))
    cur.execute("EXPLAIN " + plain, (model,))
    shape = " ".join(r[0].strip() for r in cur.fetchall())
    t0 = time.perf_counter()
    cur.execute(plain, (model,))
    n = len(cur.fetchall())
    dt = time.perf_counter() - t0
    print(json.dumps({"impl": "sql", "mode": "plain SQL, batched, parallel", "rows": n, "seconds": round(dt, 3),
                      "rows_per_s": round(n / dt, 2), "plan": shape}))
    cur.execute("SET max_parallel_workers_per_gather = 0")
    cur.execute("DROP TABLE bench_mails")
