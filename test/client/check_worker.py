#!/usr/bin/env python3
"""Multi-process checks of the encoder worker against a server started with
shared_preload_libraries = 'pgbert' (connection from the PG* environment, as pg_virtualenv
sets it; the server must run on this machine, since the checks read /proc and send
signals to the engine process):

1. The worker is ready and its engine process runs outside PostgreSQL's process tree
   (its parent is the worker, not the postmaster).
2. Results through the worker equal in-process results (pgbert.worker = off) bit for bit
   when the batches are the same (one session, one row per request):
   classify_scores on the 122 texts of test/fixtures/sql_cls_probs.json, which also match
   transformers' probabilities within testkit.P_TOL, classify_batch, and MiniLM embeddings
   (mean, cls, pooler).
3. 16 concurrent sessions classifying their own texts get their own rows back (within
   testkit.P_TOL of the in-process probabilities and nearer to them than to any other text's: merged
   batches round differently in the last bits), and the worker merged their requests.
   Sessions with pgbert.cpu_precision = int8 and fp32 at the same time each get their own
   precision's results (the worker honours it per request).
4. One copy of the weights: the engine process holds MiniLM once; sessions that used it
   through the worker hold no weights (pgbert.cached_models) and stay small.
5. Cancel (pg_cancel_backend) and statement_timeout in the middle of a long query stop
   only that query; the session's next query is right.
6. SIGKILL and SIGSEGV of the engine process in the middle of a query: that query's batch is
   sent once more, to the fresh engine the worker starts, and the query completes; another
   session's queries keep working, the postmaster does not restart, the next query works.
   kill -9 of an idle engine: the next 100 queries all succeed; with no query, the worker
   notices the death by itself (the socket closes), reaps the engine and starts another.
7. Beyond pgbert.worker_memory the least recently used versions leave the engine;
   drop_model takes the version out of the engine at once; a parallel scan's workers send
   their rows through the encoder worker too.
8. Training (train_classifier, and start_training's background job) runs in the trainer's
   engine process when the trainer worker is ready, with byte-identical weights to training
   in the session; its progress shows, pg_cancel_backend stops it with nothing stored, and
   the engine lets the run go once the session ends. Inference never waits behind a step:
   with the trainer's engine stopped (SIGSTOP) in the middle of a training step, as a step
   that takes forever, 50 one-row classify calls from another session all return, right,
   while pgbert.worker_engines shows the trainer busy with that step; the trainer's engine
   runs at pgbert.training_nice and with pgbert.training_threads; killed while idle, it is
   replaced at once.
9. A hung engine (SIGSTOP) does not keep the worker from stopping: SIGTERM kills it, the
   waiting query runs in its session, and the worker comes back.
10. Fallback: with pgbert.worker off, and while the worker is down (terminated), queries
   run in the session (one NOTICE says why) with the same results; pgbert.device = 'cuda'
   on a build without a CUDA engine fails the engine start with a clear state.
"""
import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg

import testkit

SQL_CLS = "test/fixtures/models/sql_cls"
PROBS = "test/fixtures/sql_cls_probs.json"
MINILM = ".models/all-minilm-l6-v2"
MAILS = "data/spamassassin.csv.gz"

failed = 0


def check(ok, what):
    global failed
    print("%s %s" % ("ok  " if ok else "FAIL", what), flush=True)
    failed += not ok


def tool(name):
    bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
    return os.path.join(bindir, name)


def connect(**kw):
    # one row per request, as these checks assume (references are one-row passes);
    # transparent batching through the worker is checked by check_batching.py
    return psycopg.connect(autocommit=True, options="-c pgbert.batching=off", **kw)


def worker(conn):
    cur = conn.execute("SELECT state, engine_pid, worker_pid, models, batches, requests, engine_restarts,"
                       " message FROM pgbert.worker")
    names = [d.name for d in cur.description]
    return dict(zip(names, cur.fetchone()))


