"""Benchmarks: a quick tiny run end to end (files, statistics, ratios, targets) and the FLOP counter."""

import json

import pytest

from sertrt.bench import BenchOptions, run_bench
from sertrt.bench.measure import latency_stats
from sertrt.bench.report import targets
from sertrt.core.bundle import load_bundle
from sertrt.core.errors import SertrtError
from sertrt.model.flops import conv_lengths, model_flops
from sertrt.model.upstream import WAV2VEC2_CONFIGS


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    messages = []
    # the QDQ int8 export (and its validation) is the exporter's, tested there; it would double the export time
    data = run_bench(BenchOptions(target="tiny", out=out, quick=True, repeats=3, stream_seconds=4.0,
                                  precisions=("fp32", "int8-dynamic"), cache=tmp_path_factory.mktemp("bench-cache"),
                                  layers=(1,), streams=3),
                     progress=messages.append)
    return out, data, messages


@pytest.mark.slow
def test_quick_run_writes_json_markdown_and_plot(quick_run):
    out, data, messages = quick_run
    for suffix in ("json", "md", "png"):
        assert (out / f"tiny-cpu-quick.{suffix}").stat().st_size > 0
    assert (out / "tiny-cpu-quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "tiny-cpu-quick.json").read_text())
    assert on_disk["architecture"] == "tiny" and on_disk["machine"]["cores"] >= 1
    assert any("2 s x batch 1" in m for m in messages)  # progress was reported


@pytest.mark.slow
def test_quick_run_statistics_and_agreement(quick_run):
    _, data, _ = quick_run
    variants = {r["variant"] for r in data["results"]}
    assert variants == {"torch-fp32", "ort-fp32", "ort-int8-dynamic"}
    for r in data["results"]:
        assert r["window_s"] == 2.0 and r["batch"] == 1
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["gflops"] > 0 and r["peak_fraction"] > 0
    assert data["peak"]["gflops"] > 0
    assert data["best_cpu_int8"] == "ort-int8-dynamic"
    assert all(v["cosine"] > 0.9 for v in data["agreement"].values())
    assert all(v["memory_mb"] is not None for v in data["variants"].values())


@pytest.mark.slow
def test_quick_run_measures_the_exported_int8_dynamic_bundle(quick_run):
    """The CPU INT8 the bench times is the exporter's `--precision int8-dynamic` bundle, run by OrtRunner."""
    _, data, _ = quick_run
    info = data["variants"]["ort-int8-dynamic"]
    card = load_bundle(info["bundle"])
    assert card.precision == "int8-dynamic" and card.validation["passed"]
    assert card.precision_report["target"].startswith("ONNX Runtime CPU")
    assert set(info["settings"]) == {"provider", "threads", "optimization", "spinning", "io_binding"}
    assert info["settings"]["threads"] == 2 and info["settings"]["optimization"] in ("all", "basic")


@pytest.mark.slow
def test_quick_run_targets_table(quick_run):
    out, data, _ = quick_run
    keys = {t["key"] for t in data["targets"]}
    assert keys == {"stream_overhead"}  # the target that applies to tiny
    assert all(t["measured"] is not None for t in data["targets"])  # each one the run could judge
    md = (out / "tiny-cpu-quick.md").read_text()
    assert "## Targets" in md and "| target | applies to | threshold | measured | met? |" in md


def test_targets_apply_per_architecture_and_judge_by_threshold():
    streams = {"ort-fp32": {"overhead_share": 0.01}, "ort-int8": {"overhead_share": 0.05, "rtf": 0.5}}
    data = {"architecture": "tiny", "streaming": streams}
    assert [(t["key"], t["measured"], t["met"]) for t in targets(data)] == [
        ("stream_overhead", 0.05, False)]  # the worst stream, over its 3% ceiling
    data.update(architecture="xlsr-53", best_cpu_int8="ort-int8", reference_cell={"window_s": 2.0, "batch": 1},
                results=[{"variant": "ort-int8", "window_s": 2.0, "batch": 1, "ratio_vs_baseline": 3.0},
                         {"variant": "ort-int8", "window_s": 4.0, "batch": 1, "ratio_vs_baseline": 1.0}])
    met = {t["key"]: t["met"] for t in targets(data)}
    assert met["ort_int8_ratio"] is True and met["stream_rtf"] is True  # 3.0 at the reference cell meets ">= 3.0"
    assert met["ort_fp32_ratio"] is None  # not measured: neither met nor missed


def test_flops_xlsr53_two_seconds():
    total = model_flops(WAV2VEC2_CONFIGS["xlsr-53"], None, 32000)["total"]
    assert 60e9 <= total <= 85e9  # ~72 GFLOP: the figure


def test_flops_scale_linearly_with_length():
    config = WAV2VEC2_CONFIGS["xlsr-53"]
    per_second = [model_flops(config, None, s * 16000)["total"] / s for s in (1, 2, 4, 8)]
    # attention scores grow with T^2, but are ~1% at these lengths: within 10% of linear
    assert max(per_second) / min(per_second) < 1.1
    assert model_flops(config, None, 32000, batch=8)["total"] == pytest.approx(8 * model_flops(config, None, 32000)["total"])


def test_conv_lengths_match_wav2vec2_frames():
    assert conv_lengths(32000, [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])[-1] == 99  # 20 ms frames
    assert conv_lengths(400, [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])[-1] == 1


def test_latency_stats_percentiles_and_throughput():
    s = latency_stats([0.1] * 9 + [0.2], window_seconds=2.0, batch=8)
    assert s["p50_ms"] == pytest.approx(100.0) and s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= 200.0
    assert s["audio_s_per_s"] == pytest.approx(160.0) and s["utterances_per_s"] == pytest.approx(80.0)
    assert s["rtf"] == pytest.approx(0.1 / 16.0)


@pytest.mark.slow
def test_quick_run_batches_streams(quick_run):
    out, data, _ = quick_run
    assert set(data["multistream"]) == set(data["streaming"])
    for m in data["multistream"].values():
        assert m["streams"] == 3
        # 4 s per stream, 2 s window, 1 s hop: windows ending at 2, 3, 4 s in each stream, in both modes
        assert m["windows"] == {"alone": 9, "batched": 9}
    assert "## Several streams through one engine" in (out / "tiny-cpu-quick.md").read_text()


@pytest.mark.slow
def test_quick_run_times_the_cut_model(quick_run):
    out, data, _ = quick_run
    rows = data["layers"]
    assert {r["variant"] for r in rows} == {"torch-fp32", "ort-fp32", "ort-int8-dynamic"}
    for r in rows:
        assert (r["layers"], r["of_layers"]) == (1, 2)
        assert r["gflop"] < r["full_depth_gflop"]
    header = json.loads(next((tmp for tmp in out.parent.glob("bench-cache*/tiny-L1-seed0/run/best.json"))).read_text())
    assert header["dims"]["upstream"]["config"]["num_hidden_layers"] == 1
    assert "## Fewer transformer layers" in (out / "tiny-cpu-quick.md").read_text()


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(SertrtError, match="unknown bench precision"):
        run_bench(BenchOptions(target="tiny", out=tmp_path, precisions=("fp8",)))
    with pytest.raises(SertrtError, match="neither a bundle directory nor an architecture"):
        run_bench(BenchOptions(target="resnet", out=tmp_path))
    with pytest.raises(SertrtError, match="--layers needs an architecture target"):
        run_bench(BenchOptions(target=str(tmp_path), out=tmp_path, layers=(1,)))
