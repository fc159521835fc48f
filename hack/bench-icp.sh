#!/usr/bin/env bash
# ICP extraction quality: micro-F1 per field of the ICP extractor on the hand-labelled sales
# documents (embedder/tests/fixtures/icp/documents_*.json), scored by embedder/tests/icp.rs. With a
# revision, the same test and documents score that revision's extractor instead (its
# embedder/src/icp in a temporary worktree, with this checkout's test and documents), e.g. the
# extractor before issue 12:
#
# usage: hack/bench-icp.sh [REV]        e.g. hack/bench-icp.sh 21e1bb1
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

rev="${1:-}"
dir="$REPO_ROOT"
if [[ -n "$rev" ]]; then
  git rev-parse --verify --quiet "$rev^{commit}" >/dev/null || die "unknown revision: $rev"
  parent="$(mktemp -d)"
  dir="$parent/prospector"
  trap 'git -C "$REPO_ROOT" worktree remove --force "$dir"; rm -rf "$parent"' EXIT
  git worktree add --quiet --detach "$dir" HEAD
  rm -rf "$dir/embedder/src/icp"
  mkdir -p "$dir/embedder/src/icp"
  git archive "$rev" embedder/src/icp | tar -x -C "$dir"
  cp embedder/tests/icp.rs "$dir/embedder/tests/icp.rs"
  rm -rf "$dir/embedder/tests/fixtures/icp"
  cp -r embedder/tests/fixtures/icp "$dir/embedder/tests/fixtures/icp"
fi
# The shared target directory keeps the dependencies built once; the extractor crate rebuilds.
# Only the score lines are printed (a revision's extractor may fall below the test's floors,
# which is not an error here); a run that printed none failed to build or to load the model.
log="$(mktemp)"
(cd "$dir" && CARGO_TARGET_DIR="$REPO_ROOT/target" cargo test -p prospector-embedder --test icp -- \
  --nocapture --test-threads 1 >"$log" 2>&1) || true
if ! grep -qE '\(tp, fp, fn\) = .*micro-F1 [0-9]' "$log"; then
  tail -30 "$log" >&2
  rm -f "$log"
  die "no scores: the ICP test did not run"
fi
grep -E '\(tp, fp, fn\) = .*micro-F1 [0-9]' "$log" | sed -E 's/^test [^ ]+ \.\.\. //' | sort -u
rm -f "$log"
