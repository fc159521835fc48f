#!/usr/bin/env bash
# Builds hack/argocd-health (Argo CD's Lua health checks run on one object, through the
# gopher-lua that Argo CD embeds, pinned by hack/argocd-health/go.sum) and prints its path. The
# cache key is the tool's own source, so an edit rebuilds it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ARGOCD_HEALTH_VERSION="$(cat "$HACK_DIR/argocd-health/main.go" "$HACK_DIR/argocd-health/go.sum" | sha256sum | cut -c1-16)"
go_tool argocd-health "$ARGOCD_HEALTH_VERSION" .
