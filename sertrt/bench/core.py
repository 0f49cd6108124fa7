"""`sertrt bench TARGET`: every backend and precision against PyTorch eager FP32, in one run.

    opts = BenchOptions(target="xlsr-53", out=Path("sertrt-bench"))
    report = run_bench(opts, progress=print)   # OUT/<name>.json, .md, .png

Order of a run (each step reports through `progress`; the library never prints):
    1. artifacts: random-weight checkpoint and exported bundles (cached in `cache` when given)
    2. runners opened, each one's resident memory noted
    3. latency sweep over windows x batches, interleaved with the baseline and the matmul peak probe;
       the reference cell (2 s, batch 1) picks the fastest INT8 artifact for this CPU
    4. INT8 logits vs FP32; streaming, one stream and several batched; the target cut to fewer layers
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.audio import seconds_to_samples
from ..core.bundle import load_bundle
from ..core.errors import SertrtError
from ..core.labels import LABELS
from ..core.outputs import claim_output_dir
from ..core.runner import Runner
from ..model.flops import model_flops
from ..runtime.runners import OrtRunner, RunnerOptions
from ..verify.torch_runner import TorchRunner
from . import measure
from .artifacts import prepare_artifacts

BACKENDS = ("torch", "ort")  # torch: the PyTorch eager FP32 baseline; ort: ONNX Runtime CPU
PRECISIONS = ("fp32", "int8", "int8-dynamic")
BASELINE = "torch-fp32"
NOT_DONE = ["TensorRT and CUDA numbers: no GPU and no TensorRT on this machine"]


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
    streams: int = 4  # streams batched together in the multi-stream measurement

    def resolved(self) -> BenchOptions:
        """The options actually used (quick mode narrows them)."""
        o = dataclasses.replace(self, out=Path(self.out))
        for b in o.backends:
            if b not in BACKENDS:
                raise SertrtError(f"unknown bench backend {b!r} (valid: {', '.join(BACKENDS)})")
        for p in o.precisions:
            if p not in PRECISIONS:
                raise SertrtError(f"unknown bench precision {p!r} (valid: {', '.join(PRECISIONS)})")
        if not o.windows or not o.batches or o.repeats < 1 or o.threads < 1:
            raise SertrtError("bench needs at least one window and batch, repeats >= 1 and threads >= 1")
        if o.layers and Path(o.target).is_dir():
            raise SertrtError(f"--layers needs an architecture target, not the bundle {o.target} (train a cut model with --upstream-layers)")
        if o.quick:
            o = dataclasses.replace(o, windows=(2.0,), batches=(1,), repeats=min(o.repeats, 5), cell_seconds=1.0,
                                    stream_seconds=min(o.stream_seconds, 10.0))
        if o.name is None:
            # a smoke run never replaces the full run's files of the same target
            o.name = f"{Path(o.target).name}-cpu" + ("-quick" if o.quick else "")
        return o


def _variant_name(backend: str, precision: str) -> str:
    return f"{backend}-{precision}"


def run_bench(opts: BenchOptions, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    import platform

    from .. import __version__
    from . import report

    o = opts.resolved()
    claim_output_dir(o.out, "bench", create=False)  # refuse a folder that is not ours before the long run
    # GNU OpenMP's default spin-wait makes torch's threads stall whenever another process holds a core,
    # which would inflate every ratio. Passive waiting must be set before torch loads libgomp; a user's
    # own setting wins.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    started = time.time()
    report_data: dict[str, Any] = {"target": o.target, "options": report.jsonable(dataclasses.asdict(o)),
                                   "machine": report.machine_info(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                                   "sertrt": __version__, "python": platform.python_version(), "not_done": NOT_DONE,
                                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (active spin)")}
    cache = Path(o.cache) if o.cache else Path(tempfile.mkdtemp(prefix="sertrt-bench-"))
    try:
        art = prepare_artifacts(o.target, tuple(o.precisions), cache, progress)
        report_data["architecture"] = art.name
        report_data["export_seconds"] = art.export_seconds
        _measure(o, art, report_data, progress, cache)
    finally:
        if o.cache is None:
            shutil.rmtree(cache, ignore_errors=True)
    report_data["duration_s"] = time.time() - started
    report_data["machine"]["loadavg_end"] = report.loadavg()
    report_data["targets"] = report.targets(report_data)
    paths = report.write(report_data, o.out, o.name)
    report_data["files"] = {k: str(v) for k, v in paths.items()}
    progress(f"wrote {', '.join(str(p) for p in paths.values())}")
    return report_data


def _measure(o: BenchOptions, art, data: dict[str, Any], progress: Callable[[str], None], cache: Path) -> None:
    """The sweep, then the streams and the cut model, with every runner open."""
    ref_window = 2.0 if 2.0 in o.windows else o.windows[0]
    ref_feeds = measure.make_feeds(ref_window, 1)
    with ExitStack() as stack:
        runners, variants = _open_runners(o, art, stack, progress)
        data["variants"] = variants
        best_int8 = _sweep(o, art, runners, stack, ref_feeds, ref_window, data, progress)
        _streams(o, art, runners, variants, best_int8, ref_feeds, ref_window, data, cache, progress)


def _ort_runner(onnx_path: Path, threads: int, precision: str) -> OrtRunner:
    return OrtRunner.from_options(onnx_path, RunnerOptions(threads=threads), precision=precision)


def _rss_mb() -> float | None:
    """This process's resident memory now (MB; VmRSS), None off Linux."""
    try:
        return next(int(x.split()[1]) / 1024.0 for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def _open_runners(o: BenchOptions, art, stack: ExitStack,
                  progress: Callable[[str], None]) -> tuple[dict[str, Runner], dict[str, dict[str, Any]]]:
    """The baseline and one ONNX Runtime runner per precision, entered into `stack`; each variant's
    `memory_mb` is the resident memory its opening added to this process (weights, session, arenas)."""
    runners: dict[str, Runner] = {}
    variants: dict[str, dict[str, Any]] = {}

    def opened(name: str, runner: Runner, info: dict[str, Any]) -> None:
        before = _rss_mb()
        runners[name] = stack.enter_context(runner)
        after = _rss_mb()
        variants[name] = {**info, "memory_mb": None if before is None or after is None else after - before}

    if "torch" in o.backends and art.checkpoint is not None:
        import torch

        torch.set_num_threads(o.threads)
        progress(f"loading the PyTorch eager FP32 baseline ({art.checkpoint})")
        opened(BASELINE, TorchRunner(art.checkpoint), {"backend": "torch", "precision": "fp32", "settings": {"threads": o.threads},
                                                       "description": "PyTorch eager FP32, no_grad, eval (the baseline)"})
    for precision, bundle in (art.bundles.items() if "ort" in o.backends else ()):
        runner = _ort_runner(bundle / load_bundle(bundle, verify=False).model, o.threads, precision)
        opened(_variant_name("ort", precision), runner, {
            "backend": "ort", "precision": precision, "bundle": str(bundle), "bundle_mb": _size_mb(bundle),
            "description": {"fp32": "ONNX Runtime FP32", "int8": "ONNX Runtime INT8, static symmetric QDQ (the TensorRT artifact)",
                            "int8-dynamic": "ONNX Runtime INT8, MatMul-only dynamic (the CPU artifact)"}[precision]})
        variants[_variant_name("ort", precision)]["settings"] = runner.settings()
    if not runners:
        raise SertrtError("nothing to benchmark: no backend/precision left (the torch baseline needs the bundle's checkpoint)")
    return runners, variants


def _sweep(o: BenchOptions, art, runners: dict[str, Runner], stack: ExitStack, ref_feeds: dict[str, np.ndarray],
           ref_window: float, data: dict[str, Any], progress: Callable[[str], None]) -> str | None:
    """Latency over windows x batches, every variant interleaved with the baseline and the matmul peak
    probes; the reference cell comes first and picks the fastest INT8, the only one measured past it.
    Returns that INT8 variant (None without one)."""
    head = art.dims.head if art.dims else None
    probes = {"peak-torch": measure.MatmulProbe("torch", o.threads)} if BASELINE in runners else {}
    probes["peak-ort"] = measure.MatmulProbe("ort", o.threads)
    for p in probes.values():
        stack.enter_context(p)
    int8s = [v for v in ("ort-int8", "ort-int8-dynamic") if v in runners]
    best_int8 = None
    cells = [(w, b) for b in o.batches for w in o.windows if b == 1 or o.batched_windows is None or w in o.batched_windows]
    cells.sort(key=lambda c: (c != (ref_window, 1), c[1], c[0]))  # the reference cell first: it picks the INT8
    results, peaks = [], []
    for i, (window, batch) in enumerate(cells):
        active = dict(runners)
        if best_int8 is not None:  # only the fastest INT8 goes on past the reference cell
            active = {k: v for k, v in runners.items() if k not in int8s or k == best_int8}
        progress(f"[{i + 1}/{len(cells)}] {window:g} s x batch {batch}: {', '.join(active)}")
        feeds = ref_feeds if (window, batch) == (ref_window, 1) else measure.make_feeds(window, batch)
        times = measure.interleaved({**active, **probes}, feeds, o.repeats, o.warmup, o.cell_seconds,
                                    caps={k: 5 for k in probes})
        peak = {k: measure.MatmulProbe.flops / np.median(times[k]) / 1e9 for k in probes}
        peaks.append({"window_s": window, "batch": batch, **{f"{k}_gflops": v for k, v in peak.items()}})
        flops = model_flops(art.upstream_config, head, seconds_to_samples(window), batch)["total"] if art.upstream_config else None
        cell = []
        for name in active:
            row = {"variant": name, "window_s": window, "batch": batch, **measure.latency_stats(times[name], window, batch)}
            if flops:
                row["gflop"] = flops / 1e9
                row["gflops"] = flops / 1e9 / (row["p50_ms"] / 1000.0)
                row["peak_fraction"] = row["gflops"] / max(peak.values())
            cell.append(row)
        base = next((r for r in cell if r["variant"] == BASELINE), None)
        for row in cell:
            row["ratio_vs_baseline"] = base["p50_ms"] / row["p50_ms"] if base else None
        results += cell
        if (window, batch) == (ref_window, 1) and int8s:
            best_int8 = min(int8s, key=lambda v: next(r["p50_ms"] for r in cell if r["variant"] == v))
            progress(f"fastest INT8 on this CPU: {best_int8}")
    peak_all = [max(v for k, v in p.items() if k.endswith("_gflops")) for p in peaks]
    data["results"], data["best_cpu_int8"], data["reference_cell"] = results, best_int8, {"window_s": ref_window, "batch": 1}
    data["peak"] = {"gflops": float(np.median(peak_all)), "per_cell": peaks, "matrix": measure.PEAK_N,
                    "note": "median over cells of the best of torch and ONNX Runtime on a 2048x2048 fp32 matmul, same threads"}
    if art.upstream_config:
        fl = model_flops(art.upstream_config, head, seconds_to_samples(ref_window), 1)
        data["flops"] = {"reference_gflop": fl["total"] / 1e9, "parts_gflop": {k: v / 1e9 for k, v in fl["parts"].items()},
                         "num_frames": fl["num_frames"]}
    return best_int8


def _streams(o: BenchOptions, art, runners: dict[str, Runner], variants: dict[str, dict[str, Any]], best_int8: str | None,
             ref_feeds: dict[str, np.ndarray], ref_window: float, data: dict[str, Any], cache: Path,
             progress: Callable[[str], None]) -> None:
    """INT8 logits vs FP32; streaming, one stream and several batched; the target cut to fewer
    transformer layers."""
    labels = list(art.dims.labels) if art.dims else list(LABELS)
    int8s = [v for v in ("ort-int8", "ort-int8-dynamic") if v in runners]
    if "ort-fp32" in runners and int8s:
        progress("INT8 logits vs FP32 (cosine)")
        data["agreement"] = measure.agreement(runners["ort-fp32"], {k: runners[k] for k in int8s})
    data["streaming"] = {}
    stream_variants = ([best_int8] if best_int8 else [])
    ref = {r["variant"]: r["p50_ms"] for r in data["results"] if (r["window_s"], r["batch"]) == (ref_window, 1)}
    if "ort-fp32" in runners and (not stream_variants or ref["ort-fp32"] < 100.0):
        stream_variants.insert(0, "ort-fp32")
    for name in stream_variants:
        progress(f"streaming {o.stream_seconds:g} s through {name} (2 s window, 1 s hop)")
        data["streaming"][name] = measure.stream_run(runners[name], labels, o.stream_seconds).as_dict()
    data["multistream"] = {}
    for name in stream_variants:
        progress(f"{o.streams} streams through {name}: one call per window vs one batched call per tick")
        data["multistream"][name] = measure.multistream_run(runners[name], labels, o.streams, min(o.stream_seconds, 10.0))
    if o.layers and art.upstream_config:
        data["layers"] = _measure_layers(o, art, runners, variants, best_int8, ref_feeds, ref_window, cache, progress)


def _measure_layers(o: BenchOptions, art, runners: dict[str, Runner], variants: dict[str, dict[str, Any]], best_int8: str | None,
                    feeds: dict[str, np.ndarray], window: float, cache: Path,
                    progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """The target cut to its first K transformer layers, for each K in `o.layers`: the baseline, ORT
    FP32 and the fastest INT8 at the reference cell, interleaved with the full-depth ones (same
    settings), so both ratios come from one run. The accuracy side is `sertrt experiment layers`."""
    head = art.dims.head if art.dims else None
    full = [v for v in (BASELINE, "ort-fp32", best_int8) if v in runners]
    full_layers = art.upstream_config["num_hidden_layers"]
    rows = []
    for k in o.layers:
        precisions = tuple(variants[v]["precision"] for v in full if v != BASELINE)
        cut = prepare_artifacts(o.target, precisions, cache, progress, layers=k)
        with ExitStack() as stack:
            cut_runners: dict[str, Runner] = {}
            for v in full:
                if v == BASELINE:
                    cut_runners[f"{v}@{k}"] = stack.enter_context(TorchRunner(cut.checkpoint))
                else:
                    bundle = cut.bundles[variants[v]["precision"]]
                    cut_runners[f"{v}@{k}"] = stack.enter_context(_ort_runner(
                        bundle / load_bundle(bundle, verify=False).model, o.threads, variants[v]["precision"]))
            progress(f"{k} of {full_layers} layers: {', '.join(full)} at {window:g} s, batch 1, next to the full depth")
            times = measure.interleaved({**{v: runners[v] for v in full}, **cut_runners}, feeds, o.repeats, o.warmup, o.cell_seconds)
        p50 = {name: float(np.median(t)) * 1000.0 for name, t in times.items()}
        gflop = {n: model_flops(a.upstream_config, head, seconds_to_samples(window), 1)["total"] / 1e9
                 for n, a in ((full_layers, art), (k, cut))}
        for v in full:
            rows.append({"layers": k, "of_layers": full_layers, "variant": v, "p50_ms": p50[f"{v}@{k}"],
                         "full_depth_p50_ms": p50[v], "vs_full_depth": p50[v] / p50[f"{v}@{k}"],
                         "ratio_vs_baseline": p50[BASELINE] / p50[f"{v}@{k}"] if BASELINE in p50 else None,
                         "gflop": gflop[k], "full_depth_gflop": gflop[full_layers]})
    return rows


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file()) / 2**20

