#!/usr/bin/env bash
# One command for a GPU machine (one H100/H200; no network; its own torch, transformers, onnx, onnxruntime):
#
#     bash scripts/gpu_wheels.sh          # first, on a machine with network: soundfile, soxr, cffi, pycparser -> .whl/
#     bash scripts/gpu_check.sh           # then, on the GPU machine, from the repository root
#
# Each step has its own time limit, all of them together at most SERTRT_GPU_BUDGET (540 s), and a failing
# step does not stop the others:
#   1. install the wheels from .whl/ and the repository with --no-deps, into a temp folder
#   2. pytest -m gpu (sync-free forward, CUDA-graph capture, the bench-gpu variants)
#   3. xlsr-53 full fine-tuning, bf16 autocast, length-bucketed (--max-batch-seconds 96), 2 epochs: samples/s,
#      audio-s/s, padding share, MFU and peak GiB
#   4. tiny trained on CUDA, exported fp32 / fp16 / int8 / int8-dynamic with this machine's versions, parity of each
#      and the half model in CUDA graphs (--torch-precision fp16 --cuda-graphs) against the fp32 bundle
#   5. the input pipeline: tiny with every augmentation, 2 epochs, DataLoader --workers 0 against --workers N
#   6. the pretrained-XLSR fine-tuning recipe on xlsr-53 (random weights), bf16: frozen feature encoder, --lr 5e-5
#      --head-lr 1e-3, --warmup 0.1, --schedule linear, 1 epoch; the scheduler's end state read back
#   7. ONNX Runtime's CUDA provider (parity of the fp32 bundle, timed) if onnxruntime-gpu is installed; else the reason
#   8. sertrt bench-gpu xlsr-53 at 2 s and 8 s, batch 1 and 8: eager, half, CUDA graphs, layer-wise compile,
#      every variant time-boxed
# Results (named after the GPU, with every package version) go to $SERTRT_GPU_RESULTS (default
# benchmarks/results): gpu-check-<gpu>.{json,md}, <target>-<gpu>.{json,md} from bench-gpu, gpu-check-<gpu>.log.
#
# Knobs: SERTRT_GPU_DEVICE (cuda), SERTRT_GPU_TARGET (xlsr-53), SERTRT_GPU_WHEELS (.whl; "none" skips),
# SERTRT_GPU_PER_LABEL (30), PYTHON (python3). On a CPU machine `SERTRT_GPU_DEVICE=cpu SERTRT_GPU_TARGET=tiny
# SERTRT_GPU_WHEELS=none SERTRT_GPU_PER_LABEL=8` walks the same steps small (how the script itself is tested).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PY="${PYTHON:-python3}"
DEVICE="${SERTRT_GPU_DEVICE:-cuda}"
TARGET="${SERTRT_GPU_TARGET:-xlsr-53}"
PER_LABEL="${SERTRT_GPU_PER_LABEL:-30}"  # tone utterances per emotion, 2-6 s each
WHEELS="${SERTRT_GPU_WHEELS:-.whl}"
# The results folder must be new, empty or sertrt's own benchmark folder (nothing else is written over).
PYTHONPATH="$REPO" "$PY" -c "
import sys
from sertrt.core.errors import SertrtError
from sertrt.core.outputs import claim_output_dir
try:
    claim_output_dir(sys.argv[1], 'bench', option='SERTRT_GPU_RESULTS')
except SertrtError as e:
    sys.exit(f'error: {e}')" "${SERTRT_GPU_RESULTS:-benchmarks/results}" || exit 1
RESULTS="$(cd "${SERTRT_GPU_RESULTS:-benchmarks/results}" && pwd)"
WORK="$(mktemp -d /tmp/sertrt-gpu-check.XXXXXX)"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"

