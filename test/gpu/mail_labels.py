#!/usr/bin/env python3
"""Write the SpamAssassin mails with labels and a fixed train/test split, one per line.

    python test/gpu/mail_labels.py OUT.tsv        (OUT.tsv.gz: gzip-compressed, 3.6 MB)

Each line is SPLIT TAB LABEL TAB TEXT: SPLIT is "train" or "test", LABEL 0 (ham) or 1
(spam), TEXT the subject, a newline and the body in COPY text escaping (so the text holds
no raw tab or newline). The split is test/bench/spam_split.py's: within each label, mails
ordered by md5(id), every fifth goes to the test set (80/20, stratified, the same for
every benchmark side). Lines are in id order. The input of test_gpu_train --finetune.
"""
import csv
import gzip
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
from copytext import escape  # noqa: E402

csv.field_size_limit(1 << 30)
with gzip.open("data/spamassassin.csv.gz", "rt", encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
split = {}
by_label = {}
for r in rows:
    by_label.setdefault(r["label"], []).append(r)
for label in sorted(by_label):
    ordered = sorted(by_label[label], key=lambda r: hashlib.md5(r["id"].encode()).hexdigest())
    for i, r in enumerate(ordered):
        split[r["id"]] = "test" if i % 5 == 0 else "train"
out = sys.argv[1]
opener = (lambda: gzip.open(out, "wt", encoding="utf-8", newline="\n")) if out.endswith(".gz") else \
    (lambda: open(out, "w", encoding="utf-8", newline="\n"))
with opener() as f:
    for r in sorted(rows, key=lambda r: r["id"]):
        label = {"ham": 0, "spam": 1}[r["label"]]
        text = (r["subject"] or "") + "\n" + (r["body"] or "")
        f.write("%s\t%d\t%s\n" % (split[r["id"]], label, escape(text)))
counts = {}
for s in split.values():
    counts[s] = counts.get(s, 0) + 1
print("train %d, test %d" % (counts.get("train", 0), counts.get("test", 0)))
