#!/usr/bin/env python3
"""Table, plot and goal check of a GPU benchmark run (bench_gpu + bench_hf.py JSON lines).

    python3 test/gpu/report.py BENCH.jsonl [PLOT.png]

Prints a markdown table per model (pgbert bf16 against transformers eager and compiled, same
run, same card), pgbert's TFLOP/s as a share of the card's bf16 GEMM rate measured in the same
run, and each goal of issue 7 as met or missed. Draws throughput against batch size when
matplotlib is there.
"""
import json
import sys

GOALS = [  # (model, shape, what, threshold in seq/s or a ratio to the compiled peer)
    ("bert-base", "b512_s128", "seq/s", 27000), ("bert-base", "b512_s128", "x compiled", 1.4),
    ("minilm", "b512_s128", "seq/s", 120000), ("minilm", "b512_s128", "x compiled", 1.4),
    ("bert-base", "b32_s128", "x compiled", 1.2), ("minilm", "b32_s128", "x compiled", 1.2),
    ("bert-base", "mixed512", "seq/s", 40000),
    ("bert-base", "train_b32_s128", "seq/s", 1800), ("minilm", "train_b32_s128", "seq/s", 3700),
    ("bert-base", "train_b32_s128", "x compiled", 1.5), ("minilm", "train_b32_s128", "x compiled", 1.5),
]


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip().startswith("{")]
    gemm = next((r["tflop_per_s"] for r in rows if r.get("measure", "").startswith("bf16 gemm")), None)
    get = {}
    for r in rows:
        if "shape" in r and "seq_per_s" in r:
            get[(r["impl"], r["model"], r["shape"])] = r
    impls = ["pgbert", "pgbert buckets", "transformers eager", "transformers compiled"]
    for model in ("bert-base", "minilm"):
        shapes = list(dict.fromkeys(s for (i, m, s) in get if m == model))
        if not shapes:
            continue
        print("\n%s (bf16; seq/s, ms per batch in brackets)\n" % model)
        print("| shape | pgbert | pgbert, attention on cuBLAS buckets | transformers eager | transformers compiled "
              "| pgbert ÷ compiled | pgbert TFLOP/s |")
        print("|---|---|---|---|---|---|---|")
        for s in shapes:
            cells = []
            for i in impls:
                r = get.get((i, model, s))
                cells.append("%.0f (%.3f)" % (r["seq_per_s"], r["ms"]) if r else "–")
            ours, peer = get.get(("pgbert", model, s)), get.get(("transformers compiled", model, s))
            ratio = "%.2f×" % (ours["seq_per_s"] / peer["seq_per_s"]) if ours and peer else "–"
            tf = ""
            if ours:
                tf = "%.0f" % ours["tflop_per_s"]
                if gemm:
                    tf += " (%.0f%% of %.0f)" % (100 * ours["tflop_per_s"] / gemm, gemm)
            print("| %s | %s | %s |" % (s, " | ".join(cells), " | ".join([ratio, tf])))
    print("\ngoals (issue 7):")
    for model, shape, what, want in GOALS:
        ours, peer = get.get(("pgbert", model, shape)), get.get(("transformers compiled", model, shape))
        if ours is None or (what != "seq/s" and peer is None):
            print("  %-9s %-15s %-10s >= %-7g not measured" % (model, shape, what, want))
            continue
        got = ours["seq_per_s"] if what == "seq/s" else ours["seq_per_s"] / peer["seq_per_s"]
        print("  %-9s %-15s %-10s >= %-7g %s %.2f" % (model, shape, what, want, "MET   " if got >= want else "MISSED", got))
    if len(sys.argv) > 2:
        plot(get, sys.argv[2])


def plot(get, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, model in zip(axes, ("bert-base", "minilm")):
        for impl, style in (("pgbert", "o-"), ("transformers eager", "s--"), ("transformers compiled", "^-.")):
            pts = sorted((r["batch"], r["seq_per_s"]) for (i, m, s), r in get.items()
                         if i == impl and m == model and s.startswith("b") and s.endswith("_s128"))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=impl)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch (sequences of 128 tokens)")
        ax.set_ylabel("sequences/s")
        ax.set_title("%s, bf16, H200" % model)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
