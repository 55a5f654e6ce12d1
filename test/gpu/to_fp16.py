#!/usr/bin/env python3
"""Copy a Hugging Face BERT directory with its float32 tensors stored as float16.

    python test/gpu/to_fp16.py SRC_DIR DST_DIR

all-MiniLM-L6-v2 shrinks from 87 to 44 MiB, under the device tool's transfer limit; the GPU
tests then compare GPU and CPU engine on the same (converted) weights. Uses only the standard
library and numpy-free byte work: safetensors is an 8-byte header length, a JSON header, data.
"""
import json
import os
import shutil
import struct
import sys
from array import array


def main(src, dst):
    os.makedirs(dst, exist_ok=True)
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        if os.path.exists(os.path.join(src, name)):
            shutil.copy(os.path.join(src, name), dst)
    blob = open(os.path.join(src, "model.safetensors"), "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out_header, chunks, offset = {}, [], 0
    for key, info in header.items():
        if key == "__metadata__":
            out_header[key] = info
            continue
        start, end = info["data_offsets"]
        raw = data[start:end]
        if info["dtype"] == "F32":
            f = array("f")
            f.frombytes(raw)
            raw = b"".join(struct.pack("<e", max(-65504.0, min(65504.0, v))) for v in f)
            info = dict(info, dtype="F16")
        out_header[key] = dict(info, data_offsets=[offset, offset + len(raw)])
        chunks.append(raw)
        offset += len(raw)
    h = json.dumps(out_header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(dst, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for c in chunks:
            f.write(c)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
