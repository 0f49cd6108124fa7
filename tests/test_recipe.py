"""The training recipe's parts: augmentation, class-balanced sampling, layer weights, label smoothing, early stopping."""

import json
import subprocess

import numpy as np
import pytest
import torch
from conftest import sertrt_env
from test_train import tone_split  # noqa: F401  (the fixture)

from sertrt.core.audio import SAMPLE_RATE
from sertrt.core.errors import SertrtError
from sertrt.training.augment import AUGMENTATIONS, augment, parse_augment


def speech_like(seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float32)  # syllables and gaps
    return (0.3 * envelope * np.sin(2 * np.pi * 180 * t) + 0.001 * rng.standard_normal(t.shape)).astype(np.float32)


def test_parse_augment_orders_and_refuses_unknown_names():
    assert parse_augment("noise,speed") == ("speed", "noise")
    assert parse_augment("none") == parse_augment("") == ()
    with pytest.raises(SertrtError, match=r"--augment speed,echo: unknown echo \(valid: speed, noise, gain, reverb, none\)"):
        parse_augment("speed,echo")


def test_augmentation_is_reproducible_and_each_kind_does_its_job():
    audio = speech_like()
    for kinds in [(k,) for k in AUGMENTATIONS] + [AUGMENTATIONS]:
        a = augment(audio, kinds, np.random.default_rng(3))
        assert a.dtype == np.float32 and np.isfinite(a).all()
        assert np.array_equal(a, augment(audio, kinds, np.random.default_rng(3))), kinds
    # speed: lengths of 1/0.9, 1 and 1/1.1 of the clip over many draws
    lengths = {augment(audio, ("speed",), np.random.default_rng(s)).shape[0] for s in range(30)}
    assert sorted(lengths) == pytest.approx([len(audio) / 1.1, len(audio), len(audio) / 0.9], abs=2)
    # noise: half of the clips, at 5-30 dB SNR
    snrs = []
    for s in range(40):
        noisy = augment(audio, ("noise",), np.random.default_rng(s)).astype(np.float64)
        if not np.array_equal(noisy, audio):
            snrs.append(10 * np.log10(np.mean(audio.astype(np.float64) ** 2) / np.mean((noisy - audio) ** 2)))
    assert 10 <= len(snrs) <= 30 and 4.5 < min(snrs) and max(snrs) < 30.5
    # gain: a scaled copy within +-6 dB
    gained = augment(audio, ("gain",), np.random.default_rng(0))
    ratio = float(np.dot(gained, audio) / np.dot(audio, audio))
    assert np.allclose(gained, ratio * audio, atol=1e-6) and 10 ** (-6 / 20) <= ratio <= 10 ** (6 / 20)
    # reverb: same length, the gaps between syllables filled with the room's tail
    gap = slice(int(0.2 * SAMPLE_RATE), int(0.32 * SAMPLE_RATE))  # the first gap: 1/6 to 1/3 s
    tails = [augment(audio, ("reverb",), np.random.default_rng(s)) for s in range(8)]
    assert all(t.shape == audio.shape for t in tails)
    assert max(np.abs(t[gap]).mean() for t in tails) > 10 * np.abs(audio[gap]).mean()


def test_collate_augments_whole_utterances_before_the_crop():
    from sertrt.training.data import AudioSet

    data = AudioSet.__new__(AudioSet)
    data.audio, data.labels = [speech_like(seconds=3.0)], np.array([0])
    data.lengths = np.array([len(data.audio[0])])
    plain, _, _ = data.collate([0], max_samples=SAMPLE_RATE, rng=np.random.default_rng(1))
    noisy, _, _ = data.collate([0], max_samples=SAMPLE_RATE, rng=np.random.default_rng(1), augment=("gain",))
    assert plain.shape == noisy.shape == (1, SAMPLE_RATE) and not torch.equal(plain, noisy)
    with pytest.raises(ValueError, match="generator"):
        data.collate([0], augment=("gain",))


def test_balanced_sampling_draws_every_label_about_equally():
    from sertrt.training.data import AudioSet

    data = AudioSet.__new__(AudioSet)
    data.labels = np.array([0] * 300 + [1] * 60 + [2] * 30 + [3] * 10)  # 30:6:3:1
    data.lengths = np.arange(len(data.labels)) + 1000
    data.audio = [None] * len(data.labels)
    drawn = np.concatenate([data.labels[b] for b in data.batches(8, shuffle=True, seed=0, epoch=0, balanced=True)])
    assert len(drawn) == len(data.labels)
    assert np.all(np.abs(np.bincount(drawn, minlength=4) / len(drawn) - 0.25) < 0.06)
    plain = np.concatenate([data.labels[b] for b in data.batches(8, shuffle=True, seed=0, epoch=0)])
    assert sorted(plain) == sorted(data.labels)  # without it: a permutation
    assert data.batches(8, True, 0, 1, balanced=True) == data.batches(8, True, 0, 1, balanced=True)


