#!/usr/bin/env bash
# Builds the local Kubernetes control plane from the Go module proxy and prints the directory
# holding the binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) and
# kwok-stages.yaml, the Stage objects kwok plays.
# Module checksums are pinned by the go.sum files next to this script. When KUBEBUILDER_ASSETS
# is set, its binaries are used instead and nothing is built.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok kwok-stages.yaml)

dest="$PROSPECTOR_CACHE/controlplane/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"

# KUBEBUILDER_ASSETS (an envtest assets directory) wins for every binary it has; anything it
# lacks (envtest ships only etcd and kube-apiserver) comes from our own build.
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  [[ -d "$KUBEBUILDER_ASSETS" ]] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS is not a directory"
  missing=0
  for b in "${BINARIES[@]}"; do [[ -e "$KUBEBUILDER_ASSETS/$b" ]] || missing=1; done
  if [[ "$missing" == 0 ]]; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  [[ -f "$dest/.complete" ]] || KUBEBUILDER_ASSETS= bash "${BASH_SOURCE[0]}" </dev/null >/dev/null \
    || die "cannot build the binaries KUBEBUILDER_ASSETS lacks"
  merged="$PROSPECTOR_CACHE/controlplane/merged-$(printf '%s' "$KUBEBUILDER_ASSETS" | sha256sum | cut -c1-16)"
  rm -rf "$merged" && mkdir -p "$merged"
  for b in "${BINARIES[@]}"; do
    if [[ -e "$KUBEBUILDER_ASSETS/$b" ]]; then ln -s "$KUBEBUILDER_ASSETS/$b" "$merged/$b"; else ln -s "$dest/$b" "$merged/$b"; fi
  done
  echo "$merged"
  exit 0
fi

if [[ -f "$dest/.complete" ]]; then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || die "go is required to build the control plane"
export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
export CGO_ENABLED=0
tmp="$(mktemp -d "$PROSPECTOR_CACHE/controlplane-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
build_date="$(date -u -d @0 +%Y-%m-%dT%H:%M:%SZ)"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

log "building kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION (first run takes a while)"
(cd "$HACK_DIR/controlplane" && go build -ldflags "$k8s_ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler)

log "building etcd $ETCD_VERSION"
(cd "$HACK_DIR/etcd" && go build -ldflags "-s -w" -o "$tmp/etcd" .)

log "building kwok $KWOK_VERSION"
(cd "$HACK_DIR/kwok" && go build -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
  -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok)

# kwok simulates nothing without Stage objects; its own "fast" stages (node-initialize,
# node heartbeat with lease, pod ready/complete/delete) ship in the module source.
stages="$(cd "$HACK_DIR/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  [[ -f "$stages/$f" ]] || die "kwok $KWOK_VERSION has no stage $f"
  { echo "---"; cat "$stages/$f"; } >> "$tmp/kwok-stages.yaml"
done

"$tmp/kube-apiserver" --version | grep -qx "Kubernetes $K8S_VERSION" \
  || die "kube-apiserver reports '$("$tmp/kube-apiserver" --version)', expected $K8S_VERSION"
touch "$tmp/.complete"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$dest"
