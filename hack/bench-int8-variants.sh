#!/usr/bin/env bash
# Speed and accuracy of the int8 graph's choice against the alternatives around it, measured by
# `prospector-embedder bench` on the corpus of hack/bench-embedder.sh (run that first): the fp32
# fused graph, the default (QKV, attention output and feed-forward input in int8: 18 MatMuls),
# one without the QKV projections (12), and all 24 MatMuls (the feed-forward output too). Each
# variant is built by hack/optimize_onnx.py into its own model directory under target/bench.
#
# usage: hack/bench-int8-variants.sh [PASSES]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

passes="${1:-2}"
model_dir="$("$HACK_DIR/model.sh")"
"$HACK_DIR/onnxruntime.sh" >/dev/null
embedder_bench_setup
corpus="$work/embed-corpus.json"
[[ -f "$corpus" ]] || die "no $corpus: run hack/bench-embedder.sh first"
reference="$REPO_ROOT/embedder/tests/fixtures/embeddings/reference.json"
variants=(
  "12 (attention output, FFN input)|attention.output.dense,intermediate.dense"
  "24 (all, FFN output too)|_qkv_weight,encoder."
)
rows=()
run() { # run LABEL MODEL_DIR GRAPH
  local out
  out="$(PROSPECTOR_MODEL_DIR="$2" "$bin" bench --corpus "$corpus" --threads 2 --repeat "$passes" \
    --reference "$reference" --graph "$3")"
  rows+=("$("$python" -c '
import json, sys
r = json.load(sys.stdin)
tps, ref, alone = r["tokens_per_second"], r["min_cosine_to_reference"], r["min_cosine_alone_vs_batched"]
print(f"| {sys.argv[1]} | {tps:,.0f} | {ref:.6f} | {alone:.7f} |")' "$1" <<<"$out")")
}
run "fp32 (--graph fused)" "$model_dir" fused
run "int8, 18 MatMuls (the default graph)" "$model_dir" int8
for variant in "${variants[@]}"; do
  label="${variant%%|*}" matmuls="${variant#*|}"
  dir="$work/int8-variant-${label%% *}"
  rm -rf "$dir" && mkdir -p "$dir"
  for f in "$model_dir"/*.json "$model_dir"/model.onnx "$model_dir"/model-fused.onnx; do ln -s "$f" "$dir/"; done
  "$python" "$HACK_DIR/optimize_onnx.py" "$model_dir/model.onnx" "$dir/fused.tmp.onnx" "$dir/model-int8.onnx" \
    "$HACK_DIR/model-smoothing.json" "$matmuls" 2>/dev/null
  rm -f "$dir/fused.tmp.onnx"
  run "int8, $label" "$dir" int8
done
echo "| graph | tokens/s | min cosine to sentence-transformers | min cosine alone vs batched |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
