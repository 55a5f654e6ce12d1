#!/usr/bin/env bash
# Tokenizer benchmark: pgbert's engine vs Hugging Face tokenizers, one thread each, same run.
#
#   test/bench/run_tokenizer_bench.sh [PYTHON]
#
# PYTHON is an interpreter with the oracle requirements (test/oracle/requirements.txt);
# default .venv-oracle/bin/python. Two inputs: the multilingual parity corpus and the
# SpamAssassin e-mail bodies (English). Prints JSON lines and a markdown table with
# the ratio; the table goes into docs/benchmarks.md by hand. With SQL=1 it also times the
# SQL functions on the mail bodies in a throw-away cluster (pgbert must be installed).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-.venv-oracle/bin/python}
VOCAB=data/pgbert_vocab_uncased.txt
REPEATS=${REPEATS:-7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

make -s bench
# SpamAssassin bodies, one per line in COPY escaping
"$PY" test/bench/mail_lines.py "$work/mail.txt"

hf_mail=""
table="| input | implementation | texts | MB | tokens | tokens/s | MB/s | pgbert ÷ this |\n|---|---|---:|---:|---:|---:|---:|---:|\n"
for input in test/fixtures/tokenizer_corpus.txt "$work/mail.txt"; do
  name=$([ "$input" = "$work/mail.txt" ] && echo "SpamAssassin mails" || echo "parity corpus (multilingual)")
  ours=$(taskset -c 0 build/bench_tokenizer "$VOCAB" "$input" "$REPEATS")
  theirs=$(RAYON_NUM_THREADS=1 taskset -c 0 "$PY" test/bench/bench_tokenizer_hf.py "$VOCAB" "$input" "$REPEATS" 2>/dev/null)
  echo "$ours"; echo "$theirs"
  [ "$input" = "$work/mail.txt" ] && hf_mail=$(printf '%s\n' "$theirs" | grep encode_batch_fast)
  table+=$(printf '%s\n%s\n' "$ours" "$theirs" | "$PY" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
ours = rows[0]
for r in rows:
    ratio = ours["tokens_per_s"] / r["tokens_per_s"]
    print("| %s | %s | %d | %.2f | %d | %s | %.2f | %.2f× |" % (sys.argv[1], r["impl"], r["texts"],
          r["bytes"] / 1e6, r["tokens"], format(r["tokens_per_s"], ","), r["mb_per_s"], ratio))
' "$name")
  table+="\n"
done
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), one thread (taskset -c 0), median of $REPEATS passes"
printf "$table"

[ "${SQL:-0}" = 1 ] || exit 0
# Whole SQL path: one query (one backend, no parallel workers) over a table of the mail
# bodies, timed around psql, median of $REPEATS runs.
export MAIL="$work/mail.txt" REPEATS
sqlrow=$(pg_virtualenv -v 15 bash -c '
psql -X -q -c "CREATE EXTENSION pgbert" -c "CREATE TABLE mails (t text)" -c "\\copy mails FROM $MAIL"
for q in "sum(cardinality(bert_token_ids(t, max_length => NULL)))" "sum(cardinality(bert_tokenize(t)))"; do
  for i in $(seq "$REPEATS"); do
    s=$(date +%s.%N); n=$(PGOPTIONS="-c max_parallel_workers_per_gather=0" psql -X -tAc "SELECT $q FROM mails"); e=$(date +%s.%N)
    echo "$q $n $(echo "$e - $s" | bc)"
  done | sort -k3 -n | sed -n "$(( (REPEATS + 1) / 2 ))p"
done' 2>/dev/null | grep '^sum(')
echo "$sqlrow"
printf '%s\n' "$sqlrow" | "$PY" -c '
import json, sys
hf = json.loads(sys.argv[1])
print("| SQL query over the SpamAssassin mails | tokens | seconds | tokens/s | ÷ HF encode_batch_fast (same run) |")
print("|---|---:|---:|---:|---:|")
for line in sys.stdin:
    if not line.strip():
        continue
    q, n, sec = line.rsplit(" ", 2)
    n, sec = int(n), float(sec)
    print("| `SELECT %s FROM mails` | %d | %.3f | %s | %.1f× |" % (q, n, sec, format(round(n / sec), ","),
          (n / sec) / hf["tokens_per_s"]))
' "$hf_mail"
