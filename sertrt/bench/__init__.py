"""Benchmarks: every backend and precision against PyTorch eager FP32, measured in one run.

    from sertrt.bench import BenchOptions, run_bench
    run_bench(BenchOptions(target="xlsr-53", out=Path("sertrt-bench")), progress=print)

core.py (options, the run), artifacts.py (random-weight checkpoints and bundles), measure.py
(interleaved timing, ORT tuning, streaming, INT8 agreement), workers.py (fresh-process cold start,
peak memory, training), flops.py (analytic FLOPs), report.py (JSON, Markdown, plot, targets).
"""

from .core import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
