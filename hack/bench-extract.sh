#!/usr/bin/env bash
# Extraction benchmark: `prospector-embedder bench-extract` against pypdf (text of every page)
# on the same PDFs, one thread each, one after the other in one run. The PDFs are the
# real-world collection in embedder/tests/fixtures/pdf that both can read (no encrypted, broken
# or image-only files).
#
# usage: hack/bench-extract.sh [PASSES]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

passes="${1:-3}"
embedder_bench_setup
files=()
while IFS= read -r f; do
  case "$f" in
    */005-*|*/007-*|*/017-*|*/019-*|*/023-*) ;;
    *) files+=("$f") ;;
  esac
done < <(find "$fixtures" -name '*.pdf' | sort)
echo "${#files[@]} PDFs; passes=$passes" >&2
echo "== prospector-embedder bench-extract" >&2
"$bin" bench-extract --repeat "$passes" "${files[@]}" | tee "$work/extract-rust.json"
echo "== pypdf" >&2
"$python" "$HACK_DIR/bench/extract_peer.py" "$passes" "${files[@]}" 2>/dev/null | tee "$work/extract-peer.json"
"$python" - "$work/extract-rust.json" "$work/extract-peer.json" <<'PY'
import json, sys
rust, peer = (json.load(open(p)) for p in sys.argv[1:3])
print("| extractor | pages | pages/s | vs pypdf |")
print("|---|---|---|---|")
print(f"| prospector-embedder (lopdf + layout) | {rust['pages']} | {rust['pages_per_second']:,.0f} | {rust['pages_per_second'] / peer['pages_per_second']:.1f}x |")
print(f"| pypdf {__import__('pypdf').__version__} | {peer['pages']} | {peer['pages_per_second']:,.0f} | 1.0x |")
PY
