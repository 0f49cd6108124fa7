"""`sertrt bench-gpu`: PyTorch eager FP32 (the baseline) against autocast FP16, torch.compile, CUDA graphs,
the half model (sertrt.model.half) and its layer-wise compile (sertrt.model.compile), on one random-weight
model (seed 0). On CPU (`device="cpu"`) the variants that need no CUDA run, which is how this is tested.

    report = run_gpu_bench(GpuBenchOptions(target="xlsr-53"), progress=print)   # OUT/xlsr-53-<device>.json, .md
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.errors import SertrtError
from ..core.outputs import claim_output_dir
from ..core.metrics import compare_logits
from .measure import ROUNDS, forward_flops, latency_stats, make_feeds, round_share, timed

VARIANTS = ("eager-fp32", "eager-fp16", "compile-fp32", "compile-fp16", "compile-cudagraphs-fp16", "cudagraph-fp16",
            "half-fp16", "half-bf16", "half-fp16-cudagraph", "compile-layers-fp16", "compile-layers-fp16-cudagraph")
GRAPHED = ("compile-cudagraphs-fp16", "cudagraph-fp16", "half-fp16-cudagraph", "compile-layers-fp16-cudagraph")
BASELINE = "eager-fp32"


@dataclass
class GpuBenchOptions:
    target: str = "xlsr-53"  # an architecture with random weights (sertrt.upstream names)
    out: Path = Path("sertrt-bench")  # a folder in the current one, made and claimed (core.outputs)
    device: str = "cuda"
    variants: tuple[str, ...] = VARIANTS
    windows: tuple[float, ...] = (2.0,)  # seconds
    batches: tuple[int, ...] = (1, 8)
    repeats: int = 30  # timed calls per variant and cell
    warmup: int = 3  # untimed calls per variant and cell (the first compiles or captures)
    name: str | None = None  # output file stem (default "<target>-<device name>")
    # Seconds a variant may spend in one cell, compile and capture included; past it the variant is reported and
    # dropped from later cells. Never the eager FP32 baseline: every ratio is against it.
    time_box_s: float | None = None

    def resolved(self) -> GpuBenchOptions:
        o = dataclasses.replace(self, out=Path(self.out))
        for v in o.variants:
            if v not in VARIANTS:
                raise SertrtError(f"unknown GPU bench variant {v!r} (valid: {', '.join(VARIANTS)})")
        if BASELINE not in o.variants:
            o.variants = (BASELINE, *o.variants)  # every ratio is against it
        if not o.windows or not o.batches or o.repeats < 1 or o.warmup < 1:
            raise SertrtError("GPU bench needs at least one window and batch, repeats >= 1 and warmup >= 1")
        if o.time_box_s is not None and o.time_box_s <= 0:
            raise SertrtError(f"GPU bench time box must be positive seconds, got {o.time_box_s:g}")
        return o


@contextlib.contextmanager
def time_box(seconds: float | None) -> Iterator[None]:
    """Raise TimeoutError in the main thread once `seconds` have passed (None: no box). SIGALRM interrupts
    Python code, which torch.compile mostly is, not a single CUDA kernel."""
    import signal
    import threading

    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _variant_fns(model, variants: tuple[str, ...], device: str,
                 batches: tuple[int, ...] = (1,)) -> tuple[dict[str, Callable], dict[str, str]]:
    """name -> fn(waveform, lengths) -> logits, and name -> why it is skipped."""
    import torch

    cuda = device.startswith("cuda")

    def fp16(fn: Callable) -> Callable:
        def run(waveform, lengths):  # no weight-cast cache: it lives one call anyway, and CUDA graph capture needs it off
            with torch.autocast("cuda" if cuda else "cpu", dtype=torch.float16, cache_enabled=False):
                return fn(waveform, lengths)
        return run

    def half(v: str) -> Callable:
        import copy

        from ..model.compile import compile_encoder_layers
        from ..model.cuda_graphs import BucketedGraphs
        from ..model.half import half_model

        m = half_model(copy.deepcopy(model), "bf16" if "bf16" in v else "fp16")
        if v.startswith("compile-layers-"):
            compile_encoder_layers(m)
        return BucketedGraphs(m, max_batch=max(8, *batches)) if v.endswith("-cudagraph") else m

    make = {"eager-fp32": lambda: model, "eager-fp16": lambda: fp16(model),
            "compile-fp32": lambda: torch.compile(model, dynamic=False),
            "compile-fp16": lambda: fp16(torch.compile(model, dynamic=False)),
            "compile-cudagraphs-fp16": lambda: fp16(torch.compile(model, mode="reduce-overhead", dynamic=False)),
            "cudagraph-fp16": lambda: fp16(model)}  # captured per cell: shapes are fixed inside a graph
    fns, skipped = {}, {}
    for v in variants:
        if v in GRAPHED and not cuda:
            skipped[v] = "CUDA graphs need a CUDA device"
        else:
            fns[v] = make[v]() if v in make else half(v)
    return fns, skipped


def _cuda_timed(call: Callable[[], Any]) -> float:
    """Seconds one call takes on the GPU, by CUDA events."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0


