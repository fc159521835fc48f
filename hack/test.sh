#!/usr/bin/env bash
# The whole test suite, as CI runs it (`make test`): provisions the pinned dependencies, checks
# formatting, CRD drift and lints, then runs every test. The test harness starts the real
# components (Postgres, the control plane) itself.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }
timed() {
  local name="$1" start=$SECONDS
  shift
  step "$name"
  "$@"
  printf '==> %s: %ss\n' "$name" "$((SECONDS - start))" >&2
}

command -v cargo >/dev/null || die "cargo is required"
command -v setpriv >/dev/null || die "setpriv (util-linux) is required"

timed "dependencies" bash hack/deps.sh
timed "cargo fmt --check" cargo fmt --all -- --check
timed "CRD drift check" cargo run --quiet -p prospector-crds --bin crdgen -- --check
timed "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
timed "tests" cargo test --workspace --locked
