"""The runtime is what ships to a Jetson: torch-free at import, refuses tampered bundles, and
matches PyTorch (parity) for the bundles `sertrt export` writes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, make_tone_corpus, sertrt_env

from sertrt.core.errors import SertrtError
from sertrt.core.manifest import read_manifest
from sertrt.core.precisions import LIMITS
from sertrt.export.exporter import ExportOptions, export_bundle
from sertrt.model.io import save_checkpoint
from sertrt.model.ser import build_model
from sertrt.runtime.runners import OrtRunner, RunnerOptions, open_runner
from sertrt.training.train import TrainOptions, train
from sertrt.verify.compare import manifest_scorer
from sertrt.verify.parity import ParityOptions, run_parity


def test_runtime_imports_without_torch():
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'tensorrt', 'onnx'):\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        "import sertrt.runtime.runners, sertrt.runtime.stream, sertrt.runtime.multistream, sertrt.runtime.sources\n"
        "import sertrt.runtime.trt_runner, sertrt.core.bundle, sertrt.core.metrics, sertrt.core.audio, sertrt.core.engine\n"
        "assert not [m for m in sys.modules if m.startswith(('torch', 'transformers')) and sys.modules[m] is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], env=sertrt_env(), check=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for two epochs on tones, exported as fp32, int8 and int8-dynamic bundles."""
    root = tmp_path_factory.mktemp("runtime")
    manifest = make_tone_corpus(root / "tones", per_label=8, seed=21)
    train(TrainOptions(train_manifest=manifest, test_manifest=manifest, out=root / "run", epochs=2, lr=1e-3,
                       batch_size=4, quiet=True))
    for precision in ("fp32", "int8", "int8-dynamic"):
        export_bundle(ExportOptions(root / "run", root / f"bundle-{precision}", precision, calib_manifest=manifest,
                                    calib_utterances=16), log=lambda s: None, score=manifest_scorer(root / "run"))
    return root, manifest


