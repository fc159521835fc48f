#!/usr/bin/env bash
# Fetches the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule, ...) from the Go module
# proxy, the module's checksum pinned by hack/prometheus-crds/go.sum, and prints the directory
# holding them. The chart's tests install them to validate its optional monitoring objects.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROMETHEUS_OPERATOR_VERSION=v0.85.0

dir="$(cd "$HACK_DIR/prometheus-crds" && GOFLAGS=-mod=readonly go mod download -json \
  "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" || die "cannot fetch the Prometheus Operator module"
[[ -d "$dir/example/prometheus-operator-crd" ]] || die "the Prometheus Operator module has no example/prometheus-operator-crd"
echo "$dir/example/prometheus-operator-crd"
