#!/usr/bin/env bash
# Fetches or builds every pinned dependency (each script is a no-op once its cache entry exists)
# and prints where each one is.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for dep in postgres controlplane python onnxruntime model kubectl helm helm4 kubeconform prometheus-crds argocd-health; do
  start=$SECONDS
  path="$(bash "$HACK_DIR/$dep.sh")" || die "hack/$dep.sh failed"
  printf '%-13s %s (%ss)\n' "$dep" "$path" "$((SECONDS - start))"
done