def read_checkpoint_digest(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return f.metadata()["sertrt_sha256"]


@pytest.mark.parametrize("precision", ["fp32", "int8", "int8-dynamic"])
def test_parity_passes_for_exported_bundles(trained, precision):
    root, manifest = trained
    results = run_parity(ParityOptions(root / f"bundle-{precision}", root / "run", manifest,
                                       runner=RunnerOptions(threads=1, spinning=False)))
    assert results["passed"], results["failures"]
    assert results["precision"] == precision and results["thresholds"] == LIMITS[precision].parity()
    assert set(results["modes"]) == {"utterance", "window"}
    source = results["source_checkpoint"]  # the bundle names its checkpoint by the digest the checkpoint stores
    assert source["matches"] and source["sha256"] == read_checkpoint_digest(root / "run" / "best.safetensors")
    assert results["modes"]["utterance"]["count"] == 32 and results["modes"]["window"]["count"] >= 32
    if precision == "fp32":
        assert results["modes"]["utterance"]["logits_max_abs"] < 1e-3


def test_parity_fails_loudly_for_another_model(trained, tmp_path, cli):
    root, manifest = trained
    torch.manual_seed(123)
    other = build_model("tiny").eval()
    with torch.no_grad():
        other.head.out.weight.mul_(30.0)
    save_checkpoint(tmp_path / "other.safetensors", other, {"epoch": 0, "metrics": {}})
    result = cli("parity", root / "bundle-fp32", "--run", tmp_path / "other.safetensors", "--manifest", manifest,
                 "--threads", "1", "--no-spinning")
    assert result.returncode == 3  # a check that failed, not a bad input
    assert "FAILED" in result.stdout and result.stderr.strip().startswith("error: parity failed: utterance top-1 agreement")
    assert "other.safetensors is not the checkpoint this bundle was exported from" in result.stderr


def feeds(batch: int, seed: int) -> dict[str, np.ndarray]:
    """Ragged rows of noise-on-tone audio, padding zeroed: waveform (B, num_samples), lengths (B,)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8000, 24000, size=batch)
    t = np.arange(lengths.max()) / 16000
    waveform = (0.3 * np.sin(2 * np.pi * rng.uniform(90, 300, (batch, 1)) * t)
                + 0.01 * rng.standard_normal((batch, len(t)))).astype(np.float32)
    for b, n in enumerate(lengths):
        waveform[b, n:] = 0
    return {"waveform": waveform, "lengths": lengths.astype(np.int64)}


@pytest.mark.parametrize("precision", ["fp32", "int8-dynamic"])
def test_ort_runner_settings_keep_the_logits(trained, precision):
    """IO binding gives session.run's logits; graph optimisation "basic" gives "all"'s within 1e-5 (1e-4 with
    integer MatMuls)."""
    import onnxruntime as ort

    root, _ = trained
    bundle = root / f"bundle-{precision}"
    inputs = [feeds(1, 0), feeds(3, 1), feeds(1, 2)]  # the binding is re-bound per call, shapes change
    assert open_runner(bundle)[0].settings() == {"provider": "cpu", "threads": None, "optimization": "all",
                                                 "spinning": False, "io_binding": False}
    runner, _ = open_runner(bundle, RunnerOptions(threads=1))  # same threads as below: only the binding differs
    with runner:
        reference = [runner.infer(f)["logits"] for f in inputs]
        assert runner.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    bound, _ = open_runner(bundle, RunnerOptions(threads=1, io_binding=True, spinning=True))
    assert bound.settings() == {"provider": "cpu", "threads": 1, "optimization": "all", "spinning": True, "io_binding": True}
    with bound:
        options = bound.session.get_session_options()
        assert options.intra_op_num_threads == 1 and options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"  # only while a call runs
        for f, ref in zip(inputs, reference):
            out = bound.infer(f)
            assert list(out) == ["logits"] and out["logits"].shape == ref.shape
            np.testing.assert_allclose(out["logits"], ref, rtol=0, atol=1e-6)
    with OrtRunner(bundle / "model.onnx", optimization="basic", spinning=True) as basic:
        assert basic.settings()["optimization"] == "basic" and basic.settings()["spinning"] is True
        options = basic.session.get_session_options()  # what the session was really given
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
        # "all" fuses the integer MatMuls with their rescale (MatMulIntegerToFloat); onnxruntime 1.20's
        # fused kernel rounds differently from the unfused pair by up to 3.3e-5 on these logits.
        atol = 1e-5 if precision == "fp32" else 1e-4
        for f, ref in zip(inputs, reference):
            np.testing.assert_allclose(basic.infer(f)["logits"], ref, rtol=0, atol=atol)


def test_ort_runner_refuses_unknown_optimization_level(trained):
    root, _ = trained
    with pytest.raises(SertrtError) as e:
        OrtRunner(root / "bundle-fp32" / "model.onnx", optimization="max")
    assert "\n" not in str(e.value) and "'max'" in str(e.value) and "valid: basic, extended, all" in str(e.value)
    with pytest.raises(SertrtError, match="valid: basic, extended, all"):
        open_runner(root / "bundle-fp32", RunnerOptions(optimization="O3"))


def test_tampered_bundle_and_missing_engine_are_refused(trained, tmp_path):
    root, _ = trained
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(root / "bundle-fp32", copy)
    with pytest.raises(SertrtError, match="no TensorRT engine.*sertrt build-engine"):
        open_runner(copy, RunnerOptions(backend="trt"))
    from test_bundle import rewrite

    rewrite(copy, lambda m: m["files"].__setitem__("model.onnx", "0" * 64))  # digest redone: only the hash differs
    with pytest.raises(SertrtError, match="model.onnx does not match its sha256"):
        open_runner(copy)


def test_readme_embedding_example_runs(trained, tmp_path):
    """The README's 'embed the runtime' example, as written, with torch made unimportable."""
    root, manifest = trained
    readme = (REPO / "README.md").read_text()
    example = readme.split("<!-- embed-example -->")[1].split("```python\n")[1].split("```")[0]
    assert len(example.strip().splitlines()) <= 12
    wav = next((root / "tones").glob("*.wav"))
    code = "import sys\nsys.modules['torch'] = None\n" + example.replace("bundle-int8", str(root / "bundle-int8")).replace(
        "speech.wav", str(wav))
    result = subprocess.run([sys.executable, "-c", code], env=sertrt_env(), capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1] in ("neutral", "happy", "angry", "sad")


def test_signed_bundle_streams_with_its_key_and_tampering_is_refused(trained, tmp_path, cli):
    """export --sign KEY, stream/parity --trust PUBKEY; a bundle whose labels were reordered is refused."""
    import shutil

    from test_bundle import keypair
    from test_cli import assert_one_line_error

    root, manifest = trained
    private, public = keypair(tmp_path, "vendor")
    signed = tmp_path / "signed"
    assert cli("export", root / "run", "--out", signed, "--sign", private).returncode == 0
    wav = read_manifest(manifest)[0].path
    result = cli("stream", signed, wav, "--trust", public)
    assert result.returncode == 0 and json.loads(result.stdout.splitlines()[-1])["summary"]
    assert_one_line_error(cli("parity", root / "bundle-fp32", "--run", root / "run", "--manifest", manifest,
                              "--trust", public), "not signed", "--trust requires a signature")
    tampered = tmp_path / "tampered"
    shutil.copytree(root / "bundle-fp32", tampered)
    data = json.loads((tampered / "manifest.json").read_text())
    data["labels"] = data["labels"][::-1]
    (tampered / "manifest.json").write_text(json.dumps(data, indent=1))
    assert_one_line_error(cli("stream", tampered, wav), "manifest.json does not match manifest.sha256")


# A client that knows ONNX Runtime and nothing else: no sertrt, no torch (and it checks).
PLAIN_CLIENT = """
import json, sys
import numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
if meta["precision"] == "int8":  # the Q/DQ graph as written, as sertrt runs it (README: The ONNX model describes itself)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
labels, rate = json.loads(meta["labels"]), int(meta["sample_rate"])
names = [t["name"] for t in json.loads(meta["inputs"])]
t = np.arange(int(float(meta["window_seconds"]) * rate)) / rate
wav = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)[None]
logits = session.run(None, {names[0]: wav, names[1]: np.array([wav.shape[1]], dtype=np.int64)})[0][0]
assert "torch" not in sys.modules and not [m for m in sys.modules if m.startswith("sertrt")]
print(json.dumps({"labels": labels, "rate": rate, "precision": meta["precision"], "label": labels[int(np.argmax(logits))],
                  "logits": logits.tolist(), "hop": float(meta["hop_seconds"]), "card": meta["sertrt.card_version"]}))
"""


def test_the_int8_qdq_graph_runs_unfused_in_every_onnxruntime_session(trained):
    """onnxruntime 1.32 on aarch64 fuses DQ -> MatMul into QLinearMatMul and refuses its FP16 scales
    (scripts/jetson_check.sh): every CPU session of an int8 bundle runs the Q/DQ graph as written."""
    root, _ = trained
    def entry(session):
        try:
            return session.get_session_options().get_session_config_entry("session.disable_quant_qdq")
        except RuntimeError:  # "does not have configuration with key"
            return None

    for precision, expected in (("int8", "1"), ("int8-dynamic", None), ("fp32", None)):
        runner, card = open_runner(root / f"bundle-{precision}")
        with runner:
            assert entry(runner.session) == expected, precision
        # without a card (export --test-manifest's scorer, the bench), the precision given decides
        with OrtRunner(root / f"bundle-{precision}" / card.model, precision=precision) as bare:
            assert entry(bare.session) == expected, precision


def test_model_onnx_describes_itself_to_a_plain_onnxruntime_client(trained):
    from sertrt.core.bundle import FORMAT_VERSION, load_bundle

    root, _ = trained
    env = dict(os.environ)  # without the checkout on the path: the client imports no sertrt
    for precision in ("fp32", "int8", "int8-dynamic"):
        bundle = root / f"bundle-{precision}"
        card = load_bundle(bundle)
        out = subprocess.run([sys.executable, "-c", PLAIN_CLIENT, str(bundle / card.model)], cwd=root, env=env,
                             capture_output=True, text=True, check=True)
        got = json.loads(out.stdout)
        assert (got["labels"], got["rate"], got["precision"]) == (list(card.labels), card.sample_rate, precision)
        assert got["hop"] == card.hop_seconds and got["card"] == str(FORMAT_VERSION)
        t = np.arange(card.window_samples) / card.sample_rate
        wav = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)[None]
        runner, _ = open_runner(bundle)
        with runner:
            ref = runner.infer({"waveform": wav, "lengths": np.array([wav.shape[1]], dtype=np.int64)})["logits"][0]
        np.testing.assert_allclose(got["logits"], ref, rtol=1e-5, atol=1e-5)
        assert got["label"] == card.labels[int(np.argmax(ref))]


