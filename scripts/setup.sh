#!/usr/bin/env bash
# Install what pgbert needs on Debian bookworm: build tools, PostgreSQL 15 with its
# server headers, utf8proc, OpenBLAS, and a Python virtualenv (.venv-oracle) with the
# pinned test oracles (Hugging Face tokenizers/transformers; tests only, never the server).
# Idempotent; run as root. The CUDA toolkit is optional and not installed here:
# when /usr/local/cuda/bin/nvcc exists, the build uses it.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential postgresql-15 postgresql-server-dev-15 postgresql-common
          libutf8proc-dev libopenblas-dev libclang-rt-14-dev python3 python3-venv gzip util-linux)
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

if [ ! -x .venv-oracle/bin/python ] || ! .venv-oracle/bin/python -c 'import tokenizers, transformers' 2>/dev/null; then
  echo "setup: creating .venv-oracle with test/oracle/requirements.txt"
  rm -rf .venv-oracle
  python3 -m venv .venv-oracle
  .venv-oracle/bin/pip install -q --disable-pip-version-check -r test/oracle/requirements.txt
fi
echo "setup: ok"
