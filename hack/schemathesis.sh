#!/usr/bin/env bash
# Creates (once) the venv of schemathesis, pinned in hack/schemathesis-requirements.txt, and
# prints the path of its `schemathesis` command. The REST API's property-based test runs it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

python="$(pinned_venv "$HACK_DIR/schemathesis-requirements.txt" "schemathesis")"
echo "$(dirname "$python")/schemathesis"
