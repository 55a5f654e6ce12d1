#!/usr/bin/env python3
"""Tiny BertForSequenceClassification models and what torch computes when training them,
for the engine's fine-tuning parity test (test/engine/test_train.c).

For each model below this writes test/fixtures/train/<name>/:
  config.json, model.safetensors   the initial checkpoint, as save_pretrained writes it
  reference.safetensors
    batch<j>.ids, batch<j>.type_ids   int32, packed: the tokens of all sequences back to back
    batch<j>.offsets                  int32 (n_seq + 1): sequence s is tokens offsets[s]..offsets[s+1]-1
    batch<j>.labels                   int32 (n_seq)
    options      float32 [lr, weight_decay, beta1, beta2, eps, max_grad_norm, warmup_steps, total_steps]
    class_weights  float32 (C), when the loss is weighted
    loss0        float32 (1): the loss of batch0 at the initial weights
    grads        float32 (num_params): its gradient, in the ENGINE's flat parameter layout
    losses, lrs, grad_norms  float32 (steps): loss, learning rate and gradient norm (before
                 clipping) of each AdamW step; step k trains on batch<k % NUM_BATCHES>
    final        float32 (num_params): the weights after the last step, engine layout
The engine's layout (src/engine/model.h, BtBertParams) is one flat float32 array: word,
position and token type embeddings, embedding LayerNorm weight and bias, then per kind
stacked over layers: QKV weights (L, 3H, H) with query, key and value rows, QKV biases
(L, 3H), attention output dense weight and bias, attention LayerNorm weight and bias,
intermediate dense weight and bias, output dense weight and bias, output LayerNorm weight
and bias; then pooler weight and bias, classifier weight and bias. flat() below builds it.

The training loop is what transformers' Trainer does with these options: dropout 0 (torch's
RNG cannot be matched), padded batches with an attention mask, CrossEntropyLoss (with the
class weights when given), clip_grad_norm_, torch.optim.AdamW with weight decay on every
parameter but biases and LayerNorm (Trainer.get_decay_parameter_names), and
get_linear_schedule_with_warmup, one scheduler step after each optimizer step. float32,
one thread.

    python test/oracle/gen_train_fixtures.py               # writes the fixtures
    python test/oracle/gen_train_fixtures.py --check-saved DIR
        checks that transformers loads the checkpoints test_train wrote into DIR/<name>/
        (build/test_train test/fixtures/train test/fixtures/models DIR) with no missing or
        unexpected tensors, that it builds the model from them exactly, and that their weights
        are the trained ones (within 1e-4; key biases aside, see test_train.c)
"""
import json
import os
import shutil
import sys

import numpy as np
import safetensors.numpy
import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, Trainer, get_linear_schedule_with_warmup

OUT = "test/fixtures/train"
PINNED = {"transformers": "5.23.0", "torch": "2.15.0"}
STEPS = 20
NUM_BATCHES = 5
OPTIONS = dict(lr=1e-3, weight_decay=0.01, beta1=0.9, beta2=0.999, eps=1e-8, max_grad_norm=1.0,
               warmup=5, total=STEPS)

MODELS = {
    # erf GELU, 3 labels, sequences up to max_position_embeddings
    "tiny_cls": dict(vocab=128, hidden=32, heads=4, layers=2, intermediate=64, max_pos=64,
                     act="gelu", eps=1e-12, labels=3, class_weights=None,
                     lengths=[[1, 5, 17, 40, 2, 64], [9, 3, 30], [12, 1, 7, 20], [64, 4], [2, 2, 16, 33]]),
    # odd sizes: hidden 36, 3 heads of 12, 3 layers, intermediate 100, tanh GELU, eps 1e-5,
    # 2 labels with class weights
    "tiny_odd_cls": dict(vocab=128, hidden=36, heads=3, layers=3, intermediate=100, max_pos=40,
                         act="gelu_new", eps=1e-5, labels=2, class_weights=[0.3, 1.7],
                         lengths=[[1, 7, 40, 3, 23], [11, 5], [2, 19, 8, 1], [40, 6, 13], [3, 27, 9]]),
}


