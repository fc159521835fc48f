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
  # As Helm's Makefile does: the Kubernetes version `helm template` and `helm lint` assume is the
  # one of the client-go it is built with (otherwise 1.20).
  k8s_minor="$(cd "$HACK_DIR/helm" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  (cd "$HACK_DIR/helm" && GOFLAGS="-mod=readonly -trimpath -buildvcs=false" CGO_ENABLED=0 go build \
    -ldflags "$ldflags" -o "$tmp/bin/helm" helm.sh/helm/v3/cmd/helm)
  "$tmp/bin/helm" version --short | grep -q "^$HELM_VERSION" \
    || die "helm reports '$("$tmp/bin/helm" version --short)', expected $HELM_VERSION"
  touch "$tmp/.complete"
  mkdir -p "$(dirname "$dest")" && rm -rf "$dest" && mv "$tmp" "$dest"
  trap - EXIT
fi
echo "$dest/bin/helm"
