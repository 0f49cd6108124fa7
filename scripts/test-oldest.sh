#!/usr/bin/env bash
# The tests of what those versions decide, in a second virtualenv (.venv-oldest) holding the oldest versions
# pyproject declares (sertrt/core/versions.py; torch stays 2.13.0, the only CPU wheel here): the version checks,
# the upstream and model against transformers, export and the precision converters against onnx, onnxscript,
# onnxslim and onnxruntime's quantizers, the runtime and parity against onnxruntime's sessions. Then the converter
# tests once more with onnxruntime 1.30.0 (the GPU machine's; its FP16 converter names nodes its own way and
# writes one Cast per reader): the runtime's sessions are those of 1.20 and 1.32, tested at both ends.
# Run by scripts/test.sh. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SERTRT_OLDEST_VENV:-.venv-oldest}"
PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
"$VENV/bin/python" -c "import torch" 2>/dev/null || quiet "${PIP[@]}" "torch==2.13.0"
read -r -a OLDEST <<< "$(PYTHONPATH=. "$PYTHON" -m sertrt.core.versions torch)"
quiet "${PIP[@]}" -e ".[train,export,dev]" "${OLDEST[@]}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
TESTS=(tests/test_versions.py tests/test_upstream.py tests/test_model.py tests/test_export.py tests/test_precision.py
       tests/test_runtime.py)
echo "oldest declared versions: ${OLDEST[*]}"
"$VENV/bin/python" -m pytest -p no:cacheprovider "${TESTS[@]}" "$@"
quiet "${PIP[@]}" "onnxruntime==1.30.0"
echo "again with onnxruntime 1.30.0"
"$VENV/bin/python" -m pytest -p no:cacheprovider tests/test_export.py tests/test_precision.py "$@"
