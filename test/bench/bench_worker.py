#!/usr/bin/env python3
"""pgbench driver for the encoder worker benchmark (run_worker_bench.sh runs it inside a
throw-away cluster that preloads pgbert, with the model imported as 'bench').

    python test/bench/bench_worker.py SECONDS CLIENTS...

For each path (the encoder worker, and in-process with pgbert.worker = off), each script
(one classify() per transaction, an INSERT labelled by a BEFORE INSERT trigger that calls
classify(), or classify_batch over 32 rows) and each client count, runs pgbench for
SECONDS with per-transaction logs, and prints one JSON line: rows/s, p50/p99 latency (ms),
and memory sampled mid-run (private memory of the pgbench backends, and of the engine
process). Each client's first transaction is left out: it loads the
model (in-process) or the tokenizer (worker).
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

seconds = int(sys.argv[1])
clients = [int(c) for c in sys.argv[2:]] or [1, 4, 16]
SCRIPTS = {
    "single": ("\\set id random(1, 2000)\nSELECT classify(body, 'bench') FROM bench_mails WHERE id = :id;\n", 1),
    "trigger": ("\\set id random(1, 2000)\nINSERT INTO inbox (body) SELECT body FROM bench_mails WHERE id = :id;\n", 1),
    "batch32": ("\\set id random(1, 1969)\nSELECT count(*) FROM classify_batch((SELECT array_agg(body ORDER BY id) "
                "FROM bench_mails WHERE id BETWEEN :id AND :id + 31), 'bench');\n", 32),
}


def anon_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample_memory(out, delay):
    time.sleep(delay)
    with psycopg.connect(autocommit=True) as c:
        pids = [r[0] for r in c.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'")]
        engine = c.execute("SELECT engine_pid FROM pgbert.worker").fetchone()[0]
    out["backends_mib"] = sum(anon_kb(p) for p in pids) / 1024
    out["engine_mib"] = anon_kb(engine) / 1024 if engine else 0.0


def run(path, script, n):
    body, rows_per_tx = SCRIPTS[script]
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        with open(os.path.join(d, "s.sql"), "w") as f:
            f.write(body)
        env = dict(os.environ, PGAPPNAME="pgbench")
        env["PGOPTIONS"] = "-c pgbert.worker=%s" % ("on" if path == "worker" else "off")
        mem = {}
        sampler = threading.Thread(target=sample_memory, args=(mem, seconds * 0.6))
        sampler.start()
        subprocess.run(["pgbench", "-n", "-f", os.path.join(d, "s.sql"), "-c", str(n), "-j", str(min(n, 4)),
                        "-T", str(seconds), "-l", "--log-prefix", os.path.join(d, "log")],
                       env=env, check=True, capture_output=True, cwd=d)
        sampler.join()
        starts, ends, lat = [], [], []
        for log in glob.glob(os.path.join(d, "log*")):
            first = set()
            for line in open(log):
                cid, txno, us, _script, epoch, epoch_us = line.split()[:6]
                if cid not in first:
                    first.add(cid)  # each client's first transaction loads the model
                    continue
                end = int(epoch) + int(epoch_us) / 1e6
                ends.append(end)
                starts.append(end - int(us) / 1e6)
                lat.append(int(us) / 1e3)
    lat.sort()
    if len(lat) < 2:
        return {"path": path, "script": script, "clients": n, "transactions": len(lat), "rows_per_s": 0.0,
                "p50_ms": None, "p99_ms": None, "backends_mib": round(mem.get("backends_mib", 0), 1),
                "engine_mib": round(mem.get("engine_mib", 0), 1)}
    span = max(ends) - min(starts)
    return {"path": path, "script": script, "clients": n, "transactions": len(lat),
            "rows_per_s": round(len(lat) * rows_per_tx / span, 1),
            "p50_ms": round(lat[len(lat) // 2], 1), "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
            "backends_mib": round(mem.get("backends_mib", 0), 1), "engine_mib": round(mem.get("engine_mib", 0), 1)}


for script in SCRIPTS:
    for n in clients:
        for path in ("worker", "in-process"):
            print(json.dumps(run(path, script, n)), flush=True)
