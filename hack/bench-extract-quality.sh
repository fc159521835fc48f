#!/usr/bin/env bash
# Extraction quality: word-level F1 of `prospector-embedder extract` against poppler's pdftotext
# (hack/poppler.sh) over every fixture PDF with at least 20 words (hack/bench/extract_quality.py
# says how words are counted). Under a minute.
#
# usage: hack/bench-extract-quality.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pdftotext="$("$HACK_DIR/poppler.sh")"
embedder_bench_setup
mapfile -t files < <(find embedder/tests/fixtures/pdf -name '*.pdf' | sort)
"$python" "$HACK_DIR/bench/extract_quality.py" "$bin" "$pdftotext" "${files[@]}"
