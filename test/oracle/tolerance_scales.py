#!/usr/bin/env python3
"""The scales behind the SQL and client suites' tolerances, from a float64 pass (numpy) of
the fixture classifier test/fixtures/models/sql_cls over its 122 texts: the largest sum
of the classifier's term magnitudes, sum_i |W_ci pooled_i| + |b_c| (testkit.SQL_CLS_LOGIT_SCALE),
and the largest magnitude of a last hidden state (sql/batching.sql's embedding bound).

    python test/oracle/tolerance_scales.py [--check]

With --check, fails when a scale exceeds the value the suites were derived with: a new
fixture or new texts then need their tolerances derived again.
"""
import json
import math
import os
import sys

import numpy as np
import safetensors.numpy
from transformers import BertTokenizer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "client"))

FIXTURE = "test/fixtures/models/sql_cls"
TEXTS = "test/fixtures/sql_cls_probs.json"
HIDDEN_SCALE = 4.02        # sql/batching.sql: the embeddings' bound was derived at this scale


def layer_norm(w, x, name, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]


def dense(w, x, name):
    return x @ w[name + ".weight"].T + w[name + ".bias"]


def last_hidden(w, cfg, ids):
    """BertModel's last hidden state for one sequence, in float64 (exact erf GELU)."""
    H, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    d = H // heads
    erf = np.vectorize(math.erf)
    x = (w["bert.embeddings.word_embeddings.weight"][ids] + w["bert.embeddings.token_type_embeddings.weight"][0]
         + w["bert.embeddings.position_embeddings.weight"][:len(ids)])
    x = layer_norm(w, x, "bert.embeddings.LayerNorm", eps)
    for layer in range(cfg["num_hidden_layers"]):
        p = "bert.encoder.layer.%d." % layer
        q, k, v = (dense(w, x, p + "attention.self." + t) for t in ("query", "key", "value"))
        ctx = np.zeros_like(x)
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            s = q[:, cols] @ k[:, cols].T / math.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            ctx[:, cols] = (s / s.sum(-1, keepdims=True)) @ v[:, cols]
        x = layer_norm(w, x + dense(w, ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm", eps)
        inner = dense(w, x, p + "intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / math.sqrt(2)))
        x = layer_norm(w, x + dense(w, inner, p + "output.dense"), p + "output.LayerNorm", eps)
    return x


def main():
    import testkit
    w = {k: v.astype(np.float64) for k, v in safetensors.numpy.load_file(FIXTURE + "/model.safetensors").items()}
    with open(FIXTURE + "/config.json") as f:
        cfg = json.load(f)
    tok = BertTokenizer.from_pretrained(FIXTURE)
    with open(TEXTS) as f:
        texts = [r["text"] for r in json.load(f)]
    logit_scale = hidden_scale = 0.0
    for text in texts:
        hidden = last_hidden(w, cfg, tok(text, truncation=True, max_length=128)["input_ids"])
        pooled = np.tanh(dense(w, hidden[0], "bert.pooler.dense"))
        terms = np.abs(w["classifier.weight"]) @ np.abs(pooled) + np.abs(w["classifier.bias"])
        logit_scale = max(logit_scale, terms.max())
        hidden_scale = max(hidden_scale, np.abs(hidden).max())
    print("classifier terms: sum |W_ci pooled_i| + |b_c| <= %.4f (suites use %.2f)"
          % (logit_scale, testkit.SQL_CLS_LOGIT_SCALE))
    print("last hidden states: |h| <= %.4f (suites use %.2f)" % (hidden_scale, HIDDEN_SCALE))
    if "--check" in sys.argv[1:]:
        ok = logit_scale <= testkit.SQL_CLS_LOGIT_SCALE and hidden_scale <= HIDDEN_SCALE
        print("tolerance scales: %s" % ("ok" if ok else "exceeded: derive the tolerances again"))
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
