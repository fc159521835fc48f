#!/usr/bin/env bash
# Builds the pinned Helm 4 CLI from the Go module proxy (module checksums pinned by
# hack/helm4/go.sum) and prints its path. The chart's tests render it with Helm 3 and Helm 4.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HELM4_VERSION=v4.3.1

reports_version() { "$1" version --short | grep -q "^$HELM4_VERSION"; }
GO_TOOL_CHECK=reports_version go_tool helm4 "$HELM4_VERSION" helm.sh/helm/v4/cmd/helm \
  "-X helm.sh/helm/v4/internal/version.version=$HELM4_VERSION"
