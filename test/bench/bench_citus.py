#!/usr/bin/env python3
"""classify() throughput under Citus by number of worker nodes, on this one machine.

    PATH=$(pg_config --bindir):$PATH .venv-oracle/bin/python test/bench/bench_citus.py [ROWS]

A coordinator and two workers, all preloading citus,pgbert (each node's encoder worker
with its default threads), as test/client/check_citus.py starts them. The model is
MiniLM-L6 with a 2-label head (test/bench/make_bench_classifier.py, 128 tokens), imported
on the coordinator and copied to the workers with distribute_model() (timed). The first
ROWS SpamAssassin mails (default 600) go into a local table, a table distributed over one
worker and one distributed over both (8 shards each). Each table is classified twice with
SELECT sum of classify_scores(...)'s p(spam) (the head is random: labels would all be
alike); the second run is timed (the first loads the model in every node's engine). Then the local table again with the
coordinator's engine on 2 threads (one node using both cores), and label_rows() on the
two-worker table.
Needs Citus (scripts/citus.sh), pgbert installed and .models/all-minilm-l6-v2.
"""
import csv
import gzip
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "client"))
import testkit  # noqa: E402
from testkit import BINDIR, Server  # noqa: E402

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 600
SHARDS = 8


def cpu_name():
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def mails(n):
    csv.field_size_limit(1 << 30)
    with gzip.open("data/spamassassin.csv.gz", "rt", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f)):
            if i == n:
                return
            yield i + 1, (r["subject"] or "") + "\n" + (r["body"] or "")


def timed(conn, sql):
    t = time.time()
    row = conn.execute(sql).fetchone()
    return time.time() - t, row


def main():
    tmp = testkit.temp_dir("pgbert_bench_citus_")
    model_dir = tempfile.mkdtemp(prefix="pgbert_bench_cls_")
    subprocess.run([sys.executable, os.path.join(HERE, "make_bench_classifier.py"), ".models/all-minilm-l6-v2",
                    model_dir, "128"], check=True)
    os.chmod(model_dir, 0o755)
    base = testkit.free_ports(3)
    nodes = [Server(tmp, "coordinator", base), Server(tmp, "worker1", base + 1), Server(tmp, "worker2", base + 2)]
    coord, w1, w2 = nodes
    try:
        for n in nodes:
            testkit.start_citus_node(n)
        subprocess.run([os.path.join(BINDIR, "pgbert_import"), model_dir, "spam"], check=True,
                       capture_output=True, env=coord.env())
        with coord.connect() as c:
            c.execute("SELECT citus_set_coordinator_host('localhost', %s)", (coord.port,))
            for w in (w1, w2):
                c.execute("SELECT citus_add_node('localhost', %s)", (w.port,))
            size = c.execute("SELECT size_bytes FROM pgbert.models WHERE name = 'spam'").fetchone()[0]
            t = time.time()
            copied = c.execute("SELECT node, status FROM distribute_model('spam')").fetchall()
            rollout = time.time() - t
            for table in ("mails_local", "mails_one", "mails_two"):
                c.execute("CREATE TABLE %s (id int PRIMARY KEY, body text, label text)" % table)
                with c.cursor().copy("COPY %s (id, body) FROM STDIN" % table) as cp:
                    for r in mails(ROWS):
                        cp.write_row(r)
            c.execute("SELECT citus_set_node_property('localhost', %s, 'shouldhaveshards', false)", (w2.port,))
            c.execute("SELECT create_distributed_table('mails_one', 'id', shard_count => %s)", (SHARDS,))
            c.execute("SELECT citus_set_node_property('localhost', %s, 'shouldhaveshards', true)", (w2.port,))
            c.execute("SELECT create_distributed_table('mails_two', 'id', shard_count => %s, colocate_with => 'none')",
                      (SHARDS,))
            placed = {t: c.execute("SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = %s::regclass",
                                   (t,)).fetchone()[0] for t in ("mails_one", "mails_two")}
            threads = c.execute("SHOW pgbert.worker_threads").fetchone()[0]

            print("CPU: %s, %d logical CPUs; PostgreSQL %s; Citus %s; every node's encoder worker: "
                  "pgbert.worker_threads = %s" % (cpu_name(), os.cpu_count(),
                                                  c.execute("SHOW server_version").fetchone()[0],
                                                  c.execute("SELECT extversion FROM pg_extension "
                                                            "WHERE extname = 'citus'").fetchone()[0], threads))
            print("distribute_model: %.1f MB to 2 workers in %.1f s (%s)"
                  % (size / 1e6, rollout, ", ".join("%s %s" % r for r in copied)))
            results = {}
            for table, what in (("mails_local", "local table, coordinator"),
                                ("mails_one", "distributed, 1 worker (%d node)" % placed["mails_one"]),
                                ("mails_two", "distributed, 2 workers (%d nodes)" % placed["mails_two"])):
                sql = "SELECT sum((classify_scores(body, 'spam') ->> 'spam')::float8) FROM %s" % table
                timed(c, sql)
                seconds, row = timed(c, sql)
                results[table] = row[0]
                print("%-36s %5d rows in %6.1f s: %6.1f rows/s" % (what, ROWS, seconds, ROWS / seconds))
            # the same machine's two cores in one node: the coordinator's engine with 2 threads
            c.execute("ALTER SYSTEM SET pgbert.worker_threads = 2")
            c.execute("SELECT pg_reload_conf()")
            time.sleep(2)
            sql = "SELECT sum((classify_scores(body, 'spam') ->> 'spam')::float8) FROM mails_local"
            timed(c, sql)
            seconds, row = timed(c, sql)
            results["mails_local, 2 threads"] = row[0]
            print("%-36s %5d rows in %6.1f s: %6.1f rows/s" % ("local table, coordinator, 2 threads", ROWS, seconds,
                                                               ROWS / seconds))
            seconds, row = timed(c, "SELECT label_rows('mails_two', 'body', 'label', 'spam')")
            print("%-36s %5d rows in %6.1f s: %6.1f rows/s" % ("label_rows, 2 workers", row[0], seconds,
                                                               row[0] / seconds))
            sums = list(results.values())
            same = max(sums) - min(sums) < 1e-6 * ROWS
            print("the same sum of p(spam) on every table: %s (%s)" % (same, results))
            return 0 if same else 1
    finally:
        for n in reversed(nodes):
            n.stop()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(model_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
