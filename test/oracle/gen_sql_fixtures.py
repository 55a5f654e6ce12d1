#!/usr/bin/env python3
"""A tiny random BERT classifier in Hugging Face layout and transformers' class probabilities
on it, for the SQL regression tests.

Writes:
  test/fixtures/models/sql_cls/     what a real checkpoint directory holds:
    config.json, model.safetensors  BertForSequenceClassification.save_pretrained (fp32):
                                    hidden 32, 2 layers, 4 heads, intermediate 64, 128
                                    positions, erf GELU, eps 1e-12, initializer_range 0.2,
                                    3 labels ham/spam/phish, pad_token_id 0, seed 42
    vocab.txt                       [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0..4), then the
                                    uncased MiniLM vocab lines 999..3999 (0-based: after the
                                    [unusedN] entries; single characters and the most common
                                    words) and every later "##" + one character piece, in
                                    file order: 3968 pieces
    tokenizer_config.json           BertTokenizer(vocab.txt, do_lower_case=True,
                                    model_max_length=128).save_pretrained; the tokenizer.json
                                    it also writes is removed, so loaders build the tokenizer
                                    from vocab.txt + tokenizer_config.json
  test/fixtures/sql_cls_probs.json  the oracle, one JSON array (psql reads it client-side and
                                    jsonb_to_recordset takes it apart): objects with ord, text,
                                    n_tokens (with [CLS]/[SEP], after truncation at 128),
                                    label (argmax), p_ham, p_spam, p_phish ("%.9g" of the
                                    float32 softmax); UTF-8, one object per line

The texts (122) are chosen with fixed seeds: SpamAssassin subjects (36), the first 300
characters of bodies (24) and whole bodies of 1000..4000 characters (12, all of them past
128 tokens, so truncation happens), lines of test/fixtures/tokenizer_corpus.txt in many
scripts (33: CJK, kana, Hangul, Arabic, Hebrew, Cyrillic, Greek, accented Latin, Devanagari,
Thai, emoji, combining marks, fullwidth forms; picked by code point ranges, so the choice does
not depend on Python's Unicode tables), and edge cases ('', ' ', '[CLS]', 2000 times 'a ',
tabs and newlines, ...). No text holds a NUL or a line that starts with a backslash and a
period. Each text is tokenized alone by BertTokenizer.from_pretrained(sql_cls) (truncation=True,
max_length=128; in transformers 5 this is the tokenizers pipeline) and run through
BertForSequenceClassification.from_pretrained(sql_cls) in float32 eval mode, without padding.

initializer_range 0.2 (as in gen_model_fixtures.py) already gives more than one argmax label
(115 spam, 5 phish, 2 ham); the script fails if the labels ever collapse to one class, and
prints the smallest gap between the two largest probabilities of a text.

Inputs: data/pgbert_vocab_uncased.txt (byte-identical to all-MiniLM-L6-v2's vocab.txt, checked
by sha256), data/spamassassin.csv.gz, test/fixtures/tokenizer_corpus.txt.  Runs on the CPU in
one thread, and the output is byte-for-byte reproducible with the pinned versions (with more
threads torch sums in another order and the probabilities move by an ulp or two, ~1.5e-7).

    python test/oracle/gen_sql_fixtures.py           # (re)write the fixtures; needs torch, transformers
    python test/oracle/gen_sql_fixtures.py --check   # fail if they differ from a fresh run
"""
import argparse
import csv
import json
import gzip
import hashlib
import os
import random
import shutil
import sys
import tempfile

import tokenizers
import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from copytext import read_lines  # noqa: E402

FIX = "test/fixtures"
MODEL = "models/sql_cls"           # under FIX
PROBS = "sql_cls_probs.json"       # under FIX
VOCAB = "data/pgbert_vocab_uncased.txt"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
SPAM = "data/spamassassin.csv.gz"
CORPUS = os.path.join(FIX, "tokenizer_corpus.txt")
PINNED = {"transformers": "5.23.0", "torch": "2.15.0", "tokenizers": "0.23.3"}

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FIRST, LAST = 999, 3999            # 0-based vocab lines kept (both included)
LABELS = ["ham", "spam", "phish"]
INITIALIZER_RANGE = 0.2
MAX_LENGTH = 128
KEEP = {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
        "special_tokens_map.json"}

# (source, how many) for subjects, body snippets and whole bodies
SUBJECTS = [("easy-ham-1", 12), ("hard-ham-1", 6), ("spam-1", 18)]
SNIPPETS = [("easy-ham-1", 10), ("hard-ham-1", 4), ("spam-1", 10)]
BODIES = [("easy-ham-1", 5), ("hard-ham-1", 2), ("spam-1", 5)]
SNIPPET_CHARS = 300
BODY_CHARS = (1000, 4000)

