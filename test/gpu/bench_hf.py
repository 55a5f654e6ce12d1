#!/usr/bin/env python3
"""The peer of build/bench_gpu: Hugging Face transformers + torch on the same GPU, same shapes.

    python3 test/gpu/bench_hf.py [--models bert-base,minilm] [--seconds 2] [--no-compile] [--no-train]

Random-init BertForSequenceClassification models (2 labels) of bert-base and all-MiniLM-L6-v2
shapes, attn_implementation="sdpa", bf16 weights, inference_mode; each shape eager and under
torch.compile(mode="reduce-overhead") (CUDA graphs). Shapes as bench_gpu.c: batch 1/8/32/128/512
at 128 tokens and "mixed512" (512 rows of lengths 1 + round(127 u^1.5), padded to the longest
with an attention mask, as a user of transformers would). Each call includes copying the logits
to the host, as pgbert's does. Training: batch 32 x 128 tokens, fp32 weights under bf16
autocast, fused AdamW, eager and compiled. Also the bf16 GEMM rate of the card (8192^3, random
data). Prints one JSON line per measurement. Test-only: never a runtime dependency of pgbert.
"""
import argparse
import json
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

SHAPES = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}


def flops(cfg, lengths):
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    return sum(L * (2 * S * (3 * H * H + H * H + 2 * H * I) + 4 * S * S * H) for S in lengths)


DEV = "cuda"


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def empty_cache():
    if DEV == "cuda":
        torch.cuda.empty_cache()


def median_time(fn, seconds, min_runs=10):
    for _ in range(3):
        fn()
    sync()
    times = []
    start = time.perf_counter()
    if DEV == "cpu":
        min_runs = 1
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], times[len(times) * 9 // 10], len(times)


def emit(**kw):
    print(json.dumps(kw), flush=True)


def gemm_rate():
    a = torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16)
    med, _, _ = median_time(lambda: a @ b, 1.0)
    emit(impl="torch", measure="bf16 gemm 8192^3", tflop_per_s=round(2 * 8192 ** 3 / med / 1e12, 1))


def inference(name, seconds, compile_too, batches=(1, 8, 32, 128, 512), rows=512):
    cfg = BertConfig(**SHAPES[name], num_labels=2, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).to(DEV).to(torch.bfloat16).eval()
    g = torch.Generator(device="cpu").manual_seed(42)
    cases = []
    for b in batches:
        ids = torch.randint(1000, cfg.vocab_size, (b, 128), generator=g).to(DEV)
        cases.append(("b%d_s128" % b, ids, torch.ones_like(ids), [128] * b))
    lengths = [1 + round(127 * ((i + 0.5) / rows) ** 1.5) for i in range(rows)]
    ids = torch.randint(1000, cfg.vocab_size, (rows, 128), generator=g)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = ids * mask
    cases.append(("mixed%d" % rows, ids.to(DEV), mask.to(DEV), lengths))
    variants = [("eager", model)]
    if compile_too:
        variants.append(("compiled", torch.compile(model, mode="reduce-overhead")))
    for label, ids, mask, lens in cases:
        for kind, m in variants:
            with torch.inference_mode():
                fn = lambda: m(input_ids=ids, attention_mask=mask).logits.float().cpu()  # noqa: E731
                try:
                    med, p90, runs = median_time(fn, seconds)
                except Exception as e:  # a compile failure is a result too
                    emit(impl="transformers " + kind, model=name, shape=label, error=str(e)[:200])
                    continue
            emit(impl="transformers " + kind, model=name, precision="bf16", shape=label, batch=len(lens),
                 tokens=sum(lens), runs=runs, ms=round(med * 1e3, 4), p90_ms=round(p90 * 1e3, 4),
                 seq_per_s=round(len(lens) / med, 1), tflop_per_s=round(flops(cfg, lens) / med / 1e12, 1))
    del model, variants
    empty_cache()


def training(name, seconds, compile_too, batch=32):
    cfg = BertConfig(**SHAPES[name], num_labels=2, attn_implementation="sdpa")
    torch.manual_seed(0)
    g = torch.Generator(device="cpu").manual_seed(42)
    ids = torch.randint(1000, cfg.vocab_size, (batch, 128), generator=g).to(DEV)
    labels = torch.randint(0, 2, (batch,), generator=g).to(DEV)
    for kind in ("eager", "compiled") if compile_too else ("eager",):
        model = BertForSequenceClassification(cfg).to(DEV).train()
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
        fwd = torch.compile(model) if kind == "compiled" else model

        def step():
            with torch.autocast(DEV, dtype=torch.bfloat16):
                loss = fwd(input_ids=ids, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        try:
            med, _, runs = median_time(step, seconds)
        except Exception as e:
            emit(impl="transformers " + kind, model=name, shape="train_b32_s128", error=str(e)[:200])
            continue
        emit(impl="transformers " + kind, model=name, precision="bf16 autocast", shape="train_b32_s128",
             batch=32, tokens=32 * 128, runs=runs, ms=round(med * 1e3, 3), seq_per_s=round(32 / med, 1),
             tflop_per_s=round(3 * flops(cfg, [128] * 32) / med / 1e12, 1))
        model = opt = fwd = None
        empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="bert-base,minilm")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu: a quick dry run of this script, no numbers")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, to check the script itself")
    a = ap.parse_args()
    global DEV
    DEV = a.device
    torch.backends.cuda.matmul.allow_tf32 = False
    emit(impl="torch", version=torch.__version__,
         device=torch.cuda.get_device_name() if DEV == "cuda" else "cpu")
    if DEV == "cuda":
        gemm_rate()
    for name in a.models.split(","):
        if a.smoke:
            inference(name, a.seconds, not a.no_compile, batches=(1, 2), rows=4)
        else:
            inference(name, a.seconds, not a.no_compile)
        if not a.no_train:
            training(name, a.seconds, not a.no_compile, batch=2 if a.smoke else 32)


if __name__ == "__main__":
    main()
