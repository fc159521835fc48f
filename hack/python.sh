#!/usr/bin/env bash
# Creates (once) a Python venv with the wheels pinned in hack/python-requirements.txt (the ONNX
# export and the onnxruntime/pypdf peers), installed with --require-hashes, and prints its python.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pinned_venv "$HACK_DIR/python-requirements.txt" "Python tools"
