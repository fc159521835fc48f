#!/usr/bin/env bash
# Extraction quality against pypdf: the word overlap (Jaccard index of the word sets) of
# `prospector-embedder extract` and pypdf's text, for every PDF in
# embedder/tests/fixtures/pdf that both give text for (the encrypted, broken and image-only
# files give none and are listed as skipped).
#
# usage: hack/bench-extract-overlap.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

embedder_bench_setup
files=()
while IFS= read -r f; do files+=("$f"); done < <(find "$fixtures" -name '*.pdf' | sort)
echo "${#files[@]} PDFs" >&2
"$python" "$HACK_DIR/bench/extract_overlap.py" "$bin" "${files[@]}" 2>/dev/null
