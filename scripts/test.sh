#!/usr/bin/env bash
# README command 2: set up (idempotent), run the static checks (scripts/lint.sh) and the test suite, then the export
# tests on the oldest package versions pyproject declares (scripts/test-oldest.sh), two test processes at a time
# (pytest-xdist; `-n 0` after the command runs them one by one). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/test-oldest.sh --install-only &  # pip on one core while the static checks (mypy) take the other
INSTALL=$!
trap 'kill "$INSTALL" 2>/dev/null || true' EXIT
bash scripts/lint.sh
wait "$INSTALL"
trap - EXIT
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # one thread for each of pytest-xdist's two workers
.venv/bin/python -m pytest -n 2 --durations=15 "$@"
bash scripts/test-oldest.sh -n 2 "$@"
