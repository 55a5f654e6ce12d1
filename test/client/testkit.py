"""What the client checks (check_batching, check_standby, check_faults, soak) share: a
pass/fail counter, the tiny fixture classifier and its texts, and a throw-away PostgreSQL
server for checks that restart it or run several (initdb in a temporary directory, unix
socket only, run as the postgres user when we are root: initdb refuses root)."""
import json
import os
import subprocess
import tempfile
import time

import psycopg

BINDIR = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
SQL_CLS = "test/fixtures/models/sql_cls"           # the tiny 3-label classifier
PROBS = "test/fixtures/sql_cls_probs.json"         # its 122 texts with transformers' labels

failures = 0


def check(ok, what):
    """Print one check's outcome and count failures."""
    global failures
    print("%s %s" % ("ok  " if ok else "FAIL", what), flush=True)
    failures += not ok


def finish():
    """Print the count of failed checks; the exit status."""
    print("%d failed" % failures)
    return 1 if failures else 0


def fixture_texts():
    with open(PROBS) as f:
        return json.load(f)


def import_fixture_model(name, env=None):
    """pgbert_import the fixture classifier as name (connection from env, default ours)."""
    out = subprocess.run([os.path.join(BINDIR, "pgbert_import"), SQL_CLS, name], check=True,
                         capture_output=True, text=True, env=env)
    return out.stdout.strip()


def create_docs(conn):
    """Table docs (id, body, label) holding the fixture texts; returns them."""
    texts = fixture_texts()
    conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, label text)")
    with conn.cursor().copy("COPY docs FROM STDIN") as cp:
        for r in texts:
            cp.write_row((r["ord"], r["text"], r["label"]))
    return texts


def as_server_user(args, check=True):
    """Run a server program (as postgres when root), from the temporary directory: the
    postgres user may not be allowed into the checkout."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=check, capture_output=True, text=True, cwd=tempfile.gettempdir())


class Server:
    def __init__(self, tmp, name, port):
        self.dir, self.port, self.sock = os.path.join(tmp, name), port, tmp

    def initdb(self, conf):
        as_server_user([os.path.join(BINDIR, "initdb"), "-D", self.dir, "-A", "trust", "-U", "postgres",
                        "--no-sync"])
        self.conf(["port = %d" % self.port, "listen_addresses = ''",
                   "unix_socket_directories = '%s'" % self.sock, "fsync = off"] + conf)

    def conf(self, lines):
        with open(os.path.join(self.dir, "postgresql.conf"), "a") as f:
            f.write("\n".join(lines) + "\n")

    def pg_ctl(self, *args, check=True):
        return as_server_user([os.path.join(BINDIR, "pg_ctl"), "-D", self.dir, "-l", self.dir + ".log", "-w"]
                              + list(args), check=check)

    def start(self):
        self.pg_ctl("start")

    def stop(self):
        self.pg_ctl("-m", "fast", "stop", check=False)

    def env(self, dbname="postgres"):
        return dict(os.environ, PGHOST=self.sock, PGPORT=str(self.port), PGUSER="postgres", PGDATABASE=dbname)

    def connect(self, dbname="postgres", **kw):
        return psycopg.connect(host=self.sock, port=self.port, user="postgres", dbname=dbname, autocommit=True,
                               **kw)

    def log_tail(self, n=3000):
        path = self.dir + ".log"
        return open(path).read()[-n:] if os.path.exists(path) else ""


def temp_dir(prefix):
    tmp = tempfile.mkdtemp(prefix=prefix)
    os.chmod(tmp, 0o777)
    return tmp


def wait_for(fn, seconds=60, step=0.2):
    """Poll fn until it returns true (errors count as not yet); False on timeout."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if fn():
                return True
        except psycopg.Error:
            pass
        time.sleep(step)
    return False
