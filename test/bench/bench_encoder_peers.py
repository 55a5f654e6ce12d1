#!/usr/bin/env python3
"""PyTorch and ONNX Runtime (fp32, CPU) on the shapes of bench_encoder, same thread count.

    python test/bench/bench_encoder_peers.py MODEL_DIR MAILS_TXT THREADS [SECONDS_PER_SHAPE]

Prints one JSON line per implementation and shape, like build/bench_encoder. Inputs are
padded batches with an attention mask (what users run); the mail batch is the first 32
mails tokenized by the model's tokenizer, truncated to 256 tokens and padded to the
longest. ONNX Runtime runs the model exported by torch.onnx and then fused by
onnxruntime.transformers.optimizer (Attention, SkipLayerNorm, BiasGelu), with
intra_op_num_threads = THREADS. With OUTPUT=logits in the environment both run
AutoModelForSequenceClassification and return its logits (the model needs a head), as
bench_encoder does then; otherwise AutoModel and the last hidden state. SHAPES (labels,
comma-separated) runs only those shapes. PRECISION=int8 adds ONNX Runtime on the same model
after onnxruntime.quantization.quantize_dynamic (8-bit weights per output channel, in 7 bits
as it advises for CPUs without VNNI), the peer of bench_encoder's PRECISION=int8.

ROUNDS=N repeats the measurements N times, and PGBERT_CMD (a command printing
bench_encoder's JSON lines) runs pgbert's side inside each round too, so that every
implementation is measured again in every round: on a shared machine whose speed drifts
by tens of percent over minutes, the best round of each compares like with like. Each
line then carries its round number. Model export and session setup happen once.
"""
import copy
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
from copytext import read_lines  # noqa: E402

BATCHES = (1, 8, 32)
LENGTHS = (16, 64, 128, 512)


def shapes(cfg, tok, mails):
    rng = np.random.default_rng(42)
    for B in BATCHES:
        for S in LENGTHS:
            if S > cfg.max_position_embeddings or S > int(os.environ.get("MAX_LEN", S)):
                continue
            ids = rng.integers(1000, cfg.vocab_size, size=(B, S)).astype(np.int64)
            yield "b%d_s%d" % (B, S), ids, np.ones_like(ids)
    enc = tok(mails[:32], truncation=True, max_length=256, padding="longest", return_tensors="np")
    yield "mails32_max256", enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def timeit(fn, seconds):
    fn()
    times, start = [], time.perf_counter()
    while len(times) < 2 or (time.perf_counter() - start < seconds and len(times) < 1000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def flops(cfg, mask):
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    f = 0.0
    for S in mask.sum(axis=1):  # useful work only, as bench_encoder counts it
        f += L * (2 * S * (3 * H * H + H * H + 2 * H * I) + 4 * S * S * H)
    return f


def main():
    model_dir, mails_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
    torch.set_num_threads(threads)
    logits = os.environ.get("OUTPUT") == "logits"
    model = (AutoModelForSequenceClassification if logits else AutoModel).from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = model.config
    mails = read_lines(mails_path)

    wanted = [w for w in os.environ.get("SHAPES", "").split(",") if w]
    all_shapes = [s for s in shapes(cfg, tok, mails) if not wanted or s[0] in wanted]

    rounds = int(os.environ.get("ROUNDS", "1"))
    pgbert_cmd = os.environ.get("PGBERT_CMD")
    current = {"round": None}

    def report(impl, label, B, mask, sec, runs):
        row = {"impl": impl, "shape": label, "batch": B, "tokens": int(mask.sum()),
               "runs": runs, "seconds": round(sec, 6), "seq_per_s": round(B / sec, 2),
               "gflop_per_s": round(flops(cfg, mask) / sec / 1e9, 2)}
        if current["round"] is not None:
            row["round"] = current["round"]
        print(json.dumps(row), flush=True)

    def run_pgbert():
        out = subprocess.run(shlex.split(pgbert_cmd), check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.strip():
                row = json.loads(line)
                row["round"] = current["round"]
                print(json.dumps(row), flush=True)

    def run_torch_shapes():
        for label, ids, mask in all_shapes:
            t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
            t_types = torch.zeros_like(t_ids)

            def run_torch():
                with torch.inference_mode():
                    model(input_ids=t_ids, attention_mask=t_mask, token_type_ids=t_types)

            sec, runs = timeit(run_torch, seconds)
            report("pytorch %s" % torch.__version__.split("+")[0], label, ids.shape[0], mask, sec, runs)

    if rounds == 1 and not pgbert_cmd:
        # PyTorch first: ONNX Runtime's spinning thread pool must not run beside it
        run_torch_shapes()

    import onnxruntime as ort
    from onnxruntime.transformers import optimizer
    tmp = tempfile.mkdtemp()
    raw, fused = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "model_opt.onnx")
    dummy = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long),
             torch.zeros(2, 8, dtype=torch.long))

    class Encoder(torch.nn.Module):
        """Keyword call of the model with the three inputs, for the exporter."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.logits if logits else out.last_hidden_state

    # a copy: exporting leaves the eager model slower (1.1 s -> 1.75 s at b32_s128), which the
    # later rounds' PyTorch measurements would inherit
    torch.onnx.export(Encoder(copy.deepcopy(model)), dummy, raw, input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["output"], opset_version=17, dynamo=False,
                      dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in
                                       ("input_ids", "attention_mask", "token_type_ids")},
                                    "output": {0: "batch"} if logits else {0: "batch", 1: "seq"}})
    opt = optimizer.optimize_model(raw, model_type="bert", num_heads=cfg.num_attention_heads,
                                   hidden_size=cfg.hidden_size)
    opt.save_model_to_file(fused)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sessions = [("onnxruntime %s" % ort.__version__, ort.InferenceSession(fused, so, providers=["CPUExecutionProvider"]))]
    if os.environ.get("PRECISION") == "int8":
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        q8 = os.path.join(tmp, "model_int8.onnx")
        # 7-bit weights per output channel (reduce_range), as ONNX Runtime advises without VNNI; the fused
        # graph's custom ops defeat shape inference, hence the default tensor type
        quantize_dynamic(fused, q8, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        sessions.append(("onnxruntime %s int8" % ort.__version__,
                         ort.InferenceSession(q8, so, providers=["CPUExecutionProvider"])))

    def run_ort_shapes():
        for name, sess in sessions:
            for label, ids, mask in all_shapes:
                types = np.zeros_like(ids)

                def run_ort():
                    sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})

                sec, runs = timeit(run_ort, seconds)
                report(name, label, ids.shape[0], mask, sec, runs)

    if rounds == 1 and not pgbert_cmd:
        run_ort_shapes()
        return
    for r in range(rounds):
        current["round"] = r
        # one implementation at a time: the pause lets the last one's spinning threads sleep
        for run in ([run_pgbert] if pgbert_cmd else []) + [run_torch_shapes, run_ort_shapes]:
            time.sleep(0.5)
            run()


if __name__ == "__main__":
    main()
