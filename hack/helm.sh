#!/usr/bin/env bash
# Builds the pinned Helm CLI from the Go module proxy (module checksums pinned by hack/helm/go.sum)
# and prints its path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HELM_VERSION=v3.22.0

# As Helm's Makefile does: the Kubernetes version `helm template` and `helm lint` assume is the
# one of the client-go it is built with (otherwise 1.20).
k8s_minor="$(cd "$HACK_DIR/helm" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)"
ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
reports_version() { "$1" version --short | grep -q "^$HELM_VERSION"; }
GO_TOOL_CHECK=reports_version go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$ldflags"
