#!/usr/bin/env bash
# The two ways to a pgbert of the current release must give the same catalog:
#   full     CREATE EXTENSION pgbert                  (pgbert--<default_version>.sql alone)
#   chain    CREATE EXTENSION pgbert VERSION '0.1.0'; ALTER EXTENSION pgbert UPDATE
#            (pgbert--0.1.0.sql and every upgrade script after it)
# Both run in two databases of a throw-away cluster of the PostgreSQL that PG_CONFIG names,
# from the files installed there (which must be the tree's: make install first), and are
# compared section by section:
#   schema         pg_dump --schema-only
#   members_dump   pg_dump --schema-only --binary-upgrade: the only mode in which pg_dump
#                  writes out an extension's members (definitions, ACLs, comments, policies,
#                  triggers, ALTER EXTENSION ADD); OIDs and xids, which differ, blanked
#   extension      the pg_extension row
#   members        the member objects (pg_depend deptype 'e', by pg_describe_object)
#   member_acls    the privileges on members and their columns (aclexplode; NULL = default)
#   init_privs     pg_init_privs of the extension's objects (what pg_dump takes as given)
#   comments       every comment on a non-system object, columns included
#   config         pg_extension_config_dump registrations (extconfig, extcondition)
#   dependencies   every pg_depend row of a non-system object (OID-named internal
#                  triggers and toast tables blanked)
# Rows are sorted where their order is arbitrary (catalog scans); the dumps are not sorted.
# Then the check checks itself: four changes made to the chain database by hand must
# each show up, or the comparison has lost its teeth.
#   test/client/check_install_paths.sh PG_CONFIG [CLIENT_PG_CONFIG]
# CLIENT_PG_CONFIG names the installation whose psql and pg_dump to use (a newer one,
# for a build whose own client programs do not run). PGBERT_CHECK_PORT: the cluster's
# port (default 5490 + major - 15; the socket is in a private directory). Exits 1 on
# any difference, 2 when it could not run.
set -uo pipefail
cd "$(dirname "$0")/../.."
PG_CONFIG=${1:?usage: $0 PG_CONFIG [CLIENT_PG_CONFIG]}
CLIENT_PG_CONFIG=${2:-$1}
bindir=$("$PG_CONFIG" --bindir) || exit 2
client_bindir=$("$CLIENT_PG_CONFIG" --bindir) || exit 2
sharedir=$("$PG_CONFIG" --sharedir) || exit 2
server_version=$("$PG_CONFIG" --version)
major=$(sed -E 's/^PostgreSQL ([0-9]+).*/\1/' <<<"$server_version")
default_version=$(sed -nE "s/^default_version = '([^']+)'/\1/p" pgbert.control)

# the installed scripts must be the tree's, all of them and no others: a missing full
# script would send CREATE EXTENSION down the chain too, and a stray upgrade script
# could shorten the chain
installed=$(cd "$sharedir/extension" && ls pgbert--*.sql pgbert.control 2>/dev/null | sort)
tracked=$(ls pgbert--*.sql pgbert.control | sort)
if [ "$installed" != "$tracked" ]; then
  echo "the pgbert scripts installed in $sharedir/extension are not the tree's:"
  diff <(echo "$tracked") <(echo "$installed") | sed -n 's/^[<>]/  &/p' | sed 's/  </  tree only:/; s/  >/  installed only:/'
  echo "(make install PG_CONFIG=$PG_CONFIG first)"; exit 2
fi
for f in $tracked; do
  cmp -s "$f" "$sharedir/extension/$f" ||
    { echo "installed $f differs from the tree's (make install PG_CONFIG=$PG_CONFIG first)"; exit 2; }
done
[ -e "pgbert--$default_version.sql" ] || { echo "no full script pgbert--$default_version.sql"; exit 2; }

