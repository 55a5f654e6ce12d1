#!/usr/bin/env python3
"""Client-side checks of model import and export against a running server with pgbert.

Runs with the connection from the PG* environment (as pg_virtualenv sets it) and the
installed pgbert_import / pgbert_export (found on PATH or in `pg_config --bindir`):

1. The real all-MiniLM-L6-v2 checkpoint (.models/all-minilm-l6-v2, from scripts/setup.sh)
   goes in with pgbert_import; embed(text, 'minilm') for the sentences of
   test/fixtures/minilm_reference.safetensors that the reference did not truncate short of
   pgbert's own limit (512 tokens) must have cosine >= 0.99999 with sentence-transformers'
   embeddings.
2. The tiny BertForSequenceClassification of test/fixtures/models/sql_cls goes in, comes
   back out with pgbert_export, and the exported directory is what from_pretrained loads:
   weights and vocabulary byte-identical, config.json and tokenizer_config.json equal as
   JSON (labels from the catalog), and transformers' BertTokenizer built from the exported
   files gives the same ids. Re-imported, it reproduces transformers' probabilities
   (test/fixtures/sql_cls_probs.json) within testkit.P_TOL. When torch is installed, transformers
   also loads the exported directory and its logits are compared with classify_scores.
3. A checkpoint that does not match its config is refused, and nothing stays behind.
4. A model trained in SQL (train_classifier from the sql_cls model) exports as a checkpoint
   with exactly the tensor names, shapes and dtypes transformers' save_pretrained wrote for
   the same architecture, and a config transformers reads with the new labels; with torch,
   transformers' logits on it match classify_scores.
5. A running train_classifier shows in pgbert.training_progress from a second session, and
   pg_cancel_backend from there stops it with nothing stored.
6. pg_dump / pg_restore carries models over: catalog rows, pins, grants, the weights'
   large objects (same OIDs, same bytes, same ACLs), and the same probabilities.
7. The programs' edges (issue 18): a role whose name needs quoting ("Bob Mixed") imports
   and exports; pgbert_export without permission leaves nothing in (or of) its output
   directory; a model directory whose path has a newline imports and exports.

    check_models.py [STEP...]   # all steps, or only those named (e.g. programs)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import psycopg
import safetensors
import safetensors.numpy

import testkit

MINILM = ".models/all-minilm-l6-v2"
SQL_CLS = "test/fixtures/models/sql_cls"
PROBS = "test/fixtures/sql_cls_probs.json"
MINILM_REF = "test/fixtures/minilm_reference.safetensors"

failed = 0


def check(ok, what):
    global failed
    print("%s %s" % ("ok  " if ok else "FAIL", what))
    failed += not ok


def tool(name):
    path = shutil.which(name)
    if path is None:
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        path = os.path.join(bindir, name)
    return path


def run(*args, env=None):
    return subprocess.run(list(args), capture_output=True, text=True, env=env)


def minilm(conn):
    r = run(tool("pgbert_import"), "--base-model", "sentence-transformers/all-MiniLM-L6-v2", MINILM, "minilm")
    check(r.returncode == 0 and r.stdout.strip() == "1", "pgbert_import MiniLM -> version 1 (%s)" % (r.stderr.strip() or r.stdout.strip()))
    ref = safetensors.numpy.load_file(MINILM_REF)
    texts_raw, toff, maxlen = ref["texts"].tobytes(), ref["text_offsets"], ref["max_lengths"]
    offsets = ref["offsets"]
    emb = ref["embeddings"]
    cos = []
    with conn.cursor() as cur:
        for i in range(len(maxlen)):
            # pgbert truncates MiniLM at 512 tokens: compare where the reference did the same
            if maxlen[i] != 512 and offsets[i + 1] - offsets[i] >= maxlen[i]:
                continue
            text = texts_raw[toff[i]:toff[i + 1]].decode("utf-8")
            cur.execute("SELECT embed(%s, 'minilm')", (text,))
            v = np.array(cur.fetchone()[0], dtype=np.float64)
            e = emb[i].astype(np.float64)
            cos.append(float(v @ e / (np.linalg.norm(v) * np.linalg.norm(e))))
    check(len(cos) >= 100 and min(cos) >= 0.99999,
          "embed() vs sentence-transformers on %d sentences: min cosine %.7f" % (len(cos), min(cos)))
    with conn.cursor() as cur:
        cur.execute("SELECT labels, num_params, size_bytes FROM pgbert.models WHERE name = 'minilm'")
        labels, nparams, size = cur.fetchone()
    check(labels == [] and size == os.path.getsize(os.path.join(MINILM, "model.safetensors")),
          "catalog: no labels, %d parameters, %d bytes" % (nparams, size))


def round_trip(conn, probs):
    r = run(tool("pgbert_import"), SQL_CLS, "spamcls")
    check(r.returncode == 0, "pgbert_import sql_cls (%s)" % r.stderr.strip())
    out = tempfile.mkdtemp(prefix="pgbert_export.")
    try:
        r = run(tool("pgbert_export"), "spamcls", out)
        check(r.returncode == 0, "pgbert_export (%s)" % (r.stderr.strip() or r.stdout.strip()))
        for f in ("model.safetensors", "vocab.txt"):
            with open(os.path.join(SQL_CLS, f), "rb") as a, open(os.path.join(out, f), "rb") as b:
                check(a.read() == b.read(), "exported %s is byte-identical" % f)
        for f in ("config.json", "tokenizer_config.json"):
            with open(os.path.join(SQL_CLS, f)) as a, open(os.path.join(out, f)) as b:
                check(json.load(a) == json.load(b), "exported %s equals the original as JSON" % f)

        from transformers import BertTokenizer
        t0, t1 = BertTokenizer.from_pretrained(SQL_CLS), BertTokenizer.from_pretrained(out)
        same = all(t0(p["text"], truncation=True, max_length=128)["input_ids"]
                   == t1(p["text"], truncation=True, max_length=128)["input_ids"] for p in probs)
        check(same, "transformers' BertTokenizer from the exported files gives the same ids")

        r = run(tool("pgbert_import"), out, "reimported")
        check(r.returncode == 0, "the exported directory imports again (%s)" % r.stderr.strip())
        worst = 0.0
        with conn.cursor() as cur:
            for p in probs:
                cur.execute("SELECT classify_scores(%s, 'reimported')", (p["text"],))
                s = cur.fetchone()[0]
                worst = max(worst, *(abs(s[k] - p["p_" + k]) for k in ("ham", "spam", "phish")))
        # float32 rounding of two computations of the fixture on its texts: testkit.P_TOL
        check(worst < testkit.P_TOL,
              "re-imported model vs transformers on %d texts: max |dp| %.2e" % (len(probs), worst))

        try:
            import torch
            from transformers import BertForSequenceClassification
        except ImportError:
            print("skip transformers logits of the exported directory: torch is not installed "
                  "(the checks above tie the export to the oracle byte for byte)")
            return
        model = BertForSequenceClassification.from_pretrained(out).eval()
        worst = 0.0
        with conn.cursor() as cur, torch.no_grad():
            for p in probs:
                enc = t1(p["text"], truncation=True, max_length=128, return_tensors="pt")
                prob = torch.softmax(model(**enc).logits[0], -1).tolist()
                cur.execute("SELECT classify_scores(%s, 'spamcls')", (p["text"],))
                s = cur.fetchone()[0]
                worst = max(worst, *(abs(s[model.config.id2label[i]] - prob[i]) for i in range(3)))
        check(worst < testkit.P_TOL,
              "transformers on the exported directory vs classify_scores: max |dp| %.2e" % worst)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def refused(conn):
    bad = tempfile.mkdtemp(prefix="pgbert_bad.")
    try:
        for f in ("model.safetensors", "vocab.txt", "tokenizer_config.json"):
            shutil.copy(os.path.join(SQL_CLS, f), bad)
        with open(os.path.join(SQL_CLS, "config.json")) as f:
            cfg = json.load(f)
        cfg["num_hidden_layers"] = 3
        with open(os.path.join(bad, "config.json"), "w") as f:
            json.dump(cfg, f)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_largeobject_metadata")
            before = cur.fetchone()[0]
        r = run(tool("pgbert_import"), bad, "broken")
        check(r.returncode != 0 and "checkpoint lacks tensor" in r.stderr,
              "a checkpoint that does not fit its config is refused: %s" % r.stderr.strip().splitlines()[0])
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_largeobject_metadata")
            after = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM pgbert.model_versions WHERE name = 'broken'")
            rows = cur.fetchone()[0]
        check(after == before and rows == 0, "nothing stays behind (large objects %d -> %d)" % (before, after))
        r = run(tool("pgbert_import"), "/nonexistent", "x")
        check(r.returncode != 0 and "not found" in r.stderr, "a missing directory is reported")
    finally:
        shutil.rmtree(bad, ignore_errors=True)


def trained_export(conn, probs):
    with conn.cursor() as cur:
        cur.execute("SET pgbert.progress_interval = 0")
        cur.execute("CREATE TEMP TABLE tiny_train AS SELECT t->>'text' AS body, "
                    "CASE WHEN t->>'label' = 'spam' THEN 'junk' ELSE 'fine' END AS verdict "
                    "FROM jsonb_array_elements(%s::jsonb) t", (json.dumps(probs),))
        cur.execute("SELECT train_classifier('tiny_train', 'body', 'verdict', model => 'trained', "
                    "base_model => 'spamcls', epochs => 1, learning_rate => 1e-3)")
        version = cur.fetchone()[0]["version"]
    check(version == 1, "train_classifier from a stored model -> version 1")
    out = tempfile.mkdtemp(prefix="pgbert_trained.")
    try:
        r = run(tool("pgbert_export"), "trained", out)
        check(r.returncode == 0, "pgbert_export of the trained model (%s)" % r.stderr.strip())

        def layout(path):
            with safetensors.safe_open(path, "np") as f:
                return {k: (f.get_slice(k).get_shape(), f.get_slice(k).get_dtype()) for k in f.keys()}

        ours, hf = layout(os.path.join(out, "model.safetensors")), layout(os.path.join(SQL_CLS, "model.safetensors"))
        # the head has 2 labels here, 3 in the fixture
        hf["classifier.weight"] = ([2, hf["classifier.weight"][0][1]], hf["classifier.weight"][1])
        hf["classifier.bias"] = ([2], hf["classifier.bias"][1])
        ours = {k: (list(v[0]), v[1]) for k, v in ours.items()}
        hf = {k: (list(v[0]), v[1]) for k, v in hf.items()}
        check(ours == hf, "trained checkpoint has save_pretrained's tensors, shapes and dtypes (%d tensors)" % len(ours))
        from transformers import BertConfig
        cfg = BertConfig.from_pretrained(out)
        check(cfg.id2label == {0: "fine", 1: "junk"} and cfg.architectures == ["BertForSequenceClassification"],
              "transformers reads its config: id2label %s" % cfg.id2label)
        try:
            import torch
            from transformers import BertForSequenceClassification, BertTokenizer
        except ImportError:
            print("skip transformers logits of the trained model: torch is not installed")
            return
        model = BertForSequenceClassification.from_pretrained(out).eval()
        tok = BertTokenizer.from_pretrained(out)
        worst = 0.0
        with conn.cursor() as cur, torch.no_grad():
            for p in probs:
                enc = tok(p["text"], truncation=True, max_length=128, return_tensors="pt")
                prob = torch.softmax(model(**enc).logits[0], -1).tolist()
                cur.execute("SELECT classify_scores(%s, 'trained')", (p["text"],))
                s = cur.fetchone()[0]
                worst = max(worst, *(abs(s[model.config.id2label[i]] - prob[i]) for i in range(2)))
        # trained weights: the float32 rounding bound from the exported checkpoint's own weights
        tol = testkit.checkpoint_probability_tolerance(out)
        check(worst < tol, "transformers on the trained model vs classify_scores: max |dp| %.2e (tolerance %.2g)"
              % (worst, tol))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def progress_and_cancel(conn):
    import threading
    import time

    with conn.cursor() as cur:
        cur.execute("CREATE TABLE progress_rows AS SELECT 'row ' || i || ' says ' || "
                    "CASE WHEN i % 2 = 0 THEN 'good things' ELSE 'bad things' END AS body, "
                    "(i % 2 = 0) AS good FROM generate_series(1, 400) i")
        cur.execute("SELECT count(*) FROM pgbert.model_versions")
        versions_before = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM pg_largeobject_metadata")
        objects_before = cur.fetchone()[0]
    trainer = psycopg.connect(autocommit=True)
    with trainer.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    outcome = {}

    def train():
        try:
            with trainer.cursor() as cur:
                cur.execute("SET pgbert.progress_interval = 0")
                cur.execute("SELECT train_classifier('progress_rows', 'body', 'good', model => 'watched', "
                            "epochs => 1000, batch_size => 8, max_length => 8)")
            outcome["result"] = "finished"
        except psycopg.Error as e:
            outcome["result"] = e.sqlstate

    thread = threading.Thread(target=train)
    thread.start()
    seen = []
    with conn.cursor() as cur:
        for _ in range(300):
            cur.execute("SELECT pid, model, epoch, epochs, step, total_steps, loss, rows_per_s, eta > updated "
                        "FROM pgbert.training_progress WHERE model = 'watched'")
            seen = cur.fetchall()
            if seen and seen[0][4] > 0:
                break
            time.sleep(0.1)
    check(len(seen) == 1 and seen[0][0] == pid and seen[0][3] == 1000 and seen[0][4] > 0
          and seen[0][5] == 1000 * 45 and seen[0][6] is not None and seen[0][8],  # 360 training rows / 8
          "a second session sees the running training: %s" % (seen[0] if seen else None,))
    with conn.cursor() as cur:
        cur.execute("SELECT pg_cancel_backend(%s)", (pid,))
    thread.join(60)
    check(outcome.get("result") == "57014", "pg_cancel_backend stops it (SQLSTATE %s)" % outcome.get("result"))
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pgbert.training_progress WHERE model = 'watched'")
        left = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM pgbert.model_versions")
        versions = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM pg_largeobject_metadata")
        objects = cur.fetchone()[0]
        cur.execute("DROP TABLE progress_rows")
    trainer.close()
    check(left == 0 and versions == versions_before and objects == objects_before,
          "after the cancel: no progress row, no new version, no new large object")


def dump_restore(conn, probs):
    dump = tempfile.mkdtemp(prefix="pgbert_dump.")
    env = dict(os.environ)
    try:
        with conn.cursor() as cur:
            for db in ("pgbert_dump_src", "pgbert_dump_dst"):
                cur.execute("DROP DATABASE IF EXISTS %s" % db)
                cur.execute("CREATE DATABASE %s" % db)
            cur.execute("DROP ROLE IF EXISTS pgbert_dump_reader")
            cur.execute("CREATE ROLE pgbert_dump_reader")
        env["PGDATABASE"] = "pgbert_dump_src"
        subprocess.run(["psql", "-X", "-q", "-c", "CREATE EXTENSION pgbert"], env=env, check=True)
        for _ in range(2):
            subprocess.run([tool("pgbert_import"), SQL_CLS, "m"], env=env, check=True, capture_output=True)
        subprocess.run(["psql", "-X", "-q", "-c", "SELECT deploy_model('m', 1)",
                        "-c", "SELECT grant_model('m', 'pgbert_dump_reader')"], env=env, check=True, capture_output=True)
        r = run("pg_dump", "-Fc", "-d", "pgbert_dump_src", "-f", os.path.join(dump, "db.dump"))
        check(r.returncode == 0, "pg_dump of a database with models (%s)" % r.stderr.strip())
        r = run("pg_restore", "-d", "pgbert_dump_dst", os.path.join(dump, "db.dump"))
        check(r.returncode == 0, "pg_restore (%s)" % r.stderr.strip())

        state = "SELECT m.name, m.version, m.deployed, m.pinned, m.weights, md5(lo_get(m.weights)), l.lomacl::text, " \
                "(SELECT array_agg(grantee::text) FROM pgbert.model_grants) FROM pgbert.models m " \
                "JOIN pg_largeobject_metadata l ON l.oid = m.weights ORDER BY 1, 2"
        scores = "SELECT classify_scores(t, 'm')::text FROM unnest(%s::text[]) t"
        got = []
        for db in ("pgbert_dump_src", "pgbert_dump_dst"):
            with psycopg.connect(dbname=db, autocommit=True) as c, c.cursor() as cur:
                cur.execute(state)
                rows = cur.fetchall()
                cur.execute(scores, ([p["text"] for p in probs[:20]],))
                got.append((rows, cur.fetchall()))
        check(got[0][0] == got[1][0] and len(got[0][0]) == 2,
              "restored catalog, pins, grants and weights equal the original (%d versions)" % len(got[1][0]))
        check(got[0][1] == got[1][1], "restored model gives the same probabilities")
        env["PGDATABASE"] = "pgbert_dump_dst"
        r = subprocess.run([tool("pgbert_import"), SQL_CLS, "m"], env=env, capture_output=True, text=True)
        check(r.returncode == 0 and r.stdout.strip() == "3", "a restored database takes new versions (%s)"
              % (r.stderr.strip() or r.stdout.strip()))
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS pgbert_dump_src")
            cur.execute("DROP DATABASE IF EXISTS pgbert_dump_dst")
            cur.execute("DROP ROLE IF EXISTS pgbert_dump_reader")
        shutil.rmtree(dump, ignore_errors=True)


def programs(conn):
    work = tempfile.mkdtemp(prefix="pgbert_programs.")
    bob = dict(os.environ, PGPASSWORD="bob pw")
    noperm = dict(os.environ, PGPASSWORD="noperm pw")
    try:
        with conn.cursor() as cur:
            cur.execute("""CREATE ROLE "Bob Mixed" LOGIN PASSWORD 'bob pw'""")
            cur.execute("CREATE ROLE pgbert_noperm LOGIN PASSWORD 'noperm pw'")
        # a role name that needs quoting: the owner is recorded, and the model exports
        r = run(tool("pgbert_import"), "-U", "Bob Mixed", SQL_CLS, "bobs", env=bob)
        check(r.returncode == 0 and r.stdout.strip() == "1",
              "pgbert_import -U \"Bob Mixed\" (%s)" % (r.stderr.strip() or r.stdout.strip()))
        with conn.cursor() as cur:
            cur.execute("SELECT owner::text FROM pgbert.models WHERE name = 'bobs'")
            owner = cur.fetchall()
        check(owner == [('"Bob Mixed"',)], "the model's owner is \"Bob Mixed\" (%s)" % owner)
        out = os.path.join(work, "bob_out")
        r = run(tool("pgbert_export"), "-U", "Bob Mixed", "bobs", out, env=bob)
        check(r.returncode == 0 and os.path.exists(os.path.join(out, "model.safetensors")),
              "pgbert_export -U \"Bob Mixed\" (%s)" % (r.stderr.strip() or r.stdout.strip()))

        # no permission: nothing is left in the directory, and a directory it would have
        # made is not made
        r = run(tool("pgbert_import"), SQL_CLS, "private")
        check(r.returncode == 0, "pgbert_import private (%s)" % r.stderr.strip())
        out = os.path.join(work, "noperm_out")
        os.mkdir(out)
        r = run(tool("pgbert_export"), "-U", "pgbert_noperm", "private", out, env=noperm)
        left = os.listdir(out)
        check(r.returncode != 0 and left == [],
              "pgbert_export without permission fails and leaves nothing (rc %d, left %s: %s)"
              % (r.returncode, left, r.stderr.strip().splitlines()[-1:] if r.stderr.strip() else ""))
        fresh = os.path.join(work, "noperm_new", "sub")
        r = run(tool("pgbert_export"), "-U", "pgbert_noperm", "private", fresh, env=noperm)
        check(r.returncode != 0 and not os.path.exists(fresh),
              "pgbert_export without permission does not create its directory")

        # granting to, deploying as and revoking from a role whose name needs quoting
        with conn.cursor() as cur:
            cur.execute("""SELECT grant_model('private', '"Bob Mixed"')""")
        out = os.path.join(work, "granted_out")
        r = run(tool("pgbert_export"), "-U", "Bob Mixed", "private", out, env=bob)
        check(r.returncode == 0, "grant_model(..., '\"Bob Mixed\"') lets that role export (%s)" % r.stderr.strip())
        r = run("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", "Bob Mixed",
                "-c", "SELECT deploy_model('bobs', 1)",
                "-c", "SELECT deployed_by::text FROM pgbert.deployments WHERE name = 'bobs'", env=bob)
        check(r.returncode == 0 and r.stdout.split() == ["1", '"Bob', 'Mixed"'],
              "deploy_model as \"Bob Mixed\" records the deployer (%s)" % (r.stderr.strip() or r.stdout.strip()))
        with conn.cursor() as cur:
            cur.execute("""SELECT revoke_model('private', '"Bob Mixed"')""")
        out = os.path.join(work, "revoked_out")
        r = run(tool("pgbert_export"), "-U", "Bob Mixed", "private", out, env=bob)
        check(r.returncode != 0 and not os.path.exists(out), "revoke_model takes it back")

        # a directory whose path has a newline (and a carriage return)
        odd = os.path.join(work, "new\nline\rdir")
        shutil.copytree(SQL_CLS, odd)
        r = run(tool("pgbert_import"), odd, "oddpath")
        check(r.returncode == 0 and r.stdout.strip() == "1",
              "pgbert_import from a path with a newline (%s)" % (r.stderr.strip() or r.stdout.strip()))
        back = os.path.join(work, "out\nput")
        r = run(tool("pgbert_export"), "oddpath", back)
        same = r.returncode == 0 and all(
            open(os.path.join(SQL_CLS, f), "rb").read() == open(os.path.join(back, f), "rb").read()
            for f in ("model.safetensors", "vocab.txt"))
        check(same, "pgbert_export to a path with a newline, byte-identical (%s)" % r.stderr.strip())
    finally:
        with conn.cursor() as cur:
            for m in ("bobs", "private", "oddpath"):
                cur.execute("SELECT drop_model(name) FROM (SELECT DISTINCT name FROM pgbert.models "
                            "WHERE name = %s) m", (m,))
            for role in ('"Bob Mixed"', "pgbert_noperm"):
                cur.execute("SELECT 1 FROM pg_roles WHERE quote_ident(rolname) = %s", (role,))
                if cur.fetchone():
                    cur.execute("DROP OWNED BY %s" % role)
                    cur.execute("DROP ROLE %s" % role)
        shutil.rmtree(work, ignore_errors=True)


STEPS = ["minilm", "round_trip", "refused", "trained_export", "progress_and_cancel", "dump_restore",
         "programs"]


def main():
    steps = sys.argv[1:] or STEPS
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        sys.exit("unknown step %s; steps: %s" % (", ".join(unknown), " ".join(STEPS)))
    with open(PROBS, encoding="utf-8") as f:
        probs = json.load(f)
    with psycopg.connect(autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pgbert")
        for step in steps:
            fn = globals()[step]
            fn(conn, probs) if step in ("round_trip", "trained_export", "dump_restore") else fn(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT drop_model(name) FROM (SELECT DISTINCT name FROM pgbert.models) m")
    print("client checks: %s" % ("all passed" if failed == 0 else "%d FAILED" % failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
