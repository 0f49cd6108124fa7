"""What a benchmark measures, built from an architecture name or taken from a bundle.

    prepare_artifacts("xlsr-53", precisions, work)  ->  Artifacts(checkpoint, bundles {"fp32", "int8", "int8-dynamic"})

An architecture gets random weights (seed 0), a checkpoint and bundles from the ordinary exporter (validated
against PyTorch like any export), cached in `work` by architecture: a second run reuses them if the same versions
of sertrt, torch, onnx and onnxruntime made them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.audio import SAMPLE_RATE
from ..core.bundle import CARD, load_bundle
from ..core.checkpoint import CheckpointHeader
from ..core.dims import ModelDims
from ..core.errors import SertrtError

ARCHITECTURES = ("tiny", "xlsr-53")
CALIB_UTTERANCES = 16  # the exporter's minimum


@dataclass
class Artifacts:
    name: str  # the architecture, or the bundle's upstream name
    checkpoint: Path | None  # None for a bundle whose checkpoint is not on this machine
    bundles: dict[str, Path] = field(default_factory=dict)  # precision -> bundle dir
    export_seconds: dict[str, float] = field(default_factory=dict)  # precision(s) of one export run -> s; 0.0: cached
    dims: ModelDims | None = None  # the checkpoint's, when it is on this machine


def read_dims(checkpoint: Path) -> ModelDims | None:
    """The dims from a checkpoint's JSON sidecar (no torch, no tensors read); None without a sidecar."""
    sidecar = checkpoint.with_suffix(".json")
    return CheckpointHeader.from_json(sidecar.read_text(), sidecar).dims if sidecar.is_file() else None


def write_calibration_manifest(root: Path) -> Path:
    """root/calib_<i>.wav (1.5-3 s, speech-like) and root/calib_manifest.jsonl, labels round-robin."""
    from ..core.audio import write_wav
    from ..core.labels import LABELS
    from ..core.manifest import Utterance, write_manifest
    from ..export.validate import speech_like

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    utts = []
    for i in range(CALIB_UTTERANCES):
        seconds = float(rng.uniform(1.5, 3.0))
        path = root / f"calib_{i:02d}.wav"
        write_wav(path, speech_like(seconds, rng), SAMPLE_RATE)
        utts.append(Utterance(str(path), LABELS[i % len(LABELS)], "bench", "xx", f"s{i % 4}", seconds, SAMPLE_RATE))
    manifest = root / "calib_manifest.jsonl"
    write_manifest(manifest, utts)
    return manifest


def prepare_artifacts(target: str | Path, precisions: tuple[str, ...], work: Path,
                      progress: Callable[[str], None] = lambda _: None, layers: int | None = None) -> Artifacts:
    """Bundles for every precision in `precisions` ("fp32", "int8", "int8-dynamic"), built or cached.
    `layers=K`: the architecture with only its first K transformer layers (`--upstream-layers`). A bundle is
    measured as its own precision; the PyTorch baseline needs its source checkpoint on this machine."""
    if Path(target).is_dir():
        card = load_bundle(target, verify=False)
        source = Path(card.source_checkpoint.get("path", ""))
        ckpt = source if source.is_file() else None
        return Artifacts(name=card.source_checkpoint.get("upstream", Path(target).name), checkpoint=ckpt,
                         bundles={card.precision: Path(target)}, dims=read_dims(ckpt) if ckpt else None)
    if str(target) not in ARCHITECTURES:
        raise SertrtError(f"bench target {target!r} is neither a bundle directory nor an architecture (valid: {', '.join(ARCHITECTURES)})")
    name = str(target)
    root = Path(work) / (f"{name}-seed0" if layers is None else f"{name}-L{layers}-seed0")
    ckpt = root / "run" / "best.safetensors"
    if not ckpt.is_file():
        import torch

        from ..model.io import save_checkpoint
        from ..model.ser import build_model

        progress(f"building {name}{'' if layers is None else f' with its first {layers} layers'} with random weights (seed 0)")
        torch.manual_seed(0)
        model = build_model(name, upstream_layers=layers).eval()
        save_checkpoint(ckpt, model, {"strategy": "full", "epoch": None, "metrics": {}, "note": "random weights (sertrt bench)"})
        del model
    wanted = [p for p in ("fp32", "int8", "int8-dynamic") if p in precisions]  # fp32 first: the bench tunes it first
    bundles = {p: root / "bundles" / p for p in wanted}
    from ..export.exporter import ExportOptions, export_bundles, export_versions

    current = export_versions()  # a bundle another sertrt, torch, onnx or onnxruntime made is exported again
    missing = [p for p in wanted
               if not (bundles[p] / CARD).is_file() or load_bundle(bundles[p], verify=False).versions != current]
    times = {p: 0.0 for p in wanted if p not in missing}
    if missing:
        progress(f"exporting {name} {', '.join(missing)} (one FP32 export, validated against PyTorch); kept in {root}")
        calib = write_calibration_manifest(root / "calib") if "int8" in missing else None
        # random weights: timed, never asked for answers, so not gated on real utterances
        t0 = time.perf_counter()
        export_bundles(ExportOptions(run=ckpt, out=root / "bundles" if len(missing) > 1 else bundles[missing[0]],
                                     precision=",".join(missing), calib_manifest=calib,
                                     calib_utterances=CALIB_UTTERANCES, overwrite=True, gate=False), log=progress)
        times[",".join(missing)] = time.perf_counter() - t0  # one run for all of them
    return Artifacts(name=name, checkpoint=ckpt, bundles=bundles, export_seconds=times, dims=read_dims(ckpt))
