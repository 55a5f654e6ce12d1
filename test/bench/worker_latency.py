#!/usr/bin/env python3
"""Does inference wait behind training? One-row classify() latency on a throw-away server
that preloads pgbert, with and without a MiniLM fine-tune running through the trainer
worker, and the fine-tune's throughput with and without that inference beside it.

    python test/bench/worker_latency.py [--seconds 120] [--training-threads 1] [--training-nice 10] [--json FILE]

Phases, one server, one run:
  idle      one client calls SELECT classify(text, 'tiny') back to back for SECONDS (after
            a warm-up); 'tiny' is the 2-layer fixture classifier, the texts are the subject
            lines of the SpamAssassin mails, each a different one
  training  the same while train_classifier fine-tunes MiniLM on 640 mails (a seeded
            sample of ham and spam) in another
            session (batch 32, max_length 128, as in issue 19)
  alone     the fine-tune with no inference, SECONDS long
Latency is the client's wall time per call (psycopg, unix socket), so it includes
tokenizing in the backend and the trip through the encoder worker. The fine-tune's
throughput is rows per second between its progress reports (pgbert.training_progress,
reported every step: a MiniLM step of 32 rows takes seconds, so the phases are long) within
each phase. Prints a table and one JSON line; the bar of
issue 19 is p99(training) <= 3 x p99(idle) with at least 500 calls, and the fine-tune's
rows/s with inference beside it no lower than alone by more than the cores it gives up.
"""
import argparse
import csv
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "client"))
import psycopg  # noqa: E402

import testkit  # noqa: E402

MINILM = ".models/all-minilm-l6-v2"
MAILS = "data/spamassassin.csv.gz"


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def summary(lat):
    ms = [x * 1000 for x in lat]
    return {"calls": len(ms), "p50_ms": round(quantile(ms, 0.5), 3), "p95_ms": round(quantile(ms, 0.95), 3),
            "p99_ms": round(quantile(ms, 0.99), 3), "max_ms": round(max(ms), 3)}


def classify_for(conn, texts, seconds):
    """Back-to-back one-row classify() calls for that long; the latency of each."""
    lat, i = [], 0
    end = time.time() + seconds
    while time.time() < end:
        t = texts[i % len(texts)]
        i += 1
        start = time.perf_counter()
        conn.execute("SELECT classify(%s, 'tiny')", (t,)).fetchone()
        lat.append(time.perf_counter() - start)
    return lat


def progress(conn):
    """(step, seconds since epoch of that step's report) of the running fine-tune, or None."""
    r = conn.execute("SELECT step, extract(epoch FROM updated) "
                     "FROM pgbert.training_progress WHERE model = 'ft'").fetchone()
    return (int(r[0]), float(r[1])) if r and r[0] is not None else None


def rows_per_s(before, after, batch):
    if not before or not after or after[0] <= before[0]:
        return None
    return (after[0] - before[0]) * batch / (after[1] - before[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--training-threads", type=int, default=1)
    ap.add_argument("--training-nice", type=int, default=10)
    ap.add_argument("--rows", type=int, default=640)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--json")
    a = ap.parse_args()

    with gzip.open(MAILS, "rt", encoding="utf-8", newline="") as f:
        csv.field_size_limit(1 << 30)
        mails = list(csv.DictReader(f))
    subjects = [m["subject"] or "(no subject)" for m in mails]

    tmp = testkit.temp_dir("pgbert_latency_")
    server = testkit.Server(tmp, "data", 55491)
    server.initdb(["shared_preload_libraries = 'pgbert'",
                   "pgbert.training_threads = %d" % a.training_threads,
                   "pgbert.training_nice = %d" % a.training_nice])
    server.start()
    try:
        conn = server.connect()
        conn.execute("CREATE EXTENSION pgbert")
        for path, name in ((testkit.SQL_CLS, "tiny"), (MINILM, "minilm")):
            subprocess.run([os.path.join(testkit.BINDIR, "pgbert_import"), path, name], check=True,
                           capture_output=True, env=server.env())
        conn.execute("CREATE TABLE mails (body text, label text)")
        with conn.cursor().copy("COPY mails FROM STDIN") as cp:
            for m in random.Random(42).sample(mails, a.rows):    # the file is sorted: ham first
                cp.write_row((m["subject"] + "\n" + m["body"], m["label"]))
        deadline = time.time() + 30
        while conn.execute("SELECT state FROM pgbert.worker").fetchone()[0] != "ready" and time.time() < deadline:
            time.sleep(0.2)
        engines = conn.execute("SELECT role, threads, nice FROM pgbert.worker_engines ORDER BY role").fetchall()

        client = server.connect()
        classify_for(client, subjects, 3)                       # warm-up: the model into the engine
        idle = classify_for(client, subjects[500:], a.seconds)

        trainer = server.connect()
        outcome = {}

        def train():
            try:
                trainer.execute("SET pgbert.progress_interval = 0")
                trainer.execute("SELECT train_classifier('mails', 'body', 'label', model => 'ft', "
                                "base_model => 'minilm', epochs => 1000, batch_size => %s, max_length => %s)",
                                (a.batch, a.max_length))
            except psycopg.Error as e:
                outcome["error"] = e.sqlstate
                outcome["message"] = str(e)

        thread = threading.Thread(target=train)
        thread.start()
        deadline = time.time() + 600
        while (progress(conn) or (0, 0))[0] < 2 and time.time() < deadline:   # past the first steps
            time.sleep(0.2)
        before = progress(conn)
        during = classify_for(client, subjects[1000:], a.seconds)
        mid = progress(conn)
        time.sleep(a.seconds)
        after = progress(conn)
        pid = conn.execute("SELECT pid FROM pgbert.training_progress WHERE model = 'ft'").fetchone()
        if pid:
            conn.execute("SELECT pg_cancel_backend(%s)", (pid[0],))
        thread.join(120)
        if outcome.get("error") not in (None, "57014"):
            raise SystemExit("the fine-tune failed: %s" % outcome)

        res = {
            "cpu": cpu_name(), "cores": os.cpu_count(),
            "engines": [{"role": r, "threads": t, "nice": n} for r, t, n in engines],
            "idle": summary(idle), "training": summary(during),
            "train_rows_per_s_with_inference": rows_per_s(before, mid, a.batch),
            "train_rows_per_s_alone": rows_per_s(mid, after, a.batch),
        }
        res["p99_ratio"] = round(res["training"]["p99_ms"] / res["idle"]["p99_ms"], 2)
        if res["train_rows_per_s_alone"] and res["train_rows_per_s_with_inference"]:
            res["train_ratio"] = round(res["train_rows_per_s_with_inference"] / res["train_rows_per_s_alone"], 3)
        print("CPU: %s, %d cores; engines %s" % (res["cpu"], res["cores"], res["engines"]))
        print("%-9s %7s %8s %8s %8s %9s" % ("phase", "calls", "p50 ms", "p95 ms", "p99 ms", "max ms"))
        for k in ("idle", "training"):
            s = res[k]
            print("%-9s %7d %8.3f %8.3f %8.3f %9.3f" % (k, s["calls"], s["p50_ms"], s["p95_ms"], s["p99_ms"],
                                                       s["max_ms"]))
        print("p99 with training / without: %.2f" % res["p99_ratio"])
        print("fine-tune rows/s: %s with inference beside it, %s alone" %
              (res["train_rows_per_s_with_inference"], res["train_rows_per_s_alone"]))
        print(json.dumps(res))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
