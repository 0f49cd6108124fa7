"""PyTorch on a GPU: eager FP32 (the baseline) vs FP16 vs torch.compile vs CUDA graphs, in one run.

    opts = GpuBenchOptions(target="xlsr-53", out=Path("sertrt-bench"))
    report = run_gpu_bench(opts, progress=print)   # OUT/xlsr-53-<device>.json and .md

Variants (all from one random-weight model, seed 0, `torch.inference_mode`):

    eager-fp32           what a transformers user runs: the baseline every ratio is against
    eager-fp16           autocast float16 (reductions, softmax and LayerNorm stay float32)
    compile-fp32         torch.compile, inductor's default mode, static shapes
    compile-fp16         the same under autocast float16
    compile-cudagraphs-fp16  torch.compile(mode="reduce-overhead"): inductor plus CUDA graphs
    cudagraph-fp16       the eager FP16 model captured once per shape in a torch.cuda.CUDAGraph and
                         replayed (input copied into the static buffer first): launch overhead removed,
                         kernels unchanged
    half-fp16, half-bf16 the upstream's weights cast once (sertrt.model.half: norms, normalisation and head
                         FP32): no per-call casts
    half-fp16-cudagraph  the half model in sertrt.model.cuda_graphs.BucketedGraphs, what `TorchRunner(
                         cuda_graphs=True)` runs: one graph per (batch, samples) bucket
    compile-layers-fp16  the half model with each encoder layer compiled (sertrt.model.compile: one layer's
                         graph serves all, dynamic shapes, fullgraph); the GRU head stays eager
    compile-layers-fp16-cudagraph  both of the above

Each row also gives the forward's analytic FLOPs per second as a share of a matmul peak measured in
the same run. Timing: inputs on the device; CUDA events on CUDA, a host clock after a sync elsewhere;
`warmup` untimed calls (compile and capture happen there: `first_call_s`), then `repeats` timed calls
over interleaved rounds. A variant that cannot run here is reported with its reason, never dropped
silently. TensorRT's numbers come from a built engine (`sertrt build-engine`), never from this harness.

On CPU (`device="cpu"`) the same harness runs the variants that need no CUDA, which is how it is tested.
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
from .measure import ROUNDS, latency_stats, logit_agreement, make_feeds, round_share

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
    # Seconds a variant may spend on its warm-up (compile, capture) and timed calls in one cell; past it the
    # variant is reported as over its time box and dropped from later cells (never the eager FP32 baseline:
    # every ratio is against it). None: no box.
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


class TimeBoxExceeded(Exception):
    pass


@contextlib.contextmanager
def time_box(seconds: float | None) -> Iterator[None]:
    """Raise TimeBoxExceeded in this (main) thread once `seconds` have passed; a no-op with None or off the
    main thread. SIGALRM interrupts Python code (torch.compile is mostly Python, and waits for its compile
    workers in Python), not a single long CUDA kernel, which ends first."""
    import signal
    import threading

    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeBoxExceeded

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SertrtError(f"device {device!r}: this PyTorch sees no CUDA GPU (torch {torch.__version__})")
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _variant_fns(model, variants: tuple[str, ...], device: str,
                 batches: tuple[int, ...] = (1,)) -> tuple[dict[str, Callable], dict[str, str]]:
    """name -> fn(waveform, lengths) -> logits, and name -> why it is skipped."""
    import torch

    cuda = device.startswith("cuda")
    dev_type = "cuda" if cuda else "cpu"

    def fp16(fn: Callable) -> Callable:
        # No weight-cast cache: it lives one call anyway, and CUDA graph capture requires it off.
        def run(waveform, lengths):
            with torch.autocast(dev_type, dtype=torch.float16, cache_enabled=False):
                return fn(waveform, lengths)
        return run

    def half(precision: str, compiled: bool = False):
        import copy

        from ..model.compile import compile_encoder_layers
        from ..model.half import half_model

        copied = half_model(copy.deepcopy(model), precision)
        if compiled:
            compile_encoder_layers(copied)
        return copied

    fns, skipped = {}, {}
    for v in variants:
        if v in GRAPHED and not cuda:
            skipped[v] = "CUDA graphs need a CUDA device"
        elif v.startswith("half-") or v.startswith("compile-layers-"):
            graphed = v.endswith("-cudagraph")
            fn = half("bf16" if "bf16" in v else "fp16", compiled=v.startswith("compile-layers-"))
            if graphed:
                from ..model.cuda_graphs import BucketedGraphs

                fn = BucketedGraphs(fn, max_batch=max(8, *batches))
            fns[v] = fn
        elif v == "eager-fp32":
            fns[v] = model
        elif v == "eager-fp16":
            fns[v] = fp16(model)
        elif v == "compile-fp32":
            fns[v] = torch.compile(model, dynamic=False)
        elif v == "compile-fp16":
            fns[v] = fp16(torch.compile(model, dynamic=False))
        elif v == "compile-cudagraphs-fp16":
            fns[v] = fp16(torch.compile(model, mode="reduce-overhead", dynamic=False))
        elif v == "cudagraph-fp16":
            fns[v] = fp16(model)  # captured per cell (shapes are fixed inside a graph)
    return fns, skipped


def _timer(device: str) -> Callable[[Callable[[], Any]], float]:
    """Seconds one call takes: CUDA events on CUDA, a host clock (after a sync) elsewhere."""
    import torch

    if device.startswith("cuda"):
        def timed(call):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        return timed

    def timed_host(call):
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0
    return timed_host


def run_gpu_bench(opts: GpuBenchOptions, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    import platform

    import torch
    import torch._dynamo

    from .. import __version__
    from ..model.cuda_graphs import CapturedGraph
    from ..model.flops import matmul_peak
    from ..model.ser import build_model
    from . import report

    o = opts.resolved()
    claim_output_dir(o.out, "bench", create=False)  # refuse a folder that is not ours before hours of work
    name = device_name(o.device)
    o.name = o.name or f"{o.target}-{_slug(name)}"
    started = time.time()
    torch.manual_seed(0)
    progress(f"building {o.target} (random weights, seed 0) on {name}")
    model = build_model(o.target).eval().to(o.device)
    # One compiled graph per (window, batch) shape: keep them all instead of falling back to eager.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 4 * len(o.windows) * len(o.batches))
    cuda = o.device.startswith("cuda")
    progress("measuring the matmul peak")
    peak_dtype, peak_n = (torch.bfloat16, 8192) if cuda else (torch.float32, 1024)
    peak = {"dtype": str(peak_dtype).replace("torch.", ""), "n": peak_n,
            "flops_per_s": matmul_peak(o.device, peak_dtype, size=peak_n, seconds=0.5)}
    fns, skipped = _variant_fns(model, o.variants, o.device, o.batches)
    timed = _timer(o.device)
    results, errors = [], dict(skipped)
    cells = [(w, b) for b in o.batches for w in o.windows]
    with torch.inference_mode(), warnings.catch_warnings():
        # transformers' FSDP check is lru_cache-wrapped; dynamo says so on every compile (harmless here)
        warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
        for i, (window, batch) in enumerate(cells):
            feeds = make_feeds(window, batch)
            wave = torch.from_numpy(feeds["waveform"]).to(o.device)
            lengths = torch.from_numpy(feeds["lengths"]).to(o.device)
            active: dict[str, Callable] = {}
            first_call, peak_mb, logits = {}, {}, {}
            for v, fn in fns.items():
                if v in errors:
                    continue
                progress(f"[{i + 1}/{len(cells)}] {window:g} s x batch {batch}: {v} (warm-up{', compile' if 'compile' in v else ''})")
                # The baseline is never time-boxed: it compiles nothing, and every ratio is against it (a
                # loaded machine once cut it out of a cell, and the cell lost its ratios).
                box = None if v == BASELINE else o.time_box_s
                try:
                    with time_box(box):
                        if cuda:
                            torch.cuda.reset_peak_memory_stats()
                        t0 = time.perf_counter()
                        call = CapturedGraph(fn, wave, lengths) if v == "cudagraph-fp16" else fn  # per cell
                        out = call(wave, lengths)
                        if cuda:
                            torch.cuda.synchronize()
                        first_call[v] = time.perf_counter() - t0
                        for _ in range(o.warmup - 1):
                            out = call(wave, lengths)
                        logits[v] = out.float().cpu().numpy()
                        peak_mb[v] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
                except (RuntimeError, AssertionError) as exc:  # a capture or compile this model/device refuses
                    errors[v] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    progress(f"{v} failed at {window:g} s x batch {batch}: {errors[v]}")
                    continue
                except TimeBoxExceeded:
                    errors[v] = _over_box(o.time_box_s, window, batch, "warm-up")
                    progress(f"{v}: {errors[v]}")
                    torch._dynamo.reset()  # a compile cut short leaves nothing reusable behind
                    continue
                active[v] = call
            times: dict[str, list[float]] = {v: [] for v in active}
            spent = {v: first_call[v] for v in active}
            for r in range(ROUNDS):  # interleaved, as `sertrt bench` does
                for v, call in list(active.items()):
                    share = round_share(o.repeats, r, ROUNDS)
                    try:
                        with time_box(None if o.time_box_s is None or v == BASELINE else max(o.time_box_s - spent[v], 1e-3)):
                            t0 = time.perf_counter()
                            times[v] += [timed(lambda: call(wave, lengths)) for _ in range(share)]
                            spent[v] += time.perf_counter() - t0
                    except TimeBoxExceeded:
                        errors[v] = _over_box(o.time_box_s, window, batch, "timed calls")
                        progress(f"{v}: {errors[v]}")
                        del active[v], times[v]
            base = logits.get(BASELINE)
            base_p50 = float(np.median(times[BASELINE])) * 1000.0 if BASELINE in times else None
            for v in active:
                row = {"variant": v, "window_s": window, "batch": batch, **latency_stats(times[v], window, batch),
                       "first_call_s": first_call[v], "peak_memory_mb": peak_mb[v]}
                row["ratio_vs_baseline"] = base_p50 / row["p50_ms"] if base_p50 else None
                flops = forward_flops(model, window, batch)
                row["tflops_per_s"] = flops / (row["p50_ms"] / 1000.0) / 1e12 if flops else None
                row["share_of_peak"] = row["tflops_per_s"] * 1e12 / peak["flops_per_s"] if flops else None
                if base is not None:
                    a = logit_agreement(base, logits[v])
                    row.update(cosine_vs_fp32=a["cosine"], max_abs_vs_fp32=a["max_abs"], top1_vs_fp32=a["top1_agreement"])
                results.append(row)
    data = {"target": o.target, "device": o.device, "device_name": name, "options": report.jsonable(dataclasses.asdict(o)),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)), "sertrt": __version__,
            "python": platform.python_version(), "versions": report.machine_info()["versions"],
            "cuda": torch.version.cuda, "matmul_peak": peak, "results": results, "skipped": errors,
            "duration_s": time.time() - started}
    paths = report.write(data, o.out, o.name, markdown, png=False)
    data["files"] = {k: str(p) for k, p in paths.items()}
    progress(f"wrote {', '.join(data['files'].values())}")
    return data


def forward_flops(model, window: float, batch: int) -> float | None:
    """Analytic FLOPs of one forward at (batch, window seconds), or None for an upstream the count does not model."""
    from ..core.audio import SAMPLE_RATE
    from ..model.flops import model_flops

    if model.dims.upstream.kind != "wav2vec2":
        return None
    return model_flops(model.dims.upstream.config, model.dims.head, int(round(window * SAMPLE_RATE)), batch)["total"]


def _over_box(seconds: float, window: float, batch: int, stage: str) -> str:
    return f"over its {seconds:g} s time box ({stage} at {window:g} s x batch {batch}); not measured from there on"


def markdown(data: dict[str, Any]) -> str:
    from .report import _fmt, _table

    lines = [f"# sertrt bench-gpu: {data['target']} on {data['device_name']}", "",
             f"{data['started']}; device `{data['device']}` ({data['device_name']}), CUDA {data['cuda']}; "
             + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + f". Run took {data['duration_s'] / 60:.1f} min.",
             "", "Random weights (seed 0). Inputs are on the device before timing; p50 from CUDA events on CUDA. "
             "x eager: eager FP32 p50 / variant p50 in the same cell. cosine / top-1: logits against eager FP32. "
             "% peak: the forward's analytic FLOPs per second over the matmul peak measured in this run "
             f"({data['matmul_peak']['dtype']} {data['matmul_peak']['n']}^3: "
             f"{data['matmul_peak']['flops_per_s'] / 1e12:.1f} TFLOP/s).", ""]
    for batch in sorted({r["batch"] for r in data["results"]}):
        rows = [r for r in data["results"] if r["batch"] == batch]
        lines += [f"## Batch {batch}", "", _table(
            ["variant", "window s", "n", "p50 ms", "p95 ms", "p99 ms", "audio s/s", "x eager", "% peak",
             "first call s", "peak MB", "cosine vs fp32", "top-1 vs fp32"],
            [[r["variant"], r["window_s"], r["n"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["audio_s_per_s"],
              r["ratio_vs_baseline"], None if r.get("share_of_peak") is None else 100 * r["share_of_peak"],
              r["first_call_s"], r["peak_memory_mb"], _fmt(r.get("cosine_vs_fp32"), 5), r.get("top1_vs_fp32")]
             for r in rows]), ""]
    if data["skipped"]:
        lines += ["## Not measured", "", *[f"- {v}: {why}" for v, why in data["skipped"].items()], ""]
    return "\n".join(lines)
