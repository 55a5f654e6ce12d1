#!/usr/bin/env bash
# The pg_regress suites against one PostgreSQL installation, given by its pg_config:
# pgbert built with -Werror (0 warnings) and installed there, then a throw-away cluster
# run twice, plain and preloading pgbert (the encoder worker serving). For the versions
# Debian's pg_virtualenv does not know (those scripts/pg_versions.sh installs).
#   scripts/pg_version_check.sh /opt/pgbert-pg/17/bin/pg_config [CLIENT_PG_CONFIG]
# CLIENT_PG_CONFIG, when given, names the installation whose psql and pg_regress drive
# the suites (a newer one: psql reads older servers), for a build whose own client
# programs do not run; the server, its headers and pgbert's build are still PG_CONFIG's.
set -uo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=$1
CLIENT_PG_CONFIG=${2:-$1}
bindir=$("$PG_CONFIG" --bindir) || exit 1
client_bindir=$("$CLIENT_PG_CONFIG" --bindir) || exit 1
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
echo "$("$PG_CONFIG" --version) from $bindir; configured with: $("$PG_CONFIG" --configure)"
regress_driver=()
if [ "$CLIENT_PG_CONFIG" != "$PG_CONFIG" ]; then
  echo "NOTE: psql and pg_regress from $("$CLIENT_PG_CONFIG" --version) ($client_bindir)"
  regress_driver=("pg_regress_installcheck=$(dirname "$("$CLIENT_PG_CONFIG" --pgxs)")/../test/regress/pg_regress --inputdir=./ --bindir=$client_bindir")
fi

tmp=$(mktemp -d /tmp/pgbert_pg$major.XXXXXX); chmod 777 "$tmp"
# built in a copy of the tracked files, so that this version's objects never mix with the tree's
mkdir "$tmp/src" && git ls-files -z | xargs -0 cp --parents -t "$tmp/src" || exit 1
cd "$tmp/src"
# without CUDA: pgbert_gpu.so includes no PostgreSQL header, so it is the same on every version
if ! make -s -j2 PG_CONFIG="$PG_CONFIG" USE_CUDA=0 COPT=-Werror >build.log 2>&1; then
  tail -40 build.log; echo "pgbert does not build with -Werror against PostgreSQL $major"; exit 1
fi
if grep "warning:" build.log; then echo "warnings building against PostgreSQL $major"; exit 1; fi
make -s install PG_CONFIG="$PG_CONFIG" USE_CUDA=0 >/dev/null || exit 1
port=$(( 21000 + major * 10 ))
runas() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { runas "$bindir/pg_ctl" -D "$tmp/data" -m fast stop >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT
runas "$bindir/initdb" -D "$tmp/data" -A trust -U postgres --no-sync >/dev/null || exit 1
printf "port = %d\nlisten_addresses = ''\nunix_socket_directories = '%s'\nfsync = off\nmax_worker_processes = 16\n" \
  "$port" "$tmp" >> "$tmp/data/postgresql.conf"
export PGHOST=$tmp PGPORT=$port PGUSER=postgres
if [ ! -e "$("$PG_CONFIG" --pkglibdir)/auto_explain.so" ]; then
  echo "NOTE: this build has no auto_explain: plan_nodes runs its statements without it"
  export PGBERT_NO_AUTO_EXPLAIN=1
fi
start() { runas "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/log" -w start >/dev/null || { tail -30 "$tmp/log"; exit 1; }; }
rc=0
start
make -s installcheck PG_CONFIG="$PG_CONFIG" "${regress_driver[@]}" REGRESS_OUT=build/regress || {
  head -150 build/regress/regression.diffs; rc=1; }
runas "$bindir/pg_ctl" -D "$tmp/data" -m fast stop >/dev/null
echo "shared_preload_libraries = 'pgbert'" >> "$tmp/data/postgresql.conf"
start
make -s installcheck PG_CONFIG="$PG_CONFIG" "${regress_driver[@]}" REGRESS_OUT=build/regress-preload || {
  head -150 build/regress-preload/regression.diffs; rc=1; }
served=$("$client_bindir/psql" -XAtq -d contrib_regression -c "SELECT state, requests, rows FROM pgbert.worker")
echo "encoder worker after the suites (state|requests|rows): $served"
case $served in "ready|"[1-9]*"|"[1-9]*) ;; *) echo "the encoder worker did not serve the suites"; rc=1 ;; esac
exit $rc
