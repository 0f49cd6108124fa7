"""The front door, `sertrt.load(bundle)(audio)` (sertrt.runtime.api): a numpy-only import, one `device=`, paths or
arrays in, a files generator that reports a bad file and goes on, long audio scored in windows."""

import inspect
import subprocess
import sys

import numpy as np
import pytest
from conftest import sertrt_env

import sertrt
from sertrt.core.audio import write_wav
from sertrt.core.errors import SertrtError


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny untrained model's fp32 bundle whose export profile ends at 1 s, so 3 s of audio is 'long'."""
    from sertrt.export.exporter import ExportOptions, export_bundle
    from sertrt.export.spec import Profile
    from sertrt.model.io import save_checkpoint
    from sertrt.model.ser import build_model

    root = tmp_path_factory.mktemp("api")
    save_checkpoint(root / "run" / "best.safetensors", build_model("tiny").eval(), {"epoch": 0, "metrics": {}})
    export_bundle(ExportOptions(root / "run", root / "bundle", "fp32",
                                profile=Profile(opt_samples=16000, max_samples=16000)), log=lambda s: None)
    return root / "bundle"


def speech_like(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) * (1 + np.sin(2 * np.pi * 3 * t))
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_import_sertrt_is_numpy_only_and_load_is_the_runtimes():
    code = (
        "import sys, sertrt\n"
        "heavy = ('torch', 'onnxruntime', 'transformers', 'soundfile', 'sertrt.runtime')\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "import sertrt.runtime\n"
        "assert sertrt.load is sertrt.runtime.load and sertrt.__version__\n"
        "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], env=sertrt_env(), check=True)


def test_device_picks_the_runner(bundle, tmp_path):
    with pytest.raises(SertrtError, match=r"device 'gpu': unknown \(valid: cpu, cuda, tensorrt\)"):
        sertrt.load(bundle, device="gpu")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(SertrtError, match="has no CUDAExecutionProvider"):
            sertrt.load(bundle, device="cuda")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():  # no engine: ONNX Runtime's TensorRT provider
        with pytest.raises(SertrtError, match="has no TensorrtExecutionProvider"):
            sertrt.load(bundle, device="tensorrt")
    import shutil

    shutil.copytree(bundle, tmp_path / "b")
    (tmp_path / "b" / "model.plan").write_bytes(b"not a plan")  # an engine beside the ONNX: the native runner's
    with pytest.raises(SertrtError, match="model.plan is not listed in its manifest.json"):
        sertrt.load(tmp_path / "b", device="tensorrt")
    with sertrt.load(tmp_path / "b", device="cpu") as rec:  # cpu never looks at the engine
        assert rec.labels == ("neutral", "happy", "angry", "sad")


def test_a_path_an_array_and_the_files_generator_agree(bundle, tmp_path):
    clips = [speech_like(0.7, seed) for seed in range(3)]
    paths = []
    for i, clip in enumerate(clips):
        paths.append(tmp_path / f"{i}.wav")
        write_wav(paths[-1], clip, 16000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF? no")
    with sertrt.load(bundle, threads=1, batch_size=2) as rec:
        by_path = rec(str(paths[0]))
        by_array = rec(clips[0], 16000)  # the file holds it as 16-bit PCM
        assert by_path.label == by_array.label and np.allclose(by_path.logits, by_array.logits, atol=1e-4)
        with pytest.raises(SertrtError, match="sample rate must be a positive integer, got None"):
            rec(clips[0])
        with pytest.raises(SertrtError, match="0.wav: a file has its own sample rate"):
            rec(paths[0], 16000)
        asked = [paths[0], tmp_path / "missing.wav", tmp_path / "bad.wav", paths[1], paths[2]]
        results = rec.files(asked)
        assert inspect.isgenerator(results)
        results = list(results)
        assert [p for p, _ in results] == [str(p) for p in asked]  # in order, across batches of 2
        assert "missing.wav: no such audio file" in str(results[1][1]) and isinstance(results[1][1], SertrtError)
        assert "bad.wav: cannot read audio" in str(results[2][1]) and isinstance(results[2][1], SertrtError)
        for (_, got), path in zip([results[0], results[3], results[4]], paths):
            assert np.allclose(got.logits, rec(path).logits, atol=1e-5)  # batched as alone
        assert rec.stream().config.window_seconds == rec.card.window_seconds


def test_audio_past_the_profile_is_scored_in_windows(bundle):
    """3 s against a 1 s profile: windows of 1 s every 0.5 s, the log of their mean probability as logits."""
    from sertrt.core.metrics import softmax

    audio = speech_like(3.0, 7)
    with sertrt.load(bundle, threads=1) as rec:
        got = rec(audio, 16000)
        windows = [rec(audio[a : a + 16000], 16000).logits for a in range(0, 32001, 8000)]
        want = np.log(softmax(np.array(windows, dtype=np.float64)).mean(axis=0))
        np.testing.assert_allclose(got.logits, want, atol=1e-5)
        assert got.label == rec.labels[int(np.argmax(want))]
        assert sum(got.probabilities.values()) == pytest.approx(1.0)
