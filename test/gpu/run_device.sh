#!/usr/bin/env bash
# The GPU checks, on a lent H200 (prepared here by test/gpu/prepare_device.sh; builds nothing).
#
#   bash test/gpu/run_device.sh gpu    # carry .device/gpu: parity, graphs, memory bound,
#                                      # training parity and fine-tune, speed vs transformers
#   bash test/gpu/run_device.sh pg     # carry .device/pg: PostgreSQL + pgbert with the engine
#                                      # on the GPU: classify() latency, 200k-row scan, training
#
# Writes logs and tables under $OUT (at most 8 files come back) and prints a short table last.
# SECONDS_PER_SHAPE (default 2) and HF_ARGS (default: eager and compiled, with training) size
# the speed runs to the device time left.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
mode=${1:-gpu}
status=0
step() { echo "=== $*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu --format=csv \
  | tee "$OUT/device.txt"

if [ "$mode" = gpu ]; then
  D=.device/gpu
  mkdir -p /tmp/libs
  for f in $D/debs/*.deb; do dpkg -x "$f" /tmp/libs; done
  export LD_LIBRARY_PATH=/tmp/libs/usr/lib/x86_64-linux-gnu:/tmp/libs/usr/lib/x86_64-linux-gnu/openblas-pthread:/usr/local/cuda/lib64
  export PGBERT_GPU_LIBRARY=$PWD/$D/bin/pgbert_gpu.so OPENBLAS_NUM_THREADS=16
  python3 test/bench/mail_lines.py /tmp/mails.txt
  log="$OUT/checks.txt"
  step "forward parity" | tee "$log"
  $D/bin/test_gpu_model test/fixtures/models $D/minilm-f16 data/pgbert_vocab_uncased.txt /tmp/mails.txt \
    >> "$log" 2>&1 || status=1
  grep -E "^FAIL|passed," "$log" | tail -20
  if [ -x $D/bin/test_gpu_train ]; then
    step "training parity" | tee -a "$log"
    $D/bin/test_gpu_train test/fixtures/models >> "$log" 2>&1 || status=1
    python3 test/gpu/mail_labels.py /tmp/mail_labels.tsv 2>>"$log" || true
    FINETUNE_LIMIT=${FINETUNE_LIMIT:-1024}
    step "fine-tune MiniLM on the same $FINETUNE_LIMIT mails: gpu bf16, then the cpu trainer" | tee -a "$log"
    $D/bin/test_gpu_train --finetune $D/minilm-f16 /tmp/mail_labels.tsv --limit "$FINETUNE_LIMIT" \
      >> "$log" 2>&1 || status=1
    $D/bin/test_gpu_train --finetune $D/minilm-f16 /tmp/mail_labels.tsv --limit "$FINETUNE_LIMIT" --cpu \
      >> "$log" 2>&1 || status=1
    grep -E "^FAIL|passed,|accuracy" "$log" | tail -20
  fi
  step "speed" | tee -a "$log"
  bench="$OUT/bench.jsonl"
  : > "$bench"
  for m in bert-base minilm; do
    $D/bin/bench_gpu $m bf16 "${SECONDS_PER_SHAPE:-2}" >> "$bench" 2>>"$log"
  done
  python3 test/gpu/bench_hf.py --seconds "${SECONDS_PER_SHAPE:-2}" ${HF_ARGS:-} >> "$bench" 2>>"$log"
  python3 test/gpu/report.py "$bench" "$OUT/throughput.png" | tee "$OUT/table.md"
elif [ "$mode" = pg ]; then
  # the data and a random model of MiniLM's shape where the unprivileged cluster owner reads them
  W=/tmp/pgwork
  mkdir -p $W
  zcat data/spamassassin.csv.gz > $W/mails.csv
  python3 - <<'PY'
from transformers import BertConfig, BertForSequenceClassification
import shutil, torch
torch.manual_seed(0)
cfg = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                 num_labels=2, id2label={0: "ham", 1: "spam"}, label2id={"ham": 0, "spam": 1})
BertForSequenceClassification(cfg).save_pretrained("/tmp/pgwork/minilm-rand")
shutil.copy("data/pgbert_vocab_uncased.txt", "/tmp/pgwork/minilm-rand/vocab.txt")
PY
  cp test/gpu/pg_device.sh $W/
  chmod -R a+rwX $W
  # unpack the packages as pg-on-device.sh would, plus OpenBLAS where its library path looks
  # (Debian reaches it through an alternatives symlink that dpkg -x does not make)
  mkdir -p /tmp/pg
  for f in .device/pg/debs/*.deb; do dpkg -x "$f" /tmp/pg; done
  cp /tmp/pg/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 /tmp/pg/usr/lib/x86_64-linux-gnu/
  bash .device/pg/pg-on-device.sh $W/pg_device.sh || status=1
  cp $W/*.txt "$OUT/" 2>/dev/null
else
  echo "usage: run_device.sh gpu|pg" >&2
  exit 2
fi
exit $status
