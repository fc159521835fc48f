#!/usr/bin/env bash
# `make dev` / `make dev-down`: runs a local Prospector environment in the background (Postgres
# 18 + pgvector with the `prospector` database migrated, and a control plane with kwok and the
# CRDs), applies examples/tiers.yaml, and says how to use it. State lives in
# $PROSPECTOR_CACHE/dev (as root: /var/tmp/prospector/dev, which the unprivileged Postgres user
# can reach) and is recreated by every `up`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

if [[ "$(id -u)" == 0 ]]; then
  dir="${PROSPECTOR_SHARED_DIR:-/var/tmp/prospector}/dev"
else
  dir="$PROSPECTOR_CACHE/dev"
fi
pidfile="$dir/localenv.pid"

down() {
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "stopping the local environment (pid $(cat "$pidfile"))"
    kill "$(cat "$pidfile")"
    for _ in $(seq 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

up() {
  bash hack/deps.sh >&2
  local kubectl
  kubectl="$(bash hack/kubectl.sh)"
  log "building prospector-localenv"
  cargo build --quiet -p prospector-tests --bin prospector-localenv
  down
  rm -rf "$dir" && mkdir -p "$dir" && chmod 755 "$(dirname "$dir")" "$dir"
  setsid nohup "$REPO_ROOT/target/debug/prospector-localenv" --dir "$dir" >"$dir/localenv.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  log "waiting for the control plane and Postgres"
  for _ in $(seq 600); do
    [[ -f "$dir/ready" ]] && break
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -n 30 "$dir/localenv.log" >&2; die "the local environment exited"; }
    sleep 0.3
  done
  [[ -f "$dir/ready" ]] || die "the local environment was not ready within 3 minutes; see $dir/localenv.log"
  # shellcheck disable=SC1091
  source "$dir/env"
  "$kubectl" apply -f examples/tiers.yaml
  "$kubectl" get tiers
  cat <<MSG

Prospector's local environment is running (logs: $dir). To use it:

  export KUBECONFIG=$KUBECONFIG
  export DATABASE_URL=$DATABASE_URL
  alias kubectl=$kubectl
  kubectl get tiers

Stop it with: make dev-down
MSG
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) die "usage: hack/dev.sh up|down" ;;
esac
