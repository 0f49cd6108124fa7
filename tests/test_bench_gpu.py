"""The GPU benchmark harness (sertrt.bench.gpu): run on CPU with the variants that need no CUDA; the
CUDA-graph and compile variants on a GPU only (marker `gpu`)."""

import json

import pytest
import torch

from sertrt.bench.gpu import BASELINE, GpuBenchOptions, run_gpu_bench
from sertrt.errors import SertrtError
from test_cli import assert_one_line_error, sertrt


def test_cpu_run_measures_eager_variants_and_names_what_it_skipped(tmp_path):
    messages = []
    data = run_gpu_bench(GpuBenchOptions(target="tiny", out=tmp_path, device="cpu", variants=("eager-fp16", "cudagraph-fp16"),
                                         windows=(1.0,), batches=(1, 2), repeats=3, warmup=1), progress=messages.append)
    on_disk = json.loads((tmp_path / "tiny-cpu.json").read_text())
    assert on_disk["device_name"] == "cpu" and on_disk["results"] == json.loads(json.dumps(data["results"]))
    rows = {(r["variant"], r["batch"]): r for r in data["results"]}
    # the baseline is always measured, even when not asked for: every ratio is against it
    assert set(rows) == {(v, b) for v in (BASELINE, "eager-fp16") for b in (1, 2)}
    for (variant, batch), r in rows.items():
        assert r["n"] == 3 and 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["audio_s_per_s"] == pytest.approx(batch * 1.0 / (r["p50_ms"] / 1000.0))
        assert r["ratio_vs_baseline"] == pytest.approx(rows[(BASELINE, batch)]["p50_ms"] / r["p50_ms"])
        assert r["first_call_s"] > 0
    assert rows[(BASELINE, 1)]["cosine_vs_fp32"] == pytest.approx(1.0)
    # autocast float16 changes the logits a little, not the decisions
    assert 0.999 < rows[("eager-fp16", 2)]["cosine_vs_fp32"] < 1.0 + 1e-9
    assert rows[("eager-fp16", 2)]["max_abs_vs_fp32"] > 0
    assert data["skipped"] == {"cudagraph-fp16": "CUDA graphs need a CUDA device"}
    md = (tmp_path / "tiny-cpu.md").read_text()
    assert "## Batch 2" in md and "eager-fp16" in md and "cudagraph-fp16: CUDA graphs need a CUDA device" in md
    assert any("1 s x batch 2: eager-fp16" in m for m in messages)


def test_bad_options_are_errors(tmp_path):
    with pytest.raises(SertrtError, match="unknown GPU bench variant 'fp8'"):
        run_gpu_bench(GpuBenchOptions(target="tiny", out=tmp_path, device="cpu", variants=("fp8",)))
    with pytest.raises(SertrtError, match="at least one window"):
        run_gpu_bench(GpuBenchOptions(target="tiny", out=tmp_path, device="cpu", windows=()))
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