def wait_ready(conn, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        w = worker(conn)
        if w["state"] == "ready":
            return w
        time.sleep(0.2)
    return worker(conn)


def scores(conn, texts, model="cls"):
    return [r[0] for r in conn.execute(
        "SELECT classify_scores(t, %s)::text FROM unnest(%s::text[]) WITH ORDINALITY u(t, o) ORDER BY o",
        (model, texts))]


def embeds(conn, texts, pooling):
    return [r[0] for r in conn.execute(
        "SELECT embed(t, 'minilm', %s)::text FROM unnest(%s::text[]) WITH ORDINALITY u(t, o) ORDER BY o",
        (pooling, texts))]


def rss_kb(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def mails(n):
    with gzip.open(MAILS, "rt", encoding="utf-8", newline="") as f:
        csv.field_size_limit(1 << 30)
        rows = list(csv.DictReader(f))
    return [r["subject"] + "\n" + r["body"] for r in rows[:n]]


def setup(conn):
    for path, name in ((SQL_CLS, "cls"), (MINILM, "minilm")):
        subprocess.run([tool("pgbert_import"), path, name], check=True, capture_output=True)
    conn.execute("DROP TABLE IF EXISTS mails")
    conn.execute("CREATE TABLE mails (id int, body text)")
    with conn.cursor().copy("COPY mails FROM STDIN") as cp:
        for i, body in enumerate(mails(400)):
            cp.write_row((i, body))


def engine_outside_postgres(conn):
    w = wait_ready(conn)
    check(w["state"] == "ready" and w["engine_pid"], "worker ready with an engine process (%s)" % w)
    with open("/proc/%d/stat" % w["engine_pid"]) as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    with open("/proc/%d/cmdline" % w["engine_pid"]) as f:
        cmd = f.read().split("\0")[0]
    check(ppid == w["worker_pid"] and cmd.endswith("pgbert_engine"),
          "engine process %s is the worker's child, not the postmaster's" % cmd)


def bit_for_bit(conn, probs):
    texts = [p["text"] for p in probs]
    through_worker = scores(conn, texts)
    batch_worker = conn.execute("SELECT ord, label, score FROM classify_batch(%s, 'cls')", (texts,)).fetchall()
    emb_worker = {p: embeds(conn, texts[:40], p) for p in ("mean", "cls", "pooler")}
    conn.execute("SET pgbert.worker = off")
    in_process = scores(conn, texts)
    batch_local = conn.execute("SELECT ord, label, score FROM classify_batch(%s, 'cls')", (texts,)).fetchall()
    emb_local = {p: embeds(conn, texts[:40], p) for p in ("mean", "cls", "pooler")}
    conn.execute("RESET pgbert.worker")
    check(through_worker == in_process, "classify_scores through the worker == in-process, bit for bit (122 texts)")
    check(batch_worker == batch_local, "classify_batch through the worker == in-process")
    for p in emb_worker:
        check(emb_worker[p] == emb_local[p], "MiniLM embed(pooling => %s) through the worker == in-process" % p)
    worst = 0.0
    for p, s in zip(probs, through_worker):
        got = json.loads(s)
        worst = max(worst, *(abs(got[k] - p["p_" + k]) for k in ("ham", "spam", "phish")))
    # two float32 computations of the fixture on its texts: testkit.P_TOL
    check(worst < testkit.P_TOL, "worker probabilities vs transformers: max |dp| %.2g" % worst)
    return in_process


def concurrent(conn, probs, reference):
    texts = [p["text"] for p in probs]
    before = worker(conn)
    results = {}
    errors = []

    def client(k):
        try:
            with connect() as c:
                mine = texts[k::16]
                got = []
                for _ in range(3):
                    got.append([c.execute("SELECT classify_scores(%s, 'cls')::text", (t,)).fetchone()[0]
                                for t in mine])
                results[k] = got
        except Exception as e:  # noqa: BLE001 - reported as a failure
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, "16 concurrent sessions without errors %s" % errors[:2])
    # Merged batches are not bit-identical to one-row runs (OpenBLAS's sgemm rounds a row
    # differently depending on the rows around it), so: every row within testkit.P_TOL (the
    # float32 rounding bound of two computations of the fixture on its texts) of its own
    # text's in-process probabilities, and nearer to them than to any other text's.
    ref = [json.loads(r) for r in reference]

    def dist(a, b):
        return max(abs(a[k] - b[k]) for k in a)

    wrong, worst, exact = 0, 0.0, 0
    for k, runs in results.items():
        for run in runs:
            for j, got in zip(range(k, len(texts), 16), run):
                d = [dist(json.loads(got), r) for r in ref]
                own = d[j]
                worst = max(worst, own)
                exact += got == reference[j]
                if own > testkit.P_TOL or any(x < own for i, x in enumerate(d) if i != j and ref[i] != ref[j]):
                    wrong += 1
    check(len(results) == 16 and wrong == 0,
          "16 concurrent sessions x 3 runs each got their own rows: %d wrong, max |dp| vs in-process %.2g, "
          "%d of %d bit-identical" % (wrong, worst, exact, 3 * len(texts)))
    after = worker(conn)
    reqs, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    check(batches < reqs, "the worker merged concurrent requests: %d requests in %d batches" % (reqs, batches))


def mixed_precision(conn, probs, reference):
    """Sessions with pgbert.cpu_precision = int8 and fp32 at once: the worker honours each
    request's own precision and merges only requests of the same one."""
    texts = [p["text"] for p in probs]
    conn.execute("SET pgbert.worker = off")
    conn.execute("SET pgbert.cpu_precision = int8")
    reference_int8 = scores(conn, texts)
    conn.execute("RESET pgbert.cpu_precision")
    conn.execute("RESET pgbert.worker")
    refs = {"fp32": [json.loads(r) for r in reference], "int8": [json.loads(r) for r in reference_int8]}

    def dist(a, b):
        return max(abs(a[k] - b[k]) for k in a)

    apart = sum(dist(a, b) > 2 * testkit.P_TOL for a, b in zip(refs["fp32"], refs["int8"]))
    results, errors = {}, []

    def client(k):
        precision = ("fp32", "int8")[k % 2]
        try:
            with connect() as c:
                c.execute("SET pgbert.cpu_precision = %s" % precision)
                mine = list(range(k, len(texts), 8))
                results[k] = (precision, mine, [c.execute("SELECT classify_scores(%s, 'cls')::text",
                                                          (texts[j],)).fetchone()[0] for j in mine])
        except Exception as e:  # noqa: BLE001 - reported as a failure
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # merged batches round in the last bits (see concurrent), so: within testkit.P_TOL of the
    # in-process result of the session's own precision; the two precisions' results are
    # farther apart than that on `apart` texts, where a row run in the other one shows
    wrong, worst = 0, 0.0
    for precision, mine, got in results.values():
        for j, g in zip(mine, got):
            d = dist(json.loads(g), refs[precision][j])
            worst = max(worst, d)
            wrong += d > testkit.P_TOL
    check(not errors and len(results) == 8 and wrong == 0 and apart > 0,
          "4 int8 and 4 fp32 sessions at once each got their own precision's rows: %d wrong, max |dp| %.2g, "
          "errors %s (the precisions differ beyond the tolerance on %d texts)" % (wrong, worst, errors[:2], apart))


def one_copy(conn):
    w = worker(conn)
    sessions = [connect() for _ in range(4)]
    for s in sessions:
        s.execute("SELECT embed('one copy', 'minilm')")
    cached = [s.execute("SELECT coalesce(sum(bytes), 0) FROM pgbert.cached_models() WHERE name = 'minilm'"
                        ).fetchone()[0] for s in sessions]
    pids = [s.execute("SELECT pg_backend_pid()").fetchone()[0] for s in sessions]
    backend_anon = [rss_kb(p, "RssAnon") for p in pids]
    engine_rss = rss_kb(w["engine_pid"])
    check(max(cached) < 8 << 20, "sessions hold no MiniLM weights through the worker (cached bytes %s)" % cached)
    check(engine_rss > 87 * 1024 and max(backend_anon) < 40 * 1024,
          "one copy: engine process RSS %d kB; sessions' private memory %s kB" % (engine_rss, backend_anon))
    for s in sessions:
        s.close()


def interrupted(conn, reference_mail_embeds):
    for how in ("cancel", "timeout"):
        victim = connect()
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
        if how == "timeout":
            victim.execute("SET statement_timeout = '1500ms'")
        else:
            threading.Timer(1.5, lambda: conn.execute("SELECT pg_cancel_backend(%s)", (pid,))).start()
        t0 = time.time()
        try:
            victim.execute("SELECT count(embed(body, 'minilm')) FROM mails")
            check(False, "%s stopped a long query" % how)
        except psycopg.errors.QueryCanceled as e:
            check(time.time() - t0 < 10, "%s stopped a long query in %.1f s: %s" % (how, time.time() - t0,
                                                                                    str(e).strip()))
        victim.execute("RESET statement_timeout")
        got = [r[0] for r in victim.execute("SELECT embed(body, 'minilm')::text FROM mails ORDER BY id LIMIT 3")]
        check(got == reference_mail_embeds, "after %s the session's next query is right" % how)
        victim.close()


def engine_killed(conn, reference_mail_embeds, probs, reference):
    start_time = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    texts = [p["text"] for p in probs]
    for sig in (signal.SIGKILL, signal.SIGSEGV):
        w = wait_ready(conn)
        victim = connect()
        bystander_errors = []
        stop = threading.Event()

        def bystander():
            with connect() as c:
                while not stop.is_set():
                    try:
                        if scores(c, texts[:5]) != reference[:5]:
                            bystander_errors.append("wrong result")
                    except psycopg.Error as e:
                        # a bystander whose request was in the killed batch may fail too; it must recover
                        bystander_errors.append("transient: " + str(e).strip().splitlines()[0])
                    time.sleep(0.05)

        b = threading.Thread(target=bystander)
        b.start()
        threading.Timer(1.0, lambda: os.kill(w["engine_pid"], sig)).start()
        # a forward pass is safe to repeat: the batch the engine died with is sent once more,
        # to the fresh engine, and the query completes with every row
        try:
            n = victim.execute("SELECT count(embed(body, 'minilm')) FROM mails").fetchone()[0]
            check(n == victim.execute("SELECT count(*) FROM mails WHERE body IS NOT NULL").fetchone()[0],
                  "engine killed with %s mid-query: the query completed (%d rows), its batch sent again"
                  % (sig.name, n))
        except psycopg.Error as e:
            check(False, "engine killed with %s: the query failed with: %s"
                  % (sig.name, str(e).strip().replace("\n", " | ")))
        w2 = wait_ready(conn)
        time.sleep(0.5)
        stop.set()
        b.join()
        wrong = [e for e in bystander_errors if not e.startswith("transient")]
        check(not wrong, "another session kept getting right results (%d transient errors)"
              % (len(bystander_errors) - len(wrong)))
        check(conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == start_time,
              "the postmaster did not restart (%s)" % sig.name)
        check(w2["state"] == "ready" and w2["engine_pid"] != w["engine_pid"] and
              w2["engine_restarts"] == w["engine_restarts"] + 1,
              "a new engine process %s replaced %s" % (w2["engine_pid"], w["engine_pid"]))
        got = [r[0] for r in victim.execute("SELECT embed(body, 'minilm')::text FROM mails ORDER BY id LIMIT 3")]
        check(got == reference_mail_embeds, "the next query after %s works and is right" % sig.name)
        victim.close()


def proc_state(pid):
    """A process's state letter from /proc (Z: a zombie nobody reaped), None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def idle_engine_killed(conn, probs, reference):
    """kill -9 of an idle engine costs nothing: the next requests run on a fresh engine, and
    the worker notices a death by itself (the engine's socket closes), reaps and replaces it"""
    texts = [p["text"] for p in probs]
    # 1. killed, then queried at once: 100 one-row queries all succeed, all right
    w = wait_ready(conn)
    scores(conn, texts[:1])
    os.kill(w["engine_pid"], signal.SIGKILL)
    ok, errors = 0, []
    for i in range(100):
        try:
            if scores(conn, [texts[i % len(texts)]]) == [reference[i % len(reference)]]:
                ok += 1
            else:
                errors.append("wrong result")
        except psycopg.Error as e:
            errors.append(str(e).strip().splitlines()[0])
    check(ok == 100, "kill -9 of an idle engine, then 100 queries: %d succeeded %s" % (ok, errors[:2]))
    w2 = worker(conn)
    check(w2["engine_pid"] != w["engine_pid"] and w2["engine_restarts"] == w["engine_restarts"] + 1,
          "they ran on a fresh engine (%s replaced %s)" % (w2["engine_pid"], w["engine_pid"]))
    # 2. killed with no query after it: noticed, reaped and replaced without one
    w = wait_ready(conn)
    os.kill(w["engine_pid"], signal.SIGKILL)
    start = time.time()
    w2 = worker(conn)
    while time.time() - start < 5 and (w2["engine_pid"] in (None, w["engine_pid"]) or w2["state"] != "ready"):
        time.sleep(0.05)
        w2 = worker(conn)
    check(w2["state"] == "ready" and w2["engine_pid"] not in (None, w["engine_pid"]),
          "a dead idle engine is replaced without any request (%s after %.2f s)" % (w2["engine_pid"],
                                                                                    time.time() - start))
    check(proc_state(w["engine_pid"]) is None,
          "and reaped, not left a zombie (state %s)" % proc_state(w["engine_pid"]))
    check(scores(conn, texts[:5]) == reference[:5], "the fresh engine answers right")


def dropped_and_parallel(conn, probs):
    subprocess.run([tool("pgbert_import"), SQL_CLS, "dropme"], check=True, capture_output=True)
    conn.execute("SELECT classify('x', 'dropme')")
    held = [r[0] for r in conn.execute("SELECT name FROM pgbert.worker_models")]
    conn.execute("SELECT drop_model('dropme')")
    after = [r[0] for r in conn.execute("SELECT name FROM pgbert.worker_models")]
    check("dropme" in held and "dropme" not in after, "drop_model takes the version out of the engine (%s -> %s)"
          % (sorted(held), sorted(after)))

    # a parallel scan: parallel workers send their rows to the encoder worker too
    q = "SELECT id, classify_scores(body, 'cls')::text FROM mails WHERE id %% 3 = 0"
    conn.execute("SET pgbert.worker = off")
    serial = dict(conn.execute(q.replace("%%", "%")).fetchall())
    conn.execute("RESET pgbert.worker")
    # the setting that forces a Gather was renamed in PostgreSQL 16
    force = "debug_parallel_query" if conn.info.server_version >= 160000 else "force_parallel_mode"
    for k, v in (("parallel_setup_cost", 0), ("parallel_tuple_cost", 0), ("min_parallel_table_scan_size", 0),
                 ("max_parallel_workers_per_gather", 2), (force, "on")):
        conn.execute("SET %s = %s" % (k, "'%s'" % v if isinstance(v, str) else v))
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + q.replace("%%", "%")))
    before = worker(conn)["requests"]
    par = dict(conn.execute(q.replace("%%", "%")).fetchall())
    served = worker(conn)["requests"] - before
    conn.execute("RESET ALL")
    worst = max(max(abs(json.loads(par[i])[k] - json.loads(serial[i])[k]) for k in json.loads(serial[i]))
                for i in serial)
    # other texts than the fixture's, so the bound from the weights alone (any text)
    tol = testkit.checkpoint_probability_tolerance(SQL_CLS)
    check("Gather" in plan and par.keys() == serial.keys() and worst < tol and served >= len(serial),
          "parallel scan through the worker: %d rows, %d worker requests, max |dp| vs serial in-process %.2g"
          % (len(par), served, worst))


