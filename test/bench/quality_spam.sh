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
# -t: a cluster in a temporary directory, so this can run beside other pg_virtualenv users
pg_virtualenv -t -v 15 bash -c "
  set -e
  PATH=\"\$(pg_config --bindir):\$PATH\"
  psql -X -q -c 'CREATE EXTENSION pgbert'
  pgbert_import '$work/minilm' minilm >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE train (id text, text text, label text);
CREATE TABLE test (id text, text text, label text);
\\\\copy train FROM '$work/train.csv' WITH (FORMAT csv, HEADER true)
\\\\copy test FROM '$work/test.csv' WITH (FORMAT csv, HEADER true)
SQL
  run() {  # model, base_model (NULL or 'name'), learning rate, warm-up ratio, label
    psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
SET pgbert.cpu_threads = $THREADS;
SET pgbert.progress_interval = 60;
CREATE TEMP TABLE r AS
SELECT train_classifier('train', 'text', 'label', model => '\$1', base_model => \$2, epochs => $EPOCHS,
                        batch_size => 32, learning_rate => \$3, max_length => $MAX_LENGTH,
                        validation_fraction => 0, warmup_ratio => \$4) AS r;
SELECT json_build_object('method', '\$5',
                         'accuracy', (evaluate_classifier('test', 'text', 'label', '\$1')->>'accuracy')::float8,
                         'train_seconds', round((r->'metrics'->>'train_seconds')::numeric, 1),
                         'train_rows_per_s', round((r->'metrics'->>'train_rows_per_s')::numeric, 2))
FROM r \\\\g $work/\$1.json
SQL
  }
  run spam \"'minilm'\" $LR 0 'pgbert train_classifier, MiniLM-L6 fine-tuned'
  if [ $SCRATCH = 1 ]; then run scratch NULL 5e-4 0.1 'pgbert train_classifier, small BERT from scratch'; fi"
"$PY" test/bench/quality_peers.py "$work" "$work/minilm" "$EPOCHS" "$MAX_LENGTH" "$LR" "$THREADS" | tee "$work/peers.jsonl"
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads; SpamAssassin $("$PY" -c "import csv,sys; csv.field_size_limit(1 << 30); print(sum(1 for _ in csv.DictReader(open(sys.argv[1], newline=''))))" "$work/test.csv") test mails (stratified 20%); $EPOCHS epochs, batch 32, lr $LR, max_length $MAX_LENGTH"
"$PY" - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
rows = []
for f in ("spam.json", "scratch.json"):
    p = os.path.join(w, f)
    if os.path.exists(p):
        rows.append(json.loads(open(p).read().strip().splitlines()[-1]))
rows += [json.loads(l) for l in open(os.path.join(w, "peers.jsonl")) if l.startswith('{"method"')]
print("| method | test accuracy | training time | training rows/s |")
print("|---|---|---|---|")
for r in rows:
    print("| %s | %.2f%% | %s s | %s |" % (r["method"], 100 * r["accuracy"], r.get("train_seconds", ""),
                                         r.get("train_rows_per_s", "")))
PY