SLUG="$("$PY" -c "
import re, sys, torch
name = torch.cuda.get_device_name(0) if sys.argv[1].startswith('cuda') and torch.cuda.is_available() else 'cpu'
print(re.sub('[^a-z0-9]+', '-', name.lower()).strip('-'))" "$DEVICE")"
LOG="$RESULTS/gpu-check-$SLUG.log"
STEPS="$WORK/steps.tsv"
: > "$LOG"
: > "$STEPS"
say() { echo "[gpu-check $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

# step NAME SECONDS COMMAND...: runs with a time limit (cut to what is left of the whole budget), output
# to the log, name/rc/seconds to $STEPS. Past the budget a step is skipped (rc 125).
DEADLINE=$((SECONDS + ${SERTRT_GPU_BUDGET:-540}))
step() {
    local name="$1" limit="$2"; shift 2
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 5 ]; then
        printf '%s\t125\t0\t0\n' "$name" >> "$STEPS"
        say "$name: skipped, the time budget is spent"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "$name (limit ${limit} s): $*"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$limit" >> "$STEPS"
    say "$name: exit $rc after $((SECONDS - t0)) s$([ "$rc" = 124 ] && echo ' (over its limit)')"
    return 0
}

# 1. install: the machine's own torch/transformers/onnx/onnxruntime stay; only what it lacks comes from the wheels
SITE="$WORK/site"
if [ "$WHEELS" != none ]; then
    step install-wheels 30 "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl
fi
step install-sertrt 30 "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SITE" "$REPO"
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"  # the repository itself if its install failed
SERTRT=("$PY" -m sertrt)
step versions 20 "$PY" -c "from sertrt.core import versions; [versions.require(s) for s in ('export', 'train', 'runtime')]; print('versions ok')"

# 2. the GPU tests
step pytest-gpu 100 "$PY" -m pytest -q -m gpu -p no:cacheprovider "$REPO/tests"

# A tone corpus (no espeak-ng there): 2-6 s utterances, 4:1 split.
step corpus 20 "$PY" -c "
import sys; sys.path.insert(0, '$REPO/tests')
from pathlib import Path
from conftest import make_tone_corpus
make_tone_corpus(Path('$WORK/corpus'), per_label=$PER_LABEL, seed=0, seconds=(2.0, 6.0))"
step split 20 "${SERTRT[@]}" data split "$WORK/corpus/manifest.jsonl" --test-fraction 0.2 --seed 0
TRAIN="$WORK/corpus/train_manifest.jsonl"
TEST="$WORK/corpus/test_manifest.jsonl"

# 3. the big model's training throughput (bf16 autocast on CUDA)
# length-bucketed micro-batches of <= 96 s of padded audio, steps of >= 32 utterances; MFU per epoch in metrics.jsonl
step "train-$TARGET" 80 "${SERTRT[@]}" train --train-manifest "$TRAIN" --test-manifest "$TEST" --out "$WORK/run-big" \
    --upstream "$TARGET" --head hgfm --strategy full --epochs 2 --batch-size 32 --max-batch-seconds 96 --max-seconds 6 \
    --log-every 10 --device "$DEVICE" --quiet

# 4. tiny: trained on this device, exported at every precision with this machine's packages, parity of each
step train-tiny 40 "${SERTRT[@]}" train --train-manifest "$TRAIN" --test-manifest "$TEST" --out "$WORK/run-tiny" \
    --upstream tiny --epochs 6 --lr 1e-3 --max-seconds 3 --device "$DEVICE" --quiet
for PRECISION in fp32 fp16 int8 int8-dynamic; do
    step "export-$PRECISION" 30 "${SERTRT[@]}" export "$WORK/run-tiny" --out "$WORK/bundle-$PRECISION" --precision "$PRECISION" \
        --calib-manifest "$TRAIN" --calib-utterances 32 --test-manifest "$TEST"
    step "parity-$PRECISION" 20 sh -c "'$PY' -m sertrt parity '$WORK/bundle-$PRECISION' --run '$WORK/run-tiny' --manifest '$TEST' --json > '$WORK/parity-$PRECISION.json'"
done
# the fast PyTorch reference: the half model in CUDA graphs on the GPU, against the fp32 bundle
GRAPHS=()
[[ "$DEVICE" == cuda* ]] && GRAPHS=(--cuda-graphs)
step parity-torch-gpu 30 sh -c "'$PY' -m sertrt parity '$WORK/bundle-fp32' --run '$WORK/run-tiny' --manifest '$TEST' \
    --torch-device '$DEVICE' --torch-precision fp16 ${GRAPHS[*]} --min-agreement 0.99 --json > '$WORK/parity-torch-gpu.json'"

