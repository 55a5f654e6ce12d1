#!/usr/bin/env bash
# Quality benchmark (not CI; tens of minutes on 2 cores): SpamAssassin with a stratified
# 80/20 split (test/bench/spam_split.py). pgbert fine-tunes all-MiniLM-L6-v2 inside
# PostgreSQL with train_classifier() and scores the test set with evaluate_classifier();
# HF Trainer fine-tunes the same checkpoint with the same recipe, and TF-IDF + logistic
# regression gives a classical baseline (test/bench/quality_peers.py). SCRATCH=1 also
# trains pgbert's small from-scratch BERT.
#
#   test/bench/quality_spam.sh            # EPOCHS=3 MAX_LENGTH=128 LR=5e-5 THREADS=2
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-3}
MAX_LENGTH=${MAX_LENGTH:-128}
LR=${LR:-5e-5}
THREADS=${THREADS:-2}
SCRATCH=${SCRATCH:-0}
PY=${PYTHON:-.venv-model/bin/python}
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

"$PY" test/bench/spam_split.py data/spamassassin.csv.gz "$work"
cp -r .models/all-minilm-l6-v2 "$work/minilm"
chmod -R a+rX "$work"
pg_virtualenv -v 15 bash -c "
  set -e
  PATH=\"\$(pg_config --bindir):\$PATH\"
  psql -X -q -c 'CREATE EXTENSION pgbert'
  pgbert_import '$work/minilm' minilm >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE train (id text, text text, label text);
CREATE TABLE test (id text, text text, label text);
\\\\copy train FROM '$work/train.csv' WITH (FORMAT csv, HEADER true)
\\\\copy test FROM '$work/test.csv' WITH (FORMAT csv, HEADER true)
SET pgbert.cpu_threads = $THREADS;
SET pgbert.progress_interval = 60;
SELECT json_build_object('method', 'pgbert train_classifier, MiniLM-L6 fine-tuned',
                         'accuracy', (evaluate_classifier('test', 'text', 'label', 'spam')->>'accuracy')::float8,
                         'train_seconds', round((r->'metrics'->>'train_seconds')::numeric, 1),
                         'train_rows_per_s', round((r->'metrics'->>'train_rows_per_s')::numeric, 2))
FROM train_classifier('train', 'text', 'label', model => 'spam', base_model => 'minilm', epochs => $EPOCHS,
                      batch_size => 32, learning_rate => $LR, max_length => $MAX_LENGTH,
                      validation_fraction => 0) r \\\\g $work/pgbert.json
SQL
  if [ $SCRATCH = 1 ]; then
    psql -X -q -v ON_ERROR_STOP=1 <<SQL
SET pgbert.cpu_threads = $THREADS;
SET pgbert.progress_interval = 60;
SELECT json_build_object('method', 'pgbert train_classifier, small BERT from scratch',
                         'accuracy', (evaluate_classifier('test', 'text', 'label', 'scratch')->>'accuracy')::float8,
                         'train_seconds', round((r->'metrics'->>'train_seconds')::numeric, 1),
                         'train_rows_per_s', round((r->'metrics'->>'train_rows_per_s')::numeric, 2))
FROM train_classifier('train', 'text', 'label', model => 'scratch', epochs => $EPOCHS, batch_size => 32,
                      learning_rate => 5e-4, max_length => $MAX_LENGTH, validation_fraction => 0,
                      warmup_ratio => 0.1) r \\\\g $work/scratch.json
SQL
  fi"
"$PY" test/bench/quality_peers.py "$work" "$work/minilm" "$EPOCHS" "$MAX_LENGTH" "$LR" "$THREADS" | tee "$work/peers.jsonl"
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads; SpamAssassin $(($(wc -l < "$work/test.csv") - 1)) test mails (stratified 20%); $EPOCHS epochs, batch 32, lr $LR, max_length $MAX_LENGTH"
"$PY" - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
rows = []
for f in ("pgbert.json", "scratch.json"):
    p = os.path.join(w, f)
    if os.path.exists(p):
        rows.append(json.loads(open(p).read().strip().splitlines()[-1]))
rows += [json.loads(l) for l in open(os.path.join(w, "peers.jsonl")) if l.strip()]
print("| method | test accuracy | training time | training rows/s |")
print("|---|---|---|---|")
for r in rows:
    print("| %s | %.2f%% | %s s | %s |" % (r["method"], 100 * r["accuracy"], r.get("train_seconds", ""),
                                         r.get("train_rows_per_s", "")))
PY
