#!/usr/bin/env bash
# PostgreSQL + pgbert with the encoder worker's engine on the GPU (run by run_device.sh pg,
# inside ../shared/device/pg-on-device.sh: PG* variables set, the cluster preloads pgbert).
# Data in /tmp/pgwork (mails.csv, minilm-rand: a random model of MiniLM's shape; speed does
# not depend on the weights). Writes /tmp/pgwork/pg_results.txt and prints it.
set -euo pipefail
W=/tmp/pgwork
R=$W/pg_results.txt
: > $R
say() { echo "$*" | tee -a $R; }
q() { psql -X -v ON_ERROR_STOP=1 -qtA "$@"; }

q -c "CREATE EXTENSION IF NOT EXISTS pgbert"
q -c "ALTER SYSTEM SET pgbert.device = '${DEVICE:-cuda}'" -c "ALTER SYSTEM SET pgbert.worker_batch_tokens = 65536" \
  -c "SELECT pg_reload_conf()" >/dev/null
for i in $(seq 1 100); do
  state=$(q -c "SELECT state || ' ' || coalesce(device, '') || ' ' || coalesce(message, '') FROM pgbert.worker")
  case "$state" in ready*) break ;; esac
  sleep 0.2
done
say "worker: $state"
pgbert_import --labels ham,spam $W/minilm-rand minilm_rand >/dev/null
q <<'SQL'
CREATE TABLE mails (id text PRIMARY KEY, source text, label text, subject text, body text);
\copy mails FROM '/tmp/pgwork/mails.csv' WITH (FORMAT csv, HEADER true)
SQL

# single-row round trip: pgbench, one client, per-transaction latencies
q -c "SELECT classify('warm-up: load the model into the engine', 'minilm_rand')" >/dev/null
echo "SELECT classify('Cheap meds, no prescription needed, click here to claim your prize today', 'minilm_rand');" > $W/one.sql
(cd $W && pgbench -n -c 1 -T "${LATENCY_SECONDS:-10}" -f one.sql -l --log-prefix=lat > pgbench.out)
say "$(cat $W/lat.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "single-row classify() round trip, MiniLM shape, gpu: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms over %d queries", a[int(NR*0.5)+1]/1000, a[int(NR*0.9)+1]/1000, a[int(NR*0.99)+1]/1000, NR}')"

# a 201,500-row scan (COPIES=62 copies of the 3,250 mails; each mail's first 400 characters)
COPIES=${COPIES:-62}
q -v copies="$COPIES" <<'SQL'
CREATE TABLE big AS SELECT g * 10000 + row_number() OVER () AS id, left(coalesce(subject, '') || E'\n' || body, 400) AS text
FROM mails, generate_series(1, :copies) g;
ANALYZE big;
SQL
say "rows: $(q -c "SELECT count(*) FROM big"), mean tokens per row (first 2000): $(q -c "SELECT round(avg(cardinality(bert_token_ids(text, 'minilm_rand'))), 1) FROM (SELECT text FROM big LIMIT 2000) s")"
for rows in 256 2048; do
  t0=$(date +%s.%N)
  n=$(q -c "SET pgbert.batch_rows = $rows" -c "SELECT count(*) FILTER (WHERE c = 'spam') FROM (SELECT classify(text, 'minilm_rand') AS c FROM big) s")
  t1=$(date +%s.%N)
  say "$(awk -v a="$t0" -v b="$t1" -v r="$rows" -v n=$((COPIES * 3250)) 'BEGIN {printf "SELECT classify(text) over %d rows, pgbert.batch_rows %d: %.1f s, %.0f rows/s", n, r, b - a, n / (b - a)}') (spam: $n)"
done
q -c "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FILTER (WHERE c = 'spam') FROM (SELECT classify(text, 'minilm_rand') AS c FROM big LIMIT 20000) s" | tee -a $R

# training in the engine process on the GPU (the random weights make the accuracy meaningless:
# the fine-tune accuracy check runs in run_device.sh gpu with the real MiniLM)
t0=$(date +%s.%N)
TRAIN_ROWS=${TRAIN_ROWS:-3250}
q -v train_rows="$TRAIN_ROWS" <<'SQL' > $W/train.txt 2>&1 || say "train_classifier failed: $(cat $W/train.txt)"
CREATE VIEW learn AS SELECT coalesce(subject, '') || E'\n' || body AS text, label FROM mails
ORDER BY md5(id) LIMIT :train_rows;
SELECT train_classifier('learn', 'text', 'label', model => 'spam_gpu', base_model => 'minilm_rand',
                        epochs => 1, max_length => 128, validation_fraction => 0);
SQL
t1=$(date +%s.%N)
say "$(awk -v a="$t0" -v b="$t1" -v n="$TRAIN_ROWS" 'BEGIN {printf "train_classifier on %d mails, 1 epoch, 128 tokens, engine on the gpu: %.1f s, %.0f rows/s", n, b - a, n / (b - a)}')"
say "worker after: $(q -c "SELECT state || ' ' || coalesce(device, '') || ', engine restarts ' || engine_restarts || ', errors ' || errors FROM pgbert.worker")"
cat $R
