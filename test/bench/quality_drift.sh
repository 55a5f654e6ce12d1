#!/usr/bin/env bash
# Drift benchmark (not CI; about 10 minutes per training on 2 cores): the SpamAssassin
# mails split in time (test/bench/spam_time_split.py: per source the oldest 54% train, the
# next 6% are the newest labelled rows, the newest 40% are the later period, also
# resampled to 15%, 50% and 85% spam). pgbert fine-tunes all-MiniLM-L6-v2 with
# train_classifier() and scores the later sets as trained (argmax), then after
# calibrate_model() on the newest labelled rows and estimate_label_priors(install => true)
# on each set's unlabelled texts (test/bench/quality_drift.sql). HF Trainer (same recipe,
# its default argmax) and TF-IDF + logistic regression run on the same split
# (test/bench/quality_peers.py).
#
#   test/bench/quality_drift.sh      # SEEDS="42 1 2" EPOCHS=3 MAX_LENGTH=128 LR=5e-5 THREADS=2
#
# HEAD_TAIL=1 also trains each seed with truncation => 'head_tail'. PGBERT=0 or PEERS=0
# skips a side. Needs the packaged pgbert in PostgreSQL 15 (as quality_spam.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-3}
MAX_LENGTH=${MAX_LENGTH:-128}
LR=${LR:-5e-5}
THREADS=${THREADS:-2}
SEEDS=${SEEDS:-42 1 2}
HEAD_TAIL=${HEAD_TAIL:-0}
PGBERT=${PGBERT:-1}
PEERS=${PEERS:-1}
PY=${PYTHON:-.venv-model/bin/python}
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

"$PY" test/bench/spam_time_split.py data/spamassassin.csv.gz "$work"
cp -r .models/all-minilm-l6-v2 "$work/minilm"
cp test/bench/quality_drift.sql "$work/"
chmod -R a+rX "$work"
chmod a+w "$work"
truncations=head
[ "$HEAD_TAIL" = 1 ] && truncations="head head_tail"
if [ "$PGBERT" = 1 ]; then
pg_virtualenv -t -v 15 bash -c "
  set -e
  PATH=\"\$(pg_config --bindir):\$PATH\"
  psql -X -q -c 'CREATE EXTENSION pgbert'
  pgbert_import '$work/minilm' minilm >/dev/null
  for t in train calibration later later_p15 later_p50 later_p85; do
    psql -X -q -v ON_ERROR_STOP=1 -c \"CREATE TABLE \$t (id text, text text, label text)\" \
         -c \"\\\\copy \$t FROM '$work/\$t.csv' WITH (FORMAT csv, HEADER true)\"
  done
  for seed in $SEEDS; do
    for truncation in $truncations; do
      PGOPTIONS='-c pgbert.cpu_threads=$THREADS' psql -X -q -v model=spam_\${truncation}_\$seed -v seed=\$seed \
        -v epochs=$EPOCHS -v lr=$LR -v max_length=$MAX_LENGTH -v truncation=\$truncation -v train=true \
        -v out=$work/pgbert_\${truncation}_\$seed.jsonl -f $work/quality_drift.sql
    done
  done"
fi
touch "$work/peers.jsonl"
if [ "$PEERS" = 1 ]; then
  TESTS=later,later_p15,later_p50,later_p85 "$PY" test/bench/quality_peers.py "$work" "$work/minilm" "$EPOCHS" \
    "$MAX_LENGTH" "$LR" "$THREADS" "${SEEDS// /,}" | tee "$work/peers.jsonl"
fi
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads; $EPOCHS epochs, batch 32, lr $LR, max_length $MAX_LENGTH; seeds $SEEDS"
cat "$work"/pgbert_*.jsonl "$work/peers.jsonl" 2>/dev/null | grep '^{"method"' > "$work/all.jsonl" || true
"$PY" test/bench/drift_table.py "$work/all.jsonl"