def memory_budget(conn):
    # versions leave the engine, least recently used first, when a load needs the room: a
    # new small one pushes MiniLM out; MiniLM (87 MB, over the budget by itself) pushes out
    # everything else; and so on
    subprocess.run([tool("pgbert_import"), SQL_CLS, "cls2"], check=True, capture_output=True)
    conn.execute("ALTER SYSTEM SET pgbert.worker_memory = '50MB'")
    conn.execute("SELECT pg_reload_conf()")
    time.sleep(1)
    held = []
    for model in ("cls2", "minilm", "cls"):
        conn.execute("SELECT embed('budget', %s)", (model,))
        held.append(sorted(r[0] for r in conn.execute("SELECT name FROM pgbert.worker_models")))
    conn.execute("ALTER SYSTEM RESET pgbert.worker_memory")
    conn.execute("SELECT pg_reload_conf()")
    conn.execute("SELECT drop_model('cls2')")
    check("cls2" in held[0] and "minilm" not in held[0] and held[1:] == [["minilm"], ["cls"]],
          "pgbert.worker_memory = 50MB: least recently used versions leave the engine: %s" % held)


def long_training(model):
    """A fine-tune of 'cls' that runs until cancelled, in a thread on its own connection:
    (connection, its backend pid, the thread, outcome with the SQLSTATE it ended with)."""
    trainer = connect()
    pid = trainer.execute("SELECT pg_backend_pid()").fetchone()[0]
    outcome = {}

    def train():
        try:
            trainer.execute("SET pgbert.progress_interval = 0")
            trainer.execute("SELECT train_classifier('reviews', 'body', 'good', model => %s, "
                            "base_model => 'cls', epochs => 1000, batch_size => 8)", (model,))
            outcome["result"] = "finished"
        except psycopg.Error as e:
            outcome["result"] = e.sqlstate

    thread = threading.Thread(target=train)
    thread.start()
    return trainer, pid, thread, outcome


