"""Benchmarks: a quick tiny run end to end (files, statistics, ratios, targets) and the FLOP counter."""

import json

import pytest

from sertrt.bench import BenchOptions, run_bench
from sertrt.bench.flops import conv_lengths, model_flops
from sertrt.bench.measure import latency_stats
from sertrt.errors import SertrtError
from sertrt.upstream import WAV2VEC2_CONFIGS


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    messages = []
    # the QDQ int8 export (and its validation) is the exporter's, tested there; it would double the export time
    data = run_bench(BenchOptions(target="tiny", out=out, quick=True, repeats=3, stream_seconds=4.0, train=False,
                                  precisions=("fp32", "int8-dynamic")),
                     progress=messages.append)
    return out, data, messages


@pytest.mark.slow
def test_quick_run_writes_json_markdown_and_plot(quick_run):
    out, data, messages = quick_run
    for suffix in ("json", "md", "png"):
        assert (out / f"tiny-cpu.{suffix}").stat().st_size > 0
    assert (out / "tiny-cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "tiny-cpu.json").read_text())
    assert on_disk["architecture"] == "tiny" and on_disk["machine"]["cores"] >= 1
    assert any("2 s x batch 1" in m for m in messages)  # progress was reported


@pytest.mark.slow
def test_quick_run_statistics_and_ratios(quick_run):
    _, data, _ = quick_run
    variants = {r["variant"] for r in data["results"]}
    assert variants == {"torch-fp32", "ort-fp32", "ort-int8-dynamic"}
    base = next(r for r in data["results"] if r["variant"] == "torch-fp32")
    for r in data["results"]:
        assert r["window_s"] == 2.0 and r["batch"] == 1
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["ratio_vs_baseline"] == pytest.approx(base["p50_ms"] / r["p50_ms"])
        assert r["rtf"] == pytest.approx(r["p50_ms"] / 1000.0 / 2.0)
        assert r["gflops"] > 0 and r["peak_fraction"] > 0
    assert data["peak"]["gflops"] > 0
    assert data["best_cpu_int8"] == "ort-int8-dynamic"
    assert all(v["cosine"] > 0.9 for v in data["agreement"].values())
    assert all(not c["torch_imported_by_runtime"] for k, c in data["cold_start"].items() if k.startswith("ort"))


@pytest.mark.slow
def test_quick_run_targets_table(quick_run):
    out, data, _ = quick_run
    keys = {t["key"] for t in data["targets"]}
    assert {"stream_overhead", "cold_start"} <= keys  # the targets that apply to tiny
    assert all(t["met"] in (True, False) for t in data["targets"])
    md = (out / "tiny-cpu.md").read_text()
    assert "## Targets" in md and "| target | applies to | threshold | measured | met? |" in md


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


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(SertrtError, match="unknown bench precision"):
        run_bench(BenchOptions(target="tiny", out=tmp_path, precisions=("fp8",)))
    with pytest.raises(SertrtError, match="neither a bundle directory nor an architecture"):
        run_bench(BenchOptions(target="resnet", out=tmp_path))
