#!/usr/bin/env bash
# bf16 training against float32 training on the spam task, inside PostgreSQL (not CI;
# minutes on 2 cores). MiniLM-L6 is fine-tuned twice with train_classifier() on the same
# stratified 80% of the 3,250 shared mails (test/bench/spam_split.py; EPOCHS, default 1,
# batch 32, 128 tokens, lr 5e-5, seed 42): once with pgbert.cpu_precision = fp32, once
# with bf16. Both are then evaluated in float32 on the other 20%: test accuracy, how many
# test labels the two agree on, and each run's training rows/s, printed with the CPU path.
# Refused (the script stops) where the CPU has no AVX512-BF16.
#
#   test/bench/bf16_training_quality.sh            # EPOCHS=1 THREADS=2
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-1}
THREADS=${THREADS:-2}
PY=${PYTHON:-.venv-model/bin/python}
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads, $EPOCHS epoch(s)"
"$PY" test/bench/spam_split.py data/spamassassin.csv.gz "$work"
cp -r .models/all-minilm-l6-v2 "$work/minilm"
chmod -R a+rX "$work"
pg_virtualenv -t -v 15 bash -c "
  set -e
  PATH=\"\$(pg_config --bindir):\$PATH\"
  psql -X -q -c 'CREATE EXTENSION pgbert'
  pgbert_import '$work/minilm' minilm >/dev/null
  psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE train (id text, text text, label text);
CREATE TABLE test (id text, text text, label text);
\\\\copy train FROM '$work/train.csv' WITH (FORMAT csv, HEADER true)
\\\\copy test FROM '$work/test.csv' WITH (FORMAT csv, HEADER true)
SET pgbert.cpu_threads = $THREADS;
SET pgbert.progress_interval = 0;
CREATE TABLE runs (precision text, metrics jsonb);
CREATE FUNCTION train_in(p text) RETURNS void LANGUAGE plpgsql AS \\\$\\\$
BEGIN
  EXECUTE format('SET LOCAL pgbert.cpu_precision = %s', p);
  INSERT INTO runs
  SELECT p, r->'metrics'
  FROM train_classifier('train', 'text', 'label', model => 'spam_' || p, base_model => 'minilm',
                        epochs => $EPOCHS, batch_size => 32, learning_rate => 5e-5, max_length => 128,
                        validation_fraction => 0, seed => 42) r;
END \\\$\\\$;
SELECT train_in('fp32');
SELECT train_in('bf16');
SELECT 'cpu path: ' || (pgbert_info()->>'cpu_path');
SELECT '| training precision | train rows/s | train seconds | final train loss | test accuracy | test labels equal to fp32''s |';
SELECT '|---|---|---|---|---|---|';
SELECT format('| %s | %s | %s | %s | %s%% | %s of %s |', r.precision,
              round((r.metrics->>'train_rows_per_s')::numeric, 2), round((r.metrics->>'train_seconds')::numeric, 1),
              round((r.metrics->>'train_loss')::numeric, 4),
              round(100.0 * count(*) FILTER (WHERE classify(t.text, 'spam_' || r.precision) = t.label) / count(*), 2),
              count(*) FILTER (WHERE classify(t.text, 'spam_' || r.precision) = classify(t.text, 'spam_fp32')),
              count(*))
FROM runs r CROSS JOIN test t GROUP BY r.precision, r.metrics ORDER BY r.precision <> 'fp32';
SQL
"