def training(conn):
    conn.execute("CREATE TABLE reviews AS SELECT CASE WHEN i % 2 = 0 THEN 'great lovely wonderful movie ' || i "
                 "ELSE 'awful terrible boring film ' || i END AS body, (i % 2 = 0) AS good "
                 "FROM generate_series(1, 300) i")
    conn.execute("SET pgbert.progress_interval = 0")
    q = ("SELECT train_classifier('reviews', 'body', 'good', model => %s, base_model => {}, epochs => 2, "
         "batch_size => 16, validation_fraction => 0.2, early_stopping_patience => 1)->'metrics'->'settings'"
         "->>'ran_in'")
    where = {}
    for name, base, path in (("w_base", "'cls'", "on"), ("s_base", "'cls'", "off"), ("w_scratch", "NULL", "on"),
                             ("s_scratch", "NULL", "off")):
        conn.execute("SET pgbert.worker = " + path)
        where[name] = conn.execute(q.format(base), (name,)).fetchone()[0]
    conn.execute("RESET pgbert.worker")
    md5 = dict(conn.execute("SELECT name, md5(lo_get(weights)) FROM pgbert.model_versions "
                            "WHERE name IN ('w_base', 's_base', 'w_scratch', 's_scratch')").fetchall())
    check(where["w_base"] == where["w_scratch"] == "trainer" and where["s_base"] == "session" and
          md5["w_base"] == md5["s_base"] and md5["w_scratch"] == md5["s_scratch"],
          "training in the trainer worker gives byte-identical weights to training in the session "
          "(fine-tuned and from scratch, with early stopping): %s" % where)

    # start_training's background job trains through the trainer worker too, with the same result
    job = conn.execute("SELECT start_training('reviews', 'body', 'good', model => 'job', base_model => 'cls', "
                       "epochs => 2, batch_size => 16, validation_fraction => 0.2, early_stopping_patience => 1)"
                       ).fetchone()[0]
    deadline = time.time() + 120
    status = None
    while time.time() < deadline:
        status, ran_in = conn.execute("SELECT status, result->'metrics'->'settings'->>'ran_in' "
                                      "FROM pgbert.training_jobs WHERE id = %s", (job,)).fetchone()
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.3)
    job_md5 = conn.execute("SELECT md5(lo_get(weights)) FROM pgbert.model_versions WHERE name = 'job'").fetchone()
    check(status == "succeeded" and ran_in == "trainer" and job_md5 and job_md5[0] == md5["w_base"],
          "start_training through the trainer worker: %s, %s, same weights" % (status, ran_in))

    # progress from another session, and a cancel that leaves nothing (also not in the engine)
    versions = conn.execute("SELECT count(*) FROM pgbert.model_versions").fetchone()[0]
    objects = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
    trainer, pid, thread, outcome = long_training("watched")
    seen, held = [], 0
    for _ in range(300):
        seen = conn.execute("SELECT pid, step FROM pgbert.training_progress WHERE model = 'watched'").fetchall()
        held = conn.execute("SELECT trainings FROM pgbert.worker").fetchone()[0]
        if seen and seen[0][1] > 2:
            break
        time.sleep(0.1)
    conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
    thread.join(60)
    check(seen and seen[0][0] == pid and held == 1 and outcome.get("result") == "57014",
          "a training in the worker shows in training_progress (%s), the engine holds it (%d), "
          "pg_cancel_backend stops it (%s)" % (seen, held, outcome.get("result")))
    left = (conn.execute("SELECT count(*) FROM pgbert.model_versions").fetchone()[0] - versions,
            conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] - objects)
    trainer.close()
    deadline = time.time() + 10
    while conn.execute("SELECT trainings FROM pgbert.worker").fetchone()[0] != 0 and time.time() < deadline:
        time.sleep(0.2)
    held_after = conn.execute("SELECT trainings FROM pgbert.worker").fetchone()[0]
    check(left == (0, 0) and held_after == 0,
          "after the cancel: no new version or large object %s; the engine let the run go once the session "
          "ended (%d held)" % (left, held_after))
    conn.execute("RESET pgbert.progress_interval")


