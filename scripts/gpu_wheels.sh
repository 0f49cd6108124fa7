#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored) the wheels a GPU machine without network lacks for scripts/gpu_check.sh:
# soundfile, soxr, cffi, pycparser, for CPython 3.12 on x86-64 Linux (the GPU machine's). Its own torch,
# transformers, onnx, onnxruntime, typer, rich, safetensors and pytest are used as they are.
#     bash scripts/gpu_wheels.sh [PYTHON_VERSION]      (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
PYV="${1:-3.12}"
mkdir -p .whl
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PYV" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl soundfile soxr cffi pycparser 2> >(grep -v "is ignored: it is neither" >&2)
ls -1 .whl
