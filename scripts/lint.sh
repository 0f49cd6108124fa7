#!/usr/bin/env bash
# Static checks, run by scripts/test.sh before pytest; a finding fails it.
#   mypy:   the TensorRT path and the GPU paths, which CI cannot run. TensorRT's types live in its compiled bindings
#           (tensorrt-stubs only re-exports them) and Polygraphy ships none, so both are Any: mypy checks our own code
#           there, every function body; the names we call are checked against TensorRT's (tests/test_tensorrt_engine.py).
#   vermin: JetPack 6 ships Python 3.10, so nothing in sertrt/ may need 3.11+ syntax or standard library; a real 3.10
#           compiles every module where one runs.
#   floors: every import points down (scripts/check_layout.py, shared/STYLE.md 18).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
MYPY_FILES=(sertrt/core/engine.py sertrt/export/tensorrt_engine.py sertrt/runtime/trt_runner.py
            sertrt/export/tensorrt_audit.py sertrt/model/half.py sertrt/model/cuda_graphs.py sertrt/model/compile.py
            sertrt/model/flops.py sertrt/verify/torch_runner.py sertrt/training/throughput.py)
echo "lint: mypy"
"$PY" -m mypy --python-version 3.10 --follow-imports=silent --ignore-missing-imports --check-untyped-defs \
    --no-incremental --no-error-summary "${MYPY_FILES[@]}"
echo "lint: vermin (Python 3.10)"
vermin() { "$PY" -c "import sys; from vermin.main import main; sys.exit(main())" -q --no-tips --violations -t=3.10- \
    --eval-annotations "$@"; }
vermin sertrt
printf 'import tomllib\n' > "${TMPDIR:-/tmp}/sertrt-lint-311.py"  # the check can fail: tomllib is 3.11
! vermin "${TMPDIR:-/tmp}/sertrt-lint-311.py" > /dev/null || { echo "vermin missed 3.11-only code" >&2; exit 1; }
for py in "$(command -v python3.10 || true)" ~/.pyenv/versions/3.10*/bin/python3.10; do
    if [ -x "$py" ] && "$py" -c "import sys; assert sys.version_info[:2] == (3, 10)" 2>/dev/null; then
        PYTHONPYCACHEPREFIX="$(mktemp -d)" "$py" -m compileall -q sertrt > /dev/null; break
    fi
done
echo "lint: floors"
"$PY" scripts/check_layout.py
