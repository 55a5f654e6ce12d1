#!/usr/bin/env bash
# Encoder benchmark: pgbert's CPU engine vs PyTorch and ONNX Runtime (fp32), same machine,
# same thread count, run one after the other.
#
#   test/bench/run_encoder_bench.sh [MODEL_DIR] [THREADS] [SECONDS_PER_SHAPE]
#
# Needs a Python with test/oracle/requirements-model.txt (PYTHON, default .venv-model/bin/python).
# MAX_LEN=128 skips the longer fixed shapes (for bert-base on small machines).
# SHAPES=b32_s16,mails32_max256 runs only the named shapes (all when unset).
# OUTPUT=logits times what classify() computes, the logits of a model with a classification
# head (test/bench/make_bench_classifier.py makes one from MiniLM), on every side.
# PRECISION=int8 runs pgbert with its 8-bit dense layers (bt_model_quantize) and adds ONNX Runtime's
# dynamically quantized model as a peer, besides the float32 ones.
# ROUNDS=N measures every implementation again in each of N rounds, one after the other
# (bench_encoder_peers.py runs bench_encoder inside each round), and the table takes each
# one's best round: this shared machine's speed drifts by tens of percent over minutes. The
# ratio cells then add, in brackets, the lowest and highest ratio measured within one round.
# Prints JSON lines and a markdown table of sequences/s with pgbert's ratio to each peer.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-.models/all-minilm-l6-v2}
THREADS=${2:-2}
SECONDS_PER_SHAPE=${3:-2}
PY=${PYTHON:-.venv-model/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ROUNDS=${ROUNDS:-1}

make -s build/bench_encoder
"$PY" test/bench/mail_lines.py "$work/mail.txt"
pgbert=(build/bench_encoder "$MODEL" data/pgbert_vocab_uncased.txt "$work/mail.txt" "$SECONDS_PER_SHAPE")
if [ "$ROUNDS" = 1 ]; then
  OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS "${pgbert[@]}" | tee "$work/results.jsonl"
  "$PY" test/bench/bench_encoder_peers.py "$MODEL" "$work/mail.txt" "$THREADS" "$SECONDS_PER_SHAPE" 2>/dev/null \
    | tee -a "$work/results.jsonl"
else
  OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS ROUNDS=$ROUNDS PGBERT_CMD="${pgbert[*]}" \
    "$PY" test/bench/bench_encoder_peers.py "$MODEL" "$work/mail.txt" "$THREADS" "$SECONDS_PER_SHAPE" 2>/dev/null \
    | tee "$work/results.jsonl"
fi
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads, model $MODEL, median per shape," \
  "best of $ROUNDS round(s)"
"$PY" - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for r in rows:
    if r.get("memory"):
        print("memory: checkpoint %(checkpoint_mib).1f MiB, parameters %(params_mib).1f MiB, "
              "peak RSS while loading %(peak_rss_mib).1f MiB, RSS after load %(rss_after_load_mib).1f MiB" % r)
        break
rows = [r for r in rows if not r.get("memory")]
impls = list(dict.fromkeys(r["impl"] for r in rows))
shapes = list(dict.fromkeys(r["shape"] for r in rows))
get = {}
for r in rows:  # each implementation's best round per shape
    key = (r["impl"], r["shape"])
    if key not in get or r["seq_per_s"] > get[key]["seq_per_s"]:
        get[key] = r
ours = impls[0]
head = "| shape | tokens | " + " | ".join("%s seq/s" % i for i in impls) + " | " + \
       " | ".join("pgbert ÷ %s" % " ".join(w for w in i.split() if not w[0].isdigit()) for i in impls[1:]) + \
       " | pgbert GFLOP/s |"
print(head)
print("|" + "---|" * (len(impls) * 2 + 2))
by_round = {(r["impl"], r["shape"], r.get("round")): r["seq_per_s"] for r in rows}


def ratio(i, s):
    """Best over best; with rounds, also the range of the ratio within each round."""
    if (i, s) not in get:
        return "-"
    cell = "%.2f×" % (get[(ours, s)]["seq_per_s"] / get[(i, s)]["seq_per_s"])
    per = sorted(by_round[(ours, s, k)] / by_round[(i, s, k)] for (impl, sh, k) in by_round
                 if impl == i and sh == s and k is not None and (ours, s, k) in by_round)
    return cell + (" (%.2f–%.2f)" % (per[0], per[-1]) if len(per) > 1 else "")


for s in shapes:
    o = get[(ours, s)]
    cells = ["%.2f" % get[(i, s)]["seq_per_s"] if (i, s) in get else "-" for i in impls]
    ratios = [ratio(i, s) for i in impls[1:]]
    print("| %s | %d | %s | %s | %.1f |" % (s, o["tokens"], " | ".join(cells), " | ".join(ratios), o["gflop_per_s"]))
PY