def test_layer_weights_weigh_every_layer_and_round_trip_through_a_checkpoint(tmp_path):
    from sertrt.model.io import load_model, save_checkpoint
    from sertrt.model.ser import build_model

    torch.manual_seed(0)
    model = build_model("tiny", "hgfm", layer_weights=True).eval()
    up = model.upstream
    assert up.layer_weights.shape == (up.model.config.num_hidden_layers + 1,)
    x, lengths = torch.randn(2, 16000), torch.tensor([16000, 9000])
    before = model(x, lengths)
    with torch.no_grad():
        up.layer_weights[0] = 5.0  # the weights are used: moving one moves the logits
    moved = model(x, lengths)
    assert not torch.allclose(before, moved)
    save_checkpoint(tmp_path / "m.safetensors", model, {"strategy": "full", "epoch": 0, "metrics": {}})
    loaded, header = load_model(tmp_path / "m.safetensors")
    assert header.dims.upstream.layer_weights and torch.equal(loaded(x, lengths), moved)
    with pytest.raises(SertrtError, match="--layer-weights needs a wav2vec2 upstream"):
        build_model("fbank", "hgfm", layer_weights=True)
    plain = build_model("tiny", "hgfm")
    assert plain.upstream.layer_weights is None and not plain.dims.upstream.layer_weights


def test_early_stopping_and_the_recipe_options_are_recorded(tone_split, tmp_path, cli):
    from test_train import history, train_args

    out = tmp_path / "run"
    # lr 1e-7: validation UA cannot improve after the first epoch, so patience 2 stops after epoch 3
    assert cli(*train_args(tone_split, out, "--epochs", "8", "--lr", "1e-7", "--patience", "2", "--augment", "speed,noise",
                           "--balanced", "--label-smoothing", "0.1", "--layer-weights")).returncode == 0
    rows = history(out)
    uas = [r["ua"] for r in rows]
    assert len(rows) < 8 and len(rows) - 1 - int(np.argmax(uas)) == 2
    options = json.loads((out / "options.json").read_text())
    assert options["augment"] == ["speed", "noise"] and options["balanced"] and options["layer_weights"]
    assert options["label_smoothing"] == 0.1 and options["patience"] == 2
    assert json.loads((out / "best.json").read_text())["dims"]["upstream"]["layer_weights"]


def test_bad_recipe_options_are_one_line_errors(tone_split, tmp_path, cli):
    from test_cli import assert_one_line_error
    from test_train import train_args

    for extra, message in [(("--augment", "echo"), "unknown echo"), (("--label-smoothing", "1"), "must be in [0, 1)"),
                           (("--patience", "0"), "must be >= 1"), (("--upstream", "mfcc", "--layer-weights"), "needs a wav2vec2")]:
        assert_one_line_error(cli(*train_args(tone_split, tmp_path / "run", *extra)), message)
        assert not (tmp_path / "run").exists()


def test_same_seed_same_machine_same_run(tone_split, tmp_path):
    """The demo's claim: for a seed, on one machine (same torch build and thread count), a run is repeated exactly,
    augmentation and validation carve included. Across machines float reductions can differ (README)."""
    from safetensors.numpy import load_file
    from test_train import history, train_cmd

    extra = ("--epochs", "2", "--lr", "1e-3", "--augment", "speed,noise,reverb", "--seed", "3")
    for name in ("a", "b"):
        subprocess.run(train_cmd(tone_split, tmp_path / name, *extra), env=sertrt_env(), check=True)
    timing = ("samples_per_s", "epoch_seconds", "audio_seconds_per_s", "flops_per_s", "peak_flops_per_s", "mfu")
    rows = [[{k: v for k, v in r.items() if k not in timing} for r in history(tmp_path / name)] for name in "ab"]
    assert rows[0] == rows[1]
    weights = [load_file(str(tmp_path / name / "best.safetensors")) for name in "ab"]
    assert weights[0].keys() == weights[1].keys()
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_layer_weights_export_validate_and_pass_the_tensorrt_audit(tmp_path):
    """The weights are parameters: the ONNX graph carries them, matches PyTorch and stays TensorRT-clean."""
    from sertrt.core.bundle import load_bundle
    from sertrt.export.exporter import ExportOptions, export_bundle
    from sertrt.export.tensorrt_audit import format_audit
    from sertrt.model.io import save_checkpoint
    from sertrt.model.ser import build_model

    torch.manual_seed(0)
    model = build_model("tiny", "hgfm", layer_weights=True)
    with torch.no_grad():
        model.upstream.layer_weights.copy_(torch.tensor([1.5, -0.5, 0.3]))
    save_checkpoint(tmp_path / "run" / "best.safetensors", model, {"strategy": "full", "epoch": 0, "metrics": {}})
    for precision in ("fp32", "fp16"):
        card = export_bundle(ExportOptions(tmp_path / "run", tmp_path / precision, precision), log=lambda s: None)
        assert card.validation["passed"] and card.tensorrt_audit["clean"], format_audit(card.tensorrt_audit)
    assert load_bundle(tmp_path / "fp32").source_checkpoint["upstream"] == "tiny"