def make_config(spec):
    names = ["ham", "spam", "phish"][:spec["labels"]]
    return BertConfig(vocab_size=spec["vocab"], hidden_size=spec["hidden"], num_hidden_layers=spec["layers"],
                      num_attention_heads=spec["heads"], intermediate_size=spec["intermediate"],
                      max_position_embeddings=spec["max_pos"], type_vocab_size=2, hidden_act=spec["act"],
                      layer_norm_eps=spec["eps"], initializer_range=0.2, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, num_labels=len(names),
                      id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})


def flat(tensors, cfg):
    """The engine's flat parameter layout of a BertForSequenceClassification state (name -> array)."""
    L = cfg.num_hidden_layers
    layer = "bert.encoder.layer.%d."
    parts = [tensors["bert.embeddings.%s" % n] for n in
             ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
              "LayerNorm.weight", "LayerNorm.bias")]
    for kind in ("weight", "bias"):
        parts += [tensors[(layer + "attention.self.%s.%s") % (l, qkv, kind)]
                  for l in range(L) for qkv in ("query", "key", "value")]
    for name in ("attention.output.dense.weight", "attention.output.dense.bias",
                 "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                 "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",
                 "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"):
        parts += [tensors[(layer + name) % l] for l in range(L)]
    parts += [tensors[n] for n in ("bert.pooler.dense.weight", "bert.pooler.dense.bias",
                                   "classifier.weight", "classifier.bias")]
    return np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1) for p in parts])


def make_batch(spec, lengths, rng):
    """A packed batch (engine form) and its labels: random ids with a few [PAD] (id 0) tokens inside."""
    ids, types = [], []
    for i, n in enumerate(lengths):
        seq = rng.integers(1, spec["vocab"], size=n)
        if n > 4:
            seq[rng.integers(1, n)] = 0      # padding_idx row: torch gives it no gradient
        ids.append(seq)
        types.append(rng.integers(0, 2, size=n) if i % 2 else np.zeros(n, dtype=np.int64))
    return {
        "ids": np.concatenate(ids).astype(np.int32),
        "type_ids": np.concatenate(types).astype(np.int32),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32),
        "labels": rng.integers(0, spec["labels"], size=len(lengths)).astype(np.int32),
    }


def padded(batch):
    """The packed batch as transformers takes it: padded to the longest, with an attention mask."""
    off = batch["offsets"]
    n, S = len(off) - 1, int(np.max(np.diff(off)))
    ids = torch.zeros((n, S), dtype=torch.long)
    types = torch.zeros((n, S), dtype=torch.long)
    mask = torch.zeros((n, S), dtype=torch.long)
    for s in range(n):
        a, b = off[s], off[s + 1]
        ids[s, :b - a] = torch.from_numpy(batch["ids"][a:b].astype(np.int64))
        types[s, :b - a] = torch.from_numpy(batch["type_ids"][a:b].astype(np.int64))
        mask[s, :b - a] = 1
    return dict(input_ids=ids, token_type_ids=types, attention_mask=mask), torch.from_numpy(batch["labels"].astype(np.int64))


def loss_of(model, batch, loss_fn):
    inputs, labels = padded(batch)
    return loss_fn(model(**inputs).logits, labels)


def state(model):
    return {n: p.detach().numpy() for n, p in model.named_parameters()}


