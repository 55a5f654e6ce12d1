#!/usr/bin/env bash
# The main job: set up, build and install pgbert, start the machine's PostgreSQL 15 cluster,
# load the SpamAssassin sample into a table, import the real all-MiniLM-L6-v2 checkpoint with
# pgbert_import, fine-tune it into a spam filter with train_classifier() on four fifths of
# the mails, classify() some held-out mails, and print evaluate_classifier()'s metrics on
# the held-out fifth. A few minutes on two cores. Run as root on Debian bookworm.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
make -s
make -s install

# Debian creates cluster 15/main with the server package; start it if it is down.
pg_lsclusters -h | grep -q '^15 *main' || pg_createcluster 15 main >/dev/null
pg_ctlcluster 15 main status >/dev/null 2>&1 || pg_ctlcluster 15 main start
port=$(pg_lsclusters -h | awk '$1 == "15" && $2 == "main" {print $3}')
bindir=$(pg_config --bindir)

run() { runuser -u postgres -- "$@"; }
run psql -X -q -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = 'pgbert_demo'" | grep -q 1 \
  || run createdb -p "$port" pgbert_demo
# the postgres user reads the demo files from a copy it can see
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r .models/all-minilm-l6-v2 "$tmp/minilm"
zcat data/spamassassin.csv.gz > "$tmp/mails.csv"
chown -R postgres "$tmp"

run psql -X -q -p "$port" -d pgbert_demo -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION IF NOT EXISTS pgbert;
ALTER EXTENSION pgbert UPDATE;  -- a demo database left by an older release
DROP TABLE IF EXISTS mails;
CREATE TABLE mails (id text PRIMARY KEY, source text, label text, subject text, body text);
\copy mails FROM '$tmp/mails.csv' WITH (FORMAT csv, HEADER true)
SQL
if ! run psql -X -q -p "$port" -d pgbert_demo -tAc "SELECT 1 FROM pgbert.models WHERE name = 'minilm'" | grep -q 1; then
  run env PGPORT="$port" PGDATABASE=pgbert_demo "$bindir/pgbert_import" \
      --base-model sentence-transformers/all-MiniLM-L6-v2 "$tmp/minilm" minilm >/dev/null
fi

run psql -X -p "$port" -d pgbert_demo -v ON_ERROR_STOP=1 <<'SQL'
\timing on
SET pgbert.cpu_threads = 2;
SELECT name, version, num_params, pg_size_pretty(size_bytes) AS size FROM pgbert.models WHERE name = 'minilm';
-- four fifths of the mails to learn from, one fifth held out (the same split every run)
CREATE TEMP VIEW learn AS
SELECT coalesce(subject, '') || E'\n' || body AS text, label FROM mails WHERE abs(hashtext(id)) % 5 <> 0;
CREATE TEMP VIEW held_out AS
SELECT id, coalesce(subject, '') || E'\n' || body AS text, label FROM mails WHERE abs(hashtext(id)) % 5 = 0;
-- fine-tune MiniLM into a spam filter, inside the database (one epoch, 64 tokens per mail,
-- to keep the demo to a few minutes on two cores)
SELECT r->>'model' AS model, r->>'version' AS version,
       round((r->'metrics'->>'train_seconds')::numeric) AS train_seconds,
       round((r->'metrics'->>'train_rows_per_s')::numeric, 1) AS rows_per_s
FROM train_classifier('learn', 'text', 'label', model => 'spam_filter', base_model => 'minilm',
                      epochs => 1, max_length => 64, validation_fraction => 0) r;
-- use it
SELECT id, label AS truth, classify(text, 'spam_filter') AS predicted
FROM held_out ORDER BY id LIMIT 8;
-- score it on the held-out mails
SELECT (m->>'rows')::int AS held_out_mails,
       round((m->>'accuracy')::numeric, 4) AS accuracy,
       round((m->'per_class'->'spam'->>'precision')::numeric, 4) AS spam_precision,
       round((m->'per_class'->'spam'->>'recall')::numeric, 4) AS spam_recall,
       round((m->>'macro_f1')::numeric, 4) AS macro_f1,
       m->'confusion_matrix' AS confusion_ham_spam
FROM evaluate_classifier('held_out', 'text', 'label', 'spam_filter') m;
SELECT name, version, deployed, labels FROM pgbert.models ORDER BY name, version;
SQL
echo "demo: database pgbert_demo on port $port (psql -p $port -d pgbert_demo as user postgres)"
