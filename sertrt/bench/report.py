"""Benchmark results as files, OUT/<name>.json (everything) and .md (tables), and the machine they were measured on."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

from ..core import atomic
from ..core.outputs import claim_output_dir

# The latency table's columns: (header, row key); both benches print one table per batch size.
LATENCY = (("variant", "variant"), ("window s", "window_s"), ("n", "n"), ("p50 ms", "p50_ms"), ("p95 ms", "p95_ms"),
           ("p99 ms", "p99_ms"), ("audio s/s", "audio_s_per_s"), ("x eager", "ratio_vs_baseline"))


def loadavg() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info() -> dict[str, Any]:
    from ..core.versions import installed_version

    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    cpu = next((x.split(":", 1)[1].strip() for x in info if x.startswith("model name")), platform.processor() or "unknown")
    flags = next((x.split(":", 1)[1].split() for x in info if x.startswith("flags")), [])
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else None
    return {"cpu": cpu, "cpu_flags": sorted({f for f in flags if f.startswith(("avx", "fma", "amx")) or "vnni" in f}),
            "cores": os.cpu_count(), "memory_gb": round(pages / 2**30, 1) if pages else None, "platform": platform.platform(),
            "versions": {p: installed_version(p) for p in ("torch", "onnxruntime", "onnx", "transformers", "numpy")},
            "gpu": None, "loadavg_start": loadavg()}


def header(options: Any, **extra: Any) -> dict[str, Any]:
    """What every results file starts with: the target, the options used, when, and which sertrt."""
    from .. import __version__

    return {"target": options.target, "options": json.loads(json.dumps(dataclasses.asdict(options), default=str)), "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "sertrt": __version__, "python": platform.python_version(), **extra}


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if abs(x) < 1e4 else f"{x:.3g}"
    return str(x)


def table(header: list[str], rows: list[list[Any]], note: str = "") -> list[str]:
    """A Markdown table (numbers with 2 decimals, strings as given), then `note`, as lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in row) + " |" for row in rows], "", *([note, ""] if note else [])]


def latency_tables(results: list[dict[str, Any]], extra: tuple[tuple[str, Callable[[dict], Any]], ...], title: str) -> list[str]:
    """One `LATENCY` table per batch size (`title` formatted with it), `extra` columns after."""
    md = []
    for batch in sorted({r["batch"] for r in results}):
        rows = sorted((r for r in results if r["batch"] == batch), key=lambda r: (r["window_s"], r["variant"]))
        md += [title.format(batch=batch), "", *table([h for h, _ in LATENCY] + [h for h, _ in extra],
                                                     [[f"{r[k]:g}" if k == "window_s" else r.get(k) for _, k in LATENCY] + [f(r) for _, f in extra] for r in rows])]
    return md


def _pct(x: float | None, digits: int = 0) -> str | None:
    return None if x is None else f"{100 * x:.{digits}f}%"


def markdown(data: dict[str, Any]) -> str:
    m, o = data["machine"], data["options"]
    md = [f"# sertrt bench: {data['target']} ({data.get('architecture')}) on CPU", "",
          f"{data['started']}; {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['cores']} cores, {m['memory_gb']} GB; "
          f"threads {o['threads']}; load average {m.get('loadavg_start')} at start, {m.get('loadavg_end')} at end "
          f"(a shared machine: compare ratios, which are measured interleaved in one run). "
          f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items() if v)}. Run took {data.get('duration_s', 0) / 60:.1f} min "
          f"(exports: {', '.join(f'{k} {v:.0f} s' for k, v in data.get('export_seconds', {}).items())}; 0 s = cached).", ""]
    if data.get("peak"):
        md += [f"Matmul peak measured in this run: **{data['peak']['gflops']:.1f} GFLOP/s** ({data['peak']['note']})."]
    if data.get("flops"):
        f = data["flops"]
        md += [f"Forward FLOPs at {data['reference_cell']['window_s']:g} s: {f['reference_gflop']:.1f} GFLOP "
               f"({', '.join(f'{k} {v:.2f}' for k, v in f['parts_gflop'].items())}), {f['num_frames']} frames.", ""]
    md += ["## Variants", "", *table(["variant", "what", "settings", "resident MB", "bundle MB"], [
        [k, v["description"], ", ".join(f"{a}={b}" for a, b in v["settings"].items()), v.get("memory_mb"), v.get("bundle_mb")]
        for k, v in data.get("variants", {}).items()], "resident MB: what opening the variant added to this process's resident memory.")]
    if data.get("best_cpu_int8"):
        md += [f"Fastest INT8 artifact on this CPU: **{data['best_cpu_int8']}** (decided at the reference cell).", ""]
    md += latency_tables(data.get("results", []), (("utt/s", lambda r: r["utterances_per_s"]), ("RTF", lambda r: f"{r['rtf']:.3f}"),
                                                   ("GFLOP/s", lambda r: r.get("gflops")), ("% peak", lambda r: _pct(r.get("peak_fraction")))),
                         "## Latency, batch {batch}")
    if data.get("streaming"):
        md += ["## Streaming (EmotionStream, 2 s window, 1 s hop, 0.1 s chunks)", "", *table(
            ["variant", "audio s", "wall s", "RTF", "keeps up", "windows", "engine ms/window", "overhead share", "non-engine share"],
            [[k, v["audio_seconds"], v["wall_seconds"], fmt(v["rtf"], 3), v["keeps_up"], str(v["windows"]), v["mean_engine_ms"],
              _pct(v["overhead_share"], 2), _pct(v["non_engine_share"], 2)] for k, v in data["streaming"].items()],
            "overhead share: sum of WindowResult.overhead_ms / wall; non-engine share: 1 - engine time / wall.")]
    return "\n".join(md)


def write(data: dict[str, Any], out: Path, name: str, progress: Callable[[str], None],
          md: Callable[[dict[str, Any]], str] = markdown) -> dict[str, Any]:
    """OUT/<name>.json and .md (`md(data)`), in OUT claimed as bench results; returns `data` with their paths
    under "files"."""
    out = claim_output_dir(out, "bench")
    paths = {"json": out / f"{name}.json", "md": out / f"{name}.md"}
    atomic.write_text(paths["json"], json.dumps(data, indent=1, default=str) + "\n")
    atomic.write_text(paths["md"], md(data))
    data["files"] = {k: str(v) for k, v in paths.items()}
    progress(f"wrote {', '.join(data['files'].values())}")
    return data
