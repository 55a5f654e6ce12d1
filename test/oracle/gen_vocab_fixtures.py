#!/usr/bin/env python3
"""Write the vocab.txt line-ending fixture from Hugging Face's tokenizers (the oracle).

How a vocab.txt is split into tokens decides every id. Hugging Face has two readers:

* transformers' BertTokenizer (in transformers 5 the Rust pipeline; BertTokenizerFast is
  the same class) and tokenizers' WordPiece.read_file: Rust BufRead::lines (a line ends
  at "\\n", and a "\\r" right before it goes with it), then str::trim_end (all trailing
  White_Space). A lone "\\r" inside a line stays in the token.
* transformers' BertTokenizerLegacy (the Python tokenizer, BertTokenizer in transformers
  4 without use_fast): Python text-mode readlines (universal newlines: "\\r\\n", "\\n" and a
  lone "\\r" each end a line), then rstrip("\\n") only.

Both read CRLF files the same; they differ on a lone "\\r" and on trailing spaces.
pgbert follows the first (what from_pretrained gives by default, and the oracle of all
other tokenizer fixtures). The fixture records both readers, the first as the expectation.

Output: test/fixtures/vocab_line_endings/vocab.txt (the file, bytes as below) and
        test/fixtures/vocab_line_endings/expected.json

    python test/oracle/gen_vocab_fixtures.py           # (re)write the fixture
    python test/oracle/gen_vocab_fixtures.py --check   # fail if it differs from a fresh run
"""
import argparse
import json
import os
import sys
import tempfile

import tokenizers
import transformers
from tokenizers.models import WordPiece
from transformers import BertTokenizer, BertTokenizerLegacy

OUT = "test/fixtures/vocab_line_endings"
PINNED = {"tokenizers": "0.23.3", "transformers": "5.23.0"}

# CRLF throughout, plus what the two readers split differently
VOCAB = (
    b"[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\n"
    b"hello\r\n"              # CRLF
    b"wor\rld\n"              # a lone CR inside a line
    b"ab \n"                  # a trailing space
    b"cd\r\r\n"               # two CRs before LF
    b"ef\rgh\r\n"             # a lone CR, then CRLF
    b"##s\r\n"
    b"\r\n"                   # an empty line is a token
    b"nb\xc2\xa0\r\n"         # a trailing U+00A0 (White_Space)
    b"zw\xe2\x80\x8b\r\n"     # a trailing U+200B (not White_Space)
    b"tail\r"                 # the last line: a CR and no LF
)
TEXTS = ["hello worlds ab cd", "wor ld ef gh efs", "nb zw tail tails", "hello\r\nab"]


def readers(path, d):
    fast = BertTokenizer.from_pretrained(d)
    slow = BertTokenizerLegacy.from_pretrained(d)
    return fast, slow, WordPiece.read_file(path)


def build():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "vocab.txt")
        with open(path, "wb") as f:
            f.write(VOCAB)
        fast, slow, raw = readers(path, d)
        vocab = sorted(fast.get_vocab().items(), key=lambda kv: kv[1])
        assert dict(vocab) == raw, "BertTokenizer and WordPiece.read_file disagree"
        cases = []
        for t in TEXTS:
            cases.append({"text": t, "pieces": fast.tokenize(t),
                          "ids": fast(t)["input_ids"],
                          "legacy_ids": slow(t)["input_ids"]})
        legacy = sorted(slow.get_vocab().items(), key=lambda kv: kv[1])
        return {
            "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__},
            "lines": VOCAB.count(b"\n") + (not VOCAB.endswith(b"\n")),
            "vocab": [[tok, i] for tok, i in vocab],
            "legacy_vocab": [[tok, i] for tok, i in legacy],
            "cases": cases,
        }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    got = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__}
    if got != PINNED:
        sys.exit("oracle versions %s, pinned %s" % (got, PINNED))
    data = build()
    text = json.dumps(data, ensure_ascii=True, indent=1) + "\n"
    vpath, jpath = os.path.join(OUT, "vocab.txt"), os.path.join(OUT, "expected.json")
    if a.check:
        with open(vpath, "rb") as f, open(jpath, encoding="utf-8") as g:
            if f.read() != VOCAB or g.read() != text:
                sys.exit("vocab_line_endings fixture differs from a fresh run")
        print("vocab_line_endings fixture is current")
        return
    os.makedirs(OUT, exist_ok=True)
    with open(vpath, "wb") as f:
        f.write(VOCAB)
    with open(jpath, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote %s and %s (%d tokens)" % (vpath, jpath, len(data["vocab"])))


if __name__ == "__main__":
    main()
