"""Benchmark results as files: OUT/<name>.json (everything), .md (tables, targets) and .png (p50
latency vs window length at batch 1, log y). Also the machine description and the targets check."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Callable

from ..core import atomic
from ..core.outputs import claim_output_dir

# The targets: (key, what, applies to architecture (None: any), "min"/"max", threshold).
TARGETS = (
    ("ort_fp32_ratio", "ONNX Runtime FP32 vs PyTorch eager FP32 (2 s, batch 1)", "xlsr-53", "min", 1.6),
    ("ort_fp32_peak", "ONNX Runtime FP32 share of the matmul peak (2 s, batch 1)", "xlsr-53", "min", 0.85),
    ("ort_int8_ratio", "ONNX Runtime INT8 (fastest CPU artifact) vs PyTorch eager FP32 (2 s, batch 1)", "xlsr-53", "min", 3.0),
    ("int8_cosine", "INT8 logits cosine vs FP32 (fastest CPU artifact)", "xlsr-53", "min", 0.99),
    ("stream_overhead", "streaming runtime overhead share of wall time (worst stream)", None, "max", 0.03),
    ("stream_rtf", "streaming INT8, 2 s window / 1 s hop: wall / audio (keeps up if < 1)", "xlsr-53", "max", 1.0),
)


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    from ..core.versions import installed_version

    cpu, flags = platform.processor() or "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("unknown", platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = sorted({f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "fma", "amx")) or "vnni" in f})
                break
    except OSError:
        pass
    versions = {pkg: installed_version(pkg) for pkg in ("torch", "onnxruntime", "onnx", "transformers", "numpy")}
    mem = None
    try:
        kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        mem = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(), "memory_gb": mem, "platform": platform.platform(),
            "versions": versions, "gpu": None, "loadavg_start": loadavg()}


def _ref_rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ref = data.get("reference_cell", {})
    return {r["variant"]: r for r in data.get("results", []) if r["window_s"] == ref.get("window_s") and r["batch"] == ref.get("batch")}


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target that applies to this run's architecture: threshold, measured value, met."""
    rows, best = _ref_rows(data), data.get("best_cpu_int8")
    streams = data.get("streaming", {})
    worst_overhead = max((v["overhead_share"] for v in streams.values()), default=None)
    measured = {
        "ort_fp32_ratio": rows.get("ort-fp32", {}).get("ratio_vs_baseline"),
        "ort_fp32_peak": rows.get("ort-fp32", {}).get("peak_fraction"),
        "ort_int8_ratio": rows.get(best, {}).get("ratio_vs_baseline") if best else None,
        "int8_cosine": data.get("agreement", {}).get(best, {}).get("cosine") if best else None,
        "stream_overhead": worst_overhead,
        "stream_rtf": streams[best]["rtf"] if best in streams else None,
    }
    out = []
    for key, what, arch, kind, threshold in TARGETS:
        if arch is not None and arch != data.get("architecture"):
            continue
        value = None if measured[key] is None else float(measured[key])
        met = None if value is None else bool(value >= threshold if kind == "min" else value <= threshold)
        out.append({"key": key, "target": what, "architecture": arch or "any", "threshold": threshold, "kind": kind,
                    "measured": value, "met": met})
    return out


