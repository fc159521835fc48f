#!/usr/bin/env bash
# Creates (once) the venv of the benchmarks' PyTorch peers, pinned in
# hack/python-peer-requirements.txt (sentence-transformers, pypdf, python-docx, psycopg, FastAPI,
# uvicorn; PyTorch brings about 3 GB of CUDA wheels, so this is separate from hack/python.sh and
# only the benchmarks call it), and prints its python.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pinned_venv "$HACK_DIR/python-peer-requirements.txt" "Python benchmark peers"
