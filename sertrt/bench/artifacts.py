"""What a benchmark measures, built from an architecture name or taken from a bundle.

    prepare_artifacts("xlsr-53", work)  ->  Artifacts(checkpoint, bundles {"fp32", "int8", "int8-dynamic"})

For an architecture the model gets random weights (seed 0), a checkpoint, and bundles exported by the
ordinary exporter (validated against PyTorch like any export). INT8 comes in two artifacts:

    int8          the exporter's explicit QDQ model (symmetric, static: TensorRT's input)
    int8-dynamic  MatMul-only dynamic INT8 (per-channel QUInt8 weights, activations quantised per call)
                  made from the fp32 bundle with onnxruntime.quantization.quantize_dynamic: what ONNX
                  Runtime's CPU kernels run fastest (asymmetric u8 activations, fused MatMulIntegerToFloat)

Everything is cached in `work`, keyed by architecture and seed: exporting xlsr-53 takes minutes, and a
second benchmark run reuses the bundles (each bundle still checks its hashes on load).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import SertrtError

ARCHITECTURES = ("tiny", "xlsr-53")
CALIB_UTTERANCES = 16  # the exporter's minimum
DYNAMIC_OP_TYPES = ("MatMul",)  # Conv as ConvInteger measured 2x slower than FP32 Conv here


@dataclass
class Artifacts:
    name: str  # the architecture, or the bundle's upstream name
    checkpoint: Path | None  # None for a bundle whose checkpoint is not on this machine
    bundles: dict[str, Path] = field(default_factory=dict)  # precision -> bundle dir
    export_seconds: dict[str, float] = field(default_factory=dict)  # 0.0 when taken from the cache
    upstream_config: dict[str, Any] | None = None  # Wav2Vec2Config dict, for the FLOP count


def speech_like(seconds: float, rng: np.random.Generator, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A voiced, syllable-rate-modulated harmonic signal with a gliding f0 and a noise floor:
    (num_samples,) float32. Not speech, but never silent and with speech's coarse structure."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    f0 = rng.uniform(90, 280) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.3, 2.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
    syllables = 0.2 + 0.8 * np.abs(np.sin(2 * np.pi * rng.uniform(2.0, 5.0) * t))
    x = rng.uniform(0.05, 0.3) * voiced * syllables + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32)


def write_calibration_manifest(root: Path, num: int = CALIB_UTTERANCES, seed: int = 0) -> Path:
    """root/calib_<i>.wav (1.5-3 s, speech-like) and root/calib_manifest.jsonl, labels round-robin."""
    from ..audio import write_wav
    from ..labels import LABELS
    from ..manifest import Utterance, write_manifest

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    utts = []
    for i in range(num):
        seconds = float(rng.uniform(1.5, 3.0))
        path = root / f"calib_{i:02d}.wav"
        write_wav(path, speech_like(seconds, rng), SAMPLE_RATE)
        utts.append(Utterance(str(path), LABELS[i % len(LABELS)], "bench", "xx", f"s{i % 4}", seconds, SAMPLE_RATE))
    manifest = root / "calib_manifest.jsonl"
    write_manifest(manifest, utts)
    return manifest


def make_dynamic_int8(fp32_bundle: Path, out: Path, weights: str = "uint8") -> Path:
    """fp32 bundle -> "int8-dynamic" bundle: MatMul-only dynamic INT8 (per-channel weights, u8
    activations quantised per call), the head and feature projection left float. Same contract
    (names, axes, labels) as the fp32 bundle; precision "int8", format "dynamic".

    `weights` "uint8" (default) or "int8". On this AVX2 CPU without VNNI, u8 x s8 products go through
    saturating 16-bit pair sums: int8 weights ran ~9% faster but xlsr-53's logits cosine fell to 0.984
    (0.998 with uint8; reduce_range did not help)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    WEIGHT_TYPE = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}

    from ..bundle import load_bundle, staging_dir, write_bundle
    from ..export.precision import INT8_EXCLUDE, _quiet_preprocess_advice

    manifest = load_bundle(fp32_bundle)
    src = fp32_bundle / manifest["model"]
    # The same float islands as the QDQ export: the head and the feature projection (its error goes
    # straight into the residual stream; quantised, xlsr-53's logits cosine fell to 0.976).
    graph = onnx.load(str(src), load_external_data=False).graph
    excluded = [n.name for n in graph.node if n.op_type in DYNAMIC_OP_TYPES and any(e in n.name for e in INT8_EXCLUDE)]
    staged = staging_dir(out)
    try:
        target = staged / manifest["model"]
        with _quiet_preprocess_advice():
            quantize_dynamic(src, target, per_channel=True, weight_type=WEIGHT_TYPE[weights],
                             op_types_to_quantize=list(DYNAMIC_OP_TYPES), nodes_to_exclude=excluded)
        model = onnx.load(str(target), load_external_data=False)
        ops: dict[str, int] = {}
        for n in model.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        manifest = {k: v for k, v in manifest.items() if k not in ("format", "format_version", "files")}
        manifest["precision"] = "int8"
        manifest["precision_report"] = {
            "precision": "int8", "format": "dynamic", "per_channel": True, "weights": f"{WEIGHT_TYPE[weights].name} per channel",
            "activations": "QUInt8 asymmetric, quantised per call", "op_types": list(DYNAMIC_OP_TYPES),
            "quantised_ops": {k: ops.get(k, 0) for k in ("DynamicQuantizeLinear", "MatMulInteger")},
            "excluded_nodes": excluded,
            "target": "ONNX Runtime CPU (TensorRT takes the QDQ int8 bundle instead)",
            "made_from": str(fp32_bundle),
        }
        manifest["validation"] = None  # bench reports cosine vs fp32 logits instead
        write_bundle(out, staged, manifest, overwrite=True)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


