#!/usr/bin/env python3
"""PyTorch CPU fine-tuning throughput on the shapes of test/bench/bench_train.c, for a ratio.

    python test/bench/bench_train_torch.py [THREADS [SECONDS [BATCH [LENGTH]]]]   defaults: 2, 20, 32, 128

A randomly initialized BertForSequenceClassification with all-MiniLM-L6-v2's sizes (vocab
30522, hidden 384, 6 layers, 12 heads, intermediate 1536, 2 labels, dropout 0.1) trains on a
fixed batch of BATCH random sequences of LENGTH tokens (all the same length: no padding), each
step as transformers' Trainer takes it: forward with labels, backward, clip_grad_norm_(1.0),
AdamW, linear schedule. Modes: full fine-tuning, classifier only (the encoder and pooler frozen,
requires_grad False), and an inference forward pass (eval, inference_mode). One warm-up step, then
steps until SECONDS have passed (at least 3); the median is printed as one JSON line per mode,
like bench_train. float32, torch.set_num_threads(THREADS).
"""
import json
import resource
import sys
import time

import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, get_linear_schedule_with_warmup


def main():
    args = sys.argv[1:]
    threads = int(args[0]) if len(args) > 0 else 2
    seconds = float(args[1]) if len(args) > 1 else 20.0
    batch = int(args[2]) if len(args) > 2 else 32
    length = int(args[3]) if len(args) > 3 else 128
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu",
                     layer_norm_eps=1e-12, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, num_labels=2)
    ids = torch.randint(1000, 30000, (batch, length))
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    labels = torch.arange(batch) % 2

    for mode in ("finetune", "freeze_encoder", "inference_forward"):
        model = BertForSequenceClassification(cfg)
        if mode == "freeze_encoder":
            for p in model.bert.parameters():
                p.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        sched = get_linear_schedule_with_warmup(opt, 0, 1000000)

        def step():
            if mode == "inference_forward":
                model.eval()
                with torch.inference_mode():
                    model(input_ids=ids, attention_mask=mask)
                return
            model.train()
            opt.zero_grad()
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()

        step()
        times = []
        start = time.monotonic()
        while len(times) < 3 or time.monotonic() - start < seconds:
            t0 = time.monotonic()
            step()
            times.append(time.monotonic() - t0)
        times.sort()
        median = times[len(times) // 2]
        print(json.dumps({"mode": mode, "backend": "pytorch %s, transformers %s"
                          % (torch.__version__.split("+")[0], transformers.__version__),
                          "threads": threads, "batch": batch, "length": length, "steps": len(times),
                          "median_step_s": round(median, 4), "seq_per_s": round(batch / median, 2),
                          "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