def run_gpu_bench(opts: GpuBenchOptions, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    import torch
    import torch._dynamo

    from ..model.cuda_graphs import CapturedGraph
    from ..model.flops import matmul_peak
    from ..model.ser import build_model
    from . import report

    o = opts.resolved()
    claim_output_dir(o.out, "bench", create=False)  # refuse a folder that is not ours before hours of work
    started, cuda = time.time(), o.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SertrtError(f"device {o.device!r}: this PyTorch sees no CUDA GPU (torch {torch.__version__})")
    name = torch.cuda.get_device_name(torch.device(o.device)) if cuda else "cpu"
    o.name = o.name or f"{o.target}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"
    data = report.header(o, device=o.device, device_name=name, versions=report.machine_info()["versions"], cuda=torch.version.cuda)
    torch.manual_seed(0)
    progress(f"building {o.target} (random weights, seed 0) on {name}")
    model = build_model(o.target).eval().to(o.device)
    # One compiled graph per (window, batch) shape: keep them all instead of falling back to eager.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 4 * len(o.windows) * len(o.batches))
    progress("measuring the matmul peak")
    dtype, n = (torch.bfloat16, 8192) if cuda else (torch.float32, 1024)
    peak = {"dtype": str(dtype).replace("torch.", ""), "n": n, "flops_per_s": matmul_peak(o.device, dtype, size=n, seconds=0.5)}
    fns, errors = _variant_fns(model, o.variants, o.device, o.batches)
    timer = _cuda_timed if cuda else timed
    results, cells = [], [(w, b) for b in o.batches for w in o.windows]

    def box(v: str, spent: float = 0.0) -> float | None:
        return None if o.time_box_s is None or v == BASELINE else max(o.time_box_s - spent, 1e-3)

    def drop(v: str, why: str, window: float, batch: int) -> None:
        errors[v] = why
        progress(f"{v} at {window:g} s x batch {batch}: {why}")

    with torch.inference_mode(), warnings.catch_warnings():
        # transformers' FSDP check is lru_cache-wrapped; dynamo says so on every compile (harmless here)
        warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
        for i, (window, batch) in enumerate(cells):
            wave, lengths = (torch.from_numpy(a).to(o.device) for a in make_feeds(window, batch).values())
            active, spent, peak_mb, logits = {}, {}, {}, {}
            for v, fn in ((v, fn) for v, fn in fns.items() if v not in errors):
                progress(f"[{i + 1}/{len(cells)}] {window:g} s x batch {batch}: {v} (warm-up{', compile' if 'compile' in v else ''})")
                try:
                    with time_box(box(v)):
                        if cuda:
                            torch.cuda.reset_peak_memory_stats()
                        t0 = time.perf_counter()
                        call = CapturedGraph(fn, wave, lengths) if v == "cudagraph-fp16" else fn
                        out = call(wave, lengths)
                        if cuda:
                            torch.cuda.synchronize()
                        spent[v] = time.perf_counter() - t0  # the first call: compile or capture included
                        for _ in range(o.warmup - 1):
                            out = call(wave, lengths)
                        logits[v] = out.float().cpu().numpy()
                        peak_mb[v] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
                except (RuntimeError, AssertionError) as exc:  # a capture or compile this model/device refuses
                    drop(v, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", window, batch)
                    continue
                except TimeoutError:
                    drop(v, _over_box(o.time_box_s, window, batch, "warm-up"), window, batch)
                    torch._dynamo.reset()  # a compile cut short leaves nothing reusable behind
                    continue
                active[v] = call
            first_call = dict(spent)
            times: dict[str, list[float]] = {v: [] for v in active}
            for r in range(ROUNDS):  # interleaved, as `sertrt bench` does
                for v, call in list(active.items()):
                    try:
                        with time_box(box(v, spent[v])):
                            t0 = time.perf_counter()
                            times[v] += [timer(lambda: call(wave, lengths)) for _ in range(round_share(o.repeats, r, ROUNDS))]
                            spent[v] += time.perf_counter() - t0
                    except TimeoutError:
                        drop(v, _over_box(o.time_box_s, window, batch, "timed calls"), window, batch)
                        del active[v], times[v]
            flops = (forward_flops(model.dims, window, batch) or {}).get("total")
            for v in active:
                row = {"variant": v, "window_s": window, "batch": batch, **latency_stats(times[v], window, batch),
                       "first_call_s": first_call[v], "peak_memory_mb": peak_mb[v]}
                row["ratio_vs_baseline"] = float(np.median(times[BASELINE])) * 1000.0 / row["p50_ms"] if BASELINE in times else None
                row["tflops_per_s"] = flops / (row["p50_ms"] / 1000.0) / 1e12 if flops else None
                row["share_of_peak"] = row["tflops_per_s"] * 1e12 / peak["flops_per_s"] if flops else None
                if BASELINE in logits:
                    c = compare_logits(logits[BASELINE], logits[v])
                    row.update(cosine_vs_fp32=c["cosine"], max_abs_vs_fp32=c["max_abs"], top1_vs_fp32=c["agreement"])
                results.append(row)
    data.update(matmul_peak=peak, results=results, skipped=errors, duration_s=time.time() - started)
    return report.write(data, o.out, o.name, progress, markdown)


def _over_box(seconds: float, window: float, batch: int, stage: str) -> str:
    return f"over its {seconds:g} s time box ({stage} at {window:g} s x batch {batch}); not measured from there on"


def markdown(data: dict[str, Any]) -> str:
    from .report import fmt, latency_tables

    peak = data["matmul_peak"]
    lines = [f"# sertrt bench-gpu: {data['target']} on {data['device_name']}", "",
             f"{data['started']}; `{data['device']}`, CUDA {data['cuda']}; " + ", ".join(f"{k} {v}" for k, v in data["versions"].items())
             + f"; {data['duration_s'] / 60:.1f} min. Random weights; x eager, cosine and top-1 against eager FP32 in the same cell; "
             f"% peak of a {peak['dtype']} {peak['n']}^3 matmul measured in this run ({peak['flops_per_s'] / 1e12:.1f} TFLOP/s).", ""]
    lines += latency_tables(data["results"], (
        ("% peak", lambda r: None if r.get("share_of_peak") is None else 100 * r["share_of_peak"]),
        ("first call s", lambda r: r["first_call_s"]), ("peak MB", lambda r: r["peak_memory_mb"]),
        ("cosine vs fp32", lambda r: fmt(r.get("cosine_vs_fp32"), 5)), ("top-1 vs fp32", lambda r: r.get("top1_vs_fp32"))), "## Batch {batch}")
    if data["skipped"]:
        lines += ["## Not measured", "", *[f"- {v}: {why}" for v, why in data["skipped"].items()], ""]
    return "\n".join(lines)