def jsonable(x: Any) -> Any:
    """Options dataclass fields as JSON: tuples as lists, paths as strings."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return str(x) if isinstance(x, Path) else x


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if abs(x) < 1e4 else f"{x:.3g}"
    return str(x)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    peak = data.get("peak", {}).get("gflops")
    md = [f"# sertrt bench: {data['target']} ({data.get('architecture')}) on CPU", "",
          f"{data['started']}; {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['cores']} cores, {m['memory_gb']} GB; "
          f"threads {data['options']['threads']}; load average {m.get('loadavg_start')} at start, {m.get('loadavg_end')} at end "
          f"(a shared machine: compare ratios, which are measured interleaved in one run). "
          f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items() if v)}. Run took {data.get('duration_s', 0) / 60:.1f} min "
          f"(exports: {', '.join(f'{k} {v:.0f} s' for k, v in data.get('export_seconds', {}).items())}; 0 s = cached).", ""]
    if peak:
        md += [f"Matmul peak measured in this run: **{peak:.1f} GFLOP/s** (2048x2048 fp32, {data['options']['threads']} threads, "
               "median over cells of the better of torch and ONNX Runtime)."]
    if data.get("flops"):
        f = data["flops"]
        md += [f"Forward FLOPs at {data['reference_cell']['window_s']:g} s: {f['reference_gflop']:.1f} GFLOP "
               f"({', '.join(f'{k} {v:.2f}' for k, v in f['parts_gflop'].items())}), {f['num_frames']} frames.", ""]
    md += ["## Targets", "", _table(["target", "applies to", "threshold", "measured", "met?"],
                                    [[t["target"], t["architecture"], f"{'>=' if t['kind'] == 'min' else '<='} {t['threshold']:g}",
                                      t["measured"] if t["key"] not in ("int8_cosine",) else (f"{t['measured']:.5f}" if t["measured"] is not None else None),
                                      t["met"]] for t in data.get("targets", [])]), ""]
    md += ["## Variants", "", _table(["variant", "what", "settings", "resident MB", "bundle MB"],
                                     [[k, v["description"], ", ".join(f"{a}={b}" for a, b in v["settings"].items()),
                                       v.get("memory_mb"), v.get("bundle_mb")] for k, v in data.get("variants", {}).items()]),
           "", "resident MB: what opening the variant added to this process's resident memory (weights, session).", ""]
    if data.get("best_cpu_int8"):
        md += [f"Fastest INT8 artifact on this CPU: **{data['best_cpu_int8']}** (decided at the reference cell).", ""]
    for batch in sorted({r["batch"] for r in data.get("results", [])}):
        rows = [r for r in data["results"] if r["batch"] == batch]
        md += [f"## Latency, batch {batch}", "", _table(
            ["variant", "window s", "n", "p50 ms", "p95 ms", "p99 ms", "audio s/s", "utt/s", "RTF", "x eager", "GFLOP/s", "% peak"],
            [[r["variant"], f"{r['window_s']:g}", str(r["n"]), r["p50_ms"], r["p95_ms"], r["p99_ms"], r["audio_s_per_s"],
              r["utterances_per_s"], f"{r['rtf']:.3f}", r.get("ratio_vs_baseline"), r.get("gflops"),
              None if r.get("peak_fraction") is None else f"{100 * r['peak_fraction']:.0f}%"]
             for r in sorted(rows, key=lambda r: (r["window_s"], r["variant"]))]), ""]
    if data.get("agreement"):
        md += ["## INT8 vs FP32 logits (ONNX Runtime)", "", _table(
            ["variant", "cosine", "worst input cosine", "max abs", "top-1 agreement", "inputs"],
            [[k, f"{v['cosine']:.5f}", f"{v['min_cosine']:.5f}", v["max_abs"], v["top1_agreement"], str(v["inputs"])]
             for k, v in data["agreement"].items()]), ""]
    if data.get("streaming"):
        md += ["## Streaming (EmotionStream, 2 s window, 1 s hop, 0.1 s chunks)", "", _table(
            ["variant", "audio s", "wall s", "RTF", "keeps up", "windows", "engine ms/window", "overhead share", "non-engine share"],
            [[k, v["audio_seconds"], v["wall_seconds"], f"{v['rtf']:.3f}", v["keeps_up"], str(v["windows"]), v["mean_engine_ms"],
              f"{100 * v['overhead_share']:.2f}%", f"{100 * v['non_engine_share']:.2f}%"] for k, v in data["streaming"].items()]), "",
               "overhead share: sum of WindowResult.overhead_ms / wall; non-engine share: 1 - engine time / wall "
               "(also counts ring writes in push() and the feeding loop).", ""]
    if data.get("multistream"):
        md += ["## Several streams through one engine (2 s window, 1 s hop, 0.1 s chunks per stream per tick)", "", _table(
            ["variant", "streams", "audio s", "windows", "wall s, a call per window", "wall s, MultiStream", "RTF alone", "RTF batched",
             "speedup"],
            [[k, str(v["streams"]), v["streams"] * v["seconds_per_stream"], str(v["windows"]["batched"]), v["wall_s"]["alone"],
              v["wall_s"]["batched"], f"{v['rtf']['alone']:.3f}", f"{v['rtf']['batched']:.3f}", v["batched_speedup"]]
             for k, v in data["multistream"].items()]), "",
               "Both modes push the same chunks and alternate (median of the rounds); RTF = wall / total audio.", ""]
    if data.get("layers"):
        md += ["## Fewer transformer layers (`--upstream-layers K`; reference cell, interleaved with the full depth)", "", _table(
            ["layers", "variant", "p50 ms", "full depth p50 ms", "x full depth", "x eager (full depth)", "GFLOP", "share of FLOPs"],
            [[f"{r['layers']} of {r['of_layers']}", r["variant"], r["p50_ms"], r["full_depth_p50_ms"], r["vs_full_depth"],
              r["ratio_vs_baseline"], r["gflop"], f"{100 * r['gflop'] / r['full_depth_gflop']:.0f}%"] for r in data["layers"]]), "",
               "Speed only: the accuracy cost of cutting layers is measured by `sertrt experiment layers` (it needs trained models).", ""]
    md += ["## Not done", ""] + [f"- {x}" for x in data.get("not_done", [])] + [""]
    return "\n".join(md)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = [r for r in data.get("results", []) if r["batch"] == 1]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        pts = sorted((r["window_s"], r["p50_ms"]) for r in rows if r["variant"] == variant)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=variant)
    windows = sorted({r["window_s"] for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(windows, [f"{w:g}" for w in windows])
    ax.set_yscale("log")
    ax.set_xlabel("window (s)")
    ax.set_ylabel("p50 latency (ms), batch 1")
    ax.set_title(f"{data.get('architecture')} on {data['machine']['cpu']}, {data['options']['threads']} threads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write(data: dict[str, Any], out: Path, name: str, md: Callable[[dict[str, Any]], str] = markdown,
          png: bool = True) -> dict[str, Path]:
    """OUT/<name>.json, .md (`md(data)`) and, with `png`, the latency plot; OUT claimed as bench results."""
    out = claim_output_dir(out, "bench")
    paths = {"json": out / f"{name}.json", "md": out / f"{name}.md", **({"png": out / f"{name}.png"} if png else {})}
    atomic.write_text(paths["json"], json.dumps(data, indent=1, default=str) + "\n")
    atomic.write_text(paths["md"], md(data))
    if png:
        plot(data, paths["png"])
    return paths
