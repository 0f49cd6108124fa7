"""Which INT8 calibration, and may the first Conv (it reads the raw waveform) be quantised? Measured on real
utterances: every calibration method, with the convolutions float (the export's default), quantised but the
first, and all quantised, each scored against PyTorch FP32 (top-1 agreement, UA difference) on a test manifest.
Calibration uses training-set utterances only, as `sertrt export --precision int8` does. int8-dynamic is measured
for each --cpu-target's weights (arm64's are vnni's).

    .venv/bin/python scripts/int8_calibration.py demo/run demo/corpus/train_manifest.jsonl \
        demo/corpus/test_manifest.jsonl --out benchmarks/results/int8-calibration

writes OUT.json (rows flat, with the command, CPU flags and versions) and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sertrt.core import atomic
from sertrt.core.audio import load_audio
from sertrt.core.checkpoint import resolve_checkpoint
from sertrt.core.labels import label_index
from sertrt.core.manifest import read_manifest
from sertrt.core.precisions import LIMITS
from sertrt.export.onnx_export import export_onnx, simplify_onnx
from sertrt.export.precision import manifest_calibration, to_int8, to_int8_dynamic
from sertrt.export.precision.int8 import CALIBRATION_METHODS, INT8_OP_TYPES
from sertrt.export.spec import ExportSpec
from sertrt.model.io import load_model
from sertrt.runtime.runners import OrtRunner
from sertrt.verify.compare import compare, run_batches
from sertrt.verify.torch_runner import TorchRunner

# (name, op types, first Conv left float)
CONVS = (("float", INT8_OP_TYPES, True), ("int8 but the first", (*INT8_OP_TYPES, "Conv"), True),
         ("int8, the first too", (*INT8_OP_TYPES, "Conv"), False))
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu() -> dict[str, object]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), platform.processor())
    return {"model": model, "flags": {f: f in flags for f in CPU_FLAGS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run"), parser.add_argument("train_manifest"), parser.add_argument("test_manifest")
    parser.add_argument("--out", required=True, help="path without suffix: OUT.json and OUT.md")
    parser.add_argument("--calib-utterances", type=int, default=64)
    args = parser.parse_args()
    import onnxruntime

    ckpt = resolve_checkpoint(Path(args.run))
    model, header = load_model(ckpt)
    spec = ExportSpec(labels=tuple(header.dims.labels), sample_rate=header.dims.sample_rate)
    utterances = read_manifest(args.test_manifest)
    clips = [load_audio(u.path) for u in utterances]
    targets = np.array([label_index(u.label, u.path) for u in utterances])
    with TorchRunner(ckpt) as reference:
        ref = run_batches(reference, clips)
    feeds = manifest_calibration(Path(args.train_manifest), num=args.calib_utterances, seconds=spec.window_seconds)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", spec)
        simplify_onnx(fp32)
        variants = [("int8-dynamic", "none", f"float ({target} weights)", target) for target in ("vnni", "avx2")]
        variants += [("int8", method, name, (ops, first)) for method in CALIBRATION_METHODS for name, ops, first in CONVS]
        for precision, method, convs, how in variants:  # how: a --cpu-target, or (op types, first Conv float)
            dst, start = Path(tmp) / f"{method}-{convs}.onnx", time.perf_counter()
            if isinstance(how, str):
                to_int8_dynamic(fp32, dst, cpu_target=how)
            else:
                to_int8(fp32, dst, feeds, method=method, op_types=how[0], exclude_first_conv=how[1])
            seconds = time.perf_counter() - start
            with OrtRunner(dst, precision=precision) as engine:
                out = run_batches(engine, clips)
            result = compare(ref, out, targets, spec.labels)
            cosine = (ref * out).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(out, axis=1)
            failures = LIMITS[precision].parity_failures(result["agreement"], result["delta_points"]["ua"])
            rows.append({"precision": precision, "calibration": method, "convs": convs, "agreement": result["agreement"],
                         "delta_ua_points": result["delta_points"]["ua"], "ua_torch": result["torch"]["ua"],
                         "ua_int8": result["engine"]["ua"], "logits_max_abs": result["logits_max_abs"],
                         "logits_min_cosine": float(cosine.min()),
                         "gate_passed": not failures, "quantise_s": round(seconds, 1)})
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv]),
        "checkpoint": {"path": str(ckpt), "epoch": header.epoch, "upstream": header.dims.upstream.name},
        "test_manifest": args.test_manifest, "test_utterances": len(utterances),
        "calibration": f"{len(feeds)} utterances of {args.train_manifest}",
        "cpu": cpu(), "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
        "limits": {p: LIMITS[p].parity() for p in ("int8", "int8-dynamic")}, "rows": rows,
    }
    out = Path(args.out)
    atomic.write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in report["cpu"]["flags"].items())
    lines = [f"# INT8 calibration on real utterances ({report['checkpoint']['upstream']}, epoch {header.epoch})", "",
             f"`{report['command']}`", "",
             f"{report['cpu']['model']} ({flags}); onnxruntime {report['onnxruntime']}. Calibrated on "
             f"{report['calibration']}; scored against PyTorch FP32 on the {len(utterances)} utterances of "
             f"{args.test_manifest} (test speakers). Gate: agreement >= 98%, |dUA| <= 1 point.", "",
             "| precision | calibration | convolutions | top-1 agreement | dUA (points) | UA torch | UA int8 | max abs logit error "
             "| min logits cosine | gate |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['calibration']} | {r['convs']} | {r['agreement']:.2%} | {r['delta_ua_points']:+.2f} "
                     f"| {r['ua_torch']:.2%} | {r['ua_int8']:.2%} | {r['logits_max_abs']:.3g} | {r['logits_min_cosine']:.6f} "
                     f"| {'pass' if r['gate_passed'] else 'FAIL'} |")
    atomic.write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
