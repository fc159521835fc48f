#!/usr/bin/env bash
# `make dev` / `make dev-down`: runs a local Prospector environment in the background (Postgres
# 18 + pgvector with the `prospector` database migrated, a control plane with kwok and the CRDs,
# the operator with its inline embedding worker, and the REST API server), applies
# examples/tiers.yaml, and says how to use it. State lives in
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
operator_pidfile="$dir/operator.pid"
operator_port="${PROSPECTOR_DEV_OPERATOR_PORT:-8081}"
apiserver_pidfile="$dir/apiserver.pid"
api_port="${PROSPECTOR_DEV_API_PORT:-8080}"

# stop PIDFILE WHAT: stops the process PIDFILE names (TERM, then KILL after 10 s).
stop() {
  local file="$1" what="$2"
  if [[ -f "$file" ]] && kill -0 "$(cat "$file")" 2>/dev/null; then
    log "stopping $what (pid $(cat "$file"))"
    kill "$(cat "$file")"
    for _ in $(seq 50); do kill -0 "$(cat "$file")" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$(cat "$file")" 2>/dev/null || true
  fi
  rm -f "$file"
}

# wait_ready PORT PIDFILE WHAT LOG: waits up to a minute for http://127.0.0.1:PORT/readyz to say
# ok, failing with the log's tail as soon as the process exits.
wait_ready() {
  local port="$1" file="$2" what="$3" logfile="$4"
  for _ in $(seq 200); do
    [[ "$(curl -sf "http://127.0.0.1:$port/readyz" 2>/dev/null)" == ok ]] && return 0
    kill -0 "$(cat "$file")" 2>/dev/null || { tail -n 30 "$logfile" >&2; die "$what exited"; }
    sleep 0.3
  done
  die "$what was not ready within a minute; see $logfile"
}

down() {
  stop "$apiserver_pidfile" "the REST API server"
  # The operator before the control plane: it must not reconcile against one going away.
  stop "$operator_pidfile" "the operator"
  stop "$pidfile" "the local environment"
}

up() {
  bash hack/deps.sh >&2
  local kubectl
  kubectl="$(bash hack/kubectl.sh)"
  log "building prospector-localenv, prospector-operator and prospector-apiserver"
  cargo build --quiet -p prospector-tests --bin prospector-localenv
  cargo build --quiet -p prospector-operator --bin prospector-operator
  cargo build --quiet -p prospector-apiserver --bin prospector-apiserver
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
  "$kubectl" create namespace prospector-system --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
  log "starting the operator (inline embedding; logs: $dir/operator.log)"
  KUBECONFIG="$KUBECONFIG" DATABASE_URL="$DATABASE_URL" RUST_LOG="${RUST_LOG:-info}" setsid nohup \
    "$REPO_ROOT/target/debug/prospector-operator" run --leader-election=false --log-format=text \
    --http-addr="127.0.0.1:$operator_port" --platform-namespace=prospector-system \
    >"$dir/operator.log" 2>&1 </dev/null &
  echo $! >"$operator_pidfile"
  wait_ready "$operator_port" "$operator_pidfile" "the operator" "$dir/operator.log"
  # The REST API, with a fresh admin token (kept only in the state directory).
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/admin-token")
  log "starting the REST API server on 127.0.0.1:$api_port (logs: $dir/apiserver.log)"
  KUBECONFIG="$KUBECONFIG" DATABASE_URL="$DATABASE_URL" PROSPECTOR_ADMIN_TOKEN_FILE="$dir/admin-token" setsid nohup \
    "$REPO_ROOT/target/debug/prospector-apiserver" --listen="127.0.0.1:$api_port" \
    >"$dir/apiserver.log" 2>&1 </dev/null &
  echo $! >"$apiserver_pidfile"
  wait_ready "$api_port" "$apiserver_pidfile" "the REST API server" "$dir/apiserver.log"
  cat >>"$dir/env" <<ENV
export PROSPECTOR_API_URL=http://127.0.0.1:$api_port
export PROSPECTOR_ADMIN_TOKEN=$(cat "$dir/admin-token")
ENV
  "$kubectl" get tiers
  cat <<MSG

Prospector's local environment is running, with the operator and the REST API (logs: $dir).
To use it (or: source $dir/env):

  export KUBECONFIG=$KUBECONFIG
  export DATABASE_URL=$DATABASE_URL
  export PROSPECTOR_API_URL=http://127.0.0.1:$api_port
  export PROSPECTOR_ADMIN_TOKEN=$(cat "$dir/admin-token")
  alias kubectl=$kubectl
  kubectl get tiers
  kubectl apply -f examples/customer.yaml -f examples/documents.yaml -f examples/agent.yaml
  kubectl get cust,kdoc,agd -A

Stop it with: make dev-down
MSG
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) die "usage: hack/dev.sh up|down" ;;
esac
