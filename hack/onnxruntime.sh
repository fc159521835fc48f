#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library (from the PyPI wheel onnxruntime, whose API level
# matches the ort crate) and prints the path of libonnxruntime.so, for ORT_DYLIB_PATH.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ORT_VERSION=1.32.0
ORT_WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d

dest="$PROSPECTOR_CACHE/onnxruntime/$ORT_VERSION"
if [[ ! -f "$dest/.complete" ]]; then
  log "fetching onnxruntime $ORT_VERSION"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  fetch_wheel onnxruntime "$ORT_VERSION" "$ORT_WHEEL_SHA256" "$dest.tmp/wheel" \
    --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64
  mkdir -p "$dest.tmp/lib"
  mv "$dest.tmp/wheel/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$dest.tmp/lib/"
  mv "$dest.tmp/wheel/onnxruntime/capi/libonnxruntime_providers_shared.so" "$dest.tmp/lib/"
  ln -s "libonnxruntime.so.$ORT_VERSION" "$dest.tmp/lib/libonnxruntime.so"
  rm -rf "$dest.tmp/wheel"
  touch "$dest.tmp/.complete"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
echo "$dest/lib/libonnxruntime.so"
