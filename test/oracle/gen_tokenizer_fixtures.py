#!/usr/bin/env python3
"""Write the tokenizer parity fixtures from Hugging Face's BertTokenizer (the oracle).

Input:  test/fixtures/tokenizer_corpus.txt (one text per line, COPY text escaping;
        made by test/oracle/make_corpus.py) and data/pgbert_vocab_uncased.txt.
Output (test/fixtures/):
  tokenizer_ids_<setting>.txt.gz  line i = input ids ([CLS] ... [SEP], no truncation)
                                  of corpus line i, as an int[] literal
  tokenizer_truncation.txt        line_no <TAB> max_length <TAB> ids, uncased, truncated
  tokenizer_cases.txt             HF's own BERT test strings and the literals of sql/*.sql:
                                  do_lower_case <TAB> text <TAB> pieces <TAB> ids
  tokenizer_fixtures.json         versions and counts

The oracle is transformers' BertTokenizer, which in transformers 5 is the Rust
(tokenizers) pipeline. Versions are pinned in requirements.txt and checked here.

    python test/oracle/gen_tokenizer_fixtures.py           # (re)write the fixtures
    python test/oracle/gen_tokenizer_fixtures.py --check   # fail if they differ from a fresh run
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import unicodedata

import tokenizers
import transformers
from transformers import BertTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from copytext import escape, read_lines  # noqa: E402

FIX = "test/fixtures"
CORPUS = os.path.join(FIX, "tokenizer_corpus.txt")
VOCAB = "data/pgbert_vocab_uncased.txt"
PINNED = {"tokenizers": "0.23.3", "transformers": "5.23.0"}

# name -> BertTokenizer keyword arguments
SETTINGS = {
    "uncased": dict(do_lower_case=True),
    "cased": dict(do_lower_case=False),
    "lower_nostrip": dict(do_lower_case=True, strip_accents=False),
    "cased_strip_nocjk": dict(do_lower_case=False, strip_accents=True, tokenize_chinese_chars=False),
}
TRUNCATION_STEP = 97
TRUNCATION_LENGTHS = (2, 3, 5, 16, 128, 512)

# transformers' tests/models/bert/test_tokenization_bert.py inputs, special-token cases,
# and every literal whose pieces or ids the pg_regress suites show
HF_CASES = [
    "UNwant\u00E9d,running",
    " \tHeLLo!how  \n Are yoU?  ",
    "H\u00E9llo",
    "  \tH\u00E4LLo!how  \n Are yoU?  ",
    "ah\u535A\u63A8zz",
    "unwanted running",
    "unwantedX running",
    "Hello [SEP] world",
    "[CLS] already [SEP] here [UNK] [MASK] [PAD]",
    "[sep] is not special",
    "\u00A0\u3000\u2028 spaces",
    "",
    " ",
    "[sep] is not special, nor is [SEP",
    "hello",
    "a b c d e f",
    "Gr\u00FC\u00DFe aus K\u00F6ln, \u00E7a va?",
    "h\u00E9llo",
    " \t\n\u00A0\u3000",
]
# (text, do_lower_case) pairs checked cased as well
CASED_CASES = ["Hello hello", "\u00DF \u00E9", "UNwant\u00E9d,running"]


def int_array(ids):
    return "{" + ",".join(str(i) for i in ids) + "}"


def text_array(items):
    return "{" + ",".join('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in items) + "}"


def read_corpus():
    with open(CORPUS, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return read_lines(CORPUS), sha


def build():
    """All fixture files as {name: bytes} (uncompressed text)."""
    texts, corpus_sha = read_corpus()
    files = {}
    tok = {name: BertTokenizer(VOCAB, **kw) for name, kw in SETTINGS.items()}
    for name, t in tok.items():
        enc = t(texts, add_special_tokens=True, truncation=False)["input_ids"]
        files["tokenizer_ids_%s.txt" % name] = "".join(int_array(ids) + "\n" for ids in enc)

    rows = []
    for i in range(0, len(texts), TRUNCATION_STEP):
        for L in TRUNCATION_LENGTHS:
            ids = tok["uncased"](texts[i], truncation=True, max_length=L)["input_ids"]
            rows.append("%d\t%d\t%s\n" % (i + 1, L, int_array(ids)))
    files["tokenizer_truncation.txt"] = "".join(rows)

    rows = []
    for lower, strings in (("t", HF_CASES), ("f", CASED_CASES)):
        t = tok["uncased" if lower == "t" else "cased"]
        for s in strings:
            pieces = t.tokenize(s)
            ids = t(s)["input_ids"]
            rows.append("%s\t%s\t%s\t%s\n" % (lower, escape(s), escape(text_array(pieces)),
                                                int_array(ids)))
    files["tokenizer_cases.txt"] = "".join(rows)

    meta = {
        "generator": "test/oracle/gen_tokenizer_fixtures.py",
        "oracle": "transformers.BertTokenizer (tokenizers backend)",
        "tokenizers": tokenizers.__version__,
        "transformers": transformers.__version__,
        "python_unidata": unicodedata.unidata_version,
        "corpus_lines": len(texts),
        "corpus_sha256": corpus_sha,
        "settings": SETTINGS,
        "truncation_every": TRUNCATION_STEP,
        "truncation_lengths": TRUNCATION_LENGTHS,
    }
    files["tokenizer_fixtures.json"] = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    return files


def gz_bytes(text):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
        g.write(text.encode("utf-8"))
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    for pkg, want in PINNED.items():
        have = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__}[pkg]
        if have != want:
            sys.exit("need %s==%s, have %s" % (pkg, want, have))

    files = build()
    stale = 0
    for name, text in sorted(files.items()):
        gz = name.startswith("tokenizer_ids_")
        path = os.path.join(FIX, name + (".gz" if gz else ""))
        if args.check:
            try:
                with (gzip.open(path, "rt", encoding="utf-8", newline="") if gz
                      else open(path, encoding="utf-8", newline="")) as f:
                    same = f.read() == text
            except FileNotFoundError:
                same = False
            print("%-40s %s" % (path, "up to date" if same else "STALE"))
            stale += not same
        else:
            with open(path, "wb") as f:
                f.write(gz_bytes(text) if gz else text.encode("utf-8"))
            print("wrote", path)
    if args.check:
        print("tokenizer fixtures: %s" % ("OK" if stale == 0 else "%d STALE" % stale))
    sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
