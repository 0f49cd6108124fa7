"""CNN feature-encoder frame reuse across overlapping streaming windows: what it would save, and
what it would change. A study beside `sertrt bench`, not a runtime feature (see `frame_reuse_study`):

    python scripts/frame_reuse.py RUN/best.safetensors OUT.json [--threads 2]

With a 2 s window and a 1 s hop, consecutive windows share 1 s of audio. The wav2vec2 conv stack
has a 400-sample receptive field and a 320-sample stride, so when the hop is a multiple of 320 the
frames of window k that overlap window k-1 cover exactly the samples of frames of window k-1:

    window k-1 frames [hop_frames, num_frames)  ==  window k frames [0, num_frames - hop_frames)

Reusing them would leave only the newest hop (plus 80 samples of context) for the conv stack.
Two things stand in the way, and the study measures both:

1. The model normalises each window (zero mean, unit variance over the window, as wav2vec2's feature
   extractor does), so window k-1 saw the shared samples scaled by other statistics. The first conv
   has a bias and is followed by a LayerNorm and GELU, so the scaling does not cancel.
2. A group-norm encoder (wav2vec2-base) normalises over time inside the conv stack, so even raw,
   unnormalised frames are not local there. Layer-norm encoders (XLSR) are.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sertrt.bench.measure import interleaved
from sertrt.core.audio import RECEPTIVE_FIELD, SAMPLE_RATE
from sertrt.core.metrics import compare_logits
from sertrt.export.validate import speech_like

SWINGS_DB = (0.0, 20.0)  # steady loudness, and level steps of up to 20 dB between hops


def _frames(num_samples: int, stride: int) -> int:
    return (num_samples - RECEPTIVE_FIELD) // stride + 1


def reuse_geometry(window: int, hop: int, stride: int = 320) -> dict[str, int]:
    """Frame bookkeeping for a window/hop in samples: shared and fresh frames, and how many samples
    the conv stack must still see per window with reuse."""
    if hop % stride:
        raise ValueError(f"hop {hop} is not a multiple of the frame stride {stride}: no frame is shared exactly")
    num_frames = _frames(window, stride)
    hop_frames = hop // stride
    shared = max(num_frames - hop_frames, 0)
    fresh_samples = window - shared * stride  # samples [shared * stride, window) yield the fresh frames
    return {"num_frames": num_frames, "hop_frames": hop_frames, "shared_frames": shared, "fresh_frames": num_frames - shared,
            "fresh_samples": fresh_samples}


class _SplicedFeatures:
    """A forward hook for Wav2Vec2Model.feature_extractor: its first `shared` output frames are
    replaced by the frames kept from the previous window (what a reusing runtime would feed on)."""

    def __init__(self, shared: int, hop_frames: int):
        self.shared, self.hop_frames = shared, hop_frames
        self.previous = None

    def __call__(self, module, inputs, feats):  # feats (1, C, num_frames)
        import torch

        out = feats
        if self.previous is not None and self.shared:
            out = torch.cat([self.previous[:, :, self.hop_frames : self.hop_frames + self.shared], feats[:, :, self.shared :]], dim=2)
        self.previous = out
        return out


def conv_locality(upstream, window: int, hop: int, seed: int = 0) -> float:
    """Max abs difference between the shared frames of two consecutive windows computed from raw
    (unnormalised) audio: ~1e-6 when the conv stack is local (layer norm), large for group norm."""
    import torch

    geo = reuse_geometry(window, hop, upstream.downsample_rate)
    audio = torch.from_numpy(speech_like((window + hop) / SAMPLE_RATE, np.random.default_rng(seed)))
    extractor = upstream.model.feature_extractor
    with torch.no_grad():
        a = extractor(audio[None, :window])[:, :, geo["hop_frames"] :]
        b = extractor(audio[None, hop : hop + window])[:, :, : geo["shared_frames"]]
    return float((a - b).abs().max())


def loudness_steps(audio: np.ndarray, hop: int, swing_db: float, seed: int = 0) -> np.ndarray:
    """`audio` with a gain drawn from [-swing_db, 0] dB for each hop: consecutive windows then see
    the shared second at different levels, as speech with pauses and emphasis does."""
    rng = np.random.default_rng(seed)
    gains = 10.0 ** (-rng.uniform(0.0, swing_db, -(-len(audio) // hop)) / 20.0)
    return (audio * np.repeat(gains, hop)[: len(audio)]).astype(np.float32)


def reuse_deviation(model, window: int, hop: int, seconds: float = 20.0, seed: int = 0, swing_db: float = 0.0,
                    audio: np.ndarray | None = None) -> dict[str, Any]:
    """Window logits with reused frames vs the exact model, over a stream of speech-like audio (or
    `audio`) with loudness steps of up to `swing_db` per hop: cosine, the worst window's cosine, max
    abs difference and top-1 agreement."""
    import torch

    upstream = model.upstream
    geo = reuse_geometry(window, hop, upstream.downsample_rate)
    if audio is None:
        audio = speech_like(seconds, np.random.default_rng(seed))
    if swing_db:
        audio = loudness_steps(audio, hop, swing_db, seed)
    starts = range(0, len(audio) - window + 1, hop)
    spliced = _SplicedFeatures(geo["shared_frames"], geo["hop_frames"])
    exact, reused = [], []
    lengths = torch.tensor([window])
    with torch.no_grad():
        for s in starts:
            wave = torch.from_numpy(np.ascontiguousarray(audio[s : s + window]))[None]
            exact.append(model(wave, lengths).numpy()[0])
            hook = upstream.model.feature_extractor.register_forward_hook(spliced)
            try:
                reused.append(model(wave, lengths).numpy()[0])
            finally:
                hook.remove()
    exact, reused = np.stack(exact), np.stack(reused)
    # Window 0 has nothing to reuse; compare the rest.
    e, r = exact[1:], reused[1:]
    c, worst = compare_logits(e, r), min(compare_logits(x, y)["cosine"] for x, y in zip(e, r))
    return {"windows": len(e), "cosine": c["cosine"], "min_cosine": worst, "max_abs": c["max_abs"],
            "top1_agreement": c["agreement"]}


class _ConvStackRunner:
    """ONNX Runtime on the conv stack alone (exported from the model here): names in, names out."""

    def __init__(self, onnx_path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"features": self.session.run(None, {"waveform": feeds["waveform"]})[0]}


def _export_conv_stack(upstream, path: Path) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation (see export/onnx_export.py)
        torch.onnx.export(upstream.model.feature_extractor.eval(), (torch.zeros(1, SAMPLE_RATE),), str(path),
                          input_names=["waveform"], output_names=["features"], opset_version=17, dynamo=False,
                          dynamic_axes={"waveform": {1: "num_samples"}, "features": {2: "num_frames"}})


def frame_reuse_study(model, window_runners: dict[str, Any], window: int, hop: int, threads: int,
                      repeats: int = 10, cell_seconds: float = 10.0, stream_seconds: float = 20.0) -> dict[str, Any]:
    """Everything needed to decide on frame reuse, for a wav2vec2 model on this machine:

    - timing, interleaved in one run: ORT on the conv stack for a whole window and for the fresh
      samples only, and each full-window runner in `window_runners` (the engines a stream would
      call); the saving per window = conv(window) - conv(fresh), also as a share of each engine call;
    - exactness: raw-frame locality of the conv stack, and the logits change that reuse causes
      through the per-window normalisation (`reuse_deviation`)."""
    upstream = model.upstream
    geo = reuse_geometry(window, hop, upstream.downsample_rate)
    rng = np.random.default_rng(0)
    wave = speech_like(window / SAMPLE_RATE, rng)[None]
    full_feeds = {"waveform": wave, "lengths": np.array([window], dtype=np.int64)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conv_stack.onnx"
        _export_conv_stack(upstream, path)
        conv = _ConvStackRunner(path, threads)
        fresh = np.ascontiguousarray(wave[:, window - geo["fresh_samples"] :])
        runners = {"conv_window": conv, **window_runners}
        times = interleaved(runners, full_feeds, repeats, 1, cell_seconds)
        times.update(interleaved({"conv_fresh": conv}, {"waveform": fresh}, repeats, 1, cell_seconds))
    p50 = {k: float(np.median(v)) * 1000.0 for k, v in times.items()}
    saving = p50["conv_window"] - p50["conv_fresh"]
    return {
        "window_samples": window, "hop_samples": hop, **geo,
        "p50_ms": p50, "saving_ms": saving,
        "saving_share": {k: saving / p50[k] for k in window_runners},
        "raw_frame_max_abs": conv_locality(upstream, window, hop),
        "deviation": {f"{swing:g} dB": reuse_deviation(model, window, hop, seconds=stream_seconds, swing_db=swing)
                      for swing in SWINGS_DB},
    }


def main() -> None:
    import argparse
    import json

    from sertrt.core import atomic
    from sertrt.model.io import load_model
    from sertrt.verify.torch_runner import TorchRunner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a wav2vec2-upstream checkpoint (RUN/best.safetensors)")
    parser.add_argument("out", type=Path, help="JSON file to write")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model, _ = load_model(args.checkpoint)
    with TorchRunner(args.checkpoint) as eager:
        result = frame_reuse_study(model.eval(), {"torch-fp32": eager}, 2 * SAMPLE_RATE, SAMPLE_RATE, args.threads)
    atomic.write_text(args.out, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
