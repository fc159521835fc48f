#!/usr/bin/env bash
# Builds (once) the HTTP load generator oha from crates.io, pinned by version and by its
# Cargo.lock (`--locked`; cargo checks every crate's checksum against the index), and prints its
# path. Cached under $PROSPECTOR_CACHE/oha/<version>. (Its TLS feature cannot be left out, so the
# build needs cmake and a C compiler for aws-lc.)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OHA_VERSION=1.16.0
dest="$PROSPECTOR_CACHE/oha/$OHA_VERSION"
if [[ ! -x "$dest/bin/oha" ]]; then
  log "building oha $OHA_VERSION (once; a few minutes)"
  cargo install --quiet --locked --version "$OHA_VERSION" --root "$dest.tmp" oha >&2 \
    || die "cargo could not build oha $OHA_VERSION"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
echo "$dest/bin/oha"
