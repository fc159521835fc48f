#!/usr/bin/env bash
# Creates (once) a Python venv with the wheels pinned in hack/python-requirements.txt, installed
# with --require-hashes, and prints its python. The venv is cached under $PROSPECTOR_CACHE keyed
# by the requirements file's own sha256, so editing a pin builds a new one.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

requirements="$HACK_DIR/python-requirements.txt"
python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "the pinned wheels are for CPython 3.11; python3 is $(python3 --version 2>&1)"
key="$(sha256sum "$requirements" | cut -c1-16)"
dest="$PROSPECTOR_CACHE/python/$key"
if [[ ! -f "$dest/.complete" ]]; then
  log "creating the Python tools venv ($key)"
  rm -rf "$dest"
  python3 -m venv "$dest"
  "$dest/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$requirements" >&2 || die "pip could not install $requirements"
  touch "$dest/.complete"
fi
echo "$dest/bin/python"
