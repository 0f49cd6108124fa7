#!/usr/bin/env bash
# The tests of what those versions decide, with the oldest versions pyproject declares (sertrt/core/versions.py)
# installed with their dependencies into .oldest-versions/, a folder put before .venv's site-packages on PYTHONPATH
# (torch, sertrt and the test tools stay .venv's: torch 2.13.0 is the only CPU wheel here): the version checks,
# the upstream and model against transformers, export and the precision converters against onnx, onnxscript,
# onnxslim and onnxruntime's quantizers, the runtime and parity against onnxruntime's sessions. Then the converter
# tests once more with onnxruntime 1.30.0 (the GPU machine's; its FP16 converter names nodes its own way and
# writes one Cast per reader): the runtime's sessions are those of 1.20 and 1.32, tested at both ends.
# Run by scripts/test.sh, after scripts/setup.sh. Extra arguments go to pytest (--install-only: install, no tests).
set -euo pipefail
cd "$(dirname "$0")/.."
OLDEST_DIR="$PWD/.oldest-versions"  # absolute: tests run subprocesses in other folders
PYTHON=.venv/bin/python
# --target resolves the pins and their dependencies on their own; pip's warnings about .venv's packages are noise.
install() { "$PYTHON" -m pip install -q --disable-pip-version-check --upgrade --target "$@" 2>&1 \
              | { grep -v -e "is ignored: it is neither" -e "dependency resolver does not" -e " requires .*, but you have " >&2 || true; }; }
# The oldest release of each package pyproject declares, torch aside (only .venv's is here): ">=1.20" ->
# "onnxruntime==1.20.*" (its latest patch release), ">=0.7.1" -> "onnxscript==0.7.1".
read -r -a OLDEST <<< "$("$PYTHON" -c '
from sertrt.core.versions import SUPPORTED
for package, supported in SUPPORTED.items():
    version = supported.removeprefix(">=")
    if package != "torch":
        print(f"{package}=={version}" + ".*" * (version.count(".") < 2), end=" ")')"
[ -f "$OLDEST_DIR/.pins" ] && [ "$(cat "$OLDEST_DIR/.pins")" = "${OLDEST[*]}" ] \
    || { install "$OLDEST_DIR" "${OLDEST[@]}" && echo "${OLDEST[*]}" > "$OLDEST_DIR/.pins"; }
[ -d "$OLDEST_DIR/ort-1.30/onnxruntime" ] || install "$OLDEST_DIR/ort-1.30" --no-deps "onnxruntime==1.30.0"
[ "${1:-}" = --install-only ] && exit 0  # scripts/test.sh installs while the static checks run
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
TESTS=(tests/test_versions.py tests/test_upstream.py tests/test_model.py tests/test_export.py tests/test_precision.py
       tests/test_runtime.py)
PYTHONPATH="$OLDEST_DIR" "$PYTHON" -c "from sertrt.core.versions import SUPPORTED, installed_version as v; print('oldest declared versions:', *(f'{p}=={v(p)}' for p in SUPPORTED))"
PYTHONPATH="$OLDEST_DIR" "$PYTHON" -m pytest -p no:cacheprovider "${TESTS[@]}" "$@"
echo "again with onnxruntime 1.30.0"
PYTHONPATH="$OLDEST_DIR/ort-1.30:$OLDEST_DIR" "$PYTHON" -m pytest -p no:cacheprovider tests/test_export.py tests/test_precision.py "$@"
