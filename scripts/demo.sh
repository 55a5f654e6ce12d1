#!/usr/bin/env bash
# The main job, for now: set up, build and install pgbert, start the machine's PostgreSQL 15
# cluster, load the SpamAssassin sample into a table, import the real all-MiniLM-L6-v2
# checkpoint with pgbert_import, embed every mail in SQL, and score a nearest-centroid spam
# filter on a held-out fifth (accuracy, precision, recall). Fine-tuning with
# train_classifier() and classify() on a trained head come with the training release.
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
SELECT name, version, num_params, pg_size_pretty(size_bytes) AS size FROM pgbert.models;
SELECT bert_tokenize('PostgreSQL tokenizes "unwanted" e-mails exactly like Hugging Face!', 'minilm') AS pieces;
SET pgbert.cpu_threads = 2;
-- every mail's sentence embedding (subject and the start of the body), computed in the database
CREATE TEMP TABLE embedded AS
SELECT id, label, abs(hashtext(id)) % 5 = 0 AS held_out,
       embed(coalesce(subject, '') || E'\n' || left(body, 200), 'minilm') AS e
FROM mails;
-- one centroid per label from the training four fifths
CREATE TEMP TABLE centroids AS
SELECT label, array_agg(v ORDER BY i) AS c
FROM (SELECT label, i, avg(x) AS v
      FROM embedded, unnest(e) WITH ORDINALITY AS u(x, i)
      WHERE NOT held_out GROUP BY label, i) per_dim
GROUP BY label;
-- the held-out fifth: the label of the nearest centroid by cosine similarity
CREATE TEMP TABLE predicted AS
SELECT DISTINCT ON (m.id) m.id, m.label AS truth, c.label AS predicted
FROM embedded m, centroids c
WHERE m.held_out
ORDER BY m.id, (SELECT sum(a * b) / sqrt(sum(a * a) * sum(b * b))
              FROM unnest(m.e::float8[], c.c::float8[]) AS t(a, b)) DESC;
SELECT count(*) AS held_out_mails,
       round(avg((truth = predicted)::int), 3) AS accuracy,
       round(count(*) FILTER (WHERE truth = 'spam' AND predicted = 'spam')::numeric
             / nullif(count(*) FILTER (WHERE predicted = 'spam'), 0), 3) AS spam_precision,
       round(count(*) FILTER (WHERE truth = 'spam' AND predicted = 'spam')::numeric
             / nullif(count(*) FILTER (WHERE truth = 'spam'), 0), 3) AS spam_recall
FROM predicted;
SQL
echo "demo: database pgbert_demo on port $port (psql -p $port -d pgbert_demo as user postgres)"
