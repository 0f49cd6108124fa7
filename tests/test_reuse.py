"""sertrt.bench.reuse: the frame-reuse study's bookkeeping, splice and exactness findings."""

import numpy as np
import pytest
import torch

from sertrt.bench.artifacts import speech_like
from sertrt.bench.reuse import (
    _ConvStackRunner,
    _export_conv_stack,
    conv_locality,
    frame_reuse_study,
    loudness_steps,
    reuse_deviation,
    reuse_geometry,
)
from sertrt.model.flops import conv_lengths
from sertrt.model.ser import build_model
from sertrt.runtime.runners import OrtRunner

KERNELS, STRIDES = [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny").eval()


@pytest.mark.parametrize("window,hop", [(32000, 16000), (24000, 8000), (16000, 16000), (32000, 320)])
def test_geometry_matches_the_conv_stack(window, hop):
    geo = reuse_geometry(window, hop)
    assert geo["num_frames"] == conv_lengths(window, KERNELS, STRIDES)[-1]
    assert geo["shared_frames"] + geo["fresh_frames"] == geo["num_frames"]
    # The fresh samples yield exactly the fresh frames, and no fewer samples would.
    assert conv_lengths(geo["fresh_samples"], KERNELS, STRIDES)[-1] == geo["fresh_frames"]
    assert conv_lengths(geo["fresh_samples"] - 320, KERNELS, STRIDES)[-1] < geo["fresh_frames"]


def test_geometry_for_the_default_stream():
    assert reuse_geometry(32000, 16000) == {"num_frames": 99, "hop_frames": 50, "shared_frames": 49, "fresh_frames": 50,
                                            "fresh_samples": 16320}
    with pytest.raises(ValueError, match="multiple of the frame stride"):
        reuse_geometry(32000, 16100)


def test_layer_norm_conv_stack_is_local_group_norm_is_not(tiny):
    assert conv_locality(tiny.upstream, 32000, 16000) < 1e-5
    torch.manual_seed(0)
    base = build_model("tiny-base").eval()
    assert conv_locality(base.upstream, 32000, 16000) > 1e-3


def test_splice_takes_the_frames_that_cover_the_same_samples(tiny):
    # Audio periodic in the hop: a correct splice reproduces the exact logits; taking the frames one
    # position off (or from the wrong window) would not.
    audio = np.tile(speech_like(1.0, np.random.default_rng(1)), 6)
    dev = reuse_deviation(tiny, 32000, 16000, audio=audio)
    assert dev["windows"] == 4
    assert dev["max_abs"] < 1e-5


def test_per_window_normalisation_breaks_exactness(tiny):
    steady = reuse_deviation(tiny, 32000, 16000, seconds=8.0)
    stepped = reuse_deviation(tiny, 32000, 16000, seconds=8.0, swing_db=20.0)
    assert steady["windows"] == stepped["windows"] == 6
    assert steady["max_abs"] > 1e-5  # the shared second was normalised with the previous window's statistics
    assert stepped["max_abs"] > steady["max_abs"]


def test_loudness_steps_are_per_hop():
    audio = np.ones(16000 * 3, dtype=np.float32)
    stepped = loudness_steps(audio, 16000, 20.0)
    for k in range(3):
        seg = stepped[k * 16000 : (k + 1) * 16000]
        assert np.all(seg == seg[0]) and 0.1 <= seg[0] <= 1.0


def test_fresh_samples_reproduce_the_windows_last_frames(tiny, tmp_path):
    path = tmp_path / "conv.onnx"
    _export_conv_stack(tiny.upstream, path)
    conv = _ConvStackRunner(path, threads=1)
    geo = reuse_geometry(32000, 16000)
    wave = speech_like(2.0, np.random.default_rng(0))[None]
    whole = conv.infer({"waveform": wave})["features"]
    fresh = conv.infer({"waveform": np.ascontiguousarray(wave[:, -geo["fresh_samples"]:])})["features"]
    assert whole.shape[2] == geo["num_frames"] and fresh.shape[2] == geo["fresh_frames"]
    np.testing.assert_allclose(fresh, whole[:, :, geo["shared_frames"]:], atol=1e-5)


def test_study_reports_saving_against_each_engine(tiny, tmp_path):
    from sertrt.export.onnx_export import export_onnx
    from sertrt.export.spec import ExportSpec

    onnx_path = tmp_path / "model.onnx"
    export_onnx(tiny, onnx_path, ExportSpec(labels=tiny.dims.labels))
    with OrtRunner(onnx_path, threads=1) as runner:
        study = frame_reuse_study(tiny, {"ort-fp32": runner}, 32000, 16000, threads=1, repeats=3, cell_seconds=0.1,
                                  stream_seconds=4.0)
    assert set(study["p50_ms"]) == {"conv_window", "conv_fresh", "ort-fp32"}
    assert study["saving_ms"] == pytest.approx(study["p50_ms"]["conv_window"] - study["p50_ms"]["conv_fresh"])
    assert study["saving_share"]["ort-fp32"] == pytest.approx(study["saving_ms"] / study["p50_ms"]["ort-fp32"])
    assert set(study["deviation"]) == {"0 dB", "20 dB"}
    assert study["raw_frame_max_abs"] < 1e-5
