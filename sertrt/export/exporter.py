"""`sertrt export RUN --precision {fp32,fp16,int8,int8-dynamic}... --out BUNDLE`: checkpoint -> validated bundle(s)
(docs/export.md). Once per run: rebuild the model from its checkpoint, export and simplify the FP32 ONNX, run PyTorch
on the validation signals. Per precision (in OUT/<precision> for several): convert; validate against PyTorch at
untraced shapes; audit for TensorRT (not int8-dynamic); `score` (sertrt.verify's, wired in by the CLI) on real
utterances, refusing a gated precision outside its parity limits; write the card (manifest.json) with every file's
sha256 and every stage's seconds. A bundle appears complete or not at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import __version__
from ..core.bundle import (CARD, ENGINE_FILE, BundleCard, check_replaceable_bundle, load_bundle, onnx_metadata, sign,
                           staging_dir, write_bundle)
from ..core.checkpoint import resolve_checkpoint
from ..core.choices import CALIBRATION_METHODS
from ..core.errors import CheckFailed, SertrtError
from ..core.manifest import write_manifest
from ..core.precisions import CPU_TARGETS, DEFAULT_CPU_TARGET, LIMITS, PRECISIONS
from ..model.io import checkpoint_digest, load_model
from . import precision as prec
from .onnx_export import export_onnx, simplify_onnx, stamp_metadata
from .spec import ExportSpec, Profile
from .tensorrt_audit import audit_onnx, format_audit
from .tensorrt_engine import INT8_DYNAMIC_REFUSED, EngineOptions, build_engine
from .validate import torch_references, validate_onnx, validation_batches

MODEL_FILE = "model.onnx"


@dataclass
class ExportOptions:
    run: Path  # run directory (best.safetensors) or a checkpoint file
    out: Path
    precision: str = "fp32"  # or several, comma-separated (fp32,int8-dynamic): one bundle each, in out/<precision>
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


def export_versions() -> dict[str, str]:
    """What made a bundle (its card's `versions`): sertrt and the libraries whose output it holds."""
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


def export_precisions(precision: str) -> tuple[str, ...]:
    """`--precision fp32` or several, comma-separated (`fp32,int8-dynamic`), in PRECISIONS order (fp32 first)."""
    names = [p.strip() for p in precision.split(",")]
    for name in names:
        if name not in PRECISIONS:
            raise SertrtError(f"unknown precision {name!r} (valid: {', '.join(PRECISIONS)}, or several comma-separated)")
    if len(set(names)) != len(names):
        raise SertrtError(f"--precision {precision}: a precision given twice")
    return tuple(p for p in PRECISIONS if p in names)


def bundle_paths(opts: ExportOptions) -> dict[str, Path]:
    """precision -> bundle directory: `out` itself for one precision, `out/<precision>` for each of several."""
    precisions = export_precisions(opts.precision)
    out = Path(opts.out)
    return {precisions[0]: out} if len(precisions) == 1 else {p: out / p for p in precisions}


def _gate_manifest(opts: ExportOptions, precision: str, scratch: Path) -> tuple[Path | None, str | None]:
    """(manifest the bundle is scored on, how the card names it): --test-manifest, else for a gated precision
    the part of --calib-manifest it was not calibrated on (int8-dynamic calibrates on nothing: all of it)."""
    if opts.test_manifest is not None:
        return opts.test_manifest, str(opts.test_manifest)
    if not (LIMITS[precision].gated and opts.gate):
        return None, None
    num = opts.calib_utterances if precision == "int8" else 0
    calibrated, held_out = prec.split_calibration(opts.calib_manifest, num=num, min_utterances=min(num, 16),
                                                  max_held_out=MAX_GATE_UTTERANCES)
    if len(held_out) < MIN_GATE_UTTERANCES:
        raise SertrtError(f"{opts.calib_manifest}: {len(held_out)} utterance(s) left after the {len(calibrated)} "
                          f"calibrated on; --precision {precision} is gated on at least {MIN_GATE_UTTERANCES} "
                          "held-out utterances: pass --test-manifest or a larger --calib-manifest")
    path = scratch / f"gate_manifest.{precision}.jsonl"
    write_manifest(path, held_out)
    return path, f"{opts.calib_manifest} ({len(held_out)} utterances not calibrated on)"


def _check_options(opts: ExportOptions, outs: dict[str, Path], score: Scorer | None) -> None:
    """Every refusal before minutes of export, not after; `outs`: bundle_paths(opts)."""
    precisions = tuple(outs)
    if "int8" in precisions and opts.calib_manifest is None:
        raise SertrtError("--precision int8 needs --calib-manifest (utterances to calibrate activation ranges on)")
    if "int8" in precisions and opts.calib_utterances < 16:
        raise SertrtError(f"--calib-utterances {opts.calib_utterances}: INT8 calibration needs at least 16")
    if "int8-dynamic" in precisions and opts.engine:
        raise SertrtError(INT8_DYNAMIC_REFUSED)
    gated = [p for p in precisions if LIMITS[p].gated and opts.gate]
    if gated and opts.test_manifest is None and opts.calib_manifest is None:
        raise SertrtError(f"--precision {gated[0]} is gated on real utterances: pass --test-manifest "
                          "(or --calib-manifest, scored on its utterances not calibrated on)")
    if opts.calibration is not None:
        if "int8" not in precisions:
            raise SertrtError(f"--calibration: only --precision int8 is calibrated, not {opts.precision}")
        if opts.calibration not in CALIBRATION_METHODS:
            raise SertrtError(f"--calibration {opts.calibration}: unknown (valid: {', '.join(CALIBRATION_METHODS)})")
    if opts.cpu_target is not None and "int8-dynamic" not in precisions:
        raise SertrtError(f"--cpu-target: only --precision int8-dynamic is made for a CPU, not {opts.precision}")
    if opts.cpu_target not in (None, *CPU_TARGETS):
        raise SertrtError(f"--cpu-target {opts.cpu_target}: unknown (valid: {', '.join(CPU_TARGETS)})")
    if (gated or opts.test_manifest is not None) and score is None:
        raise ValueError("export_bundle: scoring on real utterances needs score= (sertrt.verify.compare.manifest_scorer)")
    if opts.sign is not None:
        sign(b"", opts.sign)  # a bad key is refused now, not after minutes of export
    if len(precisions) > 1 and (Path(opts.out) / CARD).exists():
        raise SertrtError(f"{opts.out}: a bundle; several precisions go into a folder of bundles (OUT/<precision>)")
    for out in outs.values():
        if out.exists() and not opts.overwrite:
            raise SertrtError(f"{out}: already exists; pass --overwrite to replace it")
        check_replaceable_bundle(out)  # --overwrite replaces a bundle, never anything else
    opts.profile.check()


class _Stages:
    """Times each stage into a `timings` dict (seconds) and logs `  [3/9] onnxslim: 4.1 s`."""

    def __init__(self, total: int, log: Callable[[str], None]):
        self.total, self.done, self.log = total, 0, log

    @contextlib.contextmanager
    def __call__(self, timings: dict[str, float], name: str, label: str = "") -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - t0, 2)
        self.done += 1
        self.log(f"  [{self.done}/{self.total}] {label}{name}: {timings[name]:.1f} s")