# 5. the DataLoader: decoding, augmentation and cropping in 0 vs N worker processes (samples/s per epoch)
NWORKERS="$("$PY" -c "from sertrt.training.data import default_workers; print(max(1, default_workers()))")"
for W in 0 "$NWORKERS"; do
    step "loader-workers-$W" 40 "${SERTRT[@]}" train --train-manifest "$TRAIN" --out "$WORK/run-workers-$W" --upstream tiny \
        --epochs 2 --max-seconds 6 --augment speed,noise,gain,reverb --workers "$W" --device "$DEVICE" --quiet
done

# 6. the fine-tuning recipe README gives for pretrained XLSR, on the big model's architecture (random weights)
step "recipe-$TARGET" 60 "${SERTRT[@]}" train --train-manifest "$TRAIN" --out "$WORK/run-recipe" --upstream "$TARGET" \
    --freeze-feature-encoder --lr 5e-5 --head-lr 1e-3 --warmup 0.1 --schedule linear --epochs 1 --batch-size 32 \
    --max-batch-seconds 96 --max-seconds 6 --log-every 10 --device "$DEVICE" --quiet
step recipe-schedule 20 "$PY" -c "
import json; from pathlib import Path; from sertrt.model.io import read_checkpoint
run = Path('$WORK/run-recipe'); sched = read_checkpoint(run / 'last.safetensors')[0].train_state['scheduler']
opts = json.loads((run / 'options.json').read_text())
out = {'steps': sched['last_epoch'], 'last_lr': sched['_last_lr'], 'base_lrs': sched['base_lrs'],
       'freeze_feature_encoder': opts['freeze_feature_encoder']}
(Path('$WORK') / 'recipe-schedule.json').write_text(json.dumps(out)); print(out)
assert out['freeze_feature_encoder'] and out['steps'] > 0 and max(out['last_lr']) == 0 and out['base_lrs'] == [5e-5, 1e-3]"

# 7. ONNX Runtime's CUDA provider: only with onnxruntime-gpu (not on the lent machines so far); the reason is recorded
if "$PY" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
    step ort-cuda 40 sh -c "'$PY' -m sertrt parity '$WORK/bundle-fp32' --run '$WORK/run-tiny' --manifest '$TEST' \
        --provider cuda --json > '$WORK/parity-ort-cuda.json'"
else
    "$PY" -c "import onnxruntime as o; print('skipped: onnxruntime', o.__version__, 'has providers', ', '.join(o.get_available_providers()), '(no CUDAExecutionProvider: onnxruntime-gpu is not installed)')" \
        > "$WORK/ort-cuda-skipped.txt" 2>&1 || echo "skipped: onnxruntime is not importable" > "$WORK/ort-cuda-skipped.txt"
    say "ort-cuda: $(cat "$WORK/ort-cuda-skipped.txt")"
fi

# 8. PyTorch GPU variants of the big model, each time-boxed: one past its box is reported, the others written
# (torch.compile of the whole model never finished in 170 s there: the layer-wise compile replaces it)
GPU_VARIANTS=eager-fp32,eager-fp16,half-fp16,half-bf16,half-fp16-cudagraph,compile-layers-fp16,compile-layers-fp16-cudagraph
step "bench-gpu-$TARGET" 200 "${SERTRT[@]}" bench-gpu "$TARGET" --out "$RESULTS" --device "$DEVICE" --windows 2,8 --batches 1,8 \
    --variants "$GPU_VARIANTS" --repeats 20 --warmup 3 --time-box 30

# Summary: every step, the training numbers, parity, versions.
"$PY" - "$WORK" "$RESULTS" "$SLUG" "$TARGET" "$DEVICE" <<'PY' 2>&1 | tee -a "$LOG"
import json, platform, sys, time
from pathlib import Path
work, results, slug, target, device = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]
from sertrt.core import atomic

def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

steps = [dict(zip(("step", "rc", "seconds", "limit_s"), line.split("\t"))) for line in (work / "steps.tsv").read_text().splitlines()]
for s in steps:
    s.update(rc=int(s["rc"]), seconds=int(s["seconds"]), limit_s=int(s["limit_s"]), over_limit=s["rc"] == "124",
             skipped=s["rc"] == "125")
