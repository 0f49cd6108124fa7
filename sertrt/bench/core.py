"""`sertrt bench TARGET`: every backend and precision against PyTorch eager FP32, in one run.

    report = run_bench(BenchOptions(target="xlsr-53", out=Path("sertrt-bench")), progress=print)

Artifacts are built (or taken from `cache`), runners opened with their resident memory noted, then a
latency sweep over windows x batches with every variant interleaved (the reference cell, 2 s at batch 1,
first: it picks the fastest INT8 for this CPU), then streaming.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..core.bundle import load_bundle
from ..core.errors import SertrtError
from ..core.labels import LABELS
from ..core.outputs import claim_output_dir
from ..core.runner import Runner
from ..model.flops import matmul_peak
from ..runtime.runners import OrtRunner
from ..verify.torch_runner import TorchRunner
from . import measure
from .artifacts import prepare_artifacts

BACKENDS = ("torch", "ort")  # torch: the PyTorch eager FP32 baseline; ort: ONNX Runtime CPU
PRECISIONS = ("fp32", "int8", "int8-dynamic")
BASELINE = "torch-fp32"
INT8S = ("ort-int8", "ort-int8-dynamic")
PEAK_N = 2048  # the matmul peak: (2048, 2048) @ (2048, 2048) float32 by torch, the bench's threads
DESCRIPTIONS = {BASELINE: "PyTorch eager FP32, no_grad, eval (the baseline)", "ort-fp32": "ONNX Runtime FP32",
                "ort-int8": "ONNX Runtime INT8, static symmetric QDQ (the TensorRT artifact)",
                "ort-int8-dynamic": "ONNX Runtime INT8, dynamic (the CPU artifact)"}
Progress = Callable[[str], None]


@dataclass
class BenchOptions:
    target: str  # a bundle directory, or an architecture: "tiny" | "xlsr-53" (random weights)
    out: Path = Path("sertrt-bench")  # a folder in the current one, made and claimed (core.outputs)
    backends: tuple[str, ...] = BACKENDS
    precisions: tuple[str, ...] = PRECISIONS
    windows: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)  # seconds
    batches: tuple[int, ...] = (1, 8)
    batched_windows: tuple[float, ...] | None = None  # windows measured at batch > 1 (None: all)
    repeats: int = 30  # most timed calls per variant and cell
    warmup: int = 1  # untimed calls per variant and cell
    cell_seconds: float = 6.0  # time budget per variant and cell (at least 3 timed calls)
    threads: int = 2
    stream_seconds: float = 60.0
    cache: Path | None = None  # keep the built checkpoint and bundles here for the next run
    name: str | None = None  # output file stem (default "<target>-cpu", "<target>-cpu-quick" with quick)
    quick: bool = False  # the 2 s window at batch 1, few repeats, short stream
    layers: tuple[int, ...] = ()  # also time the architecture cut to its first K transformer layers

    def resolved(self) -> BenchOptions:
        """The options actually used (quick mode narrows them)."""
        o = dataclasses.replace(self, out=Path(self.out))
        for kind, given, valid in (("backend", o.backends, BACKENDS), ("precision", o.precisions, PRECISIONS)):
            if set(given) - set(valid):
                raise SertrtError(f"unknown bench {kind} {sorted(set(given) - set(valid))[0]!r} (valid: {', '.join(valid)})")
        if not o.windows or not o.batches or o.repeats < 1 or o.threads < 1:
            raise SertrtError("bench needs at least one window and batch, repeats >= 1 and threads >= 1")
        if o.layers and Path(o.target).is_dir():
            raise SertrtError(f"--layers needs an architecture target, not the bundle {o.target} (train a cut model with --upstream-layers)")
        if o.quick:
            o = dataclasses.replace(o, windows=(2.0,), batches=(1,), repeats=min(o.repeats, 5), cell_seconds=1.0,
                                    stream_seconds=min(o.stream_seconds, 10.0))
        # a smoke run never replaces the full run's files of the same target
        o.name = o.name or f"{Path(o.target).name}-cpu" + ("-quick" if o.quick else "")
        return o


def run_bench(opts: BenchOptions, progress: Progress = lambda _: None) -> dict[str, Any]:
    from . import report

    o = opts.resolved()
    claim_output_dir(o.out, "bench", create=False)  # refuse a folder that is not ours before the long run
    # GNU OpenMP's default spin-wait stalls torch's threads whenever another process holds a core, inflating
    # every ratio; it must be set before torch loads libgomp, and a user's own setting wins.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    started = time.time()
    data = report.header(o, machine=report.machine_info(), omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "default (active spin)"))
    cache = Path(o.cache) if o.cache else Path(tempfile.mkdtemp(prefix="sertrt-bench-"))
    try:
        art = prepare_artifacts(o.target, tuple(o.precisions), cache, progress)
        data.update(architecture=art.name, export_seconds=art.export_seconds)
        with ExitStack() as stack:
            runners = _open_runners(o, art, stack, data, cache, progress)
            _sweep(o, art, runners, data, progress)
            _streams(o, art, runners, data, progress)
    finally:
        if o.cache is None:
            shutil.rmtree(cache, ignore_errors=True)
    data["duration_s"] = time.time() - started
    data["machine"]["loadavg_end"] = report.loadavg()
    return report.write(data, o.out, o.name, progress)


def _rss_mb() -> float | None:
    """This process's resident memory now (MB; VmRSS), None off Linux. glibc's free heap is handed back to the
    system first (malloc_trim): memory freed by an earlier export or session would otherwise serve the next
    session's allocations, and a difference of two readings would miss them."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the reading may include free heap
    try:
        return next(int(x.split()[1]) / 1024.0 for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def _open_runners(o: BenchOptions, art, stack: ExitStack, data: dict[str, Any], cache: Path,
                  progress: Progress) -> dict[str, tuple[Runner, Any]]:
    """name -> (runner, its artifacts): the baseline and one ONNX Runtime runner per precision, then the
    same for each cut depth in `o.layers` ("<name>@<K>"), entered into `stack`. Each variant's
    `memory_mb` is the resident memory its opening added to this process (weights, session, arenas)."""
    runners: dict[str, tuple[Runner, Any]] = {}
    data["variants"] = {}
    for k in (None, *o.layers):
        a = art if k is None else prepare_artifacts(o.target, tuple(o.precisions), cache, progress, layers=k)
        wanted = {f"ort-{p}": p for p in (a.bundles if "ort" in o.backends else ())}
        if "torch" in o.backends and a.checkpoint is not None:
            wanted = {BASELINE: "fp32", **wanted}
        for v, precision in wanted.items():
            name = v if k is None else f"{v}@{k}"
            progress(f"opening {name}")
            if v == BASELINE:  # torch itself is not the model's memory: loaded first
                import torch

                stack.callback(torch.set_num_threads, torch.get_num_threads())  # the caller's count, afterwards
                torch.set_num_threads(o.threads)
            before = _rss_mb()
            if v == BASELINE:
                runner: Runner = stack.enter_context(TorchRunner(a.checkpoint))
                settings = {"threads": o.threads}
            else:
                bundle = a.bundles[precision]
                runner = stack.enter_context(OrtRunner(bundle / load_bundle(bundle, verify=False).model,
                                                       threads=o.threads, precision=precision))
                settings = runner.settings()
            after = _rss_mb()
            runners[name] = (runner, a)
            data["variants"][name] = {
                "backend": v.split("-")[0], "precision": precision, "settings": settings, "layers": k,
                "description": DESCRIPTIONS[v] + ("" if k is None else f", first {k} transformer layers"),
                "memory_mb": None if before is None or after is None else after - before,
                **({} if v == BASELINE else {"bundle": str(bundle), "bundle_mb": sum(
                    f.stat().st_size for f in bundle.iterdir() if f.is_file()) / 2**20})}
    if not runners:
        raise SertrtError("nothing to benchmark: no backend/precision left (the torch baseline needs the bundle's checkpoint)")
    return runners


def _sweep(o: BenchOptions, art, runners: dict[str, tuple[Runner, Any]], data: dict[str, Any], progress: Progress) -> None:
    """Latency over windows x batches, every variant interleaved with the others; the reference cell
    comes first and picks the fastest INT8, the only one measured past it, with the cut depths."""
    ref = (2.0 if 2.0 in o.windows else o.windows[0], 1)
    int8s = [v for v in INT8S if v in runners]
    best = None
    cells = [(w, b) for b in o.batches for w in o.windows if b == 1 or o.batched_windows is None or w in o.batched_windows]
    cells.sort(key=lambda c: (c != ref, c[1], c[0]))  # the reference cell first: it picks the INT8
    results, peaks = [], []
    for i, (window, batch) in enumerate(cells):
        active = {k: r for k, (r, _) in runners.items() if (best is None or k not in int8s or k == best) and ("@" not in k or (window, batch) == ref)}
        progress(f"[{i + 1}/{len(cells)}] {window:g} s x batch {batch}: {', '.join(active)}")
        times = measure.interleaved(active, measure.make_feeds(window, batch), o.repeats, o.warmup, o.cell_seconds)
        counted = BASELINE in runners and measure.forward_flops(art.dims, window)
        peak = matmul_peak("cpu", size=PEAK_N) / 1e9 if counted else None
        peaks += [peak] if peak else []
        cell = {name: {"variant": name, "window_s": window, "batch": batch, **measure.latency_stats(times[name], window, batch)}
                for name in active}
        for name, row in cell.items():
            row["ratio_vs_baseline"] = cell[BASELINE]["p50_ms"] / row["p50_ms"] if BASELINE in cell else None
            if (flops := measure.forward_flops(runners[name][1].dims, window, batch)) and peak:
                row.update(gflop=flops["total"] / 1e9, gflops=flops["total"] / 1e9 / (row["p50_ms"] / 1000.0))
                if not data["variants"][name]["precision"].startswith("int8"):  # INT8's share of an FP32 peak is no MFU
                    row["peak_fraction"] = row["gflops"] / peak
        results += cell.values()
        if (window, batch) == ref and int8s:
            best = min(int8s, key=lambda v: cell[v]["p50_ms"])
            progress(f"fastest INT8 on this CPU: {best}")
    data.update(results=results, best_cpu_int8=best, reference_cell={"window_s": ref[0], "batch": 1})
    if peaks:
        data["peak"] = {"gflops": statistics.median(peaks), "per_cell": peaks, "matrix": PEAK_N,
                        "note": f"torch, {PEAK_N}x{PEAK_N} fp32, {o.threads} threads, median over cells"}
    if (fl := measure.forward_flops(art.dims, ref[0])) is not None:
        data["flops"] = {"reference_gflop": fl["total"] / 1e9, "parts_gflop": {k: v / 1e9 for k, v in fl["parts"].items()},
                         "num_frames": fl["num_frames"]}


def _streams(o: BenchOptions, art, runners: dict[str, tuple[Runner, Any]], data: dict[str, Any], progress: Progress) -> None:
    """Streaming through ORT FP32 and the fastest INT8."""
    labels = list(art.dims.labels) if art.dims else list(LABELS)
    best = data["best_cpu_int8"]
    ref = {r["variant"]: r["p50_ms"] for r in data["results"] if (r["window_s"], r["batch"]) == (data["reference_cell"]["window_s"], 1)}
    # ORT FP32 streams too when it is the only one, or fast enough for the stream to take a moment
    names = [v for v in ("ort-fp32", best) if v in runners and (v != "ort-fp32" or not best or ref[v] < 100.0)]
    data["streaming"] = {}
    for name in names:
        progress(f"streaming {o.stream_seconds:g} s through {name} (2 s window, 1 s hop)")
        data["streaming"][name] = measure.stream_run(runners[name][0], labels, o.stream_seconds)