# corpus buckets: name, how many, code point ranges, rule; a line goes to the first bucket
# it fits ("share": those code points are at least 30% of the non-space characters,
# "count": at least 3 of them, "any": at least one)
BUCKETS = [
    ("emoji", 4, [(0x1F300, 0x1FAFF), (0x2600, 0x27BF)], "any"),
    ("combining", 2, [(0x0300, 0x036F)], "count"),
    ("fullwidth", 1, [(0xFF01, 0xFF5E)], "share"),
    ("kana", 2, [(0x3040, 0x30FF)], "share"),
    ("cjk", 4, [(0x4E00, 0x9FFF)], "share"),
    ("hangul", 2, [(0xAC00, 0xD7AF)], "share"),
    ("arabic", 3, [(0x0600, 0x06FF)], "share"),
    ("hebrew", 2, [(0x0590, 0x05FF)], "share"),
    ("cyrillic", 3, [(0x0400, 0x04FF)], "share"),
    ("greek", 2, [(0x0370, 0x03FF)], "share"),
    ("devanagari", 2, [(0x0900, 0x097F)], "share"),
    ("thai", 2, [(0x0E00, 0x0E7F)], "share"),
    ("latin_accents", 4, [(0x00C0, 0x024F)], "count"),
]
CORPUS_CHARS = (8, 400)

EDGE = [
    "",
    " ",
    "[CLS]",
    "Hello, world!",
    "a " * 2000,
    "tabs\tand\tnewlines\nsecond line\r\nthird line\n\n\tindented  double  spaces \n",
    " \t\n ",
    "[CLS] [SEP] [PAD] [MASK] [UNK] [unused1]",
    "HELLO WORLD, this IS Mixed CASE",
    "Crème brûlée, naïve café, Ångström, São Paulo",
    "UNwant\u00E9d,running",
    "x" * 150,
    "Win $1,000,000 NOW!!! Click http://example.com/claim?id=42&ref=spam",
    "\u00a0non-breaking\u3000ideographic\u2028line separator",
    "数据库 PostgreSQL と BERT 😀👍🏽",
    "!!!???...,,,;;;",
    "0123456789 3.14159 -42 1e10",
]


def bad_text(t):
    """NUL or a line starting with backslash-period (psql's end-of-data marker)."""
    return "\x00" in t or any(line.startswith("\\.") for line in t.replace("\r", "\n").split("\n"))


def make_vocab():
    with open(VOCAB, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != VOCAB_SHA256:
        sys.exit("%s is not the all-MiniLM-L6-v2 vocab.txt" % VOCAB)
    lines = data.decode("utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()
    assert len(lines) == 30522 and lines[FIRST - 1].startswith("[unused") and lines[FIRST] == "!"
    vocab, seen = list(SPECIAL), set(SPECIAL)
    for i, piece in enumerate(lines):
        if i < FIRST:
            continue
        if (i <= LAST or (piece.startswith("##") and len(piece) == 3)) and piece not in seen:
            vocab.append(piece)
            seen.add(piece)
    return vocab


def in_ranges(c, ranges):
    o = ord(c)
    return any(lo <= o <= hi for lo, hi in ranges)


def bucket_of(text):
    chars = [c for c in text if not c.isspace()]
    for name, _, ranges, rule in BUCKETS:
        n = sum(in_ranges(c, ranges) for c in chars)
        if (rule == "any" and n >= 1) or (rule == "count" and n >= 3) or \
           (rule == "share" and chars and n >= 0.3 * len(chars)):
            return name
    return None


def corpus_texts(rng):
    lines = read_lines(CORPUS)
    pools = {name: [] for name, *_ in BUCKETS}
    for i, t in enumerate(lines):
        if not CORPUS_CHARS[0] <= len(t) <= CORPUS_CHARS[1] or bad_text(t):
            continue
        b = bucket_of(t)
        if b is not None:
            pools[b].append(i)
    picked = []
    for name, k, _, _ in BUCKETS:
        picked += rng.sample(pools[name], k)
    return [lines[i] for i in sorted(picked)]


def spam_texts(rng):
    csv.field_size_limit(1 << 30)
    with gzip.open(SPAM, "rt", encoding="utf-8", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["id"])
    by_source = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    texts = []
    for source, k in SUBJECTS:
        subjects, seen = [], set()
        for r in by_source[source]:
            s = r["subject"]
            if s.strip() and s not in seen and not bad_text(s):
                subjects.append(s)
                seen.add(s)
        texts += rng.sample(subjects, k)
    used = set()
    for source, k in BODIES:
        pool = [r for r in by_source[source]
                if BODY_CHARS[0] <= len(r["body"]) <= BODY_CHARS[1] and not bad_text(r["body"])]
        for r in rng.sample(pool, k):
            texts.append(r["body"])
            used.add(r["id"])
    for source, k in SNIPPETS:
        pool = [r for r in by_source[source]
                if r["id"] not in used and r["body"].strip() and not bad_text(r["body"][:SNIPPET_CHARS])]
        texts += [r["body"][:SNIPPET_CHARS] for r in rng.sample(pool, k)]
    return texts


def texts():
    rng = random.Random(42)
    out, seen = [], set()
    for t in spam_texts(rng) + corpus_texts(rng) + EDGE:
        if t not in seen:
            assert not bad_text(t), repr(t[:80])
            out.append(t)
            seen.add(t)
    return out


def write_model(d):
    os.makedirs(d)
    vocab = make_vocab()
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(vocab) + "\n")
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
                     type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12,
                     initializer_range=INITIALIZER_RANGE, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, pad_token_id=0)
    cfg.num_labels = len(LABELS)
    cfg.id2label = dict(enumerate(LABELS))
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    torch.manual_seed(42)
    BertForSequenceClassification(cfg).save_pretrained(d, safe_serialization=True)
    BertTokenizer(os.path.join(d, "vocab.txt"), do_lower_case=True,
                  model_max_length=MAX_LENGTH).save_pretrained(d)
    for name in os.listdir(d):
        if name not in KEEP:
            os.remove(os.path.join(d, name))
    return len(vocab)


