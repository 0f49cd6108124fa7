"""The GPU benchmark harness (sertrt.bench.gpu): run on CPU with the variants that need no CUDA; the
CUDA-graph and compile variants on a GPU only (marker `gpu`)."""

import json

import pytest
import torch
from test_cli import assert_one_line_error, sertrt

from sertrt.bench.gpu import BASELINE, GpuBenchOptions, run_gpu_bench
from sertrt.core.errors import SertrtError


def test_cpu_run_measures_eager_variants_and_names_what_it_skipped(tmp_path):
    messages = []
    data = run_gpu_bench(GpuBenchOptions(target="tiny", out=tmp_path, device="cpu", variants=("eager-fp16", "cudagraph-fp16"),
                                         windows=(1.0,), batches=(1, 2), repeats=3, warmup=1), progress=messages.append)
    on_disk = json.loads((tmp_path / "tiny-cpu.json").read_text())
    assert on_disk["device_name"] == "cpu" and on_disk["results"] == json.loads(json.dumps(data["results"]))
    rows = {(r["variant"], r["batch"]): r for r in data["results"]}
    # the baseline is always measured, even when not asked for: every ratio is against it
    assert set(rows) == {(v, b) for v in (BASELINE, "eager-fp16") for b in (1, 2)}
    for r in rows.values():
        assert r["n"] == 3 and 0 < r["p50_ms"] <= r["p99_ms"] and r["first_call_s"] > 0
    assert rows[(BASELINE, 1)]["cosine_vs_fp32"] == pytest.approx(1.0)
    # autocast float16 changes the logits a little, not the decisions
    assert 0.999 < rows[("eager-fp16", 2)]["cosine_vs_fp32"] < 1.0 + 1e-9
    assert rows[("eager-fp16", 2)]["max_abs_vs_fp32"] > 0
    assert data["skipped"] == {"cudagraph-fp16": "CUDA graphs need a CUDA device"}
    md = (tmp_path / "tiny-cpu.md").read_text()
    assert "## Batch 2" in md and "eager-fp16" in md and "cudagraph-fp16: CUDA graphs need a CUDA device" in md
    assert any("1 s x batch 2: eager-fp16" in m for m in messages)


def test_a_variant_over_its_time_box_is_reported_and_the_others_written(tmp_path, monkeypatch):
    import time

    from sertrt.bench import gpu

    real = gpu._variant_fns

    def with_a_slow_one(model, variants, device, batches):
        fns, skipped = real(model, variants, device, batches)
        fast, base, calls = fns["eager-fp16"], fns[BASELINE], []
        fns["eager-fp16"] = lambda w, n: (slow_calls.append(1), time.sleep(60.0), fast(w, n))[2]  # a compile that never ends
        # the baseline's first call is slow too (a loaded machine): it is never cut, every ratio needs it
        fns[BASELINE] = lambda w, n: (calls.append(1), len(calls) == 1 and time.sleep(1.5), base(w, n))[2]
        return fns, skipped

    slow_calls = []
    monkeypatch.setattr(gpu, "_variant_fns", with_a_slow_one)
    t0 = time.perf_counter()
    data = run_gpu_bench(GpuBenchOptions(target="tiny", out=tmp_path, device="cpu", variants=("eager-fp16",),
                                         windows=(0.5,), batches=(1, 2), repeats=2, warmup=1, time_box_s=1.0))
    assert time.perf_counter() - t0 < 30 and slow_calls == [1]  # cut at 1 s, and not tried again in the second cell
    assert {(r["variant"], r["batch"]) for r in data["results"]} == {(BASELINE, 1), (BASELINE, 2)}
    assert data["skipped"]["eager-fp16"].startswith("over its 1 s time box (warm-up at 0.5 s x batch 1)")
    on_disk = json.loads((tmp_path / "tiny-cpu.json").read_text())
    assert on_disk["skipped"] == data["skipped"] and len(on_disk["results"]) == 2
    assert "eager-fp16: over its 1 s time box" in (tmp_path / "tiny-cpu.md").read_text()


def test_bad_options_are_errors(tmp_path):
    with pytest.raises(SertrtError, match="unknown GPU bench variant 'fp8'"):
        run_gpu_bench(GpuBenchOptions(target="tiny", out=tmp_path, device="cpu", variants=("fp8",)))
    with pytest.raises(SertrtError, match="at least one window"):
        run_gpu_bench(GpuBenchOptions(target="tiny", out=tmp_path, device="cpu", windows=()))
    with pytest.raises(SertrtError, match="time box must be positive"):
        run_gpu_bench(GpuBenchOptions(target="tiny", out=tmp_path, device="cpu", time_box_s=0))
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_without_cuda_is_a_one_line_error(tmp_path):
    result = sertrt("bench-gpu", "tiny", "--out", tmp_path)
    assert_one_line_error(result, "device 'cuda'", "no CUDA GPU")
    assert not list(tmp_path.iterdir())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_and_compile_agree_with_eager(tmp_path):
    data = run_gpu_bench(GpuBenchOptions(target="tiny", out=tmp_path, windows=(1.0,), batches=(1, 3), repeats=5))
    variants = {r["variant"] for r in data["results"]}
    assert not data["skipped"], data["skipped"]
    assert variants == {"eager-fp32", "eager-fp16", "compile-fp32", "compile-fp16", "compile-cudagraphs-fp16", "cudagraph-fp16"}
    for r in data["results"]:
        assert r["cosine_vs_fp32"] > 0.999 and r["top1_vs_fp32"] == 1.0, r
        assert r["peak_memory_mb"] > 0