def generate(name, spec, rng):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    cfg = make_config(spec)
    model = BertForSequenceClassification(cfg)
    model.save_pretrained(d, safe_serialization=True)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(d, extra)):
            os.remove(os.path.join(d, extra))
    model = BertForSequenceClassification.from_pretrained(d).float()
    model.train()                            # dropout is 0: train mode changes nothing else

    batches = [make_batch(spec, lengths, rng) for lengths in spec["lengths"]]
    weights = torch.tensor(spec["class_weights"], dtype=torch.float32) if spec["class_weights"] else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)

    # one step: the loss of batch0 and every gradient
    model.zero_grad()
    loss0 = loss_of(model, batches[0], loss_fn)
    loss0.backward()
    grads = flat({n: p.grad.numpy() for n, p in model.named_parameters()}, cfg)

    # STEPS AdamW steps as transformers' Trainer takes them
    o = OPTIONS
    decay = set(Trainer.get_decay_parameter_names(None, model))
    groups = [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": o["weight_decay"]},
              {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])
    sched = get_linear_schedule_with_warmup(opt, o["warmup"], o["total"])
    losses, lrs, norms = [], [], []
    for k in range(STEPS):
        opt.zero_grad()
        loss = loss_of(model, batches[k % NUM_BATCHES], loss_fn)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), o["max_grad_norm"])))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    if not any(n > o["max_grad_norm"] for n in norms):
        sys.exit("%s: gradient norms %s never reach max_grad_norm: no clipping to test" % (name, norms))
    if lrs[0] != 0.0:
        sys.exit("%s: the first step's learning rate is %g, expected 0 with warm-up" % (name, lrs[0]))

    ref = {"options": np.array([o["lr"], o["weight_decay"], o["beta1"], o["beta2"], o["eps"],
                                o["max_grad_norm"], o["warmup"], o["total"]], dtype=np.float32),
           "loss0": np.array([float(loss0.detach())], dtype=np.float32),
           "grads": grads,
           "losses": np.array(losses, dtype=np.float32),
           "lrs": np.array(lrs, dtype=np.float32),
           "grad_norms": np.array(norms, dtype=np.float32),
           "final": flat(state(model), cfg)}
    if weights is not None:
        ref["class_weights"] = weights.numpy()
    for j, b in enumerate(batches):
        for k, v in b.items():
            ref["batch%d.%s" % (j, k)] = v
    safetensors.numpy.save_file(ref, os.path.join(d, "reference.safetensors"))
    print("wrote %s: %d parameters, loss %.4f -> %.4f, grad norms %.3f..%.3f"
          % (d, grads.size, losses[0], losses[-1], min(norms), max(norms)))


def check_saved(saved_dir):
    """transformers loads the engine's checkpoints as they are, and they hold the trained weights."""
    for name in MODELS:
        d = os.path.join(saved_dir, name)
        shutil.copy(os.path.join(OUT, name, "config.json"), os.path.join(d, "config.json"))
        model, info = BertForSequenceClassification.from_pretrained(d, output_loading_info=True)
        problems = {k: v for k, v in info.items() if v}
        if problems:
            sys.exit("%s: transformers reports %s" % (d, problems))
        got = state(model.float())
        raw = safetensors.numpy.load_file(os.path.join(d, "model.safetensors"))
        if sorted(raw) != sorted(got) or any(not np.array_equal(raw[n], got[n]) for n in raw):
            sys.exit("%s: the model transformers built differs from the file's tensors" % d)
        # key biases aside: their gradient is 0 up to rounding noise, which Adam amplifies
        # differently on each side (see test_train.c)
        ref = safetensors.numpy.load_file(os.path.join(OUT, name, "reference.safetensors"))
        key = flat({n: np.full_like(v, n.endswith("attention.self.key.bias")) for n, v in got.items()},
                   model.config) > 0
        diff = np.abs(flat(got, model.config) - ref["final"])[~key]
        if not float(diff.max()) <= 1e-4:
            sys.exit("%s: weights differ from torch's trained ones by %g" % (d, float(diff.max())))
        print("ok   %s: BertForSequenceClassification.from_pretrained loads all %d tensors exactly; "
              "max |weight - torch's| %.2e (key biases aside)" % (d, len(raw), float(diff.max())))


def main():
    have = {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]}
    for pkg, want in PINNED.items():
        if have[pkg] != want:
            sys.exit("need %s==%s, have %s" % (pkg, want, have[pkg]))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    if len(sys.argv) == 3 and sys.argv[1] == "--check-saved":
        check_saved(sys.argv[2])
        return
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    torch.manual_seed(42)
    rng = np.random.default_rng(42)
    for name, spec in MODELS.items():
        generate(name, spec, rng)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("Generated by test/oracle/gen_train_fixtures.py (transformers %s, torch %s, seed 42);\n"
                "see its docstring. Do not edit by hand.\n" % (have["transformers"], have["torch"]))


if __name__ == "__main__":
    main()
