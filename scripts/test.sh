#!/usr/bin/env bash
# README command 2: set up (idempotent), then the test suite beside the static checks (scripts/lint.sh, whose
# findings print after it), then the export tests on the oldest package versions pyproject declares
# (scripts/test-oldest.sh), two test processes at a time (pytest-xdist; `-n 0` after the command runs them one by
# one). Extra arguments go to pytest. Each pip and mypy takes one core: the oldest versions install while setup
# installs .venv, and the static checks run beside the two test processes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv  # test-oldest.sh's pip is .venv's
bash scripts/test-oldest.sh --install-only &
INSTALL=$!
trap 'kill "$INSTALL" "${LINT:-}" 2>/dev/null || true' EXIT
bash scripts/setup.sh
wait "$INSTALL"
LINT_LOG="$(mktemp)"
bash scripts/lint.sh > "$LINT_LOG" 2>&1 &
LINT=$!
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # one thread for each of pytest-xdist's two workers
.venv/bin/python -m pytest -n 2 --durations=15 "$@"
wait "$LINT" || { cat "$LINT_LOG"; echo "lint failed" >&2; exit 1; }
cat "$LINT_LOG" && rm -f "$LINT_LOG"
trap - EXIT
bash scripts/test-oldest.sh -n 2 "$@"
