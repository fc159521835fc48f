#!/usr/bin/env bash
# The int8 sensitivity of each MatMul group of all-MiniLM-L6-v2 in the int8 graph's scheme, and
# of the graph's choice together: the measurement behind model-int8.onnx (hack/optimize_onnx.py).
# About two minutes on 2 cores.
#
# usage: hack/bench-quantization.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

python="$("$HACK_DIR/python.sh")"
model_dir="$("$HACK_DIR/model.sh")"
"$python" "$HACK_DIR/bench/quantization_sensitivity.py" "$model_dir" \
  "$REPO_ROOT/embedder/tests/fixtures/embeddings/reference.json" "$HACK_DIR/model-smoothing.json"
