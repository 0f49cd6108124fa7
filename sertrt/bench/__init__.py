"""Benchmarks: every backend and precision against PyTorch eager FP32, measured in one run.

    from sertrt.bench import BenchOptions, run_bench
    run_bench(BenchOptions(target="xlsr-53", out=Path("sertrt-bench")), progress=print)

core.py (options, the run), artifacts.py (random-weight checkpoints and bundles), measure.py
(interleaved timing, streaming), report.py (JSON, Markdown, plot), gpu.py (`sertrt bench-gpu`).
Studies beside it live in scripts/ (cold_start.py, frame_reuse.py).
"""

from .core import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
