#!/usr/bin/env bash
# Build and install Citus (a test dependency only: pgbert never links it) from the vendored
# tarball ../shared/vendor/citus-$CITUS_VERSION.tar.gz beside the checkout, into the
# PostgreSQL 15 that pg_config names. Idempotent: nothing is done when citus.so of that
# version is already installed. Builds in a temporary directory outside the checkout and
# installs the Debian packages the build needs; run as root. About 6 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

CITUS_VERSION=${CITUS_VERSION:-13.2.2}
tarball=$(realpath -m "../shared/vendor/citus-$CITUS_VERSION.tar.gz")
libdir=$(pg_config --pkglibdir)

# citus.so carries its version string ("Citus 13.2.2 on ..."): the same build is a no-op
if [ -f "$libdir/citus.so" ] && grep -aq "Citus $CITUS_VERSION " "$libdir/citus.so"; then
  echo "citus: $CITUS_VERSION already installed in $libdir"
  exit 0
fi
if [ ! -f "$tarball" ]; then
  echo "citus: the tarball $tarball is missing (shared/vendor/ must sit beside the checkout;" \
       "see shared/vendor/README.md)" >&2
  exit 1
fi

packages=(build-essential postgresql-server-dev-15 libcurl4-openssl-dev liblz4-dev libzstd-dev
          libkrb5-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev autoconf flex bison)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "citus: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build=$(mktemp -d /tmp/citus-build.XXXXXX)
trap 'rm -rf "$build"' EXIT
tar xzf "$tarball" -C "$build"
src="$build/citus-$CITUS_VERSION"

# Citus defines its own static have_createdb_privilege() for PostgreSQL < 16, and the
# PostgreSQL 15.20 headers now declare an extern function of that name: rename Citus's copy
# (a #define just above its definition) in the build tree.
compat="$src/src/include/pg_version_compat.h"
awk '
  NR > 1 && $0 == "have_createdb_privilege(void)" {
    print "#define have_createdb_privilege citus_compat_have_createdb_privilege"; renamed = 1 }
  NR > 1 { print prev }
  { prev = $0 }
  END { print prev; if (!renamed) exit 1 }' "$compat" > "$compat.new" \
  || { echo "citus: have_createdb_privilege() not found in $compat" >&2; exit 1; }
mv "$compat.new" "$compat"

echo "citus: building $CITUS_VERSION in $build"
(cd "$src" && ./configure -q PG_CONFIG="$(command -v pg_config)" >/dev/null \
  && make -s -j"$(nproc)" >/dev/null && make -s install >/dev/null)
grep -aq "Citus $CITUS_VERSION " "$libdir/citus.so" || { echo "citus: $libdir/citus.so is not $CITUS_VERSION" >&2; exit 1; }
echo "citus: $CITUS_VERSION installed in $libdir"
