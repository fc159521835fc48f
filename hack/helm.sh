#!/usr/bin/env bash
# Builds the pinned Helm CLI from the Go module proxy (module checksums pinned by hack/helm/go.sum)
# and prints its path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HELM_VERSION=v3.22.0

# As Helm's Makefile does: the Kubernetes version `helm template` and `helm lint` assume is the
# one of the client-go it is built with (otherwise 1.20).
k8s_minor="$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2] }' "$HACK_DIR/helm/go.mod")"
[[ -n "$k8s_minor" ]] || die "hack/helm/go.mod names no k8s.io/client-go"
ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
reports_version() { "$1" version --short | grep -q "^$HELM_VERSION"; }
GO_TOOL_CHECK=reports_version go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$ldflags"