tmp=$(mktemp -d /tmp/pgbert_paths.XXXXXX) || exit 2
chmod 777 "$tmp"
port=${PGBERT_CHECK_PORT:-$((5490 + major - 15))}
runas() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  runas "$bindir/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1
  if [ -n "${PGBERT_KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
runas "$bindir/initdb" -D "$tmp/data" -A trust -U postgres --no-sync >"$tmp/initdb.log" 2>&1 ||
  { cat "$tmp/initdb.log"; exit 2; }
printf "port = %d\nlisten_addresses = ''\nunix_socket_directories = '%s'\nfsync = off\n" \
  "$port" "$tmp" >>"$tmp/data/postgresql.conf"
runas "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w start >/dev/null ||
  { tail -20 "$tmp/server.log"; exit 2; }
export PGHOST=$tmp PGPORT=$port PGUSER=postgres
psql() { "$client_bindir/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

psql -d postgres -c 'CREATE DATABASE full_script' -c 'CREATE DATABASE upgrade_chain' || exit 2
psql -d full_script -c 'CREATE EXTENSION pgbert' || exit 2
psql -d upgrade_chain -c "CREATE EXTENSION pgbert VERSION '0.1.0'" -c 'ALTER EXTENSION pgbert UPDATE' || exit 2
for db in full_script upgrade_chain; do
  v=$(psql -At -d $db -c "SELECT extversion FROM pg_extension WHERE extname = 'pgbert'") || exit 2
  [ "$v" = "$default_version" ] || { echo "$db: pgbert $v, not $default_version"; exit 2; }
done

# the pg_depend rows of the extension's members, as a CTE
members="SELECT classid, objid, objsubid FROM pg_depend
         WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
           AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgbert')"
# 16384 = FirstNormalObjectId: both databases are copies of template1, so every object at
# or above it was made by pgbert's scripts
declare -A query=(
  [extension]="SELECT extname, extversion, extrelocatable, extnamespace::regnamespace::text, extowner::regrole::text
               FROM pg_extension WHERE extname = 'pgbert'"
  [members]="SELECT pg_describe_object(classid, objid, objsubid) FROM ($members) m ORDER BY 1"
  [member_acls]="WITH m AS ($members),
      acls AS (SELECT 'pg_class'::regclass AS classid, c.oid AS objid, 0 AS objsubid,
                      coalesce(c.relacl, acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::\"char\", c.relowner)) AS acl
               FROM pg_class c JOIN m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
               UNION ALL
               SELECT 'pg_class'::regclass, a.attrelid, a.attnum, a.attacl
               FROM pg_attribute a JOIN m ON m.classid = 'pg_class'::regclass AND m.objid = a.attrelid
               WHERE a.attacl IS NOT NULL
               UNION ALL
               SELECT 'pg_proc'::regclass, p.oid, 0, coalesce(p.proacl, acldefault('f'::\"char\", p.proowner))
               FROM pg_proc p JOIN m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
               UNION ALL
               SELECT 'pg_namespace'::regclass, n.oid, 0, coalesce(n.nspacl, acldefault('n', n.nspowner))
               FROM pg_namespace n JOIN m ON m.classid = 'pg_namespace'::regclass AND m.objid = n.oid
               UNION ALL
               SELECT 'pg_type'::regclass, t.oid, 0, coalesce(t.typacl, acldefault('T', t.typowner))
               FROM pg_type t JOIN m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid)
      SELECT pg_describe_object(classid, objid, objsubid), x.grantor::regrole::text,
             CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END, x.privilege_type, x.is_grantable
      FROM acls, aclexplode(acl) x ORDER BY 1, 2, 3, 4, 5"
  [init_privs]="SELECT pg_describe_object(i.classoid, i.objoid, i.objsubid), i.privtype, x.grantor::regrole::text,
                       CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END,
                       x.privilege_type, x.is_grantable
                FROM pg_init_privs i, aclexplode(i.initprivs) x WHERE i.objoid >= 16384 ORDER BY 1, 2, 3, 4, 5, 6"
  [comments]="SELECT pg_describe_object(classoid, objoid, objsubid), description
              FROM pg_description WHERE objoid >= 16384 ORDER BY 1, 2"
  [config]="SELECT c.config::regclass::text, c.condition
            FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c(config, condition)
            WHERE e.extname = 'pgbert' ORDER BY 1, 2"
  [dependencies]="SELECT regexp_replace(regexp_replace(pg_describe_object(classid, objid, objsubid) || ' -> '
                                                      || pg_describe_object(refclassid, refobjid, refobjsubid),
                                                      'RI_ConstraintTrigger_([ac])_[0-9]+', 'RI_ConstraintTrigger_\1_<oid>', 'g'),
                                       'pg_toast_[0-9]+', 'pg_toast_<oid>', 'g') || ' (' || deptype::text || ')'
                  FROM pg_depend WHERE objid >= 16384 ORDER BY 1"
)
sections="schema members_dump extension members member_acls init_privs comments config dependencies"

# blanked in the binary-upgrade dump: the OIDs and relfilenodes it pins, the OIDs of the
# config tables in binary_upgrade_create_empty_extension (section config names them), the
# xids and the WAL positions of columns it restores. Deleted: the missing value ALTER TABLE
# ADD COLUMN ... DEFAULT leaves for rows older than the column (the chain adds columns to
# existing tables; none has rows when the extension is created). \restrict keys are random
# (PostgreSQL 17.6, 18).
normalize_dump() {
  sed -E -e '/^\\(un)?restrict /d' \
         -e '/binary_upgrade_set_next_[a-z_]*(oid|relfilenode)\(/d' \
         -e '/^-- set missing value\.$/,/^--( |$)/{/^-- set missing value\.$/d; /^--/!d}' \
         -e "/binary_upgrade_create_empty_extension\(/s/'\{[0-9,]*\}'/'{<oids>}'/" \
         -e "/binary_upgrade_set_next_attribute_versions\(/s/[0-9A-F]+\/[0-9A-F]+/<lsn>/g" \
         -e "s/(relfrozenxid|relminmxid) = '[0-9]+'/\1 = '<xid>'/g" \
         -e "s/WHERE oid = '[0-9]+'/WHERE oid = '<oid>'/"
}
# one file per section in directory $2 for database $1
snapshot() {
  local db=$1 out=$2 s
  mkdir -p "$out"
  "$client_bindir/pg_dump" --schema-only -d "$db" | normalize_dump >"$out/schema" || return 1
  "$client_bindir/pg_dump" --schema-only --binary-upgrade -d "$db" | normalize_dump >"$out/members_dump" || return 1
  for s in "${!query[@]}"; do
    psql -At -F ' | ' -d "$db" -c "${query[$s]}" >"$out/$s" || return 1
  done
}
snapshot full_script "$tmp/full" && snapshot upgrade_chain "$tmp/chain" || exit 2

echo "$server_version ($bindir), pg_dump and psql of $("$CLIENT_PG_CONFIG" --version)"
rc=0 summary=""
for s in $sections; do
  n=$(wc -l <"$tmp/full/$s")
  # an empty section would prove nothing
  if [ "$n" -eq 0 ]; then echo "section $s: empty in the full script's database"; rc=1; continue; fi
  if cmp -s "$tmp/full/$s" "$tmp/chain/$s"; then
    summary+=" $s $n,"
  else
    echo "section $s differs (--- full script, +++ upgrade chain):"
    diff -u --label full_script --label upgrade_chain "$tmp/full/$s" "$tmp/chain/$s" | head -80
    rc=1
  fi
done
[ $rc -eq 0 ] || { echo "FAILED: CREATE EXTENSION pgbert and the upgrade chain give different catalogs"; exit 1; }
echo "identical (lines per section):${summary%,}"

# The check's own check: each change below, made to the chain's database, must show in
# the sections named beside it.
psql -d upgrade_chain \
  -c "ALTER FUNCTION pgbert.shown(text) COST 2" \
  -c "COMMENT ON FUNCTION pgbert.shown(text) IS 'changed'" \
  -c "GRANT SELECT ON SEQUENCE pgbert.training_jobs_id_seq TO PUBLIC" \
  -c "ALTER EXTENSION pgbert DROP TABLE pgbert.training_log" >/dev/null || exit 2
snapshot upgrade_chain "$tmp/changed" || exit 2
missed=""
for s in members_dump comments schema member_acls members config dependencies; do
  cmp -s "$tmp/full/$s" "$tmp/changed/$s" && missed+=" $s"
done
if [ -n "$missed" ]; then
  echo "FAILED: the check did not notice changes made on purpose, in section(s):$missed"; exit 1
fi
echo "and it notices a changed function, comment, grant and membership (sections members_dump, comments, schema, member_acls, members, config, dependencies)"
