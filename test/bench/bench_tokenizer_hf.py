#!/usr/bin/env python3
"""Hugging Face tokenizers throughput on one thread, for comparison with bench_tokenizer.

    RAYON_NUM_THREADS=1 python test/bench/bench_tokenizer_hf.py VOCAB TEXTS [REPEATS]

Same input format and output line as build/bench_tokenizer: the median of
REPEATS passes of batch-encoding every text (word pieces, no truncation, no
padding), once with encode_batch and once with encode_batch_fast (no offsets).
"""
import json
import os
import statistics
import sys
import time

if os.environ.get("RAYON_NUM_THREADS") != "1":
    sys.exit("set RAYON_NUM_THREADS=1 (single-thread comparison)")

import tokenizers
from transformers import BertTokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
from copytext import read_lines  # noqa: E402


def main():
    vocab, path = sys.argv[1], sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    texts = read_lines(path)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    tok = BertTokenizer(vocab)._tokenizer  # the Rust tokenizers.Tokenizer
    tok.no_truncation()
    tok.no_padding()
    for method in ("encode_batch", "encode_batch_fast"):
        fn = getattr(tok, method)
        secs, tokens = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            enc = fn(texts, add_special_tokens=False)
            secs.append(time.perf_counter() - t0)
            tokens = sum(len(e.ids) for e in enc)
        s = statistics.median(secs)
        print(json.dumps({"impl": "tokenizers %s %s" % (tokenizers.__version__, method),
                          "texts": len(texts), "bytes": nbytes, "tokens": tokens,
                          "seconds": round(s, 6), "tokens_per_s": round(tokens / s),
                          "mb_per_s": round(nbytes / s / 1e6, 2)}))


if __name__ == "__main__":
    main()