def write_probs(d, path):
    tok = BertTokenizer.from_pretrained(d)
    model = BertForSequenceClassification.from_pretrained(d, dtype=torch.float32).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    assert labels == LABELS, labels
    rows = []
    for i, t in enumerate(texts()):
        enc = tok(t, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0].float()
        p = torch.softmax(logits, dim=-1).tolist()
        rows.append([i, t, enc["input_ids"].shape[1], labels[max(range(len(p)), key=p.__getitem__)]]
                    + ["%.9g" % x for x in p])
    if len({r[3] for r in rows}) < 2:
        sys.exit("every text gets label %r: raise INITIALIZER_RANGE" % rows[0][3])
    keys = ["ord", "text", "n_tokens", "label", "p_ham", "p_spam", "p_phish"]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("[\n")
        for n, r in enumerate(rows):
            obj = dict(zip(keys, r[:4] + [float(x) for x in r[4:]]))
            f.write(json.dumps(obj, ensure_ascii=False) + (",\n" if n + 1 < len(rows) else "\n"))
        f.write("]\n")
    return rows


def build(root):
    """Write the fixtures under root (laid out like test/fixtures); return their relative paths."""
    d = os.path.join(root, MODEL)
    n_vocab = write_model(d)
    rows = write_probs(d, os.path.join(root, PROBS))
    counts = {l: sum(r[3] == l for r in rows) for l in LABELS}
    gap = min(sorted(map(float, r[4:]))[-1] - sorted(map(float, r[4:]))[-2] for r in rows)
    print("vocab %d, %d texts, labels %s, max n_tokens %d, smallest top-2 gap %.3g"
          % (n_vocab, len(rows), counts, max(r[2] for r in rows), gap))
    return [os.path.join(MODEL, n) for n in sorted(os.listdir(d))] + [PROBS]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    have = {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
            "tokenizers": tokenizers.__version__}
    for pkg, want in PINNED.items():
        if have[pkg] != want:
            sys.exit("need %s==%s, have %s" % (pkg, want, have[pkg]))
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()

    tmp = tempfile.mkdtemp(prefix="gen_sql_fixtures.")
    try:
        files = build(tmp)
        stale = 0
        if args.check:
            on_disk = sorted(os.listdir(os.path.join(FIX, MODEL))) if os.path.isdir(os.path.join(FIX, MODEL)) else []
            for name in sorted(set(on_disk) - {os.path.basename(f) for f in files}):
                print("%-50s %s" % (os.path.join(FIX, MODEL, name), "UNEXPECTED"))
                stale += 1
            for rel in files:
                path = os.path.join(FIX, rel)
                try:
                    with open(path, "rb") as a, open(os.path.join(tmp, rel), "rb") as b:
                        same = a.read() == b.read()
                except FileNotFoundError:
                    same = False
                print("%-50s %s" % (path, "up to date" if same else "STALE"))
                stale += not same
            print("sql fixtures: %s" % ("OK" if stale == 0 else "%d STALE" % stale))
        else:
            shutil.rmtree(os.path.join(FIX, MODEL), ignore_errors=True)
            shutil.copytree(os.path.join(tmp, MODEL), os.path.join(FIX, MODEL))
            shutil.copyfile(os.path.join(tmp, PROBS), os.path.join(FIX, PROBS))
            for rel in files:
                path = os.path.join(FIX, rel)
                os.chmod(path, 0o644)
                print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))
    finally:
        shutil.rmtree(tmp)
    sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
