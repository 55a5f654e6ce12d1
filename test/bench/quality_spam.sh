#!/usr/bin/env bash
# Quality benchmark (not CI; tens of minutes on 2 cores): SpamAssassin with a stratified
# 80/20 split (test/bench/spam_split.py). pgbert fine-tunes all-MiniLM-L6-v2 inside
# PostgreSQL with train_classifier() and scores the test set with evaluate_classifier();
# HF Trainer fine-tunes the same checkpoint with the same recipe, and TF-IDF + logistic
# regression gives a classical baseline (test/bench/quality_peers.py). SCRATCH=1 also
# trains pgbert's small from-scratch BERT.
#
#   test/bench/quality_spam.sh            # EPOCHS=3 MAX_LENGTH=128 LR=5e-5 THREADS=2 SEEDS=42
#
# SEEDS="1 2 3" repeats the fine-tuning on both sides once per seed (dropout masks, head
# initialization and batch order change; the split does not). PGBERT=0 or PEERS=0 skips a
# side, so the two sides can run as two processes with THREADS=1 each.
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-3}
MAX_LENGTH=${MAX_LENGTH:-128}
LR=${LR:-5e-5}
THREADS=${THREADS:-2}
SCRATCH=${SCRATCH:-0}
SEEDS=${SEEDS:-42}
PGBERT=${PGBERT:-1}
PEERS=${PEERS:-1}
PY=${PYTHON:-.venv-model/bin/python}
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

"$PY" test/bench/spam_split.py data/spamassassin.csv.gz "$work"
cp -r .models/all-minilm-l6-v2 "$work/minilm"
chmod -R a+rX "$work"
# -t: a cluster in a temporary directory, so this can run beside other pg_virtualenv users
if [ "$PGBERT" = 1 ]; then
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
  run() {  # model, base_model (NULL or 'name'), learning rate, warm-up ratio, label, seed
    psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
SET pgbert.cpu_threads = $THREADS;
SET pgbert.progress_interval = 60;
CREATE TEMP TABLE r AS
SELECT train_classifier('train', 'text', 'label', model => '\$1', base_model => \$2, epochs => $EPOCHS,
                        batch_size => 32, learning_rate => \$3, max_length => $MAX_LENGTH,
                        validation_fraction => 0, warmup_ratio => \$4, seed => \$6) AS r;
SELECT json_build_object('method', '\$5', 'seed', \$6,
                         'accuracy', (evaluate_classifier('test', 'text', 'label', '\$1')->>'accuracy')::float8,
                         'train_seconds', round((r->'metrics'->>'train_seconds')::numeric, 1),
                         'train_rows_per_s', round((r->'metrics'->>'train_rows_per_s')::numeric, 2))
FROM r \\\\g $work/\$1.json
SQL
  }
  for seed in $SEEDS; do
    run spam_\$seed \"'minilm'\" $LR 0 'pgbert train_classifier, MiniLM-L6 fine-tuned' \$seed
    cat $work/spam_\$seed.json
  done
  if [ $SCRATCH = 1 ]; then run scratch NULL 5e-4 0.1 'pgbert train_classifier, small BERT from scratch' 42; fi"
fi
touch "$work/peers.jsonl"
if [ "$PEERS" = 1 ]; then
  "$PY" test/bench/quality_peers.py "$work" "$work/minilm" "$EPOCHS" "$MAX_LENGTH" "$LR" "$THREADS" "${SEEDS// /,}" | tee "$work/peers.jsonl"
fi
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads; SpamAssassin $("$PY" -c "import csv,sys; csv.field_size_limit(1 << 30); print(sum(1 for _ in csv.DictReader(open(sys.argv[1], newline=''))))" "$work/test.csv") test mails (stratified 20%); $EPOCHS epochs, batch 32, lr $LR, max_length $MAX_LENGTH"
"$PY" - "$work" <<'PY'
import glob, json, os, statistics, sys
w = sys.argv[1]
rows = []
for p in sorted(glob.glob(os.path.join(w, "spam_*.json"))) + glob.glob(os.path.join(w, "scratch.json")):
    rows.append(json.loads(open(p).read().strip().splitlines()[-1]))
rows += [json.loads(l) for l in open(os.path.join(w, "peers.jsonl")) if l.startswith('{"method"')]
print("| method | seed | test accuracy | training time | training rows/s |")
print("|---|---|---|---|---|")
for r in rows:
    print("| %s | %s | %.2f%% | %s s | %s |" % (r["method"], r.get("seed", ""), 100 * r["accuracy"],
                                              r.get("train_seconds", ""), r.get("train_rows_per_s", "")))
by_method = {}
for r in rows:
    by_method.setdefault(r["method"], []).append(100 * r["accuracy"])
print()
print("| method | runs | mean test accuracy | min | max |")
print("|---|---|---|---|---|")
for m, accs in by_method.items():
    print("| %s | %d | %.2f%% | %.2f%% | %.2f%% |" % (m, len(accs), statistics.mean(accs), min(accs), max(accs)))
PY