def engines(conn):
    cur = conn.execute("SELECT role, state, worker_pid, engine_pid, threads, nice, activity, running, requests, "
                       "engine_restarts, trainings FROM pgbert.worker_engines")
    names = [d.name for d in cur.description]
    return {r[0]: dict(zip(names, r)) for r in cur.fetchall()}


def proc_nice(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])   # field 19, nice


def training_apart(conn, probs, reference):
    # inference never queues behind training: stop the trainer's engine in the middle of a
    # step (a step that never ends) and classify from another session meanwhile
    texts = [p["text"] for p in probs][:50]
    conn.execute("SET pgbert.worker = off")
    one_row = [conn.execute("SELECT classify_scores(%s, 'cls')::text", (t,)).fetchone()[0] for t in texts]
    conn.execute("RESET pgbert.worker")
    e = engines(conn)
    check(e["serve"]["engine_pid"] and e["train"]["engine_pid"] and
          e["serve"]["engine_pid"] != e["train"]["engine_pid"] and
          proc_nice(e["train"]["engine_pid"]) == e["train"]["nice"] == 10 and proc_nice(e["serve"]["engine_pid"]) == 0,
          "two engine processes, the trainer's at nice %s, the encoder's at %s" %
          (e["train"]["nice"], e["serve"]["nice"]))
    trainer, pid, thread, outcome = long_training("apart")
    deadline = time.time() + 60
    while time.time() < deadline and not engines(conn)["train"]["activity"].startswith("training"):
        time.sleep(0.01)
    os.kill(e["train"]["engine_pid"], signal.SIGSTOP)
    time.sleep(0.3)
    busy = engines(conn)["train"]
    s = connect()
    start = time.time()
    got = [s.execute("SELECT classify_scores(%s, 'cls')::text", (t,)).fetchone()[0] for t in texts]
    took = time.time() - start
    during = engines(conn)["train"]
    os.kill(e["train"]["engine_pid"], signal.SIGCONT)
    s.close()
    check(busy["activity"].startswith("training") and busy["running"] == 1 and during["activity"] == busy["activity"]
          and got == one_row,
          "with the trainer's engine stopped in a step (%r, %d running), 50 one-row classify calls returned "
          "in %.2f s, the same as in-process" % (busy["activity"], busy["running"], took))
    conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
    thread.join(60)
    trainer.close()
    check(outcome.get("result") == "57014", "the training was cancelled afterwards (%s)" % outcome.get("result"))

    # a dead idle trainer engine is replaced at once, as the encoder's is
    deadline = time.time() + 10
    while engines(conn)["train"]["trainings"] != 0 and time.time() < deadline:
        time.sleep(0.1)
    e = engines(conn)
    os.kill(e["train"]["engine_pid"], signal.SIGKILL)
    deadline = time.time() + 5
    e2 = engines(conn)
    while time.time() < deadline and e2["train"]["engine_pid"] in (None, e["train"]["engine_pid"]):
        time.sleep(0.02)
        e2 = engines(conn)
    check(e2["train"]["state"] == "ready" and e2["train"]["engine_pid"] not in (None, e["train"]["engine_pid"]) and
          e2["train"]["engine_restarts"] == e["train"]["engine_restarts"] + 1 and
          e2["serve"]["engine_pid"] == e["serve"]["engine_pid"] and proc_state(e["train"]["engine_pid"]) is None,
          "a killed idle trainer engine is reaped and replaced (%s after %s); the encoder's is untouched" %
          (e2["train"]["engine_pid"], e["train"]["engine_pid"]))


