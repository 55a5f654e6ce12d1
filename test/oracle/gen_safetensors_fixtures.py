#!/usr/bin/env python3
"""Write the safetensors parser fixtures with the reference implementation (the oracle).

Output:
  test/fixtures/safetensors/golden.safetensors  a handful of small tensors written by
        safetensors' own serializer: F32 2x3, F16 with special values (subnormals,
        +-0, +-65504, +-inf, NaN), random F16, BF16 (numpy has no bfloat16, so its
        raw bits go through safetensors' serializer as dtype "bfloat16"), a
        0-element F32, a scalar, and I64 / BOOL / F8_E4M3 tensors that the engine
        parses but does not convert
  test/fixtures/safetensors/golden.json         per tensor: name, dtype, shape and, for
        F32/F16/BF16, the float32 value of every element as hex bits ("bits", exact;
        numpy's float16 -> float32 widening is the oracle) and as repr ("values", for
        reading)
  test/fuzz/seeds_safetensors/*                 fuzz seeds: the golden file and a few
        small variants, each twice in the two input modes of
        test/fuzz/fuzz_safetensors.c: raw_* (byte 0, then the file) and json_* (byte 1,
        the header JSON, a NUL, the data section)

Seed and versions are fixed (requirements.txt), so the output is byte-for-byte stable.

    python test/oracle/gen_safetensors_fixtures.py           # (re)write the fixtures
    python test/oracle/gen_safetensors_fixtures.py --check   # fail if they differ from a fresh run
"""
import argparse
import json
import os
import sys

import numpy as np
import safetensors
from safetensors import deserialize, serialize
from safetensors._safetensors_rust import TensorSpec

FIX = "test/fixtures/safetensors"
SEEDS = "test/fuzz/seeds_safetensors"
PINNED = {"safetensors": "0.8.0", "numpy": "2.4.6"}
SEED = 20240611
METADATA = {"format": "pt"}  # one key: the reference keeps metadata in a HashMap

# float16 bit patterns worth checking, in a 4x4 tensor with two random values
F16_SPECIAL = [
    0x0001,  # 2^-24, smallest subnormal
    0x8001,  # -2^-24
    0x03FF,  # largest subnormal
    0x0200,  # 2^-15, subnormal
    0x0400,  # 2^-14, smallest normal
    0x0000,  # +0
    0x8000,  # -0
    0x7BFF,  # 65504
    0xFBFF,  # -65504
    0x7C00,  # inf
    0xFC00,  # -inf
    0x3C00,  # 1
    0x3555,  # 0.333...
    0x7E00,  # quiet NaN
]
BF16_SPECIAL = [
    0x0001,  # smallest subnormal, 2^-133
    0x807F,  # largest negative subnormal
    0x8000,  # -0
    0x7F80,  # inf
    0xFF80,  # -inf
    0x7F7F,  # largest finite
    0x3F80,  # 1
    0xC049,  # -3.140625
    0x7FC0,  # quiet NaN
]


def bf16_round(x):
    """float32 array -> bfloat16 bit patterns (uint16), round to nearest even."""
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def spec(arr, dtype=None):
    """TensorSpec for a contiguous little-endian numpy array, optionally relabelled."""
    assert arr.flags.c_contiguous and arr.dtype.byteorder in "<=|"
    return TensorSpec(dtype=dtype or arr.dtype.name, shape=arr.shape,
                      data_ptr=arr.ctypes.data, data_len=arr.nbytes)


def write(tensors, metadata=METADATA):
    """Serialize {name: (array, dtype-or-None)} with the reference serializer."""
    specs = {k: spec(a, dt) for k, (a, dt) in tensors.items()}
    data = bytes(serialize(specs, metadata=metadata))
    deserialize(data)  # the reference reader must accept its own file
    return data


