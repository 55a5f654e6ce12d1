#!/usr/bin/env python3
"""Summarize the drift benchmark's JSON lines (quality_drift.sh) as Markdown tables.

    python test/bench/drift_table.py ALL.jsonl

Per method and later set: accuracy and spam recall as the mean over seeds with the
lowest and highest seed in brackets, and for prior adaptation the estimated spam share
against the true one.
"""
import json
import sys
from collections import defaultdict

SETS = ["later", "later_p15", "later_p50", "later_p85"]
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith('{"method"')]
groups = defaultdict(list)
for r in rows:
    name = r["method"]
    if r.get("truncation") == "head_tail":
        name += ", head+tail"
    groups[(name, r["set"])].append(r)


def spread(values, scale=100.0, digits=2):
    """Mean [min-max] of a list, as percentages by default."""
    v = [x * scale for x in values if x is not None]
    if not v:
        return ""
    mean = sum(v) / len(v)
    if len(v) == 1:
        return "%.*f" % (digits, mean)
    return "%.*f [%.*f-%.*f]" % (digits, mean, digits, min(v), digits, max(v))


methods = []
for name, _ in groups:
    if name not in methods:
        methods.append(name)
print("| method | later set (spam share) | seeds | accuracy % | spam recall % |")
print("|---|---|---|---|---|")
for s in SETS:
    for m in methods:
        g = groups.get((m, s))
        if not g:
            continue
        share = g[0].get("spam_prior")
        label = s if share is None else "%s (%.0f%%)" % (s, 100 * share)
        print("| %s | %s | %d | %s | %s |" % (m, label, len(g), spread([r["accuracy"] for r in g]),
                                            spread([r.get("spam_recall") for r in g])))
print()
print("| method | later set | true spam share | estimated (per seed) | 95% interval (per seed) |")
print("|---|---|---|---|---|")
for m in methods:
    for s in SETS:
        g = [r for r in groups.get((m, s), []) if r.get("estimated_spam_prior") is not None]
        if not g:
            continue
        print("| %s | %s | %.3f | %s | %s |" % (m, s, g[0]["spam_prior"],
                                               ", ".join("%.3f" % r["estimated_spam_prior"] for r in g),
                                               ", ".join("[%.3f, %.3f]" % (r["low"], r["high"]) for r in g)))
