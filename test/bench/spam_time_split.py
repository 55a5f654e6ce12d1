#!/usr/bin/env python3
"""Time-ordered split of the SpamAssassin sample, for the drift benchmark (quality_drift.sh).

    python test/bench/spam_time_split.py data/spamassassin.csv.gz OUT_DIR

The CSV keeps no Date header, but the corpus numbers each source's files in arrival
order, so the number in `id` (easy-ham-1/00042) orders a source's mails in time. Per
source, the oldest 60% form the labelled past and the newest 40% the later period:

  train.csv        the oldest 54% of each source (what a model is trained on)
  calibration.csv  the next 6%: the newest labelled rows, held out for calibration
  later.csv        the newest 40%, with the source's own mix (15% spam)
  later_p15.csv, later_p50.csv, later_p85.csv
                   the later period resampled to 15%, 50% and 85% spam (as many mails
                   as the period allows; ham keeps its easy/hard mix; chosen by md5 of id)

Columns id, text, label; text = subject, a newline, body (as spam_split.py).
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


def number(r):
    return int(r["id"].rsplit("/", 1)[1])


parts = {"train": [], "calibration": [], "later": []}
for source in sorted({r["source"] for r in rows}):
    mine = sorted((r for r in rows if r["source"] == source), key=number)
    past = int(len(mine) * 0.6)
    cut = int(len(mine) * 0.54)
    parts["train"] += mine[:cut]
    parts["calibration"] += mine[cut:past]
    parts["later"] += mine[past:]


def digest(r):
    return hashlib.md5(r["id"].encode()).hexdigest()


later_spam = sorted((r for r in parts["later"] if r["label"] == "spam"), key=digest)
later_ham = sorted((r for r in parts["later"] if r["label"] == "ham"), key=digest)
for pct in (15, 50, 85):
    p = pct / 100
    n = int(min(len(later_spam) / p, len(later_ham) / (1 - p)))
    n_spam = round(n * p)
    parts["later_p%d" % pct] = later_spam[:n_spam] + later_ham[:n - n_spam]


def write(name, part):
    with open(os.path.join(out, name + ".csv"), "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        for r in sorted(part, key=lambda r: r["id"]):
            w.writerow([r["id"], (r["subject"] or "") + "\n" + r["body"], r["label"]])


for name, part in parts.items():
    write(name, part)
    spam = sum(r["label"] == "spam" for r in part)
    print("%s: %d mails, %d spam (%.1f%%)" % (name, len(part), spam, 100.0 * spam / len(part)))
