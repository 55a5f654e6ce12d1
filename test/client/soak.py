#!/usr/bin/env python3
"""Soak test: pgbench against a throw-away server that preloads pgbert (the encoder
worker), with 16 and then 32 clients, each phase SECONDS long (default 30; run with 180 or
more for a real soak), mixing

  single   INSERT ... SELECT classify_scores(body) for one random text           (weight 4)
  plain    INSERT ... SELECT classify_scores(body) for an eighth of the texts,
           batched by a PgbertBatch node                                          (weight 1)
  api      INSERT ... classify_batch() over an eighth of the texts                (weight 1)
  trigger  INSERT into a table whose BEFORE INSERT trigger labels the row          (weight 2)

while start_training() jobs fine-tune a copy of the model one after the other. Checks:
pgbench reports no failed or aborted transactions; every stored result equals the serial
one (the same texts classified one at a time in one session, in-process: probabilities
within testkit.P_TOL, float32 rounding of other batch shapes; the labels equal, since the
fixture's top two probabilities are at least 0.011 apart, far beyond 2 P_TOL); every training job succeeded; the worker reports no errors
or engine restarts; the resident memory of the engine process and of the pgbench backends
is flat (the last third of each phase against its first third, after warm-up). The server
preloads pg_stat_statements after pgbert, so its planner hook calls pgbert's.

    python test/client/soak.py [SECONDS]
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import testkit
from testkit import BINDIR, Server, check


SCRIPTS = {
    "single": ("\\set id random(0, 121)\n"
               "INSERT INTO soak_scores SELECT id, 'single', classify_scores(body, 'cls') FROM docs WHERE id = :id;\n", 4),
    "plain": ("\\set k random(0, 7)\n"
              "INSERT INTO soak_scores SELECT id, 'plain', classify_scores(body, 'cls') FROM docs WHERE id % 8 = :k;\n", 1),
    "api": ("\\set k random(0, 7)\n"
            "INSERT INTO soak_labels SELECT x.ids[b.ord], 'api', b.label FROM "
            "(SELECT array_agg(body ORDER BY id) AS a, array_agg(id ORDER BY id) AS ids FROM docs WHERE id % 8 = :k) x, "
            "LATERAL classify_batch(x.a, 'cls') b;\n", 1),
    "trigger": ("\\set id random(0, 121)\n"
                "INSERT INTO inbox (doc, body) SELECT id, body FROM docs WHERE id = :id;\n", 2),
}

def rss_kb(pid, field="VmRSS"):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Sampler(threading.Thread):
    """Resident memory of the engine process and private memory of the pgbench backends, every second."""

    def __init__(self, conn):
        super().__init__(daemon=True)
        self.conn, self.samples, self.stop = conn, [], threading.Event()

    def run(self):
        while not self.stop.wait(1.0):
            engine = self.conn.execute("SELECT engine_pid FROM pgbert.worker").fetchone()[0]
            pids = [r[0] for r in self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'")]
            # private memory: a backend's RSS also counts the shared buffers it touched,
            # which grow with the tables this test fills
            backends = [r for r in (rss_kb(p, "RssAnon") for p in pids) if r]
            self.samples.append((time.time(), rss_kb(engine) if engine else None, max(backends, default=None)))


def flat(samples, index):
    """(first third max, last third max) of a series after its first 20%."""
    vals = [s[index] for s in samples if s[index]]
    vals = vals[len(vals) // 5:]
    if len(vals) < 6:
        return None
    third = len(vals) // 3
    return max(vals[:third]), max(vals[-third:])


class Trainer(threading.Thread):
    """start_training jobs one after the other until stopped."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.jobs, self.stop = server, [], threading.Event()

    def run(self):
        with self.server.connect() as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                job = c.execute("SELECT start_training('docs', 'body', 'label', model => 'soak_trained', "
                                "base_model => 'cls', epochs => 2, max_length => 64)").fetchone()[0]
                self.jobs.append(job)
                while not self.stop.is_set() and c.execute(
                        "SELECT status IN ('queued', 'running') FROM pgbert.training_jobs WHERE id = %s",
                        (job,)).fetchone()[0]:
                    time.sleep(0.5)
            testkit.wait_for(lambda: not c.execute(
                "SELECT bool_or(status IN ('queued', 'running')) FROM pgbert.training_jobs").fetchone()[0], 300)


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    tmp = testkit.temp_dir("pgbert_soak_")
    server = Server(tmp, "soak", testkit.free_ports(1))
    scripts_dir = tempfile.mkdtemp(prefix="pgbert_soak_scripts_")
    try:
        server.initdb(["shared_preload_libraries = 'pgbert,pg_stat_statements'", "max_connections = 60",
                       "max_worker_processes = 16", "pgbert.worker_threads = 2"])
        server.start()
        with server.connect() as conn:
            conn.execute("CREATE EXTENSION pgbert")
            testkit.import_fixture_model("cls", server.env())
            testkit.create_docs(conn)
            conn.execute("CREATE TABLE soak_scores (doc int, kind text, scores jsonb)")
            conn.execute("CREATE TABLE soak_labels (doc int, kind text, label text)")
            conn.execute("CREATE TABLE inbox (id bigserial, doc int, body text, label text, scores jsonb)")
            conn.execute("""CREATE FUNCTION label_inbox() RETURNS trigger LANGUAGE plpgsql AS $$
                            BEGIN NEW.label := classify(NEW.body, 'cls');
                                  NEW.scores := classify_scores(NEW.body, 'cls'); RETURN NEW; END $$""")
            conn.execute("CREATE TRIGGER label_inbox BEFORE INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION label_inbox()")
            conn.execute("SET pgbert.batching = off")
            conn.execute("SET pgbert.worker = off")
            serial = {i: (l, s) for i, l, s in conn.execute(
                "SELECT id, classify(body, 'cls'), classify_scores(body, 'cls') FROM docs")}
            conn.execute("RESET pgbert.batching")
            conn.execute("RESET pgbert.worker")
            check(testkit.wait_for(lambda: conn.execute("SELECT state = 'ready' FROM pgbert.worker").fetchone()[0]),
                  "the encoder worker is ready")
            w0 = conn.execute("SELECT errors, engine_restarts, requests FROM pgbert.worker").fetchone()

            args = []
            for name, (text, weight) in SCRIPTS.items():
                path = os.path.join(scripts_dir, name + ".sql")
                with open(path, "w") as f:
                    f.write(text)
                args += ["-f", "%s@%d" % (path, weight)]
            trainer = Trainer(server)
            trainer.start()
            for clients in (16, 32):
                sampler = Sampler(server.connect())
                sampler.start()
                out = subprocess.run([os.path.join(BINDIR, "pgbench"), "-n", "-c", str(clients), "-j", "4",
                                      "-T", str(seconds)] + args, capture_output=True, text=True,
                                     env=server.env())
                sampler.stop.set()
                sampler.join()
                summary = {k: v for k, v in (l.split(":", 1) for l in out.stdout.splitlines() if ":" in l)}
                tps = re.search(r"^tps = ([0-9.]+)", out.stdout, re.M)
                summary["tps"] = tps.group(1) if tps else "?"
                processed = summary.get("number of transactions actually processed", "?").strip()
                failed_tx = summary.get("number of failed transactions", "0").strip()
                check(out.returncode == 0 and "aborted" not in out.stderr and failed_tx.startswith("0"),
                      "%d clients × %d s: %s transactions, failed: %s, tps %s%s"
                      % (clients, seconds, processed, failed_tx,
                         summary.get("tps", "?").strip().split(" ")[0],
                         "" if out.returncode == 0 else "; " + out.stderr[-500:]))
                for label, index in (("engine process RSS", 1), ("largest pgbench backend's private memory", 2)):
                    fl = flat(sampler.samples, index)
                    if fl is None:
                        check(False, "%d clients: not enough %s memory samples" % (clients, label))
                        continue
                    first, last = fl
                    check(last <= first * 1.10 + 8 * 1024,
                          "%d clients: %s flat: %.1f MiB in the first third, %.1f MiB in the last"
                          % (clients, label, first / 1024, last / 1024))
            trainer.stop.set()
            trainer.join(600)

            bad = 0
            for doc, kind, scores in conn.execute("SELECT doc, kind, scores FROM soak_scores"):
                ref = serial[doc][1]
                bad += not (scores.keys() == ref.keys() and all(abs(scores[k] - ref[k]) < testkit.P_TOL for k in ref))
            n_scores = conn.execute("SELECT count(*) FROM soak_scores").fetchone()[0]
            check(n_scores > 0 and bad == 0, "%d stored probabilities (single-row and batched plain SQL) equal "
                  "the serial run within %g: %d differ" % (n_scores, testkit.P_TOL, bad))
            bad = sum(serial[d][0] != l for d, _, l in conn.execute("SELECT doc, kind, label FROM soak_labels"))
            n_labels = conn.execute("SELECT count(*) FROM soak_labels").fetchone()[0]
            check(n_labels > 0 and bad == 0, "%d classify_batch labels equal the serial run: %d differ"
                  % (n_labels, bad))
            bad = 0
            for doc, label, scores in conn.execute("SELECT doc, label, scores FROM inbox"):
                ref = serial[doc]
                bad += label != ref[0] or not all(abs(scores[k] - ref[1][k]) < testkit.P_TOL for k in ref[1])
            n_inbox = conn.execute("SELECT count(*) FROM inbox").fetchone()[0]
            check(n_inbox > 0 and bad == 0, "%d trigger-labelled inserts equal the serial run: %d differ"
                  % (n_inbox, bad))
            statuses = [r[0] for r in conn.execute(
                "SELECT status FROM pgbert.training_jobs WHERE id = ANY(%s) ORDER BY id", (trainer.jobs,))]
            check(statuses and all(s == "succeeded" for s in statuses),
                  "%d training jobs ran alongside, all succeeded: %s" % (len(statuses), sorted(set(statuses))))
            w1 = conn.execute("SELECT errors, engine_restarts, requests FROM pgbert.worker").fetchone()
            check(w1[0] == w0[0] and w1[1] == w0[1],
                  "the worker served %d requests with no errors and no engine restarts" % (w1[2] - w0[2]))
    finally:
        server.stop()
        if testkit.failures:
            print("---- server log")
            print(server.log_tail())
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(scripts_dir, ignore_errors=True)
    return testkit.finish()


if __name__ == "__main__":
    sys.exit(main())
