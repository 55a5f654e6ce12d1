"""Speak the engine process's protocol (src/engine/serve.h) from Python."""
import os
import resource
import socket
import struct
import subprocess

MAGIC = 0x54524542
(HELLO, LOAD, FORWARD, EVICT, THREADS, TRAIN_BEGIN, TRAIN_ACCUMULATE, TRAIN_STEP,
 TRAIN_FORWARD, TRAIN_SNAPSHOT, TRAIN_RESTORE, TRAIN_SAVE, TRAIN_END) = range(1, 14)
WANT_LOGITS, WANT_MEAN, WANT_CLS, WANT_POOLER = range(4)
PRECISION_FP32, PRECISION_INT8 = range(2)
HDR = struct.Struct("<IHHQQ")
# BtTrainBegin: 6 floats, 2 int32, 2 floats, uint64, 4 int32, uint32, uint32 pad
TRAIN_BEGIN_FMT = struct.Struct("<6f2i2fQ4iII")


class EngineGone(Exception):
    pass


class Engine:
    def __init__(self, program, threads=1, device="cpu", env=None, stderr=None, timeout=None,
                 address_limit_mb=None):
        """timeout: seconds to wait for a reply (socket.timeout past it); address_limit_mb:
        RLIMIT_AS of the engine, so that allocations fail as under strict overcommit."""
        a, b = socket.socketpair()
        a.settimeout(timeout)
        self.sock = a
        os.set_inheritable(b.fileno(), True)
        fd = b.fileno()
        self.proc = subprocess.Popen(
            [program, str(fd), device, str(threads)],
            pass_fds=(fd,), env=env, stderr=stderr,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_AS, (address_limit_mb << 20,) * 2))
            if address_limit_mb else None)
        b.close()
        h, payload = self.read()
        if h[1] != HELLO or h[2] != 0:
            raise RuntimeError("no hello: %r %r" % (h, payload))

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EngineGone()
            buf += chunk
        return bytes(buf)

    def read(self):
        h = HDR.unpack(self._recv(HDR.size))
        payload = self._recv(h[4]) if h[4] else b""
        return h, payload

    def send_raw(self, kind, key, payload=b"", status=0, magic=MAGIC, length=None):
        hdr = HDR.pack(magic, kind, status, key, len(payload) if length is None else length)
        try:
            self.sock.sendall(hdr + payload)
        except (BrokenPipeError, ConnectionResetError):
            raise EngineGone()

    def ask(self, kind, key, payload=b""):
        self.send_raw(kind, key, payload)
        h, reply = self.read()
        return h[2], reply

    # ---- messages ----
    def load(self, key, config, weights):
        return self.ask(LOAD, key, struct.pack("<I", len(config)) + config + weights)

    def forward(self, key, seqs, want=WANT_LOGITS, precision=PRECISION_FP32):
        offs = [0]
        for s in seqs:
            offs.append(offs[-1] + len(s))
        ids = [t for s in seqs for t in s]
        # BtForwardHead: want, n_seq, precision, pad
        payload = struct.pack("<IIII", want, len(seqs), precision, 0) + struct.pack("<%di" % len(offs), *offs) + \
            struct.pack("<%di" % len(ids), *ids)
        return self.ask(FORWARD, key, payload)

    def evict(self, key):
        return self.ask(EVICT, key)

    def threads(self, n):
        return self.ask(THREADS, 0, struct.pack("<I", n))

    def train_begin(self, key, config, num_classes, weights=None, class_weights=None, lr=1e-3,
                    wd=0.0, warmup=0, total=0, dropout=0.1, seed=42, freeze=0):
        cw = class_weights or []
        fixed = TRAIN_BEGIN_FMT.pack(lr, wd, 0.9, 0.999, 1e-8, 1.0, warmup, total, dropout, dropout,
                                     seed, freeze, num_classes, len(cw), 1 if weights else 0,
                                     len(config), 0)
        payload = fixed + struct.pack("<%df" % len(cw), *cw) + config + (weights or b"")
        return self.ask(TRAIN_BEGIN, key, payload)

    @staticmethod
    def batch_payload(seqs, labels=None, scale=1.0):
        offs = [0]
        for s in seqs:
            offs.append(offs[-1] + len(s))
        ids = [t for s in seqs for t in s]
        p = struct.pack("<fI", scale, len(seqs)) + struct.pack("<%di" % len(offs), *offs)
        if labels is not None:
            p += struct.pack("<%di" % len(labels), *labels)
        return p + struct.pack("<%di" % len(ids), *ids)

    def train_accumulate(self, key, seqs, labels, scale=1.0):
        return self.ask(TRAIN_ACCUMULATE, key, self.batch_payload(seqs, labels, scale))

    def train_forward(self, key, seqs):
        return self.ask(TRAIN_FORWARD, key, self.batch_payload(seqs))

    def train_simple(self, key, kind):
        return self.ask(kind, key)

    def close(self, timeout=30):
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self, sig=9):
        self.proc.send_signal(sig)
        self.sock.close()
        return self.proc.wait()
