#!/usr/bin/env python3
"""Stratified 80/20 split of the SpamAssassin sample, the same for every benchmark side.

    python test/bench/spam_split.py data/spamassassin.csv.gz OUT_DIR

Writes OUT_DIR/train.csv and OUT_DIR/test.csv (columns id, text, label; text = subject, a
newline, body). Within each label, mails are ordered by md5(id) and every fifth goes to
the test set, so the split is fixed and stratified.
"""
import csv
import gzip
import hashlib
import os
import sys

src, out = sys.argv[1], sys.argv[2]
csv.field_size_limit(1 << 30)
with gzip.open(src, "rt", encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
by_label = {}
for r in rows:
    by_label.setdefault(r["label"], []).append(r)
split = {"train": [], "test": []}
for label in sorted(by_label):
    ordered = sorted(by_label[label], key=lambda r: hashlib.md5(r["id"].encode()).hexdigest())
    for i, r in enumerate(ordered):
        split["test" if i % 5 == 0 else "train"].append(r)
for name, part in split.items():
    with open(os.path.join(out, name + ".csv"), "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        for r in sorted(part, key=lambda r: r["id"]):
            w.writerow([r["id"], (r["subject"] or "") + "\n" + r["body"], r["label"]])
print("train %d, test %d" % (len(split["train"]), len(split["test"])))
