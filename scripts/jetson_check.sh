#!/usr/bin/env bash
# The Jetson path as far as this machine can prove it (opt-in: about 15 minutes, 25 with the demo; not run by CI).
#
#   sudo bash scripts/jetson_check.sh        # Debian/Ubuntu x86-64, root (apt-get, debootstrap, chroot, mounts)
#
# 1. JetPack's Pythons: scripts/jetson_wheels.py checks that every base dependency has an aarch64 wheel for
#    Python 3.10 (JetPack 6) and 3.12 (JetPack 7) at both ends of its range -> benchmarks/results/jetson-wheels.*
# 2. Builds (once; cached in $SERTRT_JETSON_CACHE, default ~/.cache/sertrt/jetson) an arm64 Debian 12 root with
#    debootstrap, and runs it under qemu-user with `-cpu cortex-a76` (Armv8.2-A + FP16 + dot product: the
#    instruction set of Jetson Orin's Cortex-A78AE).
# 3. Installs sertrt's base install there from aarch64 wheels only, downloaded on the host (no torch, no compiler,
#    no network inside the root), once per onnxruntime in $SERTRT_JETSON_ORT: 1.23.2 is the newest JetPack 6's
#    Python 3.10 gets, 1.32.0 what JetPack 7's 3.12 gets (the table of step 1).
# 4. Runs scripts/jetson_probe.py on the demo's bundles (fp32, int8, int8-dynamic; `bash scripts/demo.sh` first
#    when they are missing): `sertrt stream`, the README's embedding example, MultiStream, the one-call API and
#    examples/bundle_client.py, there and on x86-64 with the same package versions, and once more on x86-64 with
#    Python 3.10 when one is found (pyenv). Labels and window times must be identical, logits within a tolerance
#    per precision -> benchmarks/results/jetson.{json,md}. Exit 1 on any difference.
#
# Debian 12's qemu 7.2 crashes in onnxruntime >= 1.28 (a segmentation fault at session creation, also with
# -cpu cortex-a76); qemu 10 runs it. With qemu < 10 those versions are skipped and said so. qemu 10 on Debian 12:
#   echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list
#   apt-get update && apt-get install -t bookworm-backports qemu-user-static
# A crash under emulation is not evidence about a Jetson.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE="${SERTRT_JETSON_CACHE:-$HOME/.cache/sertrt/jetson}"
ORT_VERSIONS=(${SERTRT_JETSON_ORT:-1.23.2 1.32.0})
DEMO="${SERTRT_DEMO_DIR:-demo}"
FILES="${SERTRT_JETSON_FILES:-12}"
SUITE=bookworm  # Debian 12: Python 3.11, glibc 2.36
ROOT="$CACHE/rootfs-$SUITE-arm64"
QEMU_CPU=cortex-a76
say() { echo "== $*"; }
# A Python X.Y that runs: on PATH or a pyenv install (pyenv's shim fails when X.Y is not the active version).
find_python() {
    local c
    for c in "$(command -v "python$1" || true)" "$HOME"/.pyenv/versions/"$1".*/bin/"python$1"; do
        [ -x "$c" ] && "$c" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$1'.split('.')))" 2>/dev/null \
            && { echo "$c"; return 0; }
    done
    return 0
}
die() { echo "jetson_check: $*" >&2; exit 1; }

