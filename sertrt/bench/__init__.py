"""Benchmarks: every backend and precision against PyTorch eager FP32, measured in one run (`sertrt bench`);
PyTorch's GPU variants in gpu.py (`sertrt bench-gpu`).

    run_bench(BenchOptions(target="xlsr-53", out=Path("sertrt-bench")), progress=print)
"""

from .core import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
