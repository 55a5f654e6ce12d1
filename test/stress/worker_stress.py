#!/usr/bin/env python3
"""Stress the whole encoder worker (the preloaded "pgbert encoder" and "pgbert trainer"
background workers and their pgbert_engine processes) the way shared servers use it, on a throw-away server
(testkit.Server) that preloads pgbert, with the engine built under ASan/UBSan.

For --minutes M, at once:

  queries    sessions (the superuser and non-superuser roles) run classify, classify_scores
             and embed on one to six fixture texts per statement, on every model that
             exists; each statement runs in a REPEATABLE READ transaction whose snapshot
             is exported, and a comparison session (pgbert.worker = off) runs the same
             statement in-process on that snapshot, so on the same model version;
  trainings  one thread per role: train_classifier fine-tunes (base 'cls') and, now and
             then, from scratch; trainings that must end in validation errors (a missing
             label column, one label, an empty table, a table the role may not read);
             the issue's weird identifiers ('"we;ird ""tab"', ' b;o"dy',
             'la bel;drop table e;--') right after another role's validation errors;
             trainings cancelled with pg_cancel_backend; start_training jobs, cancelled
             with cancel_training or waited for;
  catalog    new versions by import_model (the fixture classifier, as the superuser and
             as a role; MiniLM now and then when .models has it), drop_model and
             deploy_model of random versions, also while queries on them run;
  kills      SIGKILL or SIGSEGV of a random pgbert_engine process of this server (every
             process of that name below its postmaster, so also a second engine);
  idle       --idle S: every third of the run everything stops for S seconds (what is
             ten minutes on a real server), after an embed() on MiniLM, and then a new
             version arrives and its first classify_scores runs (the recipe of the
             reported crash after an idle stretch); pgbert.worker_memory is small so
             versions are evicted all the time.

Checks (each failure printed with FAIL; exit status 1 when there was any):
  - no wrong answer: every row within the tolerance of testkit.py of the in-process
    row (P_TOL for the fixture classifier's versions, checkpoint_probability_tolerance
    of the version's exported checkpoint for trained ones, encoder_tolerance for
    embeddings); classify's label equal, or the in-process top two within 2 tolerances;
  - no unexpected error: a statement may fail only as expected: its model dropped
    meanwhile (42704), or the engine lost twice while it ran (the worker sends a batch
    once more after an engine loss, docs/worker.md); a training may fail only of a kill
    while it ran, of our cancel, or of validation where that is the point (and such a
    training must fail);
  - no engine death the script did not cause, no ASan/UBSan report, no backend crash in
    the server log (the engine's stderr goes there);
  - no leaked large object: pg_largeobject_metadata holds exactly the weights of the
    versions that exist, at every quiescent point and at the end;
  - no engine memory growth: for each engine process that lived long enough, its
    resident memory beyond what it holds (the encoder's: less pgbert.worker's
    model_bytes; the trainer's: sampled while it holds no training run), the median of
    the last third of its life against the first third's, at most --rss-growth-mb more
    (medians, since serving a batch or loading a model spikes it for a second or two).

    PATH=$(pg_config --bindir):$PATH .venv-oracle/bin/python test/stress/worker_stress.py \\
        --minutes 3 --idle 20 --engine build/san/pgbert_engine
    ... --repro a --idle 5,60,300     only the idle recipe, once per idle length
    ... --repro b                     only the weird-identifier training recipe

--engine PATH installs that pgbert_engine into pg_config --pkglibdir for the run and puts
the installed one back afterwards (make worker-stress builds the sanitized one).
"""
import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "client"))
os.chdir(ROOT)
import testkit  # noqa: E402

MINILM = ".models/all-minilm-l6-v2"
ROLES = ["stress_alice", "stress_bob", "stress Carol;x"]
WEIRD_TABLE = 'we;ird "tab'
WEIRD_TEXT = ' b;o"dy'
WEIRD_LABEL = 'la bel;drop table e;--'
# the first line of every ASan, LSan and UBSan report
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")


def ident(name):
    return '"' + name.replace('"', '""') + '"'


