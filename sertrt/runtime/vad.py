"""Voice-activity detectors for the stream's gate: which frames of a window are speech.

    vad = make_vad("webrtc")                    # energy (default, no dependency) | webrtc | silero[:PATH]
    share = vad.speech_share(window)            # (num_samples,) float32 at 16 kHz -> fraction of speech frames
    flags = vad.frames(audio)                   # one bool per frame of vad.frame_samples

    energy   today's gate, frame by frame: a frame is speech when its level is above `threshold_dbfs`
             (-50 dBFS). No dependency; fooled by any loud sound.
    webrtc   WebRTC's GMM VAD through `webrtcvad-wheels` (C, no dependencies, aarch64 wheels; extra
             `sertrt[vad]`), 30 ms frames, aggressiveness 0-3 (default 3).
    silero   Silero VAD's ONNX model run with ONNX Runtime (never torch): 32 ms frames, probability >= 0.5.
             The model (v6, MIT, 2.3 MB) ships inside sertrt (SILERO_MODEL, silero_vad.LICENSE beside it): the
             `silero-vad` package requires torch, which the runtime never installs. Another: `silero:PATH`.

Each window is judged on its own (detector state reset per window), so a window's verdict does not
depend on what came before it: the same audio gives the same result in a stream, a batch or a file.
benchmarks/results/vad.md compares them on synthetic speech with known silences, noise and tones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..core.audio import SAMPLE_RATE
from ..core.errors import SertrtError

VADS = ("energy", "webrtc", "silero")
SILERO_MODEL = Path(__file__).with_name("silero_vad.onnx")  # silero-vad 6.2.3's silero_vad/data/silero_vad.onnx


class VoiceActivity(Protocol):
    name: str
    frame_samples: int

    def frames(self, audio: np.ndarray) -> np.ndarray: ...

    def speech_share(self, audio: np.ndarray) -> float: ...


class _Framed:
    name = ""
    frame_samples = 480

    def frames(self, audio: np.ndarray) -> np.ndarray:
        """One bool per whole frame of `audio` ((num_samples,) float32 at 16 kHz); a partial last frame is dropped."""
        n = len(audio) // self.frame_samples
        return self._judge(np.asarray(audio, dtype=np.float32)[: n * self.frame_samples].reshape(n, self.frame_samples))

    def _judge(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def speech_share(self, audio: np.ndarray) -> float:
        flags = self.frames(audio)
        return float(flags.mean()) if flags.size else 0.0


class EnergyVAD(_Framed):
    name = "energy"

    def __init__(self, threshold_dbfs: float = -50.0, frame_ms: int = 30):
        self.threshold_dbfs, self.frame_samples = threshold_dbfs, SAMPLE_RATE * frame_ms // 1000

    def _judge(self, frames: np.ndarray) -> np.ndarray:
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
        return 20 * np.log10(np.maximum(rms, 1e-10)) > self.threshold_dbfs


class WebRtcVAD(_Framed):
    name = "webrtc"

    def __init__(self, aggressiveness: int = 3, frame_ms: int = 30):
        try:
            import webrtcvad
        except ImportError:
            raise SertrtError("--vad webrtc needs webrtcvad-wheels: pip install 'sertrt[vad]'") from None
        if aggressiveness not in (0, 1, 2, 3) or frame_ms not in (10, 20, 30):
            raise SertrtError("webrtc VAD: aggressiveness must be 0-3 and frames 10, 20 or 30 ms")
        self._vad = webrtcvad.Vad(aggressiveness)
        self.frame_samples = SAMPLE_RATE * frame_ms // 1000

    def _judge(self, frames: np.ndarray) -> np.ndarray:
        pcm = (np.clip(frames, -1.0, 1.0) * 32767).astype("<i2")
        return np.array([self._vad.is_speech(row.tobytes(), SAMPLE_RATE) for row in pcm], dtype=bool)


def silero_model_path(path: str | None = None) -> Path:
    p = Path(path) if path else SILERO_MODEL
    if not p.is_file():
        raise SertrtError(f"{p}: no such Silero VAD model file")
    return p


class SileroVAD(_Framed):
    """Silero VAD (v5/v6 ONNX): 512-sample frames with the previous 64 samples as context, a recurrent state."""

    name = "silero"
    frame_samples = 512
    context = 64

    def __init__(self, path: str | None = None, threshold: float = 0.5):
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

        self.path = silero_model_path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except (Fail, InvalidGraph, InvalidProtobuf) as e:
            raise SertrtError(f"{self.path}: not an ONNX model ONNX Runtime can load "
                              f"({str(e).strip().splitlines()[0][:200]})") from None
        inputs = sorted(i.name for i in self._session.get_inputs())
        if not {"input", "state", "sr"} <= set(inputs):
            raise SertrtError(f"{self.path}: not a Silero VAD v5/v6 model (inputs {', '.join(inputs)}; "
                              "valid: input, state, sr)")
        self.threshold = threshold

    def _judge(self, frames: np.ndarray) -> np.ndarray:
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros((1, self.context), dtype=np.float32)
        rate = np.array(SAMPLE_RATE, dtype=np.int64)
        out = np.zeros(len(frames), dtype=bool)
        for i, frame in enumerate(frames):
            x = np.concatenate([context, frame[None]], axis=1)
            prob, state = self._session.run(None, {"input": x, "state": state, "sr": rate})
            out[i] = float(prob[0, 0]) >= self.threshold
            context = frame[None, -self.context :]
        return out


def make_vad(spec: str) -> VoiceActivity:
    """"energy", "energy:-45" (threshold dBFS), "webrtc", "webrtc:2" (aggressiveness), "silero", "silero:PATH"."""
    name, _, arg = spec.partition(":")
    try:
        if name == "energy":
            return EnergyVAD(float(arg)) if arg else EnergyVAD()
        if name == "webrtc":
            return WebRtcVAD(int(arg)) if arg else WebRtcVAD()
    except ValueError:
        raise SertrtError(f"--vad {spec}: {arg!r} is not a number") from None
    if name == "silero":
        return SileroVAD(arg or None)
    raise SertrtError(f"unknown VAD {spec!r} (valid: {', '.join(VADS)}, each optionally NAME:ARG)")