def test_a_model_whose_metadata_disagrees_with_its_card_is_refused(trained, tmp_path):
    import dataclasses
    import shutil

    from sertrt.core.bundle import (
        check_onnx_metadata,
        load_bundle,
        onnx_metadata,
        write_bundle,
    )

    root, _ = trained
    card = load_bundle(root / "bundle-fp32")
    props = onnx_metadata(card.precision, card.labels, card.sample_rate, card.spec)
    check_onnx_metadata(card, props, "m.onnx")
    check_onnx_metadata(card, {}, "m.onnx")  # exported before the metadata existed: the file hash covers it
    with pytest.raises(SertrtError, match=r"m.onnx: metadata 'precision' of the ONNX model is 'fp16', but the bundle card"):
        check_onnx_metadata(card, {**props, "precision": "fp16"}, "m.onnx")
    # a bundle whose card (hashes intact) claims other labels than its model carries
    staged = tmp_path / "staged"
    staged.mkdir()
    shutil.copy(root / "bundle-fp32" / card.model, staged / card.model)
    swapped = dataclasses.replace(card, labels=tuple(reversed(card.labels)), files={})
    write_bundle(tmp_path / "swapped", staged, swapped)
    runner, _ = open_runner(tmp_path / "swapped")
    with pytest.raises(SertrtError, match=r"metadata 'labels' of the ONNX model is '\[\"neutral\""):
        with runner:
            pass


