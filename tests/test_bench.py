"""Benchmarks: a quick tiny run end to end (files, statistics, ratios, streaming, cut layers), the timing
primitives on runners with known latencies, and the FLOP counter."""

import json

import pytest

from sertrt.bench import BenchOptions, run_bench
from sertrt.bench import measure
from sertrt.bench.measure import latency_stats
from sertrt.core.bundle import load_bundle
from sertrt.core.errors import SertrtError
from sertrt.model.flops import conv_lengths, model_flops
from sertrt.model.upstream import WAV2VEC2_CONFIGS


THREADS_LEFT = []  # torch's thread count in the caller after quick_run's bench, which times on 2


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    import torch

    out = tmp_path_factory.mktemp("bench")
    messages = []
    caller = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # the QDQ int8 export (and its validation) is the exporter's, tested there; it would double the export time
        data = run_bench(BenchOptions(target="tiny", out=out, quick=True, repeats=3, stream_seconds=4.0, threads=2,
                                      precisions=("fp32", "int8-dynamic"), cache=tmp_path_factory.mktemp("bench-cache"),
                                      layers=(1,)),
                         progress=messages.append)
        THREADS_LEFT.append(torch.get_num_threads())
    finally:
        torch.set_num_threads(caller)
    return out, data, messages


@pytest.mark.slow
def test_quick_run_gives_the_caller_its_thread_count_back(quick_run):
    assert THREADS_LEFT == [1]


@pytest.mark.slow
def test_quick_run_writes_json_and_markdown(quick_run):
    out, data, messages = quick_run
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert written == ["tiny-cpu-quick.json", "tiny-cpu-quick.md"]
    assert data["files"] == {"json": str(out / "tiny-cpu-quick.json"), "md": str(out / "tiny-cpu-quick.md")}
    on_disk = json.loads((out / "tiny-cpu-quick.json").read_text())
    assert on_disk["architecture"] == "tiny" and on_disk["machine"]["cores"] >= 1
    assert any("2 s x batch 1" in m for m in messages)  # progress was reported


@pytest.mark.slow
def test_quick_run_statistics_and_agreement(quick_run):
    _, data, _ = quick_run
    full = {r["variant"]: r for r in data["results"] if "@" not in r["variant"]}
    assert set(full) == {"torch-fp32", "ort-fp32", "ort-int8-dynamic"}
    for r in data["results"]:
        assert r["window_s"] == 2.0 and r["batch"] == 1
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["gflops"] > 0
        assert ("peak_fraction" in r) == ("int8" not in r["variant"])  # the peak is FP32's: an INT8 share is no MFU
    assert full["torch-fp32"]["ratio_vs_baseline"] == 1.0 and data["peak"]["gflops"] > 0
    assert data["best_cpu_int8"] == "ort-int8-dynamic"
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


def test_interleaved_times_each_runner_within_its_budget_in_turns(monkeypatch):
    """Runners that take 10 ms and 40 ms on a fake clock: 10 and 3 timed calls for a 0.1 s budget (at
    least 3), spread over the same rounds, so the medians give a ratio of exactly 4."""
    clock, calls = [0.0], []

    class Fake:
        def __init__(self, name, seconds):
            self.name, self.seconds = name, seconds

        def infer(self, feeds):
            calls.append(self.name)
            clock[0] += self.seconds

    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(measure.time, "sleep", lambda s: None)
    times = measure.interleaved({"a": Fake("a", 0.01), "b": Fake("b", 0.04)}, {}, repeats=30, warmup=1, cell_seconds=0.1)
    assert [len(times["a"]), len(times["b"])] == [10, 3]
    assert calls[2:] == ["a"] * 4 + ["b"] + ["a"] * 3 + ["b"] + ["a"] * 3 + ["b"]  # after one warm-up each: 3 rounds
    a, b = (latency_stats(times[k], 2.0, 1) for k in "ab")
    assert b["p50_ms"] / a["p50_ms"] == pytest.approx(4.0) and b["rtf"] == pytest.approx(0.02)


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
def test_quick_run_times_the_cut_model(quick_run):
    out, data, _ = quick_run
    rows = {r["variant"]: r for r in data["results"]}
    for v in ("torch-fp32", "ort-fp32", "ort-int8-dynamic"):  # one of tiny's 2 layers, next to the full depth
        assert data["variants"][f"{v}@1"]["layers"] == 1
        assert rows[f"{v}@1"]["gflop"] < rows[v]["gflop"]
    header = json.loads(next((tmp for tmp in out.parent.glob("bench-cache*/tiny-L1-seed0/run/best.json"))).read_text())
    assert header["dims"]["upstream"]["config"]["num_hidden_layers"] == 1
    assert "| torch-fp32@1 |" in (out / "tiny-cpu-quick.md").read_text()


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(SertrtError, match="unknown bench precision"):
        run_bench(BenchOptions(target="tiny", out=tmp_path, precisions=("fp8",)))
    with pytest.raises(SertrtError, match="neither a bundle directory nor an architecture"):
        run_bench(BenchOptions(target="resnet", out=tmp_path))
    with pytest.raises(SertrtError, match="--layers needs an architecture target"):
        run_bench(BenchOptions(target=str(tmp_path), out=tmp_path, layers=(1,)))
