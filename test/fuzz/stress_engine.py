#!/usr/bin/env python3
"""Stress the engine process (pgbert_engine) through its socket protocol, without
PostgreSQL, doing what a preloaded server's encoder worker does to it over hours:
models loaded, replaced by new versions and evicted, idle stretches, thread-count
changes (pgbert.worker_threads reloads), trainings from several "sessions" that
fail on bad batches, are abandoned without TRAIN_END or ended mid-run, malformed
messages of every kind, and engines killed at random. Every reply is checked for
framing; the engine must never die of anything but our kill. Build the engine with
ASan/UBSan (make build/san/pgbert_engine) so that a memory error is a crash.

    python3 test/fuzz/stress_engine.py ENGINE SECONDS [SEED] [--idle S] [--big MODEL_DIR]
                                       [--reply-timeout S] [--address-limit MB]

--idle S makes an idle stretch S seconds (what is minutes on a real server);
--big adds a real checkpoint (all-MiniLM-L6-v2) to the models loaded now and then;
--reply-timeout S counts a reply that takes longer as a hang (default 300);
--address-limit MB starts each engine under that RLIMIT_AS, so that allocations fail
as on a server with vm.overcommit_memory = 2 near its commit limit (use the optimized
build: ASan's shadow memory does not fit such a limit); the engine must then answer
"out of memory", not crash or hang.
Exit 0 when the engine survived; 1 with the last operations on a crash or a hang.
"""
import argparse
import collections
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_proto import *  # noqa

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_DIRS = ["test/fixtures/models/sql_cls", "test/fixtures/models/tiny_cls",
              "test/fixtures/models/tiny_odd_cls", "test/fixtures/models/tiny_tanh_f16",
              "test/fixtures/models/tiny_nopool_bf16", "test/fixtures/train/tiny_cls",
              "test/fixtures/train/tiny_odd_cls"]


def read_model(d):
    import json
    with open(os.path.join(d, "config.json"), "rb") as f:
        config = f.read()
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        weights = f.read()
    c = json.loads(config)
    return {"dir": d, "config": config, "weights": weights, "vocab": c["vocab_size"],
            "max_pos": c["max_position_embeddings"], "labels": len(c.get("id2label", {})) or 0}


