#!/usr/bin/env bash
# The main job, for now: set up, build and install pgbert, create a database in the
# machine's PostgreSQL 15 cluster, and tokenize a sentence with bert_tokenize().
# Run as root on Debian bookworm.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
make -s
make -s install

# Debian creates cluster 15/main with the server package; start it if it is down.
pg_lsclusters -h | grep -q '^15 *main' || pg_createcluster 15 main >/dev/null
pg_ctlcluster 15 main status >/dev/null 2>&1 || pg_ctlcluster 15 main start
port=$(pg_lsclusters -h | awk '$1 == "15" && $2 == "main" {print $3}')

run() { runuser -u postgres -- "$@"; }
run psql -X -q -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = 'pgbert_demo'" | grep -q 1 \
  || run createdb -p "$port" pgbert_demo
run psql -X -p "$port" -d pgbert_demo -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION IF NOT EXISTS pgbert;
SELECT bert_tokenize('PostgreSQL tokenizes "unwanted" e-mails exactly like Hugging Face!') AS pieces;
SELECT bert_token_ids('PostgreSQL tokenizes "unwanted" e-mails exactly like Hugging Face!') AS input_ids;
SELECT pgbert_info();
SQL
echo "demo: database pgbert_demo on port $port (psql -p $port -d pgbert_demo as user postgres)"
