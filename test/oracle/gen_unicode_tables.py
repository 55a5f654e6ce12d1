#!/usr/bin/env python3
"""Generate src/engine/reference_tables.h: where HF tokenizers' Unicode data differs from utf8proc's.

The fast BERT tokenizer (huggingface/tokenizers) classifies characters with
Unicode 8.0 tables, decomposes with Unicode 9.0 tables and lowercases with
Rust's std; utf8proc (Debian bookworm: 2.8, Unicode 15.0) is newer. This
script asks the reference about every code point, asks our engine (through
build/unidump) what utf8proc alone says, and writes the differences as
correction tables. It then rebuilds the engine and checks, for every code
point and four settings, that the engine's normalized words equal the
reference's. Exit status is nonzero on any mismatch.

Run from the repository root, with the oracle virtualenv (test/oracle/requirements.txt):
    python test/oracle/gen_unicode_tables.py            # write the header and verify
    python test/oracle/gen_unicode_tables.py --check    # verify the committed header only
"""
import argparse
import os
import subprocess
import sys
import tempfile

import tokenizers
from tokenizers import normalizers, pre_tokenizers

REFERENCE_VERSION = "0.23.3"
HEADER = "src/engine/reference_tables.h"
VOCAB = "data/pgbert_vocab_uncased.txt"

CONTROL, SPACE, PUNCT, MARK = 0x01, 0x02, 0x04, 0x08
FLAG_MASK = CONTROL | SPACE | PUNCT | MARK

# (lowercase, strip_accents, chinese_chars) checked code point by code point
SETTINGS = [(1, 1, 1), (0, 0, 1), (1, 0, 1), (0, 1, 0)]


def codepoints():
    for cp in range(0x110000):
        if not 0xD800 <= cp <= 0xDFFF:
            yield cp


def seq(s):
    return ".".join("%X" % ord(ch) for ch in s)


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def engine_defaults():
    out = {}
    for line in run(["build/unidump", "defaults"]).splitlines():
        cp, flags, ccc, decomp, lower = line.split(" ")
        out[int(cp, 16)] = (int(flags, 16), int(ccc, 16), decomp, lower)
    return out


def reference_props(defaults):
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                       strip_accents=False, lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                       strip_accents=True, lowercase=False)
    lower = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                       strip_accents=False, lowercase=True)
    nfd = normalizers.NFD()
    pre = pre_tokenizers.BertPreTokenizer()

    flag_diff, no_decomp, starters, lower_diff, problems = {}, [], [], {}, []
    for cp in codepoints():
        c = chr(cp)
        dflags, dccc, ddecomp, dlower = defaults[cp]
        f = 0
        cleaned = clean.normalize_str(c)
        if cleaned == "":
            f |= CONTROL
        words = [w for w, _ in pre.pre_tokenize_str("a" + c + "b")]
        if words == ["a", "b"]:
            f |= SPACE
        elif words == ["a", c, "b"]:
            f |= PUNCT
        elif words != ["a" + c + "b"]:
            problems.append("U+%04X: unexpected pre-tokenization %r" % (cp, words))
        if not f & CONTROL and (cleaned == " ") != bool(f & SPACE) and c != " ":
            problems.append("U+%04X: clean_text and pre-tokenizer disagree on whitespace" % cp)
        decomposed = nfd.normalize_str(c)
        if decomposed == c:
            if strip.normalize_str(c) == "":
                f |= MARK
        else:
            f |= dflags & MARK  # never seen by the strip stage: keep utf8proc's
        if f != dflags & FLAG_MASK:
            flag_diff[cp] = f
        if seq(decomposed) != ddecomp:
            if decomposed == c:
                no_decomp.append(cp)
            else:
                problems.append("U+%04X: reference decomposes to %s, utf8proc to %s"
                                % (cp, seq(decomposed), ddecomp))
        if dccc:
            # does the reference know cp's combining class? probe canonical reordering
            low, high = "\u0334", "\u0345"  # ccc 1 and ccc 240
            known = (nfd.normalize_str("a" + c + low) != "a" + c + low if dccc > 1
                     else nfd.normalize_str("a" + high + c) != "a" + high + c)
            if not known and decomposed == c:
                starters.append(cp)
        lowered = lower.normalize_str(c)
        if seq(lowered) != dlower:
            if not 1 <= len(lowered) <= 3:
                problems.append("U+%04X: lowercase of length %d" % (cp, len(lowered)))
            lower_diff[cp] = lowered
    return flag_diff, no_decomp, starters, lower_diff, problems


def ranges(flag_diff):
    out = []
    for cp in sorted(flag_diff):
        f = flag_diff[cp]
        if out and out[-1][1] == cp - 1 and out[-1][2] == f:
            out[-1][1] = cp
        else:
            out.append([cp, cp, f])
    return out


