#!/usr/bin/env bash
# Creates (once) the venv of the embedding benchmark's sentence-transformers peers, pinned in
# hack/python-embed-peer-requirements.txt (sentence-transformers with PyTorch and with its ONNX
# backend through optimum-onnx; see that file for why it is not hack/python-peers.sh's venv),
# and prints its python.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pinned_venv "$HACK_DIR/python-embed-peer-requirements.txt" "sentence-transformers embedding peers"