# ---------------------------------------------------------------- host tools
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mounts); run: sudo bash scripts/jetson_check.sh"
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
if ((${#missing[@]})); then
    say "installing ${missing[*]} (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
QEMU_VERSION=$(qemu-aarch64-static --version | awk 'NR == 1 {print $3}')
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
say "qemu-aarch64 $QEMU_VERSION, -cpu $QEMU_CPU"

# ---------------------------------------------------------------- 1. the wheel table (host, package index)
bash scripts/setup.sh >/dev/null
say "aarch64 wheels for JetPack 6 (Python 3.10) and JetPack 7 (Python 3.12)"
.venv/bin/python scripts/jetson_wheels.py --cache "$CACHE/wheel-table" | tail -n 3

# ---------------------------------------------------------------- 2. the arm64 root
if [ ! -f "$ROOT/.complete" ]; then
    say "building the arm64 Debian root (debootstrap, a few minutes, once)"
    rm -rf "$ROOT.tmp"  # ours: a build that was interrupted
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv "$SUITE" "$ROOT.tmp" \
        http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed: $CACHE/debootstrap.log"
    touch "$ROOT.tmp/.complete"
    mv "$ROOT.tmp" "$ROOT"
fi
mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
for fs in proc sys dev; do  # onnxruntime reads the CPU list from /sys; without it, it aborts
    mountpoint -q "$ROOT/$fs" || { mount --rbind "/$fs" "$ROOT/$fs" && mounted+=("$ROOT/$fs"); }
done
inroot() { chroot "$ROOT" env -i PATH=/usr/bin:/bin HOME=/root QEMU_CPU=$QEMU_CPU LANG=C.UTF-8 "$@"; }
[ "$(inroot uname -m)" = aarch64 ] || die "the arm64 root does not run under emulation (binfmt_misc)"

# ---------------------------------------------------------------- demo bundles and the files to score
if [ ! -f "$DEMO/bundle-int8-dynamic/manifest.json" ]; then
    say "no demo bundles in $DEMO: running scripts/demo.sh"
    bash scripts/demo.sh >/dev/null
fi
STAGE="$ROOT/work"  # everything the runs read, the same relative paths inside and outside the root
rm -rf "$STAGE" && mkdir -p "$STAGE/bundles" "$STAGE/audio" "$STAGE/repo/scripts" "$STAGE/repo/examples" "$STAGE/dist"
cp -r "$DEMO/bundle-fp32" "$DEMO/bundle-int8" "$DEMO/bundle-int8-dynamic" "$STAGE/bundles/"
.venv/bin/python - "$DEMO/corpus/test_manifest.jsonl" "$FILES" "$STAGE/audio" <<'PY'
import shutil, sys
from pathlib import Path
from sertrt.core.manifest import read_manifest
rows = read_manifest(sys.argv[1])
step = max(1, len(rows) // int(sys.argv[2]))
for i, row in enumerate(rows[::step][: int(sys.argv[2])]):  # spread over corpora and speakers
    shutil.copy(row.path, Path(sys.argv[3]) / f"{i:02d}-{Path(row.path).name}")
PY
cp README.md "$STAGE/repo/" && cp scripts/jetson_probe.py "$STAGE/repo/scripts/" && cp examples/bundle_client.py "$STAGE/repo/examples/"
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$STAGE/dist" . 2> >(grep -v "is ignored" >&2)
WHEEL=$(ls "$STAGE"/dist/sertrt-*.whl)
PLATFORMS=(--platform manylinux2014_aarch64)
for minor in $(seq 17 36); do PLATFORMS+=(--platform "manylinux_2_${minor}_aarch64"); done  # glibc 2.36
probe() { (cd "$STAGE" && "$@" repo/scripts/jetson_probe.py run --repo repo --out "$OUT" bundles/* --audio audio/*); }

# ---------------------------------------------------------------- 3-4. per onnxruntime: install, run, compare
PAIRS=() SKIPPED=()
PY311=$(find_python 3.11)
[ -n "$PY311" ] || die "needs a Python 3.11 on the host for the x86-64 reference (the arm64 root's is 3.11)"
for ORT in "${ORT_VERSIONS[@]}"; do
    if [ "$(printf '%s\n' "$ORT" 1.28 | sort -V | head -1)" = 1.28 ] && \
       [ "$(printf '%s\n' "$QEMU_VERSION" 10 | sort -V | head -1)" != 10 ]; then
        SKIPPED+=("onnxruntime $ORT on aarch64: qemu $QEMU_VERSION crashes in onnxruntime >= 1.28 (qemu 10 runs it)")
        say "skipped: ${SKIPPED[-1]}"
        continue
    fi
    WHEELS="$CACHE/wheels-cp311-aarch64"
    say "onnxruntime $ORT: aarch64 wheels (host pip download), then the base install in the root"
    .venv/bin/python -m pip download -q --only-binary=:all: "${PLATFORMS[@]}" --python-version 3.11 --implementation cp \
        -d "$WHEELS" "$WHEEL" "onnxruntime==$ORT" 2> >(grep -v "is ignored" >&2)
    rm -rf "$STAGE/wheels" && cp -r "$WHEELS" "$STAGE/wheels"
    VENV=/opt/sertrt-ort$ORT
    rm -rf "$ROOT$VENV"
    inroot python3 -m venv "$VENV"
    inroot "$VENV/bin/pip" install -q --disable-pip-version-check --no-index --find-links /work/wheels \
        "/work/dist/$(basename "$WHEEL")" "onnxruntime==$ORT"
    inroot "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
        || die "torch is in the aarch64 base install"
    inroot "$VENV/bin/pip" freeze --disable-pip-version-check | grep -v '^sertrt' > "$STAGE/constraints-$ORT.txt"

    say "onnxruntime $ORT: x86-64 reference, the same versions"
    X86="$CACHE/x86-py3.11-ort$ORT"
    rm -rf "$X86" && "$PY311" -m venv "$X86"
    "$X86/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL" -c "$STAGE/constraints-$ORT.txt" \
        2> >(grep -v "is ignored" >&2)
    OUT="x86-py3.11-ort$ORT.json" probe "$X86/bin/python"
    PAIRS+=(--pair "$STAGE/x86-py3.11-ort$ORT.json")

    say "onnxruntime $ORT: aarch64 under emulation (slow: every instruction translated)"
    (cd "$STAGE" && inroot sh -c "cd /work && $VENV/bin/python repo/scripts/jetson_probe.py run --repo repo \
        --out arm-ort$ORT.json bundles/* --audio audio/*")
    PAIRS+=("$STAGE/arm-ort$ORT.json")
done

# JetPack 6's Python 3.10 on x86-64 (no arm64 3.10 in Debian): the runtime runs there, not only compiles.
PY310=$(find_python 3.10)
ORT310="${ORT_VERSIONS[0]}"
if [ -n "$PY310" ] && [ -f "$STAGE/x86-py3.11-ort$ORT310.json" ]; then
    say "Python 3.10 (JetPack 6's) on x86-64, onnxruntime $ORT310"
    X310="$CACHE/x86-py3.10-ort$ORT310"
    rm -rf "$X310" && "$PY310" -m venv "$X310"
    "$X310/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL" "onnxruntime==$ORT310" \
        2> >(grep -v "is ignored" >&2)
    OUT="x86-py3.10-ort$ORT310.json" probe "$X310/bin/python"
    PAIRS+=(--pair "$STAGE/x86-py3.11-ort$ORT310.json" "$STAGE/x86-py3.10-ort$ORT310.json")
else
    SKIPPED+=("Python 3.10 on x86-64: no python3.10 found")
fi
((${#PAIRS[@]})) || die "nothing ran"
SKIP_ARGS=()
for s in "${SKIPPED[@]}"; do SKIP_ARGS+=(--skipped "$s"); done
say "comparison"
.venv/bin/python scripts/jetson_probe.py compare "${PAIRS[@]}" "${SKIP_ARGS[@]}" --out benchmarks/results/jetson