def golden_tensors():
    rng = np.random.default_rng(SEED)
    f16_special = np.array(F16_SPECIAL, dtype=np.uint16).view(np.float16)
    f16_special = np.concatenate([f16_special, rng.standard_normal(2).astype(np.float16)])
    bf16 = np.concatenate([np.array(BF16_SPECIAL, dtype=np.uint16),
                           bf16_round(rng.standard_normal(3).astype(np.float32) * 100)])
    return {
        "embeddings.word.weight": (rng.standard_normal((2, 3)).astype(np.float32), None),
        "encoder.f16_special": (f16_special.reshape(4, 4), None),
        "encoder.f16_random": (rng.standard_normal((3, 5)).astype(np.float16), None),
        "pooler.bf16": (bf16.reshape(3, 4), "bfloat16"),
        "empty": (np.zeros((0, 3), dtype=np.float32), None),
        "scalar": (np.array(rng.standard_normal(), dtype=np.float32), None),
        "ids": (np.array([1, -2, 1 << 40], dtype=np.int64), None),
        "mask": (np.array([True, False, True]), None),
        "quant.f8": (np.array([0x38, 0xB8, 0x7E, 0x01], dtype=np.uint8), "float8_e4m3fn"),
    }


def expected(tensors):
    """golden.json text: each tensor's header facts and float32 values."""
    out = []
    for name, (arr, dt) in sorted(tensors.items()):
        if dt == "bfloat16":
            f32 = (arr.astype(np.uint32) << 16).view(np.float32)
        elif arr.dtype in (np.float16, np.float32):
            f32 = arr.astype(np.float32)
        else:
            f32 = None
        row = {"name": name, "shape": list(arr.shape)}
        if f32 is not None:
            flat = f32.reshape(-1)
            row["bits"] = ["%08x" % b for b in flat.view(np.uint32).tolist()]
            row["values"] = [repr(float(v)) for v in flat.tolist()]
        out.append(row)
    return out


def build():
    tensors = golden_tensors()
    golden = write(tensors)
    dtypes = {k: v["dtype"] for k, v in json.loads(golden[8:8 + int.from_bytes(golden[:8], "little")]).items()
              if k != "__metadata__"}
    rows = expected(tensors)
    for r in rows:
        r["dtype"] = dtypes[r["name"]]
    meta = {
        "oracle": "safetensors.serialize (Rust reference) + numpy float16 -> float32",
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "seed": SEED,
        "metadata": METADATA,
        "tensors": rows,
    }
    seeds = {
        "golden": golden,
        "empty": write({}, metadata=None),
        "metadata_only": write({}),
        "one_f32": write({"w": (np.array([1.5, -2.0], dtype=np.float32), None)}, metadata=None),
        "f16_bf16": write({
            "a": (np.array([0x0001, 0x7C00, 0x8000], dtype=np.uint16).view(np.float16), None),
            "b": (np.array([0x3F80, 0x0001], dtype=np.uint16), "bfloat16"),
        }),
        "other_dtypes": write({
            "f4": (np.array([0x12, 0x34], dtype=np.uint8), "float4_e2m1fn_x2"),
            "f8": (np.array([0x38], dtype=np.uint8), "float8_e5m2"),
            "u16": (np.array([7, 9], dtype=np.uint16), None),
            "z": (np.zeros((2, 0), dtype=np.float16), None),
        }),
    }
    files = {
        os.path.join(FIX, "golden.safetensors"): golden,
        os.path.join(FIX, "golden.json"): (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode(),
    }
    for name, data in seeds.items():
        hlen = int.from_bytes(data[:8], "little")
        files[os.path.join(SEEDS, "raw_" + name)] = b"\x00" + data
        files[os.path.join(SEEDS, "json_" + name)] = b"\x01" + data[8:8 + hlen].rstrip(b" ") + b"\x00" + data[8 + hlen:]
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    have = {"safetensors": safetensors.__version__, "numpy": np.__version__}
    for pkg, want in PINNED.items():
        if have[pkg] != want:
            sys.exit("need %s==%s, have %s" % (pkg, want, have[pkg]))

    files = build()
    stale = 0
    for path, data in sorted(files.items()):
        if args.check:
            try:
                with open(path, "rb") as f:
                    same = f.read() == data
            except FileNotFoundError:
                same = False
            print("%-50s %s" % (path, "up to date" if same else "STALE"))
            stale += not same
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            print("wrote %s (%d bytes)" % (path, len(data)))
    if args.check:
        print("safetensors fixtures: %s" % ("OK" if stale == 0 else "%d STALE" % stale))
    sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
