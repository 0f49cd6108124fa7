"""Voice-activity gates: the detectors on speech, tones and noise, and the stream scoring only speech windows."""

import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from test_stream import LABELS, Recorder

from sertrt.core.audio import SAMPLE_RATE, resample
from sertrt.core.errors import SertrtError
from sertrt.runtime.stream import EmotionStream, StreamConfig
from sertrt.runtime.vad import EnergyVAD, make_vad

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def sentence():
    import soundfile as sf

    out = subprocess.run(["espeak-ng", "-v", "en+m3", "--stdout", "The kettle was left on the back of the stove, "
                          "and nobody noticed it until the evening."], capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(out), dtype="float32")
    audio = resample(audio, rate, SAMPLE_RATE)
    return (audio * 0.1 / np.sqrt(np.mean(audio**2))).astype(np.float32)


def tones(seconds=2.0):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    melody = 220 * 2 ** (np.floor(t * 3) % 5 / 12)  # a note every 1/3 s
    return (0.1 * np.sin(2 * np.pi * np.cumsum(melody) / SAMPLE_RATE) * 1.4).astype(np.float32)


def test_make_vad_parses_and_refuses_in_one_line():
    assert isinstance(make_vad("energy:-40"), EnergyVAD) and make_vad("energy:-40").threshold_dbfs == -40
    for spec, message in [("snore", "unknown VAD 'snore'"), ("energy:loud", "'loud' is not a number"),
                          ("silero:/no/such.onnx", "no such Silero VAD model file")]:
        with pytest.raises(SertrtError, match=message):
            make_vad(spec)


def test_a_silero_path_that_is_not_silero_is_one_line_naming_it(tmp_path):
    """A file that is not an ONNX model was onnxruntime's InvalidProtobuf traceback."""
    import onnx
    from onnx import TensorProto, helper

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model" * 10)
    with pytest.raises(SertrtError, match=f"^{re.escape(str(junk))}: not an ONNX model ONNX Runtime can load"):
        make_vad(f"silero:{junk}")
    other = tmp_path / "other.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]),
                                 opset_imports=[helper.make_opsetid("", 13)], ir_version=8), other)
    with pytest.raises(SertrtError, match=rf"^{re.escape(str(other))}: not a Silero VAD v5/v6 model \(inputs x; valid: input, state, sr\)"):
        make_vad(f"silero:{other}")


def test_energy_gate_is_a_level_gate():
    vad = EnergyVAD(-50)
    assert vad.speech_share(np.zeros(SAMPLE_RATE, dtype=np.float32)) == 0.0
    assert vad.speech_share(tones()) == 1.0  # any loud sound passes: why a trained VAD is offered
    assert len(vad.frames(np.zeros(1000, dtype=np.float32))) == 2  # whole 30 ms frames only


@needs_espeak
@pytest.mark.parametrize("name", ["webrtc", "silero"])
def test_trained_vads_hear_speech(name):
    pytest.importorskip("webrtcvad" if name == "webrtc" else "onnxruntime")
    vad = make_vad(name)
    speech, rng = sentence(), np.random.default_rng(0)
    assert vad.speech_share(speech) > 0.5
    assert vad.speech_share(np.zeros(2 * SAMPLE_RATE, dtype=np.float32)) == 0.0
    assert vad.speech_share(speech) == vad.speech_share(speech)  # state is reset per call: same audio, same verdict
    if name == "silero":  # the one that tells music-like tones and noise from speech (benchmarks/results/vad.md)
        assert vad.speech_share(tones()) < 0.1
        assert vad.speech_share((0.05 * rng.standard_normal(2 * SAMPLE_RATE)).astype(np.float32)) < 0.1


@needs_espeak
def test_stream_scores_only_windows_with_enough_speech():
    pytest.importorskip("onnxruntime")
    audio = np.concatenate([tones(3.0), sentence()])
    results = {}
    for vad in (None, "silero"):
        runner = Recorder(keep=False)
        stream = EmotionStream(runner, LABELS, StreamConfig(vad=vad, min_speech=0.3))
        results[vad] = stream.push(audio) + stream.flush()
    plain, gated = results[None], results["silero"]
    assert [r.start for r in plain] == [r.start for r in gated]  # same windows, some not scored
    assert not any(r.silent for r in plain)  # the level gate lets the tones through
    tone_only = [g for g in gated if g.end <= 3.0]
    assert tone_only and all(g.silent and g.probabilities is None for g in tone_only)
    assert any(not g.silent for g in gated if g.start >= 3.0)
    with pytest.raises(SertrtError, match="--min-speech 1.5"):
        EmotionStream(Recorder(), LABELS, StreamConfig(vad="energy", min_speech=1.5))


def test_silero_ships_with_sertrt_and_needs_neither_silero_vad_nor_torch():
    """`--vad`'s default detector works on the runtime install alone: the silero-vad package requires torch."""
    import sys

    from conftest import sertrt_env

    code = ("import sys\n"
            "for name in ('torch', 'silero_vad'):\n"
            "    sys.modules[name] = None  # any import of these now fails\n"
            "import numpy as np\n"
            "from sertrt.runtime.vad import make_vad\n"
            "assert make_vad('silero').speech_share(np.zeros(32000, np.float32)) == 0.0\n")
    subprocess.run([sys.executable, "-c", code], env=sertrt_env(), check=True)
