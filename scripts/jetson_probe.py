"""What scripts/jetson_check.sh runs on each machine (x86-64 and emulated aarch64), and the comparison of the two.

    python jetson_probe.py run --repo REPO --out RESULT.json BUNDLE... -- AUDIO...
    python jetson_probe.py compare --pair X86.json ARM.json [--pair ...] --out benchmarks/results/jetson  # .json, .md

`run` needs sertrt's base install only (numpy, soundfile, soxr, onnxruntime, typer, rich): never torch. Per bundle it
runs `sertrt stream` on the first file, the README's embedding example as written (its `bundle-int8` and
`speech.wav` are links to the bundle and the first file), `MultiStream` over every file at once, the one-call API
on every file, and examples/bundle_client.py (which cannot import sertrt). One intra-op thread everywhere the
program lets us choose, so a reduction is summed in the same order on every machine.

`compare` asks for identical labels and window times in every part and logits within a tolerance per precision
(ONNX Runtime's aarch64 kernels are not x86's: other vector widths, other summation orders, other int8 GEMMs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

# Logit tolerance per precision, between machines with the same onnxruntime. fp32 and int8-dynamic (integer GEMMs, fp32
# elsewhere) differ by rounding. fp16 and int8 (Q/DQ on the FP16 graph) compute in FP16, which ONNX Runtime's aarch64
# kernels do natively and its x86 kernels by way of FP32: measured 0.027 on the demo's int8 bundle.
TOLERANCE = {"fp32": 1e-4, "int8-dynamic": 1e-3, "fp16": 5e-2, "int8": 5e-2}
PACKAGES = ("numpy", "onnxruntime", "soundfile", "soxr", "typer", "rich", "packaging", "sertrt")


def call(cmd: list[str], **kw) -> str:
    """stdout of `cmd`; a failure stops the probe with the command and the end of its stderr."""
    got = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if got.returncode != 0:
        tail = [line for line in got.stderr.splitlines() if line.strip()][-3:]
        sys.exit(f"{' '.join(cmd)}: exit {got.returncode}: " + " | ".join(tail))
    return got.stdout


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    torch_present = any(p.name.startswith("torch") for d in sys.path if os.path.isdir(d) for p in Path(d).iterdir())
    return {"machine": platform.machine(), "python": platform.python_version(), "libc": " ".join(platform.libc_ver()),
            "system": platform.platform(), "packages": versions, "torch_installed": torch_present}


def stream_cli(sertrt: str, bundle: Path, audio: str) -> dict:
    out = call([sertrt, "stream", str(bundle), audio, "--threads", "1"])
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    windows = [line for line in lines if "index" in line]
    return {"windows": [{k: w[k] for k in ("start", "end", "silent", "label", "raw_label", "probabilities")}
                        for w in windows],
            "latency_ms": [w["latency_ms"] for w in windows if not w["silent"]],
            "summary_label": next((line.get("label") for line in lines if line.get("summary")), None)}


def embed_example(repo: Path, bundle: Path, audio: str) -> list[str]:
    readme = (repo / "README.md").read_text()
    example = readme.split("<!-- embed-example -->")[1].split("```python\n")[1].split("```")[0]
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(bundle.resolve(), Path(tmp) / "bundle-int8")
        os.symlink(Path(audio).resolve(), Path(tmp) / "speech.wav")
        (Path(tmp) / "example.py").write_text(example)
        return call([sys.executable, "example.py"], cwd=tmp).split()


def multistream(bundle: Path, audio: list[str]) -> dict:
    import numpy as np

    from sertrt.core.audio import load_audio
    from sertrt.runtime.multistream import MultiStream
    from sertrt.runtime.runners import RunnerOptions, open_runner
    from sertrt.runtime.stream import StreamConfig

    signals = {path: load_audio(path) for path in audio}
    runner, card = open_runner(bundle, RunnerOptions(threads=1))
    results: dict[str, list] = {path: [] for path in audio}
    with runner:
        streams = MultiStream(runner, card.labels, StreamConfig(card.window_seconds, card.hop_seconds), max_batch=4,
                              stream_ids=audio)
        longest = max(len(s) for s in signals.values())
        for start in range(0, longest, 1600):  # 0.1 s per tick from every stream that still has audio
            chunks = {p: s[start : start + 1600] for p, s in signals.items() if start < len(s)}
            for path, got in streams.push(chunks).items():
                results[path] += got
        for path, got in streams.flush_all().items():
            results[path] += got
        summaries = {path: streams.summary(path).get("label") for path in audio}
    rows = {path: [{"start": r.start, "end": r.end, "silent": r.silent, "label": r.label, "raw_label": r.raw_label,
                    "probabilities": None if r.probabilities is None else [float(p) for p in np.asarray(r.probabilities)]}
                   for r in got] for path, got in results.items()}
    latency = [r.latency_ms for got in results.values() for r in got if not r.silent]
    return {"windows": rows, "summary_labels": summaries, "latency_ms": latency}


def api_files(bundle: Path, audio: list[str]) -> list[dict]:
    from sertrt.runtime import load

    with load(bundle, threads=1, batch_size=1) as rec:  # batch 1: each file alone, as the client scores it
        return [{"label": p.label, "logits": [float(x) for x in p.logits]} for p in map(rec, audio)]


def client(repo: Path, bundle: Path, audio: list[str]) -> list[dict]:
    out = call([sys.executable, str(repo / "examples" / "bundle_client.py"), str(bundle), *audio])
    return [json.loads(line) for line in out.splitlines()]


def run(args: argparse.Namespace) -> None:
    sertrt = str(Path(sys.executable).with_name("sertrt"))
    result: dict = {"environment": environment(), "audio": [Path(a).name for a in args.audio], "bundles": {}}
    for bundle in map(Path, args.bundles):
        precision = json.loads((bundle / "manifest.json").read_text())["precision"]
        started = time.perf_counter()
        result["bundles"][bundle.name] = {
            "precision": precision,
            "stream": stream_cli(sertrt, bundle, args.audio[0]),
            "embed_example": embed_example(args.repo, bundle, args.audio[0]),
            "multistream": multistream(bundle, args.audio),
            "api": api_files(bundle, args.audio),
            "client": client(args.repo, bundle, args.audio),
        }
        print(f"{bundle.name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    Path(args.out).write_text(json.dumps(result) + "\n")


# ---------------------------------------------------------------- compare
def max_delta(a: list[float] | None, b: list[float] | None) -> float:
    if a is None or b is None:
        return 0.0 if a is b else float("inf")
    return max(abs(x - y) for x, y in zip(a, b))


def fp32_gap(run: dict, name: str) -> float | None:
    """Largest |logit| difference between a bundle and the fp32 bundle on the same machine: its quantization error."""
    fp32 = next((b for b in run["bundles"].values() if b["precision"] == "fp32"), None)
    if fp32 is None or run["bundles"][name]["precision"] == "fp32":
        return None
    return max(max_delta(p["logits"], q["logits"]) for p, q in zip(run["bundles"][name]["api"], fp32["api"]))


def compare_bundle(x: dict, a: dict) -> dict:
    """Every difference between two machines' runs of one bundle: labels, times, and the largest logit gap."""
    problems: list[str] = []

    def windows(where: str, wx: list[dict], wa: list[dict]) -> float:
        if [(w["start"], w["end"], w["silent"]) for w in wx] != [(w["start"], w["end"], w["silent"]) for w in wa]:
            problems.append(f"{where}: window times differ")
            return float("inf")
        for i, (p, q) in enumerate(zip(wx, wa)):
            if (p["label"], p["raw_label"]) != (q["label"], q["raw_label"]):
                problems.append(f"{where}: window {i} label {p['raw_label']}/{p['label']} vs {q['raw_label']}/{q['label']}")
        return max([max_delta(p["probabilities"], q["probabilities"]) for p, q in zip(wx, wa)], default=0.0)

    prob = [windows("stream", x["stream"]["windows"], a["stream"]["windows"])]
    if x["stream"]["summary_label"] != a["stream"]["summary_label"]:
        problems.append("stream: summary label differs")
    for path in x["multistream"]["windows"]:
        prob.append(windows(f"multistream {Path(path).name}", x["multistream"]["windows"][path],
                            a["multistream"]["windows"][path]))
    if x["multistream"]["summary_labels"] != a["multistream"]["summary_labels"]:
        problems.append("multistream: summary labels differ")
    if x["embed_example"] != a["embed_example"]:
        problems.append(f"README embedding example printed {x['embed_example']} vs {a['embed_example']}")
    logit = []
    for part in ("api", "client"):
        for i, (p, q) in enumerate(zip(x[part], a[part])):
            if p["label"] != q["label"]:
                problems.append(f"{part}: file {i} label {p['label']} vs {q['label']}")
            logit.append(max_delta(p["logits"], q["logits"]))
    tolerance = TOLERANCE[x["precision"]]
    if max(logit) > tolerance:
        problems.append(f"logits differ by {max(logit):.3g} > {tolerance:g}")
    counts = {"stream_windows": len(x["stream"]["windows"]),
              "multistream_windows": sum(len(w) for w in x["multistream"]["windows"].values()), "files": len(x["api"])}
    return {"precision": x["precision"], "tolerance": tolerance, "max_logit_delta": max(logit),
            "max_probability_delta": max(prob), **counts, "problems": problems,
            "ms_per_window": [statistics.median(r["multistream"]["latency_ms"]) for r in (x, a)]}


