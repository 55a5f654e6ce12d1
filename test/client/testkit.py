"""What the client checks (check_batching, check_standby, check_faults, soak) share: a
pass/fail counter, the tiny fixture classifier and its texts, the tolerances of
probabilities (also for check_models and check_worker), and a throw-away PostgreSQL
server for checks that restart it or run several (initdb in a temporary directory, unix
socket only, run as the postgres user when we are root: initdb refuses root)."""
import json
import math
import os
import shutil
import subprocess
import tempfile
import time

import psycopg

BINDIR = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
SQL_CLS = "test/fixtures/models/sql_cls"           # the tiny 3-label classifier
PROBS = "test/fixtures/sql_cls_probs.json"         # its 122 texts with transformers' labels

failures = 0

# Tolerances of probabilities, from float32 rounding-error analysis (the model of
# test/engine/tolerance.h, so that they hold on every CPU: OpenBLAS's AVX2 or AVX-512
# kernels, any batch shape, the engine's own kernels or torch's). Whatever two float32
# computations of a classifier are compared (the engine and transformers, batched and
# unbatched, through the encoder worker and in-process, on a primary and on a standby),
# each logit z may differ by at most delta = encoder_tolerance(layers, k, scale), scale
# being the sum of the magnitudes of the classifier's terms, sum |W_ci pooled_i| + |b_c|.
# Softmax passes that on damped: dp_i = p_i (dz_i - sum_j p_j dz_j), and
# |dz_i - sum_j p_j dz_j| <= (1 - p_i) 2 delta, so |dp_i| <= 2 delta p_i (1 - p_i) <= delta / 2.
U32 = 2.0 ** -24            # float32's unit roundoff
LAMBDA = 8.0                # Higham and Mary's probabilistic bound, LAMBDA sqrt(n) u per sum


def encoder_tolerance(layers, k, scale):
    """How far two float32 encoders may differ in values of magnitude up to scale (as in
    test/engine/tolerance.h: the rounding of the embedding LayerNorm and of each layer adds
    up, each dot product of at most k terms off by LAMBDA sqrt(k) u, both sides rounding)."""
    return 2.0 * (layers + 1) * LAMBDA * math.sqrt(k) * U32 * scale


def probability_tolerance(layers, k, logit_scale):
    """How far two float32 computations of a classifier may differ in a probability."""
    return encoder_tolerance(layers, k, logit_scale) / 2.0


# The fixture classifier (2 layers, hidden 32, intermediate 64: k = 64) on its 122 texts:
# a float64 pass of it over them (numpy, test/oracle/tolerance_scales.py) puts the classifier's
# terms at sum |W_ci pooled_i| + |b_c| <= 3.86 (the logits themselves at most 1.69), so
# two float32 computations differ by at most probability_tolerance(2, 64, 3.86) = 4.4e-5
# in any probability; P_TOL = 5e-5 allows that. Measured on an AVX-512 Xeon: engine vs
# transformers 2.8e-7 (2.4e-7 with OpenBLAS's Haswell kernels forced), batched vs
# unbatched 1.4e-7, the Haswell kernels' probabilities vs the AVX-512 ones 2.1e-7. A parity
# slip does not fit in it: the tanh GELU in place of the erf one moves 20 of the texts
# by more than 5e-5 (up to 1.0e-4), an unscaled attention or shifted positions by 0.26
# and more. (The fixture's biases are zero and its LayerNorm gains one, so a dropped bias
# cannot show here; the engine tests' random checkpoints catch that.) Labels may differ
# from a reference only where its top two probabilities are within 2 P_TOL; the
# fixture's closest are 0.011 apart.
SQL_CLS_LOGIT_SCALE = 3.86
P_TOL = 5e-5
assert probability_tolerance(2, 64, SQL_CLS_LOGIT_SCALE) <= P_TOL


def checkpoint_probability_tolerance(model_dir):
    """probability_tolerance of any classifier checkpoint on any text, from its weights
    alone: the pooled output is a tanh, so each logit's terms add up to at most
    sum_i |W_ci| + |b_c| (5.94 for the fixture, 6.8e-5; a trained model's differs)."""
    import numpy as np
    import safetensors.numpy

    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    t = safetensors.numpy.load_file(os.path.join(model_dir, "model.safetensors"))
    w, b = t["classifier.weight"].astype(np.float64), t["classifier.bias"].astype(np.float64)
    scale = float((np.abs(w).sum(axis=1) + np.abs(b)).max())
    return probability_tolerance(cfg["num_hidden_layers"], max(cfg["hidden_size"], cfg["intermediate_size"]),
                                 scale)


def deployed_probability_tolerance(name, env=None):
    """checkpoint_probability_tolerance of a stored model's deployed version (pgbert_export
    to a temporary directory; connection from env, default ours)."""
    out = tempfile.mkdtemp(prefix="pgbert_tol.")
    try:
        subprocess.run([os.path.join(BINDIR, "pgbert_export"), name, out], check=True, capture_output=True,
                       env=env)
        return checkpoint_probability_tolerance(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


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


def free_ports(count, first=20000, last=32000):
    """The first of count consecutive ports that nothing listens on (TCP on loopback) and
    no socket file names in /tmp, below Linux's ephemeral range (32768 up) so that no
    client connection can be holding one; starting from a place the pid picks, so that
    test programs running side by side do not race for the same ports."""
    import socket
    span = last - first - count
    start = os.getpid() * 7919 % span
    for i in range(0, span, count):
        base = first + (start + i) % span
        if all(port_is_free(p, socket) for p in range(base, base + count)):
            return base
    raise RuntimeError("no %d consecutive free ports in %d..%d" % (count, first, last))


def port_is_free(port, socket):
    if os.path.exists("/tmp/.s.PGSQL.%d" % port):
        return False
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
        except OSError as e:
            if family == socket.AF_INET or e.errno != 99:     # ::1 missing is no conflict
                return False
        finally:
            s.close()
    return True


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
        """Start the server; when it does not come up, raise with its log's tail (the reason)."""
        out = self.pg_ctl("start", check=False)
        if out.returncode != 0:
            raise RuntimeError("%s did not start (pg_ctl exit %d): %s\nits log ends:\n%s"
                               % (self.dir, out.returncode, (out.stdout + out.stderr).strip(),
                                  self.log_tail(2000)))

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


def start_citus_node(server):
    """initdb, start and CREATE EXTENSION citus and pgbert on a node of a test Citus cluster:
    both preloaded, TCP on loopback for Citus's own connections, no call home."""
    server.initdb(["shared_preload_libraries = 'citus,pgbert'", "listen_addresses = 'localhost'",
                   "citus.enable_statistics_collection = off"])
    with open(os.path.join(server.dir, "pg_hba.conf"), "w") as f:
        f.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    server.start()
    with server.connect() as c:
        c.execute("CREATE EXTENSION citus")
        c.execute("CREATE EXTENSION pgbert")
