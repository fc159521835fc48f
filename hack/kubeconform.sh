#!/usr/bin/env bash
# Builds the pinned kubeconform from the Go module proxy (module checksums pinned by
# hack/kubeconform/go.sum) and prints its path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBECONFORM_VERSION=v0.8.0

reports_version() { [[ "$("$1" -v)" == "$KUBECONFORM_VERSION" ]]; }
GO_TOOL_CHECK=reports_version go_tool kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform \
  "-X main.version=$KUBECONFORM_VERSION"