def describe(env: dict, emulated: bool) -> str:
    return f"{env['machine']}{' (qemu-user)' if emulated else ''}, Python {env['python']}, onnxruntime " \
           f"{env['packages']['onnxruntime']}"


def compare(args: argparse.Namespace) -> int:
    """Each --pair REFERENCE RUN: the same probe on two machines (or Pythons) with the same onnxruntime."""
    comparisons = []
    for ref_path, other_path in args.pair:
        ref, other = (json.loads(Path(p).read_text()) for p in (ref_path, other_path))
        if ref["audio"] != other["audio"] or sorted(ref["bundles"]) != sorted(other["bundles"]):
            sys.exit(f"{other_path}: scored other bundles or files than {ref_path}")
        emulated = other["environment"]["machine"] != ref["environment"]["machine"]
        rows = {name: {**compare_bundle(ref["bundles"][name], other["bundles"][name]),
                       "fp32_gap": [fp32_gap(ref, name), fp32_gap(other, name)]} for name in ref["bundles"]}
        comparisons.append({"reference": describe(ref["environment"], False), "run": describe(other["environment"], emulated),
                            "emulated": emulated, "environments": [ref["environment"], other["environment"]],
                            "bundles": rows})
    result = {"command": "bash scripts/jetson_check.sh", "audio": json.loads(Path(args.pair[0][0]).read_text())["audio"],
              "skipped": args.skipped, "comparisons": comparisons,
              "passed": not any(r["problems"] for c in comparisons for r in c["bundles"].values())}
    out = Path(args.out)
    for suffix, text in ((".json", json.dumps(result, indent=1) + "\n"), (".md", markdown(result))):
        tmp = out.with_name(out.name + suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(out.with_name(out.name + suffix))
    print(markdown(result))
    return 0 if result["passed"] else 1


def markdown(result: dict) -> str:
    def versions(env: dict) -> str:
        packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
        return f"{env['machine']}, Python {env['python']} ({env['libc']}): {packages}; torch installed: " \
               f"{str(env['torch_installed']).lower()}"

    lines = [
        "# The runtime on aarch64 (emulated) and on Python 3.10, against x86-64", "",
        f"`{result['command']}`. Each run scores the same {len(result['audio'])} demo test files with the demo's "
        "bundles: `sertrt stream` on the first file, the README's embedding example, `MultiStream` over all files at "
        "once (batches of up to 4 windows), the one-call API and `examples/bundle_client.py` (no sertrt) on each. "
        "The aarch64 runs are an arm64 Debian root under qemu-user (`-cpu cortex-a76`: Armv8.2-A with FP16 and dot "
        "product, the instruction set of Jetson Orin's Cortex-A78AE) with sertrt's base install from aarch64 wheels "
        "only (no torch, no compiler). Each is compared with x86-64 on the same onnxruntime.", "",
        "| reference | run | bundle | windows (stream + multi) | files | labels and window times "
        "| max logit Δ (tolerance) | max probability Δ | Δ to fp32 bundle (reference / run) "
        "| ms/window (reference / run) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["comparisons"]:
        for name, r in c["bundles"].items():
            same = "identical" if not r["problems"] else "; ".join(r["problems"])
            gap = " / ".join("-" if g is None else f"{g:.2g}" for g in r["fp32_gap"])
            ms = " / ".join(f"{m:.1f}" for m in r["ms_per_window"])
            lines.append(f"| {c['reference']} | {c['run']} | {name} | {r['stream_windows']} + "
                         f"{r['multistream_windows']} | {r['files']} | {same} | {r['max_logit_delta']:.2g} "
                         f"({r['tolerance']:g}) | {r['max_probability_delta']:.2g} | {gap} | {ms} |")
    seen: dict[str, dict] = {}
    for c in result["comparisons"]:
        seen.update({describe(e, False) if i == 0 else c["run"]: e for i, e in enumerate(c["environments"])})
    lines += ["", "Environments:", *(f"- {name}: {versions(env)}" for name, env in seen.items())]
    lines += [f"- not run: {s}" for s in result["skipped"]]
    lines += ["", "Times under qemu-user (translating every instruction) are not performance numbers for any ARM "
              "device. Equal labels and close logits say the runtime computes the same thing on aarch64 with ONNX "
              "Runtime's aarch64 kernels. Nothing here ran on a Jetson, its GPU or TensorRT.", "",
              f"Result: {'PASS' if result['passed'] else 'FAIL'}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--repo", type=Path, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("bundles", nargs="+")
    r.add_argument("--audio", nargs="+", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--pair", nargs=2, action="append", required=True, metavar=("REFERENCE", "RUN"))
    c.add_argument("--skipped", action="append", default=[], help="a run that could not be made, and why")
    c.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "run":
        run(args)
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