def export_bundle(opts: ExportOptions, log: Callable[[str], None] = print, score: Scorer | None = None) -> BundleCard:
    """One precision's bundle at `opts.out` (export_bundles for several)."""
    if len(export_precisions(opts.precision)) != 1:
        raise SertrtError(f"--precision {opts.precision}: one precision here (export_bundles takes several)")
    (card,) = export_bundles(opts, log, score).values()
    return card


def export_bundles(opts: ExportOptions, log: Callable[[str], None] = print,
                   score: Scorer | None = None) -> dict[str, BundleCard]:
    """precision -> card of each bundle written (bundle_paths), from one FP32 graph and one set of PyTorch
    references. Each bundle is written once its checks pass; a failing one stops the run."""
    outs = bundle_paths(opts)
    precisions = tuple(outs)
    _check_options(opts, outs, score)
    timings: dict[str, float] = {}
    ckpt = resolve_checkpoint(Path(opts.run))
    staged: dict[str, Path] = {}
    with contextlib.ExitStack() as cleanup:
        for p, out in outs.items():  # an unwritable --out fails here, before the work
            staged[p] = staging_dir(out)
            cleanup.callback(shutil.rmtree, staged[p], ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix="sertrt-export-"))
        cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
        gates = {p: _gate_manifest(opts, p, scratch) for p in precisions}
        stage = _Stages(4 + sum(2 * (p != "fp32") + 2 + (p != "int8-dynamic") + (gates[p][0] is not None) + opts.engine
                                for p in precisions), log)  # the stages below, as each precision runs them
        with stage(timings, "load checkpoint"):
            model, header = load_model(ckpt)
            source = {"path": str(ckpt), "sha256": checkpoint_digest(ckpt), "epoch": header.epoch,
                      "metrics": {k: header.metrics.get(k) for k in ("wa", "ua", "macro_f1")},
                      "upstream": header.dims.upstream.name, "head": header.dims.head.kind, **header.dims.upstream.layers}
        spec = ExportSpec(labels=tuple(header.dims.labels), sample_rate=header.dims.sample_rate, profile=opts.profile)
        fp32 = staged[precisions[-1]] / "model.fp32.onnx"  # in the last bundle's folder: it outlives the others
        log(f"exporting {ckpt} to ONNX (opset {spec.opset})")
        with stage(timings, "torch.onnx.export"):
            export_onnx(model, fp32, spec)
        with stage(timings, "onnxslim"):  # stamped as the fp32 bundle's model; other precisions restamp theirs
            graph = simplify_onnx(fp32, onnx_metadata("fp32", spec.labels, spec.sample_rate, spec.to_dict()))
        log(f"simplified with {graph['tool']}: {graph['nodes_before']} -> {graph['nodes_after']} nodes")
        with stage(timings, "torch reference"):
            references = torch_references(model, validation_batches(
                spec.sample_rate, opts.profile.max_samples / spec.sample_rate), spec.sample_rate)
        del model  # several GB for xlsr-53; every check from here on reads the references
        cards = {}
        for i, precision in enumerate(precisions):
            card = _finish(opts, precision, fp32, staged[precision], spec, gates[precision], references, score,
                           dict(timings), log, stage, last=i == len(precisions) - 1)
            card = dataclasses.replace(card, source_checkpoint=source, graph=graph)
            with stage({}, "hash and write", f"{precision} " if len(precisions) > 1 else ""):
                write_bundle(outs[precision], staged[precision], card, overwrite=opts.overwrite, sign_key=opts.sign)
            cards[precision] = load_bundle(outs[precision], verify=False)
    return cards


