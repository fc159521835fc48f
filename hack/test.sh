#!/usr/bin/env bash
# The whole test suite, as CI runs it (`make test`): provisions the pinned dependencies, checks
# formatting, CRD drift and lints, then runs every test. The test harness starts the real
# components (Postgres, the control plane) itself.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }
timed() {
  local name="$1" start=$SECONDS rc=0
  shift
  step "$name"
  "$@" || rc=$?
  printf '==> %s: %ss (exit %s)\n' "$name" "$((SECONDS - start))" "$rc" >&2
  return "$rc"
}

command -v cargo >/dev/null || die "cargo is required"
command -v setpriv >/dev/null || die "setpriv (util-linux) is required"

# The suite builds every target once: incremental state would add gigabytes to target/ for no
# gain on a clean clone (CI once ran out of disk building it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
timed "dependencies" bash hack/deps.sh
timed "cargo fmt --check" cargo fmt --all -- --check
timed "CRD drift check" cargo run --quiet -p prospector-crds --bin crdgen -- --check
timed "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
# The native embedding kernels need AVX-512 VNNI and BF16; on a CPU without them their tests
# fail instead of skipping (PROSPECTOR_REQUIRE_NATIVE=0 make test runs the rest there).
export PROSPECTOR_REQUIRE_NATIVE="${PROSPECTOR_REQUIRE_NATIVE:-1}"
summary="$(mktemp)"
run_tests() {
  local output status
  output="$(mktemp)"
  set +e
  cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$output"
  status=${PIPESTATUS[0]}
  set -e
  # cargo prints one "test result" line per test binary, the last often a doc-test run with no
  # tests; a total says what the suite did.
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
       END { printf "tests: %d passed, %d failed\n", p, f }' "$output" >"$summary"
  rm -f "$output"
  return "$status"
}
status=0
timed "tests" run_tests || status=$?
# The suite's closing line.
cat "$summary"
rm -f "$summary"
exit "$status"
