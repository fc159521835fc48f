#!/usr/bin/env bash
# The int8 sensitivity of each feed-forward MatMul of all-MiniLM-L6-v2, and of the k least
# sensitive together: the measurement behind the mixed-precision graph (hack/optimize_onnx.py).
# Under a minute on 2 cores.
#
# usage: hack/bench-quantization.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

python="$("$HACK_DIR/python.sh")"
model_dir="$("$HACK_DIR/model.sh")"
"$python" "$HACK_DIR/bench/quantization_sensitivity.py" "$model_dir" \
  "$REPO_ROOT/embedder/tests/fixtures/embeddings/reference.json"
