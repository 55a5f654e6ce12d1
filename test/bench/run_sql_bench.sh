#!/usr/bin/env bash
# SQL overhead benchmark: classify() per row (transparent batching off and on) and
# classify_batch() over SpamAssassin mail bodies in a table, against the bare engine on the
# same texts, same machine, one thread.
#
#   test/bench/run_sql_bench.sh [ROWS] [MAX_TOKENS]
#   WORKER=1 test/bench/run_sql_bench.sh ...   the same in a cluster that preloads pgbert, so
#                                              the rows run in the encoder worker (1 thread)
#
# The model is MiniLM-L6's encoder with a seeded 2-label head (make_bench_classifier.py),
# imported with pgbert_import into a throw-away cluster (pg_virtualenv). Needs the
# extension installed (make install) and .venv-oracle (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-300}
MAX_TOKENS=${2:-128}
PY=.venv-oracle/bin/python
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

make -s build/bench_rows
"$PY" test/bench/mail_lines.py "$work/mail.txt"
"$PY" test/bench/make_bench_classifier.py .models/all-minilm-l6-v2 "$work/cls" "$MAX_TOKENS" >/dev/null
OPENBLAS_NUM_THREADS=1 build/bench_rows "$work/cls" "$work/mail.txt" "$ROWS" "$MAX_TOKENS" 32 | tee "$work/results.jsonl"
opts=()
if [ "${WORKER:-0}" = 1 ]; then
  opts=(-o shared_preload_libraries=pgbert -o pgbert.worker_threads=1 -o "pgbert.worker_batch_tokens=$((32 * MAX_TOKENS))")
fi
pg_virtualenv -v 15 "${opts[@]}" bash -c "
  set -e
  PATH=\"\$(pg_config --bindir):\$PATH\"
  psql -X -q -c 'CREATE EXTENSION pgbert'
  pgbert_import '$work/cls' bench >/dev/null
  psql -X -q -c \"ALTER SYSTEM SET pgbert.batch_tokens = $((32 * MAX_TOKENS))\" -c 'SELECT pg_reload_conf()' >/dev/null
  $PY test/bench/bench_sql.py '$work/mail.txt' $ROWS bench" 2>&1 | grep "^{" | tee -a "$work/results.jsonl"
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), 1 thread, MiniLM-L6 classifier, $ROWS mails truncated at $MAX_TOKENS tokens$([ "${WORKER:-0}" = 1 ] && echo ', SQL through the encoder worker')"
"$PY" - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
mem = [r for r in rows if r.get("memory")]
get = {(r["impl"], r["mode"]): r for r in rows if not r.get("memory")}
print("| mode | engine rows/s | SQL rows/s | SQL ÷ engine | SQL overhead per row |")
print("|---|---|---|---|---|")
for mode, engine_mode in (("per row", "per row"), ("plain SQL, batched", "batched"), ("batched", "batched")):
    e, s = get[("engine", engine_mode)], get[("sql", mode)]
    over = (s["seconds"] - e["seconds"]) / s["rows"] * 1e3
    print("| %s | %.1f | %.1f | %.2f | %.2f ms |" % (mode, e["rows_per_s"], s["rows_per_s"],
                                                   s["rows_per_s"] / e["rows_per_s"], over))
plain, batch = get[("sql", "plain SQL, batched")], get[("sql", "batched")]
print("\nplain SELECT classify(body) ÷ classify_batch: %.2f" % (plain["rows_per_s"] / batch["rows_per_s"]))
par = get.get(("sql", "plain SQL, batched, parallel"))
if par:
    print("the same in a parallel plan (leader + 1 worker): %.1f rows/s, %.2fx one process; plan: %s"
          % (par["rows_per_s"], par["rows_per_s"] / plain["rows_per_s"], par["plan"]))
for m in mem:
    print("backend memory: RSS %(rss_before_mib).1f -> %(rss_after_mib).1f MiB (peak %(peak_rss_mib).1f MiB); "
          "private %(anon_before_mib).1f -> %(anon_after_mib).1f MiB; shared buffers touched %(shmem_after_mib).1f MiB; "
          "the cache accounts %(cached_mib).1f MiB" % m)
PY