class Stress:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.failures = []
        self.go = threading.Event()         # cleared: everyone pauses (idle stretches)
        self.go.set()
        self.stop = threading.Event()
        self.busy = collections.Counter()   # thread -> 1 while it runs an operation
        self.kills = []                     # (time, signal, pid)
        self.drops = collections.defaultdict(float)   # name -> time of its last drop
        self.tolerances = {}                # version id -> probability tolerance
        self.sources = {}                   # version id -> "sql_cls" / "minilm" / "trained"
        self.texts = [r["text"] for r in testkit.fixture_texts()]
        self.labels = [r["label"] for r in testkit.fixture_texts()]
        self.samples = []                   # (time, {engine pid: RSS bytes beyond the models it holds})
        self.loaded = set()
        self.weird_next = threading.Event()
        self.tmp = testkit.temp_dir("pgbert_stress.")
        self.server = testkit.Server(self.tmp, "data", testkit.free_ports(1))

    # ---- bookkeeping ----

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    def fail(self, what):
        with self.lock:
            self.failures.append(what)
        print("FAIL %s" % what, flush=True)

    def kills_between(self, t0, t1):
        with self.lock:
            return sum(1 for t, _, _ in self.kills if t0 <= t <= t1)

    def connect(self, role=None, worker=True):
        # application_name tells the server log's lines apart
        opts = "-c statement_timeout=600s" + ("" if worker else " -c pgbert.worker=off")
        conn = self.server.connect(dbname="stress", options=opts)
        if role:
            conn.execute("SET SESSION AUTHORIZATION %s" % ident(role))
        return conn

    def pause_point(self, name):
        """Wait here while an idle stretch runs (not busy meanwhile)."""
        with self.lock:
            self.busy[name] = 0
        while not self.go.is_set() and not self.stop.is_set():
            self.go.wait(0.2)
        with self.lock:
            self.busy[name] = 1

    # ---- server and engine ----

    def install_engine(self):
        pkglib = subprocess.run([os.path.join(testkit.BINDIR, "pg_config"), "--pkglibdir"],
                                capture_output=True, text=True, check=True).stdout.strip()
        self.installed = os.path.join(pkglib, "pgbert_engine")
        self.saved = self.installed + ".stress-saved"
        if os.path.exists(self.saved):
            # a run that died before putting it back: the saved one is the real engine
            shutil.move(self.saved, self.installed)
        shutil.copy2(self.installed, self.saved)
        shutil.copy2(self.args.engine, self.installed + ".tmp")
        os.replace(self.installed + ".tmp", self.installed)

    def restore_engine(self):
        if self.args.engine and os.path.exists(getattr(self, "saved", "")):
            os.replace(self.saved, self.installed)

    def start_server(self):
        # the engine inherits the postmaster's environment: a report must reach the log
        # (stderr) and kill the engine visibly; leaks are not checked (killed engines)
        os.environ["ASAN_OPTIONS"] = ("abort_on_error=1:detect_leaks=0:allocator_may_return_null=1:"
                                      "quarantine_size_mb=32:print_summary=1")
        os.environ["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        self.server.initdb(["shared_preload_libraries = 'pgbert'",
                            "pgbert.worker_memory = '%s'" % self.args.worker_memory,
                            "pgbert.device = 'cpu'", "pgbert.worker_threads = 1",
                            "max_connections = 40", "log_min_messages = log"])
        self.server.start()
        with self.server.connect() as c:
            c.execute("CREATE DATABASE stress")
        self.admin = self.connect()
        self.admin.execute("CREATE EXTENSION pgbert")
        self.postmaster = int(open(os.path.join(self.server.dir, "postmaster.pid")).readline())
        if not testkit.wait_for(lambda: self.admin.execute(
                "SELECT state = 'ready' FROM pgbert.worker").fetchone()[0], 60):
            raise RuntimeError("the encoder worker is not ready: %s" % self.admin.execute(
                "SELECT * FROM pgbert.worker").fetchone())

    def engine_pids(self):
        """pgbert_engine processes below this server's postmaster."""
        parents, names = {}, {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    s = f.read()
            except OSError:
                continue
            names[int(d)] = s[s.index("(") + 1:s.rindex(")")]
            parents[int(d)] = int(s[s.rindex(")") + 2:].split()[1])
        out = []
        for pid, name in names.items():
            if name != "pgbert_engine":
                continue
            p = pid
            while p > 1 and p != self.postmaster:
                p = parents.get(p, 1)
            if p == self.postmaster:
                out.append(pid)
        return out

    def check_engine_build(self):
        pids = self.engine_pids()
        if not pids:
            self.fail("no engine process below the postmaster")
            return
        exe = os.readlink("/proc/%d/exe" % pids[0])
        with open("/proc/%d/environ" % pids[0], "rb") as f:
            env = f.read()
        sanitized = b"AddressSanitizer" in open(exe, "rb").read()
        print("engine %s (%s), ASAN_OPTIONS %s" % (exe, "sanitized" if sanitized else "not sanitized",
                                                     "passed" if b"ASAN_OPTIONS=" in env else "missing"))
        if self.args.engine and not (sanitized and b"ASAN_OPTIONS=" in env):
            self.fail("the engine that runs is not the sanitized one with ASAN_OPTIONS")

    # ---- models ----

    def import_dir(self, conn, model_dir, name):
        """Import a checkpoint directory as the next version of name, as conn's role, in one
        statement (the large object and the version commit together or not at all)."""
        with open(os.path.join(model_dir, "config.json")) as f:
            config = f.read()
        with open(os.path.join(model_dir, "vocab.txt"), "rb") as f:
            vocab = f.read()
        with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
            weights = f.read()
        tok = os.path.join(model_dir, "tokenizer_config.json")
        tok = open(tok).read() if os.path.exists(tok) else None
        v = conn.execute("SELECT import_model(%s, lo_from_bytea(0, %s), %s::jsonb, %s::bytea, %s::jsonb)",
                         (name, weights, config, vocab, tok)).fetchone()[0]
        vid = self.admin.execute("SELECT id FROM pgbert.model_versions WHERE name = %s AND version = %s",
                                 (name, v)).fetchone()[0]
        with self.lock:
            self.sources[vid] = "minilm" if model_dir == MINILM else "sql_cls"
        self.count("imports")
        return v

    def setup(self):
        a = self.admin
        for r in ROLES:
            a.execute("CREATE ROLE %s LOGIN" % ident(r))
        a.execute("GRANT CREATE ON SCHEMA public TO %s" % ", ".join(ident(r) for r in ROLES))
        self.import_dir(a, testkit.SQL_CLS, "cls")
        self.have_minilm = os.path.exists(os.path.join(MINILM, "model.safetensors")) and not self.args.no_minilm
        if self.have_minilm:
            self.import_dir(a, MINILM, "minilm")
        for r in ROLES:
            a.execute("SELECT grant_model('cls', %s)", (ident(r),))
        rows = list(zip(self.texts, self.labels))
        for i, r in enumerate(ROLES):
            c = self.connect(r)
            c.execute("CREATE TABLE %s (body text, label text)" % ident(r + "_docs"))
            with c.cursor().copy("COPY %s FROM STDIN" % ident(r + "_docs")) as cp:
                for t, lab in rows[i * 30:(i + 1) * 30]:
                    cp.write_row((t, lab))
            c.execute("CREATE TABLE %s AS SELECT body, 'ham'::text AS label FROM %s"
                      % (ident(r + "_onelabel"), ident(r + "_docs")))
            c.execute("CREATE TABLE %s (body text, label text)" % ident(r + "_empty"))
            c.close()
        # the table, owned by the second role
        c = self.connect(ROLES[1])
        c.execute("CREATE TABLE %s (%s text, %s text)" % (ident(WEIRD_TABLE), ident(WEIRD_TEXT), ident(WEIRD_LABEL)))
        with c.cursor().copy("COPY %s FROM STDIN" % ident(WEIRD_TABLE)) as cp:
            for t, lab in rows[90:110]:
                cp.write_row((t, lab))
        c.close()

    def versions(self):
        """{name: [(version, id, owner)]} of the catalog now."""
        out = collections.defaultdict(list)
        for n, v, i, o in self.admin.execute(
                "SELECT v.name, v.version, v.id, r.rolname FROM pgbert.model_versions v "
                "JOIN pg_roles r ON r.oid = v.owner ORDER BY 1, 2"):
            out[n].append((v, i, o))
        return out

    def tolerance(self, comp, name, version, vid, config):
        """Probability tolerance of one version (None: it has no classifier)."""
        with self.lock:
            if vid in self.tolerances:
                return self.tolerances[vid]
            source = self.sources.get(vid, "trained")
        if not config.get("id2label") and source != "trained":
            tol = None
        elif source == "sql_cls":
            tol = testkit.P_TOL
        else:
            # a trained version: from its own classifier's weights, exported on the same snapshot
            d = tempfile.mkdtemp(prefix="tol.", dir=self.tmp)
            for fname, contents in comp.execute("SELECT file, contents FROM export_model(%s, %s)", (name, version)):
                with open(os.path.join(d, fname), "wb") as f:
                    f.write(contents)
            tol = testkit.checkpoint_probability_tolerance(d)
            shutil.rmtree(d, ignore_errors=True)
        with self.lock:
            self.tolerances[vid] = tol
        return tol

    # ---- queries ----

    def query_loop(self, me, role):
        conn, comp = self.connect(role), self.connect(None, worker=False)
        rng = random.Random(self.args.seed * 100 + me)
        while not self.stop.is_set():
            self.pause_point("query%d" % me)
            vs = self.versions()
            names = [n for n, lst in vs.items()
                     if role is None or n == "cls" or any(o == role for _, _, o in lst)]
            if not names:
                time.sleep(0.2)
                continue
            name = rng.choice(names)
            op = "embed" if name == "minilm" else rng.choice(["classify_scores", "classify_scores", "classify",
                                                               "embed"])
            n = rng.randint(1, 6)
            texts = rng.sample(self.texts, n)
            try:
                self.query_once(conn, comp, name, op, texts, rng)
            except psycopg.OperationalError as e:
                if self.stop.is_set():
                    break
                self.fail("query session lost: %s" % e)
                conn, comp = self.connect(role), self.connect(None, worker=False)
        conn.close()
        comp.close()

    SQL = {
        "classify_scores": "SELECT classify_scores(t, %s)::text FROM unnest(%s::text[]) WITH ORDINALITY u(t, o) ORDER BY o",
        "classify": "SELECT classify(t, %s) FROM unnest(%s::text[]) WITH ORDINALITY u(t, o) ORDER BY o",
        "embed": "SELECT embed(t, %s) FROM unnest(%s::text[]) WITH ORDINALITY u(t, o) ORDER BY o",
    }

    def query_once(self, conn, comp, name, op, texts, rng):
        t0 = time.time()
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            snap = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            version = conn.execute("SELECT pgbert.resolve_version(%s)", (name,)).fetchone()[0]
            got = [r[0] for r in conn.execute(self.SQL[op], (name, texts))]
            self.count("queries")
            self.count("rows", len(got))
            # the same statement in-process, on the same snapshot: the same version
            comp.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            try:
                comp.execute("SET TRANSACTION SNAPSHOT %s" % psycopg.sql.quote(snap))
                vid, config = comp.execute("SELECT id, config FROM pgbert.model_versions WHERE name = %s "
                                           "AND version = %s", (name, version)).fetchone()
                ref = [r[0] for r in comp.execute(self.SQL["classify_scores" if op == "classify" else op],
                                                  (name, texts))]
                tol = self.tolerance(comp, name, version, vid, config)
            finally:
                comp.execute("COMMIT")
            conn.execute("COMMIT")
        except psycopg.Error as e:
            t1 = time.time()
            for c in (conn, comp):
                try:
                    c.execute("ROLLBACK")
                except psycopg.Error:
                    pass
            self.query_error(e, name, op, t0, t1)
            return
        self.compare(name, version, op, texts, got, ref, tol, config)

    def query_error(self, e, name, op, t0, t1):
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        detail = (e.diag.message_detail or "") if hasattr(e, "diag") else ""
        with self.lock:
            dropped = self.drops[name] >= t0 - 30
        kills = self.kills_between(t0 - 1, t1 + 1)
        if e.sqlstate == "42704" and dropped:
            self.count("expected: model dropped meanwhile")
        elif "failed in the encoder worker" in msg and "terminated by signal" in detail and kills >= 2:
            self.count("expected: engine lost twice in one statement")
        else:
            self.fail("%s on %s: %s %s [%s] (%d kills while it ran)" % (op, name, e.sqlstate, msg, detail, kills))

    def compare(self, name, version, op, texts, got, ref, tol, config):
        self.count("comparisons", len(got))
        where = "%s %s v%s" % (op, name, version)
        if len(got) != len(ref):
            self.fail("%s: %d rows, in-process %d" % (where, len(got), len(ref)))
            return
        for text, g, r in zip(texts, got, ref):
            if op == "embed":
                scale = max((abs(x) for x in r), default=0.0)
                etol = testkit.encoder_tolerance(config["num_hidden_layers"],
                                                 max(config["hidden_size"], config["intermediate_size"]), scale)
                worst = max((abs(a - b) for a, b in zip(g, r)), default=0.0)
                if len(g) != len(r) or worst > etol:
                    self.fail("%s %r: embedding off by %.3g (tolerance %.3g, %d vs %d dims)"
                              % (where, text[:40], worst, etol, len(g), len(r)))
            elif op == "classify_scores":
                g, r = json.loads(g), json.loads(r)
                worst = max((abs(g.get(k, 9) - v) for k, v in r.items()), default=0.0)
                if set(g) != set(r) or worst > tol:
                    self.fail("%s %r: %s vs in-process %s (tolerance %.3g)" % (where, text[:40], g, r, tol))
            else:
                r = json.loads(r)
                top = sorted(r.values(), reverse=True)
                if g != max(r, key=r.get) and not (g in r and top[0] - r[g] <= 2 * tol):
                    self.fail("%s %r: label %s, in-process scores %s" % (where, text[:40], g, r))

    # ---- trainings ----

    def train_loop(self, me, role):
        conn = self.connect(role)
        rng = random.Random(self.args.seed * 1000 + me)
        other = ROLES[(me + 1) % len(ROLES)]
        while not self.stop.is_set():
            self.pause_point("train%d" % me)
            if role == ROLES[1] and self.weird_next.is_set():
                self.weird_next.clear()
                what = "weird"
            else:
                what = rng.choices(["fine", "scratch", "nolabel", "onelabel", "empty", "notmine", "cancel",
                                    "job", "jobcancel", "weird"],
                                   [4, 0.5, 1, 1, 1, 1, 1.5, 1, 1, 0.5 if role == ROLES[1] else 0])[0]
            try:
                conn = self.train_once(conn, role, other, what, rng)
            except psycopg.OperationalError as e:
                if self.stop.is_set():
                    break
                self.fail("training session of %s lost: %s" % (role, e))
                conn = self.connect(role)
            time.sleep(rng.uniform(0.1, 1.0))
        conn.close()

    def train_sql(self, table, text="body", label="label", model="m", base="cls", epochs=1):
        return ("SELECT train_classifier(%s, %s, %s, model => %s, base_model => %s, epochs => %d, batch_size => 8, "
                "max_length => 16, seed => 7)" % (quote(ident(table)), quote(text), quote(label), quote(model),
                                                  quote(base), epochs))

    def train_once(self, conn, role, other, what, rng):
        mine = role.split()[0] + "_m"
        t0 = time.time()
        cancelled = threading.Event()
        invalid = what in ("nolabel", "onelabel", "empty", "notmine")
        if what == "fine":
            sql = self.train_sql(role + "_docs", model=mine)
        elif what == "scratch":
            sql = self.train_sql(role + "_docs", model=mine + "_scratch", base=None)
        elif what == "nolabel":
            sql = self.train_sql(role + "_docs", label="no such column", model=mine)
        elif what == "onelabel":
            sql = self.train_sql(role + "_onelabel", model=mine)
        elif what == "empty":
            sql = self.train_sql(role + "_empty", model=mine)
        elif what == "notmine":
            sql = self.train_sql(other + "_docs", model=mine)
        elif what == "weird":
            # the reported call, from scratch as in the issue
            sql = self.train_sql(WEIRD_TABLE, text=WEIRD_TEXT, label=WEIRD_LABEL, model="m_weird", base=None)
        elif what == "cancel":
            sql = self.train_sql(role + "_docs", model=mine, epochs=3)
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]

            def cancel():
                cancelled.set()
                self.admin_exec("SELECT pg_cancel_backend(%s)", (pid,))
            threading.Timer(rng.uniform(0.2, 3.0), cancel).start()
        else:
            return self.job_once(conn, role, mine, what == "jobcancel", rng)
        try:
            conn.execute(sql)
            t1 = time.time()
            if invalid:
                self.fail("training %s of %s succeeded: %s" % (what, role, sql))
            else:
                self.count("trainings ok")
            if what == "cancel":
                cancelled.wait(5)
        except psycopg.Error as e:
            t1 = time.time()
            if what == "cancel":
                cancelled.wait(5)
            msg = str(e).splitlines()[0]
            detail = e.diag.message_detail or ""
            kills = self.kills_between(t0 - 1, t1 + 1)
            with self.lock:
                base_dropped = self.drops["cls"] >= t0 - 30
            if invalid and e.sqlstate and e.sqlstate[:2] not in ("XX", "58", "53", "57"):
                self.count("expected: training refused by validation")
                if role != ROLES[1]:
                    self.weird_next.set()
            elif what == "cancel" and e.sqlstate == "57014" and cancelled.is_set():
                self.count("expected: training cancelled")
            elif kills and ("encoder worker" in msg or "trainer worker" in msg or "engine" in msg
                           or "terminated by signal" in detail):
                self.count("expected: training lost its engine")
            elif e.sqlstate == "42704" and base_dropped:
                self.count("expected: base model dropped meanwhile")
            else:
                self.fail("training %s of %s: %s %s [%s] (%d kills while it ran)"
                          % (what, role, e.sqlstate, msg, detail, kills))
        self.count("trainings")
        if what == "cancel":
            # the cancel may land after the statement: it must not hit the next one
            cancelled.wait(5)
            try:
                conn.execute("SELECT 1")
            except psycopg.errors.QueryCanceled:
                pass
        return conn

    def job_once(self, conn, role, mine, cancel, rng):
        t0 = time.time()
        job = conn.execute("SELECT start_training(%s, 'body', 'label', model => %s, base_model => 'cls', "
                           "epochs => %d, batch_size => 8, max_length => 16)"
                           % (quote(ident(role + "_docs")), quote(mine + "_job"), 3 if cancel else 1)).fetchone()[0]
        if cancel:
            time.sleep(rng.uniform(0.0, 3.0))
            conn.execute("SELECT cancel_training(%s)", (job,))
        deadline = time.time() + 300
        while time.time() < deadline:
            status, error = conn.execute("SELECT status, error FROM pgbert.training_jobs WHERE id = %s",
                                         (job,)).fetchone()
            if status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.3)
        kills = self.kills_between(t0 - 1, time.time() + 1)
        self.count("trainings")
        if status == "succeeded" or (cancel and status == "cancelled"):
            self.count("trainings ok" if status == "succeeded" else "expected: job cancelled")
        elif status == "failed" and kills and any(w in (error or "") for w in ("encoder worker", "trainer worker", "engine")):
            self.count("expected: training lost its engine")
        elif status == "failed" and cancel and "cancel" in (error or ""):
            self.count("expected: job cancelled")
        else:
            self.fail("training job %s of %s: %s %s (%d kills while it ran)" % (job, role, status, error, kills))
        return conn

    def admin_exec(self, sql, params=None):
        with self.lock:
            return self.admin.execute(sql, params).fetchall()

    # ---- catalog changes and kills ----

    def mutate_loop(self):
        conns = {None: self.connect()}
        for r in ROLES:
            conns[r] = self.connect(r)
        last_kill = 0
        while not self.stop.is_set():
            self.pause_point("mutate")
            time.sleep(self.rng.uniform(0.3, 1.5))
            vs = self.versions()
            total = sum(len(v) for v in vs.values())
            what = self.rng.choices(["import", "import_role", "import_minilm", "drop", "deploy", "kill"],
                                    [3, 1, 0.15 if self.have_minilm else 0, 2 + max(0, total - 10), 2,
                                     self.args.kill_weight])[0]
            try:
                if what == "import":
                    self.import_dir(conns[None], testkit.SQL_CLS, "cls")
                elif what == "import_role":
                    self.import_dir(conns[ROLES[0]], testkit.SQL_CLS, "stress_alice_imp")
                elif what == "import_minilm":
                    self.import_dir(conns[None], MINILM, "minilm")
                elif what == "drop":
                    name = self.rng.choice(list(vs))
                    keep = 1 if name in ("cls", "minilm") else 0
                    if len(vs[name]) > keep:
                        v, _, owner = self.rng.choice(vs[name][:-1] if keep else vs[name])
                        c = conns.get(owner, conns[None])
                        with self.lock:
                            self.drops[name] = time.time()
                        c.execute("SELECT drop_model(%s, %s)", (name, v))
                        self.count("drops")
                elif what == "deploy":
                    name = self.rng.choice(list(vs))
                    v, _, owner = self.rng.choice(vs[name])
                    c = conns.get(owner, conns[None])
                    c.execute("SELECT deploy_model(%s, %s)", (name, None if self.rng.random() < 0.3 else v))
                    self.count("deploys")
                elif what == "kill" and time.time() - last_kill > self.args.kill_every:
                    self.kill_engine()
                    last_kill = time.time()
            except psycopg.Error as e:
                # a drop or deploy racing a training's new version or another drop
                if e.sqlstate in ("42704", "40001", "55P03", "40P01"):
                    self.count("expected: catalog change raced")
                else:
                    self.fail("%s: %s %s" % (what, e.sqlstate, str(e).splitlines()[0]))
        for c in conns.values():
            c.close()

    def kill_engine(self):
        pids = self.engine_pids()
        if not pids:
            return
        pid = self.rng.choice(pids)
        sig = self.rng.choice([signal.SIGKILL, signal.SIGSEGV])
        with self.lock:
            self.kills.append((time.time(), int(sig), pid))
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        self.count("kills")

    # ---- monitor ----

    def monitor_loop(self):
        conn = self.connect()
        last_restarts = None
        while not self.stop.wait(1.0):
            try:
                mb, tr, restarts = conn.execute(
                    "SELECT model_bytes, trainings, engine_restarts FROM pgbert.worker").fetchone()
                held = {r[0] for r in conn.execute("SELECT version_id FROM pgbert.worker_models_all()")}
                exists = {r[0] for r in conn.execute("SELECT id FROM pgbert.model_versions")}
            except psycopg.Error:
                continue
            # the encoder's engine holds the models (model_bytes); the trainer's engine
            # holds training runs, so it is sampled only while it holds none
            beyond = {}
            try:
                engines = conn.execute("SELECT role, engine_pid, trainings FROM pgbert.worker_engines").fetchall()
            except psycopg.Error:
                engines = []
            for role, pid, trainings in engines:
                kb = rss_kb(pid) if pid else None
                if kb and role == "serve":
                    beyond[pid] = kb * 1024 - (mb or 0)
                elif kb and role == "train" and trainings == 0:
                    beyond[pid] = kb * 1024
            self.samples.append((time.time(), beyond))
            # loads and evictions, as seen once a second
            if last_restarts == restarts:
                self.count("loads", len(held - self.loaded))
                self.count("evictions", len((self.loaded - held) & exists))
            self.loaded, last_restarts = held, restarts
        conn.close()

    # ---- idle stretches ----

    def quiesce(self, seconds=120):
        """Stop everyone after their current operation."""
        self.go.clear()
        deadline = time.time() + seconds
        while time.time() < deadline:
            with self.lock:
                if not any(self.busy.values()):
                    return True
            time.sleep(0.1)
        self.fail("threads did not come to rest within %d s: %s" % (seconds, dict(self.busy)))
        return False

    def idle_recipe(self, idle):
        """The reported crash's recipe: a first model used, a long idle stretch, a new version
        imported, a second model's first use. Compared with the in-process result."""
        conn, comp = self.connect(), self.connect(None, worker=False)
        first = "minilm" if self.have_minilm else "cls"
        texts = ["x"]
        self.query_once(conn, comp, first, "embed", texts, self.rng)
        self.check_lobjects("before an idle stretch")
        print("idle for %.0f s" % idle, flush=True)
        deadline = time.time() + idle
        while time.time() < deadline and not self.stop.is_set():
            time.sleep(min(1.0, deadline - time.time()))
        self.import_dir(self.admin, testkit.SQL_CLS, "cls")
        for op in ("classify_scores", "classify", "embed"):
            self.query_once(conn, comp, "cls", op, ["x", "spam spam spam"], self.rng)
        self.count("idle stretches")
        conn.close()
        comp.close()

    # ---- checks ----

    def check_lobjects(self, when):
        lo, versions = self.admin.execute(
            "SELECT (SELECT count(*) FROM pg_largeobject_metadata), (SELECT count(*) FROM pgbert.model_versions)"
        ).fetchone()
        self.count("large object checks")
        if lo != versions:
            self.fail("%s: %d large objects for %d model versions" % (when, lo, versions))

    def check_log(self):
        log = open(self.server.dir + ".log", errors="replace").read()
        lines = log.splitlines()
        # ASan catches the SIGSEGV this script sends and reports it as a SEGV whose address
        # is the sender's pid and uid (siginfo of kill(2)), then aborts: those are our kills
        ours = re.compile(r"ERROR: AddressSanitizer: SEGV on unknown address 0x0*%x \(" % os.getpid())
        sent_segv = 0
        for i, line in enumerate(lines):
            if ours.search(line):
                sent_segv += 1
                continue
            if any(m in line for m in SANITIZER_MARKS):
                self.fail("sanitizer report in the server log:\n" + "\n".join(lines[max(0, i - 2):i + 40]))
                break
        deaths = collections.Counter()
        for line in lines:
            if "pgbert encoder:" not in line:
                continue
            m = re.search(r"engine process was terminated by signal (\d+)", line)
            if m:
                deaths[int(m.group(1))] += 1
            elif re.search(r"engine process exited with status", line):
                deaths["exit"] += 1
        caused = collections.Counter(s for _, s, _ in self.kills)
        # a SIGSEGV we sent ends in ASan's abort (signal 6)
        deaths[11] += min(sent_segv, deaths[6])
        deaths[6] -= min(sent_segv, deaths[6])
        deaths = +deaths
        print("engine deaths in the log: %s; kills: %s" % (dict(deaths), dict(caused)))
        for sig, n in deaths.items():
            if n > caused.get(sig, 0):
                self.fail("%d engine deaths of %s, %d caused by the script" % (n, sig, caused.get(sig, 0)))
        for line in lines:
            if re.search(r"(server process|background worker).*(terminated by signal|exited with exit code [^0])",
                         line) and "pgbert_engine" not in line:
                self.fail("backend crash in the server log: %s" % line)
            if "terminating any other active server processes" in line:
                self.fail("crash recovery: %s" % line)

    def check_memory(self):
        by_pid = collections.defaultdict(list)
        for t, beyond in self.samples:
            for pid, b in beyond.items():
                by_pid[pid].append((t, b))
        worst = None
        for pid, series in by_pid.items():
            if series[-1][0] - series[0][0] < 40 or len(series) < 30:
                continue
            # medians, not maxima: a batch's activations or a model being loaded (before
            # model_bytes counts it) spike RSS for a sample or two; a leak raises the level
            third = len(series) // 3
            first = statistics.median(x for _, x in series[:third])
            last = statistics.median(x for _, x in series[-third:])
            growth = (last - first) / 2 ** 20
            worst = growth if worst is None else max(worst, growth)
            print("engine %d: %d samples over %.0f s; median RSS beyond model_bytes %.0f MB first third, %.0f MB last"
                  % (pid, len(series), series[-1][0] - series[0][0], first / 2 ** 20, last / 2 ** 20))
            if growth > self.args.rss_growth_mb:
                self.fail("engine %d grew %.0f MB beyond the models it holds" % (pid, growth))
        self.counts["rss growth MB (worst engine)"] = round(worst, 1) if worst is not None else "n/a"

    # ---- the run ----

    def run(self):
        if self.args.engine:
            self.install_engine()
        try:
            self.start_server()
            self.setup()
            self.check_engine_build()
            mon = threading.Thread(target=self.monitor_loop, daemon=True)
            mon.start()
            if self.args.repro:
                self.repro()
            else:
                self.mixed()
            self.stop.set()
            mon.join(10)
            self.wait_jobs()
            self.check_lobjects("at the end")
            self.check_memory()
            time.sleep(1)
            self.check_log()
        except Exception:
            self.fail("the stress run itself failed:\n" + traceback.format_exc())
        finally:
            self.stop.set()
            try:
                self.server.stop()
            finally:
                self.restore_engine()
        return self.summary()

    def wait_jobs(self):
        testkit.wait_for(lambda: self.admin.execute(
            "SELECT count(*) = 0 FROM pgbert.training_jobs WHERE status IN ('queued', 'running')").fetchone()[0], 120)

    def mixed(self):
        threads = [threading.Thread(target=self.mutate_loop)]
        for i in range(self.args.sessions):
            threads.append(threading.Thread(target=self.query_loop, args=(i, None if i % 2 == 0 else ROLES[i % 3])))
        for i, r in enumerate(ROLES):
            threads.append(threading.Thread(target=self.train_loop, args=(i, r)))
        for t in threads:
            t.start()
        end = time.time() + self.args.minutes * 60
        stretches = [time.time() + (end - time.time()) * k / 3 for k in (1, 2)] if self.args.idle[0] > 0 else []
        while time.time() < end and not self.stop.is_set():
            if stretches and time.time() >= stretches[0]:
                stretches.pop(0)
                if self.quiesce():
                    self.idle_recipe(self.args.idle[0])
                self.go.set()
            if len(self.failures) >= 50:
                print("50 failures: stopping early", flush=True)
                break
            time.sleep(0.5)
        self.stop.set()
        self.go.set()
        for t in threads:
            t.join(300)
            if t.is_alive():
                self.fail("thread %s did not finish" % t.name)

    def repro(self):
        if self.args.repro == "a":
            for idle in self.args.idle:
                self.idle_recipe(idle)
        else:
            for _ in range(3):
                conn = self.connect(ROLES[0])
                for what in ("nolabel", "onelabel", "empty", "notmine"):
                    self.train_once(conn, ROLES[0], ROLES[1], what, self.rng)
                conn.close()
                self.train_once(self.connect(ROLES[1]), ROLES[1], ROLES[0], "weird", self.rng)
            conn, comp = self.connect(ROLES[1]), self.connect(None, worker=False)
            self.query_once(conn, comp, "m_weird", "classify_scores", self.texts[:6], self.rng)

    def summary(self):
        c = self.counts
        expected = sum(v for k, v in c.items() if k.startswith("expected"))
        if self.failures and not self.args.keep:      # first, so that the failures below end the output
            print("server log tail:\n" + self.server.log_tail(4000))
        for k in sorted(c):
            print("  %-45s %s" % (k, c[k]))
        for what in self.failures[:20]:
            print("FAIL %s" % what)
        print("worker_stress: queries %d, comparisons %d, trainings %d (%d ok), imports %d, drops %d, deploys %d, "
              "loads %d, evictions %d, kills %d, idle stretches %d, expected errors %d, failures %d"
              % (c["queries"], c["comparisons"], c["trainings"], c["trainings ok"], c["imports"], c["drops"],
                 c["deploys"], c["loads"], c["evictions"], c["kills"], c["idle stretches"], expected,
                 len(self.failures)), flush=True)
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("kept %s" % self.tmp)
        return 1 if self.failures else 0


def quote(x):
    return "NULL" if x is None else psycopg.sql.quote(x)


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--idle", default="20", help="seconds of each idle stretch; a comma list for --repro a")
    ap.add_argument("--engine", help="pgbert_engine to install into pkglibdir for the run (the sanitized one)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sessions", type=int, default=3, help="query sessions")
    ap.add_argument("--worker-memory", default="64MB")
    ap.add_argument("--kill-every", type=float, default=8.0, help="least seconds between two kills")
    ap.add_argument("--kill-weight", type=float, default=1.0)
    ap.add_argument("--rss-growth-mb", type=float, default=64.0)
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--repro", choices=["a", "b"])
    ap.add_argument("--keep", action="store_true", help="keep the server's directory and log")
    args = ap.parse_args()
    args.idle = [float(x) for x in args.idle.split(",")]
    import psycopg.sql  # noqa: F401
    sys.exit(Stress(args).run())


if __name__ == "__main__":
    main()