class Stress:
    def __init__(self, program, seed, idle, big, threads, log, reply_timeout=300, address_limit=None):
        self.reply_timeout = reply_timeout
        self.address_limit = address_limit
        self.program = program
        self.rng = random.Random(seed)
        self.idle = idle
        self.models = [read_model(os.path.join(ROOT, d)) for d in MODEL_DIRS]
        if big:
            self.models.append(read_model(big))
        self.threads = threads
        self.log = log
        self.engine = None
        self.recent = collections.deque(maxlen=40)
        self.counts = collections.Counter()

    def start(self):
        self.engine = Engine(self.program, self.rng.choice(self.threads), timeout=self.reply_timeout,
                             address_limit_mb=self.address_limit)
        self.loaded = {}        # key -> model
        self.trainers = {}      # key -> model trained
        self.next_trainer = 1

    def note(self, what):
        self.recent.append(what)
        self.counts[what.split()[0]] += 1
        if self.log:
            print(what, flush=True)

    # ---- random inputs ----
    def seqs(self, m, bad=False):
        r = self.rng
        n = r.choice([1, 1, 2, 3, 8, 17])
        out = []
        for _ in range(n):
            length = r.choice([1, 2, 3, 5, 16, 40, m["max_pos"]])
            if m["vocab"] > 30000:
                length = min(length, 24)
            s = [r.randrange(m["vocab"]) for _ in range(length)]
            out.append(s)
        if bad:
            kind = r.randrange(3)
            if kind == 0:
                out[0][0] = r.choice([-1, m["vocab"], 1 << 30])
            elif kind == 1:
                out[0] = [1] * (m["max_pos"] + r.randrange(1, 4))
            else:
                out[0] = []
        return out

    def rand_bytes(self, n):
        return bytes(self.rng.randrange(256) for _ in range(n))

    # ---- operations ----
    def op_load(self):
        m = self.rng.choice(self.models)
        key = self.rng.randrange(1, 7)
        self.note("load key=%d %s" % (key, os.path.basename(m["dir"])))
        st, _ = self.engine.load(key, m["config"], m["weights"])
        if st == 0:
            self.loaded[key] = m
        elif st != 5:
            raise AssertionError("load status %d" % st)

    def op_forward(self):
        key = self.rng.randrange(1, 8)
        m = self.loaded.get(key, self.rng.choice(self.models))
        want = self.rng.randrange(4)
        bad = self.rng.random() < 0.15
        # int8 requests quantize a version the first time and then keep both forms
        precision = PRECISION_INT8 if self.rng.random() < 0.25 else PRECISION_FP32
        seqs = self.seqs(m, bad)
        self.note("forward key=%d want=%d precision=%d n=%d bad=%s" % (key, want, precision, len(seqs), bad))
        st, reply = self.engine.forward(key, seqs, want, precision)
        if key not in self.loaded:
            assert st == 1, "forward of an unloaded model: status %d" % st
        elif st == 0:
            assert len(reply) % (4 * len(seqs)) == 0

    def op_evict(self):
        key = self.rng.randrange(1, 8)
        self.note("evict key=%d" % key)
        st, _ = self.engine.evict(key)
        assert st == 0
        self.loaded.pop(key, None)

    def op_threads(self):
        n = self.rng.choice([1, 1, 2, 2, 3, 4])
        self.note("threads %d" % n)
        st, _ = self.engine.threads(n)
        assert st == 0

    def op_idle(self):
        s = self.rng.uniform(0, self.idle)
        self.note("idle %.2f" % s)
        time.sleep(s)

    def op_train_begin(self):
        r = self.rng
        m = r.choice([x for x in self.models if x["vocab"] < 30000] + [self.models[-1]])
        key = (r.randrange(1, 5) << 32) | self.next_trainer
        self.next_trainer += 1
        from_ckpt = r.random() < 0.7
        nc = r.choice([2, 2, 3, 1, 0]) if r.random() < 0.2 else (m["labels"] or 2)
        cw = None
        if r.random() < 0.3:
            cw = [r.choice([0.0, 0.5, 1.0, 2.0]) for _ in range(max(nc, 1))]
        lr = r.choice([1e-3, 5e-5, float("nan"), -1.0]) if r.random() < 0.1 else 1e-3
        self.note("train_begin key=%x %s ckpt=%s nc=%d cw=%s lr=%g" %
                  (key, os.path.basename(m["dir"]), from_ckpt, nc, cw, lr))
        st, _ = self.engine.train_begin(key, m["config"], nc, m["weights"] if from_ckpt else None, cw, lr=lr,
                                        warmup=r.randrange(3), total=r.randrange(10),
                                        dropout=r.choice([0.0, 0.1]), seed=r.randrange(100),
                                        freeze=r.randrange(2))
        if st == 0:
            self.trainers[key] = (m, nc)

    def trainer_key(self):
        if self.trainers and self.rng.random() < 0.9:
            return self.rng.choice(list(self.trainers))
        return self.rng.randrange(1, 1 << 40)

    def op_train(self):
        r = self.rng
        key = self.trainer_key()
        m, nc = self.trainers.get(key, (r.choice(self.models), 2))
        kind = r.choice([TRAIN_ACCUMULATE] * 5 + [TRAIN_STEP] * 3 + [TRAIN_FORWARD] * 2 +
                        [TRAIN_SNAPSHOT, TRAIN_RESTORE, TRAIN_SAVE, TRAIN_END])
        if kind == TRAIN_ACCUMULATE:
            bad = r.random() < 0.2
            seqs = self.seqs(m, bad and r.random() < 0.5)
            labels = [r.randrange(max(nc, 1)) for _ in seqs]
            if bad and r.random() < 0.5:
                labels[0] = r.choice([-1, nc, 1 << 20])
            scale = r.choice([1.0, 0.5, float("nan")]) if bad else 1.0
            self.note("train_accumulate key=%x n=%d bad=%s" % (key, len(seqs), bad))
            st, reply = self.engine.train_accumulate(key, seqs, labels, scale)
        elif kind == TRAIN_FORWARD:
            seqs = self.seqs(m, r.random() < 0.1)
            self.note("train_forward key=%x n=%d" % (key, len(seqs)))
            st, reply = self.engine.train_forward(key, seqs)
        else:
            self.note("train kind=%d key=%x" % (kind, key))
            st, reply = self.engine.train_simple(key, kind)
            if kind == TRAIN_END:
                self.trainers.pop(key, None)
        if key not in self.trainers and kind != TRAIN_END:
            assert st == 1, "training message for an unknown run: status %d" % st

    def op_garbage(self):
        """A malformed request of a random kind: short, truncated fields, random bytes."""
        r = self.rng
        kind = r.randrange(0, 16)
        key = r.choice(list(self.loaded) + list(self.trainers) + [0, 99])
        choice = r.randrange(4)
        if choice == 0:
            payload = self.rand_bytes(r.randrange(0, 64))
        elif choice == 1 and kind in (LOAD,):
            m = r.choice(self.models)
            full = struct.pack("<I", len(m["config"])) + m["config"] + m["weights"]
            payload = full[:r.randrange(len(full))]
        elif choice == 2:
            # a plausible head with lying counts
            payload = struct.pack("<II", r.randrange(6), r.choice([0, 1, 2, 1 << 31, 0xffffffff])) + \
                struct.pack("<4i", 0, r.randrange(-2, 5), r.randrange(-2, 9), 3)
        else:
            fixed = TRAIN_BEGIN_FMT.pack(*[0.001] * 6, r.randrange(-3, 3), r.randrange(-3, 3), 0.1, 0.1, 1,
                                         r.randrange(2), r.choice([-1, 0, 1, 2, 1 << 30]),
                                         r.choice([-5, 0, 2, 1 << 29]), r.randrange(2),
                                         r.choice([0, 3, 1 << 31, 0xffffffff]), 0)
            payload = fixed + self.rand_bytes(r.randrange(0, 32))
        if kind == LOAD and choice != 1:
            payload = struct.pack("<I", r.randrange(0, 64)) + payload
        self.note("garbage kind=%d key=%x len=%d" % (kind, key, len(payload)))
        st, _ = self.engine.ask(kind, key, payload)
        if kind == TRAIN_BEGIN and st == 0:
            self.trainers[key] = (self.models[0], 2)
        if kind == TRAIN_END:
            self.trainers.pop(key, None)
        if kind == EVICT:
            self.loaded.pop(key, None)
        if kind == LOAD and st == 0:
            self.loaded.pop(key, None)  # unknown what it is: forget it

    def op_kill(self):
        self.note("kill")
        self.engine.kill(9)
        self.start()

    def run(self, seconds):
        self.start()
        ops = [(self.op_load, 8), (self.op_forward, 25), (self.op_evict, 4), (self.op_threads, 3),
               (self.op_idle, 2), (self.op_train_begin, 5), (self.op_train, 25), (self.op_garbage, 8),
               (self.op_kill, 0.3)]
        funcs = [f for f, _ in ops]
        weights = [w for _, w in ops]
        end = time.time() + seconds
        n = 0
        try:
            while time.time() < end:
                f = self.rng.choices(funcs, weights)[0]
                f()
                n += 1
        except socket.timeout:
            print("engine did not answer within %g s after %d operations (hung); last operations:\n  %s" %
                  (self.reply_timeout, n, "\n  ".join(self.recent)))
            self.engine.kill(9)
            return 1
        except (EngineGone, AssertionError, ConnectionResetError) as e:
            rc = self.engine.proc.wait()
            print("engine died (exit %s) after %d operations: %r" % (rc, n, e))
            print("last operations:\n  " + "\n  ".join(self.recent))
            return 1
        rc = self.engine.close()
        if rc != 0:
            print("engine exited with %s at the end" % rc)
            return 1
        print("ok: %d operations, %s" % (n, dict(self.counts)))
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine")
    ap.add_argument("seconds", type=float)
    ap.add_argument("seed", type=int, nargs="?", default=1)
    ap.add_argument("--idle", type=float, default=0.2)
    ap.add_argument("--big")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--log", action="store_true")
    ap.add_argument("--reply-timeout", type=float, default=300)
    ap.add_argument("--address-limit", type=int)
    a = ap.parse_args()
    s = Stress(a.engine, a.seed, a.idle, a.big, [int(x) for x in a.threads.split(",")], a.log,
               a.reply_timeout, a.address_limit)
    sys.exit(s.run(a.seconds))


if __name__ == "__main__":
    main()