import torch
gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
runs = [(target, "run-big"), ("tiny (exported)", "run-tiny"), (f"{target} pretrained recipe", "run-recipe"),
        *((f"tiny, {d.name[len('run-workers-'):]} loader workers", d.name) for d in sorted(work.glob("run-workers-*")))]
train = {name: rows(work / run / "metrics.jsonl") for name, run in runs}
parity = {}
for p in ("fp32", "fp16", "int8", "int8-dynamic", "torch-gpu", "ort-cuda"):
    f = work / f"parity-{p}.json"
    try:
        parity[p] = json.loads(f.read_text()) if f.exists() and f.stat().st_size else None
    except json.JSONDecodeError:
        parity[p] = None
from importlib.metadata import PackageNotFoundError, version
def installed(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None
packages = ("sertrt", "torch", "transformers", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "numpy", "safetensors",
            "soundfile", "soxr", "typer", "rich", "packaging", "triton", "tensorrt", "polygraphy", "pytest")
data = {"gpu": gpu, "device": device, "target": target, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(), "versions": {p: installed(p) for p in packages}, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "steps": steps, "training": train, "parity": parity,
        "recipe_schedule": json.loads((work / "recipe-schedule.json").read_text()) if (work / "recipe-schedule.json").exists() else None,
        "ort_cuda_skipped": (work / "ort-cuda-skipped.txt").read_text().strip() if (work / "ort-cuda-skipped.txt").exists() else None,
        "bench_gpu": str(results / f"{target}-{slug}.json") if (results / f"{target}-{slug}.json").exists() else None}
lines = [f"# sertrt gpu_check on {gpu}", "", f"{data['date']}; CUDA {data['cuda']}, cuDNN {data['cudnn']}; Python {data['python']}; "
         + ", ".join(f"{k} {v}" for k, v in data["versions"].items() if v), "", "| step | exit | seconds | limit |", "|---|---|---|---|"]
lines += [f"| {s['step']} | {s['rc']}{' (over limit)' if s['over_limit'] else ' (skipped: budget spent)' if s['skipped'] else ''} "
          f"| {s['seconds']} | {s['limit_s']} |" for s in steps]
lines += ["", "## Training", "", "| model | epoch | samples/s | audio s/s | padding | MFU | peak GiB | UA |",
          "|---|---|---|---|---|---|---|---|"]
def pct(v):
    return "-" if v is None else f"{v:.1%}"
for name, epochs in train.items():
    for r in epochs:
        peak, audio = r.get("peak_memory_gib"), r.get("audio_seconds_per_s")
        lines.append(f"| {name} | {r['epoch']} | {r['samples_per_s']:.1f} | {'-' if audio is None else f'{audio:.0f}'} "
                     f"| {pct(r.get('padding_share'))} | {pct(r.get('mfu'))} | {'-' if peak is None else f'{peak:.2f}'} "
                     f"| {r['ua']:.1%} |")
lines += ["", "## Parity (tiny, trained here, exported with this machine's packages)", ""]
for p, r in parity.items():
    if r is None:
        lines.append(f"- {p}: no result")
        continue
    modes = "; ".join(f"{m}: top-1 agreement {v['agreement']:.1%}, delta UA {v['delta_points']['ua']:+.2f}" for m, v in r["modes"].items())
    lines.append(f"- {p}: {'passed' if r['passed'] else 'FAILED ' + ', '.join(r['failures'])}; {modes}")
lines += ["", f"recipe schedule (read back from last.safetensors): {data['recipe_schedule'] or 'no result'}",
          f"ONNX Runtime CUDA provider: {data['ort_cuda_skipped'] or 'parity-ort-cuda above'}",
          "", f"bench-gpu: {data['bench_gpu'] or 'no result'}", ""]
atomic.write_text(results / f"gpu-check-{slug}.json", json.dumps(data, indent=1, default=str) + "\n")
atomic.write_text(results / f"gpu-check-{slug}.md", "\n".join(lines))
failed = [s["step"] for s in steps if s["rc"] != 0]
print(f"wrote {results}/gpu-check-{slug}.json and .md; " + (f"FAILED: {', '.join(failed)}" if failed else "every step passed"))
sys.exit(1 if failed else 0)
PY
rc=$?
rm -rf "$WORK"
exit $rc
