#!/usr/bin/env bash
# Builds the pinned Helm CLI from the Go module proxy (module checksums pinned by hack/helm/go.sum)
# and prints its path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HELM_VERSION=v3.22.0

dest="$PROSPECTOR_CACHE/helm/$HELM_VERSION"
if [[ ! -f "$dest/.complete" ]]; then
  command -v go >/dev/null || die "go is required to build helm"
  log "building helm $HELM_VERSION"
  tmp="$(mktemp -d "$PROSPECTOR_CACHE/helm-build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$HACK_DIR/helm" && GOFLAGS="-mod=readonly -trimpath -buildvcs=false" CGO_ENABLED=0 go build \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    -o "$tmp/bin/helm" helm.sh/helm/v3/cmd/helm)
  "$tmp/bin/helm" version --short | grep -q "^$HELM_VERSION" \
    || die "helm reports '$("$tmp/bin/helm" version --short)', expected $HELM_VERSION"
  touch "$tmp/.complete"
  mkdir -p "$(dirname "$dest")" && rm -rf "$dest" && mv "$tmp" "$dest"
  trap - EXIT
fi
echo "$dest/bin/helm"