def write_header(path, utf8proc_unicode, flag_diff, no_decomp, starters, lower_diff):
    lines = [
        "/*",
        " * reference_tables.h - GENERATED by test/oracle/gen_unicode_tables.py; do not edit.",
        " *",
        " * Code points where Hugging Face tokenizers %s (Unicode 8.0 categories," % REFERENCE_VERSION,
        " * Unicode 9.0 NFD, Rust lowercasing) differs from utf8proc (Unicode %s)." % utf8proc_unicode,
        " */",
        '#define BT_REF_TABLES_ID "tokenizers %s vs utf8proc Unicode %s"' % (REFERENCE_VERSION, utf8proc_unicode),
        '#define BT_REF_UTF8PROC_UNICODE "%s"' % utf8proc_unicode,
        "",
        "typedef struct { int32_t lo, hi; uint8_t flags; } BtRefFlagRange;",
        "typedef struct { int32_t cp; int8_t n; int32_t to[3]; } BtRefLower;",
        "",
        "/* CONTROL|SPACE|PUNCT|MARK flags of these ranges, as the reference sees them */",
        "static const BtRefFlagRange bt_ref_flags[] = {",
    ]
    rs = ranges(flag_diff) or [[-2, -2, 0]]
    lines += ["\t{0x%04X, 0x%04X, 0x%02X}," % tuple(r) if r[0] >= 0 else "\t{-2, -2, 0}," for r in rs]
    lines += ["};", "", "/* the reference does not decompose these (assigned after Unicode 9.0) */",
              "static const int32_t bt_ref_no_decomp[] = {"]
    lines += wrap(no_decomp)
    lines += ["};", "", "/* the reference treats these as starters (combining class unknown to it) */",
              "static const int32_t bt_ref_starters[] = {"]
    lines += wrap(starters)
    lines += ["};", "", "/* lowercase mappings that differ from utf8proc_tolower */",
              "static const BtRefLower bt_ref_lower[] = {"]
    for cp in sorted(lower_diff):
        to = [ord(ch) for ch in lower_diff[cp]]
        lines.append("\t{0x%04X, %d, {%s}}," % (cp, len(to), ", ".join("0x%04X" % t for t in to)))
    if not lower_diff:
        lines.append("\t{-1, 1, {-1}},")
    lines += ["};", ""]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines))


def wrap(cps):
    if not cps:
        return ["\t-1"]
    items = ["0x%04X" % cp for cp in cps]
    return ["\t" + ", ".join(items[i:i + 8]) + "," for i in range(0, len(items), 8)]


def verify_words():
    """Engine vs reference normalized words of 'x' + c + 'x' for every code point."""
    pre = pre_tokenizers.BertPreTokenizer()
    failures = 0
    for lower_, strip_, chinese in SETTINGS:
        norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=bool(chinese),
                                          strip_accents=bool(strip_), lowercase=bool(lower_))
        out = run(["build/unidump", "words", VOCAB, str(lower_), str(strip_), str(chinese)])
        bad = 0
        for line in out.split("\n"):
            if not line:
                continue
            cp_hex, _, got = line.partition("\t")
            cp = int(cp_hex, 16)
            words = [w for w, _ in pre.pre_tokenize_str(norm.normalize_str("x" + chr(cp) + "x"))]
            want = " ".join(seq(w) for w in words)
            if got != want:
                bad += 1
                if bad <= 10:
                    print("  setting lower=%d strip=%d chinese=%d U+%04X: engine %s, reference %s"
                          % (lower_, strip_, chinese, cp, got, want))
        print("per-code-point words, lower=%d strip=%d chinese=%d: %d mismatches"
              % (lower_, strip_, chinese, bad))
        failures += bad
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true",
                    help="do not write; fail if the committed header differs from a fresh one")
    args = ap.parse_args()
    if tokenizers.__version__ != REFERENCE_VERSION:
        sys.exit("need tokenizers==%s, have %s" % (REFERENCE_VERSION, tokenizers.__version__))

    subprocess.run(["make", "-s", "build/unidump"], check=True)
    defaults = engine_defaults()
    flag_diff, no_decomp, starters, lower_diff, problems = reference_props(defaults)
    for p in problems:
        print("problem:", p)
    utf8proc_unicode = run(["build/unidump", "version"]).strip()
    print("utf8proc Unicode %s; overrides: %d flag ranges (%d code points), %d no-decomp, "
          "%d starters, %d lowercase" % (utf8proc_unicode, len(ranges(flag_diff)), len(flag_diff),
                                         len(no_decomp), len(starters), len(lower_diff)))
    target = HEADER
    if args.check:
        fd, target = tempfile.mkstemp(suffix=".h")
        os.close(fd)
    write_header(target, utf8proc_unicode, flag_diff, no_decomp, starters, lower_diff)
    failures = len(problems)
    if args.check:
        same = open(target, encoding="utf-8").read() == open(HEADER, encoding="utf-8").read()
        os.unlink(target)
        print("committed %s is %s" % (HEADER, "up to date" if same else "STALE"))
        failures += not same
    else:
        subprocess.run(["make", "-s", "build/unidump"], check=True)
    failures += verify_words()
    print("unicode tables: %s" % ("OK" if failures == 0 else "%d FAILURES" % failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