def prepare_artifacts(target: str | Path, precisions: tuple[str, ...], work: Path,
                      progress: Callable[[str], None] = lambda _: None) -> Artifacts:
    """Bundles for every precision in `precisions` ("fp32", "int8", "int8-dynamic"), built or cached."""
    from ..bundle import load_bundle

    if Path(target).is_dir():
        return _from_bundle(Path(target), precisions)
    if str(target) not in ARCHITECTURES:
        raise SertrtError(f"bench target {target!r} is neither a bundle directory nor an architecture (valid: {', '.join(ARCHITECTURES)})")
    name = str(target)
    root = Path(work) / f"{name}-seed0"
    ckpt = root / "run" / "best.safetensors"
    times: dict[str, float] = {}
    if not ckpt.is_file():
        import time

        import torch

        from ..checkpoint import save_checkpoint
        from ..model import build_model

        progress(f"building {name} with random weights (seed 0)")
        torch.manual_seed(0)
        model = build_model(name).eval()
        save_checkpoint(ckpt, model, {"strategy": "full", "epoch": None, "metrics": {}, "note": "random weights (sertrt bench)"})
        del model
    wanted = [p for p in ("fp32", "int8", "int8-dynamic") if p in precisions or (p == "fp32" and "int8-dynamic" in precisions)]
    bundles = {}
    for precision in wanted:
        out = root / f"bundle-{precision}"
        if (out / "manifest.json").is_file():
            times[precision] = 0.0
        else:
            import time

            t0 = time.perf_counter()
            progress(f"exporting {name} {precision}" + (" from the fp32 bundle" if precision == "int8-dynamic"
                                                          else " (validated against PyTorch)") + f"; kept in {root}")
            if precision == "int8-dynamic":
                make_dynamic_int8(bundles["fp32"], out)
            else:
                from ..export.exporter import ExportOptions, export_bundle

                calib = write_calibration_manifest(root / "calib") if precision == "int8" else None
                export_bundle(ExportOptions(run=ckpt, out=out, precision=precision, calib_manifest=calib,
                                            calib_utterances=CALIB_UTTERANCES, overwrite=True), log=progress)
            times[precision] = time.perf_counter() - t0
        bundles[precision] = out
    header = json.loads(ckpt.with_suffix(".json").read_text())
    upstream = header["dims"]["upstream"]
    load_bundle(bundles["fp32"], verify=False)
    return Artifacts(name=name, checkpoint=ckpt, bundles={p: bundles[p] for p in precisions if p in bundles},
                     export_seconds=times, upstream_config=upstream["config"] if upstream["kind"] == "wav2vec2" else None)


def _from_bundle(bundle: Path, precisions: tuple[str, ...]) -> Artifacts:
    """A bundle as the target: it is measured as its own precision; the PyTorch baseline needs its
    source checkpoint on this machine."""
    from ..bundle import load_bundle

    manifest = load_bundle(bundle, verify=False)
    ckpt = Path(manifest["source_checkpoint"]["path"])
    config = None
    if ckpt.is_file():
        header = json.loads(ckpt.with_suffix(".json").read_text()) if ckpt.with_suffix(".json").is_file() else None
        if header and header["dims"]["upstream"]["kind"] == "wav2vec2":
            config = header["dims"]["upstream"]["config"]
    precision = manifest["precision"]
    if manifest.get("precision_report", {}).get("format") == "dynamic":
        precision = "int8-dynamic"
    return Artifacts(name=manifest["source_checkpoint"].get("upstream", bundle.name),
                     checkpoint=ckpt if ckpt.is_file() else None, bundles={precision: bundle}, upstream_config=config)
