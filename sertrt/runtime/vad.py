"""Voice-activity detectors for the stream's gate: which frames of a window are speech.

    vad = make_vad("webrtc")                    # energy | webrtc[:0-3] | silero[:PATH]
    share = vad.speech_share(window)            # (num_samples,) float32 at 16 kHz -> fraction of speech frames

energy: frame level above a dBFS threshold (no dependency). webrtc: WebRTC's GMM VAD (`sertrt[vad]`), 30 ms frames.
silero: Silero VAD's ONNX model on ONNX Runtime (the `silero-vad` package requires torch); the model (v6, MIT)
ships beside this file. Each window is judged on its own (detector state reset), so the same audio gives the same
verdict in a stream, a batch or a file.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np

from ..core.audio import SAMPLE_RATE
from ..core.errors import SertrtError

VADS = ("energy", "webrtc", "silero")
SILERO_MODEL = Path(__file__).with_name("silero_vad.onnx")  # silero-vad 6.2.3's silero_vad/data/silero_vad.onnx


class VoiceActivity:
    """A detector judging frames of `frame_samples`; subclasses define `_judge`."""

    frame_samples = SAMPLE_RATE * 30 // 1000  # 30 ms

    def frames(self, audio: np.ndarray) -> np.ndarray:
        """One bool per whole frame of `audio` ((num_samples,) float32 at 16 kHz); a partial last frame is dropped."""
        n = len(audio) // self.frame_samples
        return self._judge(np.asarray(audio, dtype=np.float32)[: n * self.frame_samples].reshape(n, self.frame_samples))

    def _judge(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def speech_share(self, audio: np.ndarray) -> float:
        flags = self.frames(audio)
        return float(flags.mean()) if flags.size else 0.0


class EnergyVAD(VoiceActivity):
    def __init__(self, threshold_dbfs: float = -50.0):
        self.threshold_dbfs = threshold_dbfs

    def _judge(self, frames: np.ndarray) -> np.ndarray:
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
        return 20 * np.log10(np.maximum(rms, 1e-10)) > self.threshold_dbfs


class WebRtcVAD(VoiceActivity):
    def __init__(self, aggressiveness: int = 3):
        try:
            import webrtcvad
        except ImportError:
            raise SertrtError("--vad webrtc needs webrtcvad-wheels: pip install 'sertrt[vad]'") from None
        if aggressiveness not in (0, 1, 2, 3):
            raise SertrtError(f"--vad webrtc:{aggressiveness}: aggressiveness must be 0-3")
        self._vad = webrtcvad.Vad(aggressiveness)

    def _judge(self, frames: np.ndarray) -> np.ndarray:
        pcm = (np.clip(frames, -1.0, 1.0) * 32767).astype("<i2")
        return np.array([self._vad.is_speech(row.tobytes(), SAMPLE_RATE) for row in pcm], dtype=bool)


class SileroVAD(VoiceActivity):
    """Silero VAD (v5/v6 ONNX): 512-sample frames with the previous 64 samples as context, a recurrent state."""

    frame_samples = 512
    context = 64

    def __init__(self, path: str | None = None, threshold: float = 0.5):
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

        self.path = Path(path) if path else SILERO_MODEL
        if not self.path.is_file():
            raise SertrtError(f"{self.path}: no such Silero VAD model file")
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