def hung_engine(conn, probs, reference):
    # a stopped (hung) engine must not keep the worker from stopping: SIGTERM to the worker
    # kills the engine, the waiting query runs in its session instead, the worker comes back
    texts = [p["text"] for p in probs][:3]
    w = wait_ready(conn)
    os.kill(w["engine_pid"], signal.SIGSTOP)
    victim = connect()
    notices = []
    victim.add_notice_handler(lambda d: notices.append(d.message_primary))
    outcome = {}

    def run():
        try:
            outcome["rows"] = scores(victim, texts)
        except psycopg.Error as e:
            outcome["error"] = str(e).strip()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.0)
    waiting = worker(conn)
    os.kill(w["worker_pid"], signal.SIGTERM)
    thread.join(30)
    engine_gone = not os.path.exists("/proc/%d" % w["engine_pid"]) or \
        open("/proc/%d/stat" % w["engine_pid"]).read().rsplit(")", 1)[1].split()[0] == "Z"
    check(outcome.get("rows") == reference[:3] and engine_gone and any("worker" in n for n in notices),
          "engine hung (SIGSTOP) with a query waiting (%s): SIGTERM stops the worker, the engine is killed, "
          "the query finishes in its session (%s)" % (waiting["state"], notices or outcome.get("error")))
    victim.close()
    check(wait_ready(conn, 30)["state"] == "ready", "the worker and a new engine come back")


