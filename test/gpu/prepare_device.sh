#!/usr/bin/env bash
# Prepare, on this (CPU-only) machine, everything the GPU checks need on a lent H200, which
# builds nothing and reaches no network: test/gpu/run_device.sh runs there.
#
#   test/gpu/prepare_device.sh
#
# Writes two folders (ignored by git, each under the device tool's 64 MiB carry limit):
#   .device/gpu  the GPU test and benchmark programs, pgbert_gpu.so, the libraries they load
#                (utf8proc, jansson, OpenBLAS as Debian packages) and all-MiniLM-L6-v2 in
#                fp16 (the tests compare GPU and CPU on the same converted weights)
#   .device/pg   Debian's PostgreSQL 15 packages, `make install` of this checkout (with CUDA),
#                and ../shared/device/pg-on-device.sh, which starts a cluster there
# Then, with the device tool (the exact calls are printed at the end):
#   run(command="bash test/gpu/run_device.sh gpu", carry=[".device/gpu"], timeout_s=420)
#   run(command="bash test/gpu/run_device.sh pg",  carry=[".device/pg"],  timeout_s=420)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv-model/bin/python}
mkdir -p .git/info
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo /.device/ >> .git/info/exclude
rm -rf .device/gpu .device/pg
mkdir -p .device/gpu/bin .device/gpu/debs .device/gpu/minilm-f16 .device/pg/debs

make -s USE_CUDA=1
make -s USE_CUDA=1 build/test_gpu_model build/bench_gpu
progs="build/test_gpu_model build/bench_gpu"
[ -f test/gpu/test_gpu_train.c ] && { make -s USE_CUDA=1 build/test_gpu_train; progs="$progs build/test_gpu_train"; }
cp $progs pgbert_gpu.so .device/gpu/bin/

(cd .device/gpu/debs && apt-get download -q libutf8proc2 libjansson4 libopenblas0-pthread libgfortran5 \
   libquadmath0 >/dev/null 2>&1)
(cd .device/pg/debs && apt-get download -q postgresql-15 postgresql-client-15 libicu72 libldap-2.5-0 \
   libpq5 libsasl2-2 libutf8proc2 libjansson4 libopenblas0-pthread libgfortran5 libquadmath0 >/dev/null 2>&1)

"$PY" test/gpu/to_fp16.py .models/all-minilm-l6-v2 .device/gpu/minilm-f16

make -s USE_CUDA=1 install DESTDIR="$PWD/.device/pg/stage" >/dev/null
cp ../shared/device/pg-on-device.sh .device/pg/

du -sh .device/gpu .device/pg
cat <<'CALLS'
device calls:
  run(command="bash test/gpu/run_device.sh gpu", carry=[".device/gpu"], timeout_s=420)
  run(command="bash test/gpu/run_device.sh pg", carry=[".device/pg"], timeout_s=420)
CALLS
