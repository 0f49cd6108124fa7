#!/usr/bin/env bash
# README command 2: set up (idempotent), run the static checks (scripts/lint.sh) and the test suite, then the export
# tests on the oldest package versions pyproject declares (scripts/test-oldest.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/lint.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
.venv/bin/python -m pytest "$@"
bash scripts/test-oldest.sh "$@"
