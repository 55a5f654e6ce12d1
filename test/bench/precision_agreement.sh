#!/usr/bin/env bash
# Labels of a fine-tuned spam classifier in bf16 and int8 against float32, over all 3,250
# shared mails (not CI; minutes on 2 cores). MiniLM-L6 is fine-tuned inside PostgreSQL
# with train_classifier() on a stratified 80% (test/bench/spam_split.py; EPOCHS, default 1,
# batch 32, 128 tokens, lr 5e-5, seed 42), then classify() labels every mail once per
# pgbert.cpu_precision; each precision's agreement with fp32, and the test split's
# accuracy per precision, are printed with the CPU path. bf16 is skipped where the CPU
# has no AVX512-BF16 (pgbert_info()'s cpu_bf16).
#
#   test/bench/precision_agreement.sh            # EPOCHS=1 THREADS=2
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
CREATE TABLE mails AS SELECT id, text, label, true AS in_train FROM train
                      UNION ALL SELECT id, text, label, false FROM test;
SET pgbert.cpu_threads = $THREADS;
SELECT train_classifier('train', 'text', 'label', model => 'spam', base_model => 'minilm', epochs => $EPOCHS,
                        batch_size => 32, learning_rate => 5e-5, max_length => 128,
                        validation_fraction => 0, seed => 42) IS NOT NULL AS trained;
CREATE TABLE labels (precision text, id text, label text, seconds float8);
CREATE FUNCTION label_all(p text) RETURNS void LANGUAGE plpgsql AS \\\$\\\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  EXECUTE format('SET LOCAL pgbert.cpu_precision = %s', p);
  INSERT INTO labels SELECT p, id, classify(text, 'spam'), NULL FROM mails;
  UPDATE labels SET seconds = extract(epoch FROM clock_timestamp() - t0) WHERE precision = p;
END \\\$\\\$;
SELECT label_all('fp32');
SELECT label_all('int8');
SELECT label_all('bf16') WHERE (pgbert_info()->>'cpu_bf16')::boolean;
SELECT 'cpu path: ' || (pgbert_info()->>'cpu_path');
SELECT '| precision | mails | labels equal to fp32''s | test accuracy | classify() speed |';
SELECT '|---|---|---|---|---|';
SELECT format('| %s | %s | %s of %s (%s%%) | %s%% | %s |', l.precision, count(*),
              count(*) FILTER (WHERE l.label = f.label), count(*),
              round(100.0 * count(*) FILTER (WHERE l.label = f.label) / count(*), 2),
              round(100.0 * count(*) FILTER (WHERE NOT m.in_train AND l.label = m.label)
                    / count(*) FILTER (WHERE NOT m.in_train), 2),
              round(count(*) / max(l.seconds))::text || ' rows/s')
FROM labels l JOIN labels f ON f.precision = 'fp32' AND f.id = l.id JOIN mails m ON m.id = l.id
GROUP BY l.precision ORDER BY l.precision <> 'fp32', l.precision;
SQL
"
