#!/usr/bin/env python3
"""Write the SpamAssassin mails (subject + body) one per line in COPY text escaping.

    python test/bench/mail_lines.py OUT.txt

The input format of build/bench_tokenizer and build/bench_encoder (and of psql's \\copy).
"""
import csv
import gzip
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
from copytext import escape  # noqa: E402

csv.field_size_limit(1 << 30)
rows = csv.DictReader(gzip.open("data/spamassassin.csv.gz", "rt", encoding="utf-8"))
with open(sys.argv[1], "w", encoding="utf-8", newline="\n") as f:
    for r in rows:
        f.write(escape((r["subject"] or "") + "\n" + (r["body"] or "")) + "\n")
