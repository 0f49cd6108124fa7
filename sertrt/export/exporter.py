"""`sertrt export RUN --precision {fp32,fp16,int8,int8-dynamic} --out BUNDLE`: checkpoint -> validated bundle.

    1. rebuild the model from its checkpoint (no hub, no config file)
    2. export FP32 ONNX (spec: names, dynamic axes, opset)
    3. fp16: FP16 ONNX with FP32 islands; int8: QDQ INT8 ONNX calibrated on --calib-manifest (TensorRT's);
       int8-dynamic: MatMul-only dynamic INT8 ONNX, no calibration (ONNX Runtime CPU's)
    4. validate against PyTorch at untraced shapes (fails loudly with a per-output table)
    5. with --test-manifest: WA/UA of the bundle vs PyTorch FP32 on real utterances
    6. manifest.json with every file's sha256; the bundle appears at once, complete, or not at all
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..bundle import sha256_file, staging_dir, write_bundle
from ..checkpoint import load_model
from ..errors import SertrtError
from ..outputs import check_replaceable_bundle
from .onnx_export import export_onnx
from .spec import PRECISIONS, ExportSpec, Profile
from .validate import validate_onnx

MODEL_FILE = "model.onnx"


@dataclass
class ExportOptions:
    run: Path  # run directory (best.safetensors) or a checkpoint file
    out: Path
    precision: str = "fp32"
    calib_manifest: Path | None = None
    calib_utterances: int = 64
    test_manifest: Path | None = None
    profile: Profile = field(default_factory=Profile)
    engine: bool = False  # also build a TensorRT engine (needs TensorRT and a GPU)
    overwrite: bool = False
    sign: Path | None = None  # an ed25519 private key (PEM): sign the bundle's manifest


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"sertrt": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def _upstream_layers(upstream: dict[str, Any]) -> dict[str, Any]:
    """Transformer layers the bundle runs, and how many the upstream had before `--upstream-layers`."""
    if upstream["kind"] != "wav2vec2":
        return {}
    layers = upstream["config"]["num_hidden_layers"]
    return {"upstream_layers": layers, "upstream_source_layers": upstream.get("source_layers") or layers}


def score_bundle_vs_torch(model, onnx_path: Path, manifest: Path, labels) -> dict[str, Any]:
    """WA/UA/F1 of PyTorch FP32 and of the ONNX on a manifest, and their difference (points)."""
    import onnxruntime as ort

    from ..manifest import read_manifest
    from ..metrics import classification_report
    from ..training.data import AudioSet
    from ..training.evaluate import predict_logits

    data = AudioSet(read_manifest(manifest))
    ref = predict_logits(model, data)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = np.zeros_like(ref)
    for indices in data.batches(8, shuffle=False):
        waveform, lengths, _ = data.collate(indices, min_samples=400)
        out[indices] = session.run(["logits"], {"waveform": waveform.numpy(), "lengths": lengths.numpy()})[0]
    torch_report = classification_report(data.labels, ref.argmax(1), labels)
    onnx_report = classification_report(data.labels, out.argmax(1), labels)
    return {
        "manifest": str(manifest), "utterances": len(data),
        "torch": {k: torch_report[k] for k in ("wa", "ua", "macro_f1")},
        "onnx": {k: onnx_report[k] for k in ("wa", "ua", "macro_f1")},
        "delta_points": {k: 100 * (onnx_report[k] - torch_report[k]) for k in ("wa", "ua", "macro_f1")},
        "top1_agreement": float(np.mean(ref.argmax(1) == out.argmax(1))),
    }


def export_bundle(opts: ExportOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    from ..training.evaluate import resolve_checkpoint

    if opts.precision not in PRECISIONS:
        raise SertrtError(f"unknown precision {opts.precision!r} (valid: {', '.join(PRECISIONS)})")
    if opts.precision == "int8" and opts.calib_manifest is None:
        raise SertrtError("--precision int8 needs --calib-manifest (utterances to calibrate activation ranges on)")
    if opts.precision == "int8" and opts.calib_utterances < 16:  # checked before minutes of export, not after
        raise SertrtError(f"--calib-utterances {opts.calib_utterances}: INT8 calibration needs at least 16")
    if opts.precision == "int8-dynamic" and opts.engine:
        from .tensorrt_engine import INT8_DYNAMIC_REFUSED

        raise SertrtError(INT8_DYNAMIC_REFUSED)
    if Path(opts.out).exists() and not opts.overwrite:
        raise SertrtError(f"{opts.out}: already exists; pass --overwrite to replace it")
    check_replaceable_bundle(opts.out)  # --overwrite replaces a bundle, never anything else
    opts.profile.check()
    ckpt = resolve_checkpoint(Path(opts.run))
    model, header = load_model(ckpt)
    spec = ExportSpec(labels=tuple(header["dims"]["labels"]), sample_rate=header["dims"]["sample_rate"], profile=opts.profile)

    staged = staging_dir(opts.out)
    try:
        log(f"exporting {ckpt} to ONNX (opset {spec.opset})")
        fp32 = export_onnx(model, staged / "model.fp32.onnx", spec)
        precision_report: dict[str, Any] = {}
        target = staged / MODEL_FILE
        if opts.precision == "fp32":
            fp32.rename(target)
        else:
            from . import precision as prec

            if opts.precision == "fp16":
                precision_report = prec.to_fp16(fp32, target)
            elif opts.precision == "int8-dynamic":
                precision_report = prec.to_int8_dynamic(fp32, target)
            else:
                calib = prec.manifest_calibration(opts.calib_manifest, num=opts.calib_utterances,
                                                  seconds=spec.window_seconds)
                log(f"calibrating INT8 on {len(calib)} utterances from {opts.calib_manifest}")
                precision_report = prec.to_int8(fp32, target, calib)
            fp32.unlink()
        log(f"validating {opts.precision} ONNX against PyTorch at untraced shapes")
        validation = validate_onnx(model, target, opts.precision, spec.sample_rate)
        log(validation["table"])
        if not validation["passed"]:
            raise SertrtError(f"{opts.precision} ONNX does not match PyTorch within tolerance (table above); no bundle written")
        accuracy = None
        if opts.test_manifest is not None:
            accuracy = score_bundle_vs_torch(model, target, opts.test_manifest, spec.labels)
            d = accuracy["delta_points"]
            log(f"{opts.test_manifest}: UA torch {accuracy['torch']['ua']:.1%} -> {opts.precision} "
                f"{accuracy['onnx']['ua']:.1%} ({d['ua']:+.1f} points), top-1 agreement {accuracy['top1_agreement']:.1%}")
        manifest = {
            "precision": opts.precision, "model": MODEL_FILE, "spec": spec.to_dict(),
            "labels": list(spec.labels), "sample_rate": spec.sample_rate, "opset": spec.opset,
            "source_checkpoint": {"path": str(ckpt), "sha256": sha256_file(ckpt), "epoch": header.get("epoch"),
                                  "metrics": {k: header.get("metrics", {}).get(k) for k in ("wa", "ua", "macro_f1")},
                                  "upstream": header["dims"]["upstream"]["name"], "head": header["dims"]["head"]["kind"],
                                  **_upstream_layers(header["dims"]["upstream"])},
            "versions": _versions(), "precision_report": precision_report,
            "validation": {k: v for k, v in validation.items() if k != "table"}, "accuracy": accuracy,
        }
        if opts.engine:
            from .tensorrt_engine import EngineOptions, build_engine

            manifest["engine"] = build_engine(EngineOptions(onnx=target, out=staged / "model.plan",
                                                            precision=opts.precision, profile=opts.profile))
        write_bundle(opts.out, staged, manifest, overwrite=opts.overwrite, sign_key=opts.sign)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return json.loads((Path(opts.out) / "manifest.json").read_text())
