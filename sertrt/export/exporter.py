"""`sertrt export RUN --precision {fp32,fp16,int8,int8-dynamic} --out BUNDLE`: checkpoint -> validated bundle.

    1. rebuild the model from its checkpoint (no hub, no config file)
    2. export FP32 ONNX (spec: names, dynamic axes, opset), simplified with onnxslim
    3. fp16: FP16 ONNX with FP32 islands; int8: QDQ INT8 ONNX calibrated on --calib-manifest (TensorRT's);
       int8-dynamic: MatMul-only dynamic INT8 ONNX, no calibration (ONNX Runtime CPU's)
    4. validate against PyTorch at untraced shapes (fails loudly with a per-output table); audit the graph
       for TensorRT (printed, and recorded in the card; int8-dynamic is ONNX Runtime's, not audited)
    5. `score` (sertrt.verify's comparison, wired in by the CLI): WA/UA of the bundle vs PyTorch FP32 on real
       utterances (--test-manifest, else for INT8 the calibration manifest's held-out part), recorded as the
       card's `accuracy`; an INT8 bundle outside its parity limits there is refused (chirps cannot gate it)
    6. the bundle card (manifest.json) with every file's sha256; the bundle appears at once, complete, or
       not at all
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..core.bundle import (
    ENGINE_FILE,
    BundleCard,
    check_replaceable_bundle,
    load_bundle,
    onnx_metadata,
    sha256_file,
    sign,
    staging_dir,
    write_bundle,
)
from ..core.checkpoint import resolve_checkpoint
from ..core.errors import CheckFailed, SertrtError
from ..core.precisions import CPU_TARGETS, DEFAULT_CPU_TARGET, LIMITS, PRECISIONS
from ..model.io import load_model
from .onnx_export import export_onnx, simplify_onnx, stamp_metadata
from .spec import ExportSpec, Profile
from .tensorrt_audit import audit_onnx, format_audit
from .validate import validate_onnx

MODEL_FILE = "model.onnx"


@dataclass
class ExportOptions:
    run: Path  # run directory (best.safetensors) or a checkpoint file
    out: Path
    precision: str = "fp32"
    calib_manifest: Path | None = None
    calib_utterances: int = 64
    calibration: str | None = None  # int8: minmax, percentile or entropy (default precision.DEFAULT_CALIBRATION)
    cpu_target: str | None = None  # int8-dynamic: vnni, avx2 or arm64 (default core.precisions.DEFAULT_CPU_TARGET)
    test_manifest: Path | None = None  # score the bundle vs PyTorch here (an INT8 export is gated on it)
    gate: bool = True  # False only for timing artifacts of random weights (sertrt bench): answers nobody reads
    profile: Profile = field(default_factory=Profile)
    engine: bool = False  # also build a TensorRT engine (needs TensorRT and a GPU)
    overwrite: bool = False
    sign: Path | None = None  # an ed25519 private key (PEM): sign the bundle's card


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"sertrt": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


# (ONNX path, labels, precision, data manifest) -> the comparison the card records as `accuracy`
# (sertrt.verify.compare.manifest_scorer; the export stage itself never imports the verify wing).
Scorer = Callable[[Path, tuple[str, ...], str, Path], dict[str, Any]]
MIN_GATE_UTTERANCES = 16  # an INT8 gate on fewer real utterances says little
MAX_GATE_UTTERANCES = 256  # of a calibration manifest's held-out part: a flip moves agreement by 0.4%, in seconds


def _gate_manifest(opts: ExportOptions, scratch: Path) -> tuple[Path | None, str | None]:
    """(manifest the bundle is scored on, how the card names it): --test-manifest, else for a gated precision
    the part of --calib-manifest it was not calibrated on (int8-dynamic calibrates on nothing: all of it)."""
    if opts.test_manifest is not None:
        return opts.test_manifest, str(opts.test_manifest)
    if not (LIMITS[opts.precision].gated and opts.gate):
        return None, None
    from ..core.manifest import write_manifest
    from .precision import split_calibration

    num = opts.calib_utterances if opts.precision == "int8" else 0  # int8-dynamic calibrates on nothing
    calibrated, held_out = split_calibration(opts.calib_manifest, num=num, min_utterances=min(num, 16),
                                             max_held_out=MAX_GATE_UTTERANCES)
    if len(held_out) < MIN_GATE_UTTERANCES:
        raise SertrtError(f"{opts.calib_manifest}: {len(held_out)} utterance(s) left after the {len(calibrated)} "
                          f"calibrated on; --precision {opts.precision} is gated on at least {MIN_GATE_UTTERANCES} "
                          "held-out utterances: pass --test-manifest or a larger --calib-manifest")
    path = scratch / "gate_manifest.jsonl"
    write_manifest(path, held_out)
    return path, f"{opts.calib_manifest} ({len(held_out)} utterances not calibrated on)"


def export_bundle(opts: ExportOptions, log: Callable[[str], None] = print, score: Scorer | None = None) -> BundleCard:
    if opts.precision not in PRECISIONS:
        raise SertrtError(f"unknown precision {opts.precision!r} (valid: {', '.join(PRECISIONS)})")
    if opts.precision == "int8" and opts.calib_manifest is None:
        raise SertrtError("--precision int8 needs --calib-manifest (utterances to calibrate activation ranges on)")
    if opts.precision == "int8" and opts.calib_utterances < 16:  # checked before minutes of export, not after
        raise SertrtError(f"--calib-utterances {opts.calib_utterances}: INT8 calibration needs at least 16")
    if opts.precision == "int8-dynamic" and opts.engine:
        from .tensorrt_engine import INT8_DYNAMIC_REFUSED

        raise SertrtError(INT8_DYNAMIC_REFUSED)
    limits = LIMITS[opts.precision]
    gated = limits.gated and opts.gate
    if gated and opts.test_manifest is None and opts.calib_manifest is None:
        raise SertrtError(f"--precision {opts.precision} is gated on real utterances: pass --test-manifest "
                          "(or --calib-manifest, scored on its utterances not calibrated on)")
    if opts.calibration is not None:
        from .precision.int8 import CALIBRATION_METHODS

        if opts.precision != "int8":
            raise SertrtError(f"--calibration: only --precision int8 is calibrated, not {opts.precision}")
        if opts.calibration not in CALIBRATION_METHODS:
            raise SertrtError(f"--calibration {opts.calibration}: unknown (valid: {', '.join(CALIBRATION_METHODS)})")
    if opts.cpu_target is not None and opts.precision != "int8-dynamic":
        raise SertrtError(f"--cpu-target: only --precision int8-dynamic is made for a CPU, not {opts.precision}")
    if opts.cpu_target not in (None, *CPU_TARGETS):
        raise SertrtError(f"--cpu-target {opts.cpu_target}: unknown (valid: {', '.join(CPU_TARGETS)})")
    if (gated or opts.test_manifest is not None) and score is None:
        raise ValueError("export_bundle: scoring on real utterances needs score= (sertrt.verify.compare.manifest_scorer)")
    if opts.sign is not None:
        sign(b"", opts.sign)  # a bad key is refused now, not after minutes of export
    if Path(opts.out).exists() and not opts.overwrite:
        raise SertrtError(f"{opts.out}: already exists; pass --overwrite to replace it")
    check_replaceable_bundle(opts.out)  # --overwrite replaces a bundle, never anything else
    opts.profile.check()
    ckpt = resolve_checkpoint(Path(opts.run))
    model, header = load_model(ckpt)
    dims = header.dims
    spec = ExportSpec(labels=tuple(dims.labels), sample_rate=dims.sample_rate, profile=opts.profile)

    staged = staging_dir(opts.out)
    scratch = Path(tempfile.mkdtemp(prefix="sertrt-export-"))
    try:
        gate_manifest, gate_name = _gate_manifest(opts, scratch)
        log(f"exporting {ckpt} to ONNX (opset {spec.opset})")
        fp32 = export_onnx(model, staged / "model.fp32.onnx", spec)
        graph = simplify_onnx(fp32)
        log(f"simplified with {graph['tool']}: {graph['nodes_before']} -> {graph['nodes_after']} nodes")
        precision_report: dict[str, Any] = {}
        target = staged / MODEL_FILE
        if opts.precision == "fp32":
            fp32.rename(target)
        else:
            from . import precision as prec

            if opts.precision == "fp16":
                precision_report = prec.to_fp16(fp32, target)
            elif opts.precision == "int8-dynamic":
                precision_report = prec.to_int8_dynamic(fp32, target, cpu_target=opts.cpu_target or DEFAULT_CPU_TARGET)
            else:
                calib = prec.manifest_calibration(opts.calib_manifest, num=opts.calib_utterances,
                                                  seconds=spec.window_seconds)
                log(f"calibrating INT8 on {len(calib)} utterances from {opts.calib_manifest}")
                precision_report = prec.to_int8(fp32, target, calib, method=opts.calibration or prec.DEFAULT_CALIBRATION)
            fp32.unlink()
        # self-describing: labels, rate, window, precision and I/O ride in the model itself (validated as shipped)
        stamp_metadata(target, onnx_metadata(opts.precision, spec.labels, spec.sample_rate, spec.to_dict()))
        log(f"validating {opts.precision} ONNX against PyTorch at untraced shapes")
        validation = validate_onnx(model, target, opts.precision, spec.sample_rate)
        log(validation["table"])
        if not validation["passed"]:
            raise CheckFailed(f"{opts.precision} ONNX does not match PyTorch within tolerance (table above); no bundle written")
        audit = None
        if opts.precision != "int8-dynamic":  # ONNX Runtime CPU's artifact: never given to TensorRT
            audit = audit_onnx(target, opts.precision)
            log(format_audit(audit))
        accuracy = None
        if gate_manifest is not None:
            accuracy = {**score(target, spec.labels, opts.precision, gate_manifest), "manifest": gate_name}
            d = accuracy["delta_points"]
            log(f"{gate_name}: UA torch {accuracy['torch']['ua']:.1%} -> {opts.precision} "
                f"{accuracy['engine']['ua']:.1%} ({d['ua']:+.1f} points), top-1 agreement {accuracy['agreement']:.1%}")
            failures = limits.parity_failures(accuracy["agreement"], d["ua"]) if gated else []
            if failures:
                raise CheckFailed(f"{opts.precision} ONNX vs PyTorch on {gate_name}: {'; '.join(failures)}; no bundle written")
        engine = None
        if opts.engine:
            from .tensorrt_engine import EngineOptions, build_engine

            engine = build_engine(EngineOptions(onnx=target, out=staged / ENGINE_FILE, precision=opts.precision,
                                                profile=opts.profile))
        card = BundleCard(
            precision=opts.precision, model=MODEL_FILE, labels=spec.labels, sample_rate=spec.sample_rate,
            spec=spec.to_dict(), opset=spec.opset,
            source_checkpoint={"path": str(ckpt), "sha256": sha256_file(ckpt), "epoch": header.epoch,
                               "metrics": {k: header.metrics.get(k) for k in ("wa", "ua", "macro_f1")},
                               "upstream": dims.upstream.name, "head": dims.head.kind, **dims.upstream.layers},
            versions=_versions(), precision_report=precision_report,
            validation={k: v for k, v in validation.items() if k != "table"}, accuracy=accuracy, engine=engine,
            graph=graph, tensorrt_audit=audit, cpu_target=precision_report.get("cpu_target"),
        )
        write_bundle(opts.out, staged, card, overwrite=opts.overwrite, sign_key=opts.sign)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return load_bundle(opts.out, verify=False)