def _finish(opts: ExportOptions, precision: str, fp32: Path, staged: Path, spec: ExportSpec,
            gate: tuple[Path | None, str | None], references: list, score: Scorer | None,
            timings: dict[str, float], log: Callable[[str], None], stage: _Stages, last: bool) -> BundleCard:
    """One precision from the simplified FP32 graph, in `staged`; `last`: the FP32 graph is not needed after it."""
    label = f"{precision} " if opts.precision != precision else ""
    limits = LIMITS[precision]
    precision_report: dict[str, Any] = {}
    target = staged / MODEL_FILE
    if precision == "fp32":
        if last:
            fp32.rename(target)
        else:
            shutil.copyfile(fp32, target)
    else:
        with stage(timings, "precision", label):
            if precision == "fp16":
                precision_report = prec.to_fp16(fp32, target)
            elif precision == "int8-dynamic":
                precision_report = prec.to_int8_dynamic(fp32, target, cpu_target=opts.cpu_target or DEFAULT_CPU_TARGET)
            else:
                calib = prec.manifest_calibration(opts.calib_manifest, num=opts.calib_utterances,
                                                  seconds=spec.window_seconds)
                log(f"calibrating INT8 on {len(calib)} utterances from {opts.calib_manifest}")
                precision_report = prec.to_int8(fp32, target, calib, method=opts.calibration or prec.DEFAULT_CALIBRATION)
        if last:
            fp32.unlink()
        with stage(timings, "metadata", label):  # labels, rate, window, precision and I/O ride in the model itself
            stamp_metadata(target, onnx_metadata(precision, spec.labels, spec.sample_rate, spec.to_dict()))
    log(f"validating {precision} ONNX against PyTorch at untraced shapes")
    with stage(timings, "validate", label):
        validation = validate_onnx(target, precision, references)
    log(validation["table"])
    if not validation["passed"]:
        raise CheckFailed(f"{precision} ONNX does not match PyTorch within tolerance (table above); no bundle written")
    audit = None
    if precision != "int8-dynamic":  # ONNX Runtime CPU's artifact: never given to TensorRT
        with stage(timings, "tensorrt audit", label):
            audit = audit_onnx(target, precision)
        log(format_audit(audit))
    gate_manifest, gate_name = gate
    accuracy = None
    if gate_manifest is not None:
        with stage(timings, "score", label):
            accuracy = {**score(target, spec.labels, precision, gate_manifest), "manifest": gate_name}
        d = accuracy["delta_points"]
        log(f"{gate_name}: UA torch {accuracy['torch']['ua']:.1%} -> {precision} "
            f"{accuracy['engine']['ua']:.1%} ({d['ua']:+.1f} points), top-1 agreement {accuracy['agreement']:.1%}")
        failures = limits.parity_failures(accuracy["agreement"], d["ua"]) if limits.gated and opts.gate else []
        if failures:
            raise CheckFailed(f"{precision} ONNX vs PyTorch on {gate_name}: {'; '.join(failures)}; no bundle written")
    engine = None
    if opts.engine:
        with stage(timings, "tensorrt engine", label):
            engine = build_engine(EngineOptions(onnx=target, out=staged / ENGINE_FILE, precision=precision,
                                                profile=opts.profile))
    return BundleCard(
        precision=precision, model=MODEL_FILE, labels=spec.labels, sample_rate=spec.sample_rate,
        spec=spec.to_dict(), opset=spec.opset, versions=export_versions(), precision_report=precision_report,
        validation={k: v for k, v in validation.items() if k != "table"}, accuracy=accuracy, engine=engine,
        tensorrt_audit=audit, cpu_target=precision_report.get("cpu_target"), timings=timings,
    )
