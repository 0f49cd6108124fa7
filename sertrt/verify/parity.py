"""`sertrt parity BUNDLE --run RUN --manifest M`: is the engine the model we trained?

PyTorch FP32 and the bundle's engine each score the manifest on whole utterances, and on the windows
`sertrt stream FILE` scores: each file pushed in the same blocks through an `EmotionStream` per side
(resampler, silence gate and VAD included). Beyond the thresholds (per precision) the command exits 3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.audio import load_audio
from ..core.errors import CheckFailed, SertrtError
from ..core.labels import label_index
from ..core.manifest import Utterance, read_manifest
from ..core.precisions import LIMITS
from ..core.runner import Runner
from ..runtime.runners import RunnerOptions, open_runner
from ..runtime.sources import file_chunks
from ..runtime.stream import EmotionStream, StreamConfig
from .compare import compare, run_batches
from .torch_runner import TorchRunner


@dataclass
class ParityOptions:
    bundle: Path
    run: Path
    manifest: Path  # the data manifest: utterances to compare on
    runner: RunnerOptions = field(default_factory=RunnerOptions)
    window_seconds: float | None = None  # default: the bundle's
    hop_seconds: float | None = None
    silence_dbfs: float | None = -50.0  # the window mode's gate: as `sertrt stream`'s options
    vad: str | None = None
    min_speech: float = 0.3
    min_agreement: float | None = None  # default: LIMITS[precision].parity_agreement
    max_delta_ua: float | None = None  # default: LIMITS[precision].max_delta_ua
    # The PyTorch side (TorchRunner): fp32 is the reference; a half model or CUDA graphs make it a fast GPU one.
    torch_device: str = "cpu"
    torch_precision: str = "fp32"
    cuda_graphs: bool = False


def run_parity(opts: ParityOptions) -> dict[str, Any]:
    if opts.min_agreement is not None and not 0 <= opts.min_agreement <= 1:
        raise SertrtError(f"--min-agreement {opts.min_agreement}: must be in [0, 1]")
    if opts.max_delta_ua is not None and not opts.max_delta_ua >= 0:
        raise SertrtError(f"--max-delta-ua {opts.max_delta_ua}: must be >= 0 points")
    runner, card = open_runner(opts.bundle, opts.runner)
    limits = LIMITS[card.precision].parity()
    if opts.min_agreement is not None:
        limits["agreement"] = opts.min_agreement
    if opts.max_delta_ua is not None:
        limits["delta_ua"] = opts.max_delta_ua
    # The stream's own config: the same checks (a hop under one sample never advances) and rounding.
    config = StreamConfig(
        window_seconds=card.window_seconds if opts.window_seconds is None else opts.window_seconds,
        hop_seconds=card.hop_seconds if opts.hop_seconds is None else opts.hop_seconds,
        silence_dbfs=opts.silence_dbfs, vad=opts.vad, min_speech=opts.min_speech,
    )
    config.check()

    utts = read_manifest(opts.manifest)
    audio = [load_audio(u.path) for u in utts]
    targets = np.array([label_index(u.label, u.path) for u in utts])

    results: dict[str, Any] = {"bundle": str(opts.bundle), "precision": card.precision, "backend": opts.runner.backend,
                               "manifest": str(opts.manifest), "thresholds": limits, "modes": {}}
    reference = TorchRunner(opts.run, opts.torch_device, opts.torch_precision, opts.cuda_graphs)
    results["torch"] = reference.settings()
    with reference as ref_runner, runner:
        ref = run_batches(ref_runner, audio)
        results["modes"]["utterance"] = compare(ref, run_batches(runner, audio), targets, card.labels)
        results["modes"]["window"] = _stream_windows(ref_runner, runner, utts, targets, card.labels, config,
                                                     opts.manifest)
    # Is the run the bundle's own source? A bundle records its checkpoint's digest when it is exported.
    expected = card.source_checkpoint.get("sha256")
    from ..model.io import checkpoint_digest  # the reference is PyTorch's: torch is loaded

    found = checkpoint_digest(ref_runner.resolved)
    results["source_checkpoint"] = {"path": str(ref_runner.resolved), "sha256": found, "bundle_records": expected,
                                    "matches": found == expected}
    failures = []
    for mode, r in results["modes"].items():
        if r["agreement"] < limits["agreement"]:
            failures.append(f"{mode} top-1 agreement {r['agreement']:.2%} < {limits['agreement']:.2%}")
        if abs(r["delta_points"]["ua"]) > limits["delta_ua"]:
            failures.append(f"{mode} |delta UA| {abs(r['delta_points']['ua']):.2f} points > {limits['delta_ua']}")
    if found != expected:
        failures.append(f"{ref_runner.resolved} is not the checkpoint this bundle was exported from "
                        f"(sha256 {found[:12]}..., the bundle records {str(expected)[:12]}...)")
    results["passed"] = not failures
    results["failures"] = failures
    return results


class _Recorder:
    """An EmotionStream's runner (the stream only calls `infer`) that keeps each window's logits `(num_labels,)`."""

    def __init__(self, runner: Runner):
        self.runner, self.logits = runner, list[np.ndarray]()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.runner.infer(feeds)
        self.logits.append(np.array(out["logits"][0]))
        return out


def _stream_windows(reference: Runner, engine: Runner, utts: list[Utterance], targets: np.ndarray, labels: tuple[str, ...],
                    config: StreamConfig, where: Path) -> dict[str, Any]:
    """compare() on each file pushed through one EmotionStream per side, in `sertrt stream`'s blocks, with the
    windows scored ([path, start s, end s]) and how many the gate skipped."""
    ref, out = _Recorder(reference), _Recorder(engine)
    window_targets, spans, skipped = [], [], 0
    for u, target in zip(utts, targets):
        rate, chunks = file_chunks(Path(u.path))
        each = dataclasses.replace(config, input_rate=rate)
        ref_stream, out_stream = EmotionStream(ref, labels, each), EmotionStream(out, labels, each)
        windows = []
        for chunk in chunks:
            ref_stream.push(chunk, channels_first=False)
            windows += out_stream.push(chunk, channels_first=False)
        ref_stream.flush()
        windows += out_stream.flush()
        skipped += sum(w.silent for w in windows)
        spans += [[u.path, w.start, w.end] for w in windows if not w.silent]
        window_targets += [target] * sum(not w.silent for w in windows)
    if not spans:
        raise SertrtError(f"{where}: the stream's gate skips every window (quieter than {config.silence_dbfs} dBFS, "
                          "or not speech to the VAD): no window to compare")
    return {**compare(np.stack(ref.logits), np.stack(out.logits), np.array(window_targets), labels),
            "skipped_silent": skipped, "windows": spans}


def format_parity(results: dict[str, Any]) -> str:
    lines = [f"{'mode':<10} {'n':>6} {'top-1':>8} {'UA torch':>9} {'UA engine':>10} {'dUA':>7} {'dWA':>7} {'dF1':>7} {'max abs':>9} {'max rel':>9}"]
    for mode, r in results["modes"].items():
        d = r["delta_points"]
        lines.append(f"{mode:<10} {r['count']:>6} {r['agreement']:>8.2%} {r['torch']['ua']:>9.2%} {r['engine']['ua']:>10.2%} "
                     f"{d['ua']:>+7.2f} {d['wa']:>+7.2f} {d['macro_f1']:>+7.2f} {r['logits_max_abs']:>9.3g} {r['logits_max_rel']:>9.3g}")
    window = results["modes"]["window"]
    lines.append(f"window: {window['count']} windows as `sertrt stream` scores them ({window['skipped_silent']} "
                 "skipped by its silence gate or VAD)")
    t = results["thresholds"]
    lines.append(f"thresholds ({results['precision']}): top-1 >= {t['agreement']:.2%}, |dUA| <= {t['delta_ua']} points: "
                 + ("passed" if results["passed"] else "FAILED: " + "; ".join(results["failures"])))
    return "\n".join(lines)


def check(results: dict[str, Any]) -> None:
    if not results["passed"]:
        raise CheckFailed("parity failed: " + "; ".join(results["failures"]))
