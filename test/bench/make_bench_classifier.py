#!/usr/bin/env python3
"""A BertForSequenceClassification checkpoint with MiniLM-L6's encoder, for benchmarks.

    python test/bench/make_bench_classifier.py MINILM_DIR OUT_DIR [MAX_TOKENS]

Copies the encoder and pooler of all-MiniLM-L6-v2 under the "bert." prefix and adds a
2-label (ham/spam) classifier head drawn with a fixed seed, so classify() has MiniLM's
exact cost. Its labels mean nothing: it is for timing, not for accuracy. The tokenizer
config truncates at MAX_TOKENS (default 128). numpy and safetensors only.
"""
import json
import os
import shutil
import sys

import numpy as np
import safetensors.numpy

src, out = sys.argv[1], sys.argv[2]
max_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 128
os.makedirs(out, exist_ok=True)
weights = safetensors.numpy.load_file(os.path.join(src, "model.safetensors"))
tensors = {("bert." + k if not k.startswith("bert.") else k): v for k, v in weights.items()
           if not k.endswith("position_ids")}
with open(os.path.join(src, "config.json")) as f:
    cfg = json.load(f)
rng = np.random.default_rng(42)
tensors["classifier.weight"] = (rng.standard_normal((2, cfg["hidden_size"])) * 0.02).astype(np.float32)
tensors["classifier.bias"] = np.zeros(2, dtype=np.float32)
safetensors.numpy.save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
cfg.update(architectures=["BertForSequenceClassification"], id2label={"0": "ham", "1": "spam"},
           label2id={"ham": 0, "spam": 1})
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
with open(os.path.join(src, "tokenizer_config.json")) as f:
    tok = json.load(f)
tok["model_max_length"] = max_tokens
with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
    json.dump(tok, f, indent=2)
shutil.copy(os.path.join(src, "vocab.txt"), out)
print("wrote", out)