def test_one_call_api_equals_the_stream_and_handles_rates_channels_and_batches(trained, tmp_path):
    import soundfile as sf

    from sertrt.core.audio import load_audio, resample
    from sertrt.runtime import load
    from sertrt.runtime.stream import EmotionStream, StreamConfig

    root, manifest = trained
    paths = [u.path for u in read_manifest(manifest)[:6]]
    with load(root / "bundle-fp32", threads=1, batch_size=4) as rec:
        assert rec.labels == ("neutral", "happy", "angry", "sad") and rec.sample_rate == 16000
        # one utterance exactly one window long: the stream's single window, same probabilities
        audio = load_audio(paths[0])
        window = np.resize(audio, rec.card.window_samples).astype(np.float32)
        one = rec(window, 16000)
        runner, card = open_runner(root / "bundle-fp32", RunnerOptions(threads=1))
        with runner:
            stream = EmotionStream(runner, card.labels, StreamConfig(silence_dbfs=None))
            windows = stream.push(window) + stream.flush()
        assert len(windows) == 1 and windows[0].raw_label == one.label
        np.testing.assert_allclose(list(one.probabilities.values()), windows[0].probabilities, atol=1e-6)
        assert abs(sum(one.probabilities.values()) - 1) < 1e-6
        # a batch of different lengths gives what each utterance alone gives; files equal arrays
        clips = [load_audio(p) for p in paths]
        batch = rec(clips, 16000)
        alone = [rec(c, 16000) for c in clips]
        for b, a in zip(batch, alone):
            assert b.label == a.label and np.allclose(b.logits, a.logits, atol=1e-5)
        from_files = list(rec.files(paths))
        assert [p for p, _ in from_files] == paths
        assert all(np.allclose(f.logits, a.logits, atol=1e-5) for (_, f), a in zip(from_files, alone))
        # 44.1 kHz stereo int16 is downmixed, scaled and resampled like a file at that rate
        stereo = np.stack([audio, audio], axis=1)
        pcm = (resample(stereo.mean(axis=1), 16000, 44100) * 32767).astype(np.int16)
        sf.write(tmp_path / "s.wav", np.stack([pcm, pcm], axis=1), 44100, subtype="PCM_16")
        got = rec(np.stack([pcm, pcm], axis=1), 44100)
        assert np.allclose(got.logits, rec(tmp_path / "s.wav").logits, atol=1e-4)
        assert rec([], 16000) == []
        with pytest.raises(SertrtError, match="utterance 1: .*NaN/Inf"):
            rec([audio, np.full(800, np.nan, dtype=np.float32)], 16000)
        with pytest.raises(SertrtError, match="sample rate must be a positive integer"):
            rec(audio, 0)
        s = rec.stream(smoothing="ema")
        assert s.config.window_seconds == card.window_seconds and s.config.smoothing == "ema"
    with pytest.raises(SertrtError, match="closed"):
        rec(audio, 16000)


def test_stream_command_with_vad_skips_windows_without_speech(trained, cli):
    """Tones are not speech: with --vad every window of a tone file skips inference, without it none does."""
    root, manifest = trained
    wav = max((u for u in read_manifest(manifest)), key=lambda u: u.duration).path
    summaries = {}
    for extra in ([], ["--vad"]):
        result = cli("stream", root / "bundle-fp32", wav, "--hop-seconds", "0.25", *extra)
        assert result.returncode == 0, result.stderr
        summaries[bool(extra)] = json.loads(result.stdout.splitlines()[-1])
    assert summaries[False]["voiced_windows"] > 0 and summaries[False]["silent_windows"] == 0
    assert summaries[True]["voiced_windows"] == 0 and summaries[True]["silent_windows"] == summaries[False]["voiced_windows"]
