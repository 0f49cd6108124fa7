#!/usr/bin/env bash
# Idempotent setup on a fresh machine: espeak-ng (apt-get, when missing), a virtualenv in .venv,
# torch==2.13.0 first (a local CPU wheel here; an unpinned torch would pull a multi-GB CUDA build),
# then sertrt with its train and dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SERTRT_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if ! command -v espeak-ng >/dev/null 2>&1; then
    echo "setup: installing espeak-ng" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"$VENV/bin/python" -c "import torch" 2>/dev/null || "${PIP[@]}" "torch==2.13.0" 2> >(grep -v "is ignored: it is neither" >&2)
# sertrt is installed editable: only a change of pyproject.toml (its requirements) needs pip again
INSTALLED="$VENV/.sertrt-pyproject.sha256"
if [ ! -x "$VENV/bin/sertrt" ] || [ "$(cat "$INSTALLED" 2>/dev/null)" != "$(sha256sum pyproject.toml)" ]; then
    "${PIP[@]}" -e ".[train,export,dev]" 2> >(grep -v "is ignored: it is neither" >&2)
    sha256sum pyproject.toml > "$INSTALLED"
fi
