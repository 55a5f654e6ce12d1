#!/usr/bin/env bash
# The client checks against one PostgreSQL installation other than bookworm's 15, given by
# its pg_config, with pgbert already installed there (scripts/pg_version_check.sh does):
# worker, batching and models in a throw-away cluster preloading pg_stat_statements and
# pgbert, then standby and faults, which start their own servers from the same binaries.
#   scripts/pg_client_checks.sh /opt/pgbert-pg/18/bin/pg_config
# The checks find the server programs through pg_config on PATH, so that bindir goes first.
set -uo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=$1
bindir=$("$PG_CONFIG" --bindir) || exit 1
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
echo "$("$PG_CONFIG" --version) from $bindir"
if [ ! -e "$("$PG_CONFIG" --pkglibdir)/pgbert.so" ]; then echo "pgbert is not installed there"; exit 1; fi
export PATH="$bindir:$PATH"
python=$PWD/.venv-oracle/bin/python

tmp=$(mktemp -d /tmp/pgbert_clients$major.XXXXXX); chmod 777 "$tmp"
port=$(( 21005 + major * 10 ))
runas() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { runas "$bindir/pg_ctl" -D "$tmp/data" -m fast stop >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT
runas "$bindir/initdb" -D "$tmp/data" -A trust -U postgres --no-sync >/dev/null || exit 1
preload=pgbert
# pg_stat_statements first, so that pgbert's planner hook calls its (as in the 15 stage)
if [ -e "$("$PG_CONFIG" --pkglibdir)/pg_stat_statements.so" ]; then preload=pg_stat_statements,pgbert; fi
printf "port = %d\nlisten_addresses = ''\nunix_socket_directories = '%s'\nfsync = off\nmax_worker_processes = 16\nshared_preload_libraries = '%s'\n" \
  "$port" "$tmp" "$preload" >> "$tmp/data/postgresql.conf"
runas "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/log" -w start >/dev/null || { tail -30 "$tmp/log"; exit 1; }
echo "preloading $preload"

rc=0
run() { echo "--- $1 on PostgreSQL $major"; "$python" "test/client/$1.py" || { echo "--- $1 FAILED"; rc=1; }; }
# each in a database of its own, as each has a cluster of its own in the 15 stages
in_database() {
  "$bindir/createdb" -h "$tmp" -p "$port" -U postgres "$1" || { rc=1; return; }
  PGHOST=$tmp PGPORT=$port PGUSER=postgres PGDATABASE=$1 run "$1"
}
in_database check_worker
in_database check_batching
in_database check_models
runas "$bindir/pg_ctl" -D "$tmp/data" -m fast stop >/dev/null
if [ $rc != 0 ]; then echo "--- server log"; tail -40 "$tmp/log"; fi
run check_standby
run check_faults
exit $rc
