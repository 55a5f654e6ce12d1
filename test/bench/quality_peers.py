#!/usr/bin/env python3
"""The peers of the quality benchmark: HF Trainer fine-tuning the same MiniLM with the same
recipe, and a TF-IDF + logistic regression baseline, on spam_split.py's split.

    python test/bench/quality_peers.py SPLIT_DIR MINILM_DIR EPOCHS MAX_LENGTH LR THREADS [SEEDS]

SEEDS is a comma-separated list (default 42); HF Trainer runs once per seed. TESTS (in the
environment, default "test") names the test sets, comma-separated: each is SPLIT_DIR/NAME.csv
(quality_drift.sh passes the later period and its resamples).

Prints one JSON line per method and test set: accuracy (with the set's name), spam recall
where a label is "spam", training seconds, training rows/s.
Needs torch, transformers, accelerate and scikit-learn (not a CI dependency).
"""
import csv
import json
import os
import sys
import time

csv.field_size_limit(1 << 30)
split, minilm = sys.argv[1], sys.argv[2]
epochs, max_length, lr, threads = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
seeds = [int(s) for s in (sys.argv[7] if len(sys.argv) > 7 else "42").split(",")]


def load(name):
    with open(os.path.join(split, name + ".csv"), encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


train = load("train")
tests = {name: load(name) for name in os.environ.get("TESTS", "test").split(",")}
labels = sorted({r["label"] for r in train})
y_train = [labels.index(r["label"]) for r in train]
y_tests = {name: [labels.index(r["label"]) for r in rows] for name, rows in tests.items()}


def report(method, name, pred, **extra):
    """One JSON line: the method's accuracy on one test set (and spam recall)."""
    y = y_tests[name]
    line = {"method": method, "set": name, "accuracy": float(sum(int(p) == t for p, t in zip(pred, y)) / len(y))}
    if "spam" in labels:
        spam = labels.index("spam")
        line["spam_recall"] = float(sum(int(p) == t for p, t in zip(pred, y) if t == spam) / max(1, y.count(spam)))
    line.update(extra)
    print(json.dumps(line), flush=True)

# TF-IDF + logistic regression
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

t0 = time.perf_counter()
vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
clf = LogisticRegression(C=10.0, max_iter=5000).fit(vec.fit_transform([r["text"] for r in train]), y_train)
seconds = time.perf_counter() - t0
for name, rows in tests.items():
    report("TF-IDF + logistic regression", name, clf.predict(vec.transform([r["text"] for r in rows])),
           train_seconds=round(seconds, 1))

# HF Trainer, same model, same recipe
import torch
from transformers import (BertForSequenceClassification, BertTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
import transformers

torch.set_num_threads(threads)
transformers.utils.logging.set_verbosity_error()
tok = BertTokenizer.from_pretrained(minilm)


class Rows(torch.utils.data.Dataset):
    def __init__(self, rows, ys):
        self.enc = tok([r["text"] for r in rows], truncation=True, max_length=max_length)
        self.ys = ys

    def __len__(self):
        return len(self.ys)

    def __getitem__(self, i):
        item = {k: v[i] for k, v in self.enc.items()}
        item["labels"] = self.ys[i]
        return item


for seed in seeds:
    # from_pretrained draws the new head from torch's generator; seed it as Trainer would
    transformers.set_seed(seed)
    model = BertForSequenceClassification.from_pretrained(minilm, num_labels=len(labels),
                                                          id2label=dict(enumerate(labels)),
                                                          label2id={l: i for i, l in enumerate(labels)})
    args = TrainingArguments(output_dir=os.path.join(split, "hf"), num_train_epochs=epochs,
                             per_device_train_batch_size=32, per_device_eval_batch_size=32, learning_rate=lr,
                             weight_decay=0.0, warmup_steps=0, lr_scheduler_type="linear", max_grad_norm=1.0,
                             seed=seed, save_strategy="no", report_to=[], use_cpu=True, logging_steps=1000,
                             dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Rows(train, y_train),
                      data_collator=DataCollatorWithPadding(tok))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    for name, rows in tests.items():
        pred = trainer.predict(Rows(rows, y_tests[name])).predictions.argmax(-1)
        report("HF Trainer, MiniLM-L6 fine-tuned", name, pred, seed=seed, train_seconds=round(seconds, 1),
               train_rows_per_s=round(epochs * len(train) / seconds, 2))
