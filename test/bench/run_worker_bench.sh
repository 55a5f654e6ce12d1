#!/usr/bin/env bash
# Encoder worker benchmark: pgbench with 1, 4 and 16 clients calling classify() on single
# rows, inserting single rows labelled by a trigger (docs/moderation.md), and calling
# classify_batch() on 32 rows, through the encoder worker and in-process
# (pgbert.worker = off) in the same throw-away cluster (pgbert preloaded), same machine.
#
#   test/bench/run_worker_bench.sh [SECONDS] [MAX_TOKENS]     # defaults 20 64
#
# The model is MiniLM-L6's encoder with a seeded 2-label head (make_bench_classifier.py),
# 2,000 SpamAssassin mail bodies truncated at MAX_TOKENS. In-process, each backend uses
# one thread (pgbert.cpu_threads = 1: the clients share the cores); the worker's engine
# process uses WORKER_THREADS (default: all cores, since it alone runs every model).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-20}
MAX_TOKENS=${2:-64}
WORKER_THREADS=${WORKER_THREADS:-$(nproc)}
PY=.venv-oracle/bin/python
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

"$PY" test/bench/mail_lines.py "$work/mail.txt"
"$PY" test/bench/make_bench_classifier.py .models/all-minilm-l6-v2 "$work/cls" "$MAX_TOKENS" >/dev/null
chmod -R a+rX "$work"
pg_virtualenv -t -v 15 -o "shared_preload_libraries=pgbert" -o "max_connections=60" \
  -o "pgbert.worker_threads=$WORKER_THREADS" bash -c "
  set -e
  PATH=\"\$(pg_config --bindir):\$PATH\"
  psql -X -q -c 'CREATE EXTENSION pgbert'
  pgbert_import '$work/cls' bench >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE bench_mails (id serial PRIMARY KEY, body text);
\\\\copy bench_mails (body) FROM PROGRAM 'head -n 2000 $work/mail.txt' WITH (FORMAT text)
CREATE TABLE inbox (id bigserial PRIMARY KEY, body text, label text);
CREATE FUNCTION label_row() RETURNS trigger LANGUAGE plpgsql AS \\\$\\\$
BEGIN NEW.label := classify(NEW.body, 'bench'); RETURN NEW; END \\\$\\\$;
CREATE TRIGGER label_row BEFORE INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION label_row();
SQL
  $PY test/bench/bench_worker.py $SECONDS_PER_RUN 1 4 16" | grep '^{' | tee "$work/results.jsonl"
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; MiniLM-L6 classifier, mails truncated at $MAX_TOKENS tokens, $SECONDS_PER_RUN s per run; engine threads $WORKER_THREADS"
"$PY" - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
get = {(r["script"], r["clients"], r["path"]): r for r in rows}
print("| script | clients | worker rows/s | in-process rows/s | worker ÷ in-process | p50 / p99 ms worker | p50 / p99 ms in-process | memory worker (backends + engine) | memory in-process (backends) |")
print("|---|---|---|---|---|---|---|---|---|")
for (script, n, path), w in get.items():
    if path != "worker":
        continue
    p = get[(script, n, "in-process")]
    if not w["rows_per_s"] or not p["rows_per_s"]:
        print("| %s | %d | too short a run |" % (script, n))
        continue
    print("| %s | %d | %.1f | %.1f | %.2f× | %.1f / %.1f | %.1f / %.1f | %.0f + %.0f MiB | %.0f MiB |" % (
        script, n, w["rows_per_s"], p["rows_per_s"], w["rows_per_s"] / p["rows_per_s"], w["p50_ms"], w["p99_ms"],
        p["p50_ms"], p["p99_ms"], w["backends_mib"], w["engine_mib"], p["backends_mib"]))
PY
