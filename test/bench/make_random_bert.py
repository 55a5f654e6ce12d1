#!/usr/bin/env python3
"""A randomly initialized bert-base checkpoint, for benchmarks of bert-base shapes.

    python test/bench/make_random_bert.py VOCAB_DIR OUT_DIR [--classifier]

BertConfig() defaults (12 layers, hidden 768, 12 heads, intermediate 3072, vocabulary
30522), seed 0, saved with save_pretrained as safetensors; with --classifier a
BertForSequenceClassification with 2 labels, otherwise a BertModel. Speed does not
depend on the weights, so no pretrained download is needed. VOCAB_DIR gives vocab.txt
and tokenizer_config.json (MiniLM's uncased vocabulary has bert-base's 30,522 pieces).
Needs torch and transformers (test/oracle/requirements-model.txt).
"""
import os
import shutil
import sys

import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

src, out = sys.argv[1], sys.argv[2]
classifier = "--classifier" in sys.argv[3:]
torch.manual_seed(0)
if classifier:
    model = BertForSequenceClassification(BertConfig(num_labels=2))
else:
    model = BertModel(BertConfig())
model.save_pretrained(out, safe_serialization=True)
for name in ("vocab.txt", "tokenizer_config.json"):
    shutil.copy(os.path.join(src, name), out)
print("wrote", out)