def fallback(conn, probs, reference):
    texts = [p["text"] for p in probs][:10]
    s = connect()
    s.execute("SET pgbert.worker = off")
    s.execute("SELECT classify('x', 'cls')")
    cached = s.execute("SELECT bytes FROM pgbert.cached_models() WHERE name = 'cls'").fetchone()[0]
    check(cached > 500000, "pgbert.worker = off loads the weights in the session (%d bytes)" % cached)
    s.close()

    w = wait_ready(conn)
    os.kill(w["worker_pid"], signal.SIGTERM)  # pg_terminate_backend does not reach a worker without a database
    deadline = time.time() + 10
    while worker(conn)["state"] != "down" and time.time() < deadline:
        time.sleep(0.05)
    s = connect()
    notices = []
    s.add_notice_handler(lambda d: notices.append(d.message_primary))
    got = scores(s, texts)
    check(got == reference[:10] and any("not running" in n for n in notices),
          "worker down: same results in the session, NOTICE %s" % notices)
    check(wait_ready(conn, 20)["state"] == "ready", "the worker came back after being terminated")
    s.close()

    conn.execute("ALTER SYSTEM SET pgbert.device = 'cuda'")
    conn.execute("SELECT pg_reload_conf()")
    deadline = time.time() + 10
    while worker(conn)["state"] != "failed" and time.time() < deadline:
        time.sleep(0.1)
    w = worker(conn)
    s = connect()
    notices = []
    s.add_notice_handler(lambda d: notices.append(d.message_primary))
    got = scores(s, texts)
    check(w["state"] == "failed" and "cuda" in (w["message"] or "").lower() and got == reference[:10] and notices,
          "pgbert.device = cuda without a GPU: state %s (%s); sessions run in-process: %s"
          % (w["state"], w["message"], notices))
    s.close()
    conn.execute("ALTER SYSTEM RESET pgbert.device")
    conn.execute("SELECT pg_reload_conf()")
    check(wait_ready(conn, 20)["state"] == "ready", "pgbert.device back to auto: the engine starts again")


def main():
    with open(PROBS) as f:
        probs = json.load(f)
    with connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgbert")
        setup(conn)
        engine_outside_postgres(conn)
        reference = bit_for_bit(conn, probs)
        conn.execute("SET pgbert.worker = off")
        reference_mail_embeds = [r[0] for r in conn.execute(
            "SELECT embed(body, 'minilm')::text FROM mails ORDER BY id LIMIT 3")]
        conn.execute("RESET pgbert.worker")
        concurrent(conn, probs, reference)
        mixed_precision(conn, probs, reference)
        one_copy(conn)
        interrupted(conn, reference_mail_embeds)
        engine_killed(conn, reference_mail_embeds, probs, reference)
        idle_engine_killed(conn, probs, reference)
        dropped_and_parallel(conn, probs)
        memory_budget(conn)
        training(conn)
        training_apart(conn, probs, reference)
        hung_engine(conn, probs, reference)
        fallback(conn, probs, reference)
        print(worker(conn))
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
