#!/usr/bin/env python3
"""Tiny random BERT checkpoints and transformers' outputs on them, for the engine parity test.

For each model below this writes test/fixtures/models/<name>/:
  config.json, model.safetensors   what save_pretrained writes (some variants rewritten:
                                   fp16/bf16 weights, legacy LayerNorm gamma/beta names)
  reference.safetensors            a packed batch and transformers' outputs on it:
    ids, type_ids (int32, tokens back to back), offsets (int32, n_seq + 1),
    hidden (tokens, H), mean (n_seq, H), and when the model has them pooled (n_seq, H),
    logits (n_seq, C)
The reference runs the usual padded batch with an attention mask in float32 (weights saved
in fp16/bf16 are loaded back and upcast, so both sides see the same values), and the
padding is removed afterwards.

    python test/oracle/gen_model_fixtures.py          # needs torch, transformers, safetensors
"""
import json
import os
import sys

import numpy as np
import safetensors.numpy
import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, BertModel

OUT = "test/fixtures/models"
PINNED = {"transformers": "5.23.0", "torch": "2.15.0"}
LENGTHS = [1, 5, 17, 40, 2, 64]

MODELS = {
    # BertForSequenceClassification, erf GELU, fp32, 3 labels
    "tiny_cls": dict(cls=True, act="gelu", eps=1e-12, dtype=None, legacy=False, pooler=True),
    # BertModel, tanh GELU, eps 1e-5, weights stored in fp16, legacy gamma/beta names
    "tiny_tanh_f16": dict(cls=False, act="gelu_new", eps=1e-5, dtype=torch.float16, legacy=True,
                          pooler=True),
    # BertModel without pooler (sentence-transformers style), weights stored in bf16
    "tiny_nopool_bf16": dict(cls=False, act="gelu", eps=1e-12, dtype=torch.bfloat16, legacy=False,
                             pooler=False),
    # odd sizes: hidden 48 with 3 heads (head size 16), 3 layers, intermediate 100, 2 labels
    "tiny_odd_cls": dict(cls=True, act="gelu_pytorch_tanh", eps=1e-12, dtype=None, legacy=False,
                         pooler=True, hidden=48, heads=3, layers=3, intermediate=100, labels=2),
}


def make_config(spec):
    cfg = BertConfig(vocab_size=512, hidden_size=spec.get("hidden", 32),
                     num_hidden_layers=spec.get("layers", 2), num_attention_heads=spec.get("heads", 4),
                     intermediate_size=spec.get("intermediate", 64), max_position_embeddings=64,
                     type_vocab_size=2,
                     hidden_act=spec["act"], layer_norm_eps=spec["eps"], initializer_range=0.2,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if spec["cls"]:
        names = ["ham", "spam", "phish"][:spec.get("labels", 3)]
        cfg.num_labels = len(names)
        cfg.id2label = dict(enumerate(names))
        cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    return cfg


def rewrite_weights(path, dtype, legacy):
    """Store the saved tensors in another dtype and/or with legacy LayerNorm names."""
    from safetensors.torch import load_file, save_file
    tensors = load_file(path)
    out = {}
    for name, t in tensors.items():
        if legacy:
            name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        out[name] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    save_file(out, path, metadata={"format": "pt"})


def load_back(d, spec):
    """The model as transformers sees the stored file, in float32."""
    from safetensors.torch import load_file
    cfg = BertConfig.from_pretrained(d)
    model = (BertForSequenceClassification(cfg) if spec["cls"]
             else BertModel(cfg, add_pooling_layer=spec["pooler"]))
    state = {}
    for name, t in load_file(os.path.join(d, "model.safetensors")).items():
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        state[name] = t.float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        sys.exit("reload mismatch: missing %s unexpected %s" % (missing, unexpected))
    return model.eval()


def reference(model, spec, rng):
    n, S = len(LENGTHS), max(LENGTHS)
    ids = np.zeros((n, S), dtype=np.int64)
    types = np.zeros((n, S), dtype=np.int64)
    mask = np.zeros((n, S), dtype=np.int64)
    for i, L in enumerate(LENGTHS):
        ids[i, :L] = rng.integers(1, 512, size=L)
        if i % 2:
            types[i, :L] = rng.integers(0, 2, size=L)
        mask[i, :L] = 1
    with torch.no_grad():
        kw = dict(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(types),
                  attention_mask=torch.tensor(mask))
        if spec["cls"]:
            out = model(**kw, output_hidden_states=True)
            hidden = out.hidden_states[-1]
            pooled = model.bert.pooler(hidden)
            logits = out.logits
        else:
            out = model(**kw)
            hidden = out.last_hidden_state
            pooled = out.pooler_output if spec["pooler"] else None
            logits = None
    hidden = hidden.numpy()
    packed = np.concatenate([hidden[i, :L] for i, L in enumerate(LENGTHS)])
    ref = {
        "ids": np.concatenate([ids[i, :L] for i, L in enumerate(LENGTHS)]).astype(np.int32),
        "type_ids": np.concatenate([types[i, :L] for i, L in enumerate(LENGTHS)]).astype(np.int32),
        "offsets": np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int32),
        "hidden": packed.astype(np.float32),
        "mean": np.stack([hidden[i, :L].mean(axis=0) for i, L in enumerate(LENGTHS)]).astype(np.float32),
    }
    if pooled is not None:
        ref["pooled"] = pooled.numpy().astype(np.float32)
    if logits is not None:
        ref["logits"] = logits.numpy().astype(np.float32)
    return ref


def main():
    have = {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]}
    for pkg, want in PINNED.items():
        if have[pkg] != want:
            sys.exit("need %s==%s, have %s" % (pkg, want, have[pkg]))
    torch.manual_seed(42)
    rng = np.random.default_rng(42)
    for name, spec in MODELS.items():
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        cfg = make_config(spec)
        model = (BertForSequenceClassification(cfg) if spec["cls"]
                 else BertModel(cfg, add_pooling_layer=spec["pooler"]))
        model.save_pretrained(d, safe_serialization=True)
        path = os.path.join(d, "model.safetensors")
        if spec["dtype"] is not None or spec["legacy"]:
            rewrite_weights(path, spec["dtype"], spec["legacy"])
        ref = reference(load_back(d, spec), spec, rng)
        safetensors.numpy.save_file(ref, os.path.join(d, "reference.safetensors"))
        for extra in ("generation_config.json",):
            if os.path.exists(os.path.join(d, extra)):
                os.remove(os.path.join(d, extra))
        print("wrote", d, sorted(os.listdir(d)))
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("Generated by test/oracle/gen_model_fixtures.py (transformers %s, torch %s, seed 42);\n"
                "see its docstring. Do not edit by hand.\n"
                "test/oracle/gen_sql_fixtures.py generates sql_cls/ and ../sql_cls_probs.json "
                "(see its docstring).\n" % (have["transformers"], have["torch"]))


if __name__ == "__main__":
    main()
