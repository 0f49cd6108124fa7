"""Benchmarks: every backend and precision against PyTorch eager FP32 (`sertrt bench`, core.py); PyTorch's GPU
variants in gpu.py (`sertrt bench-gpu`)."""

from .core import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
