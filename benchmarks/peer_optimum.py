"""sertrt vs Hugging Face Optimum on this CPU, interleaved in one run: benchmarks/results/peer-optimum.{json,md}.

    python3 -m venv .venv-optimum && .venv-optimum/bin/pip install torch==2.13.0 optimum-onnx==0.1.0 \
        "transformers<4.58" onnxruntime==1.32.0          # Optimum's own venv: it pins transformers < 4.58
    .venv/bin/python benchmarks/peer_optimum.py --work /tmp/peer --out benchmarks/results

The same architecture on both sides: XLSR-53's wav2vec2 config with random weights (seed 0), sertrt's HGFM
model and Optimum's `Wav2Vec2ForSequenceClassification` (4 labels), each exported by its own tool (Optimum's in
its venv: `optimum-cli export onnx --task audio-classification`, then `ORTQuantizer` with
`AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)` on MatMul, its documented dynamic recipe;
sertrt's `sertrt export` fp32 and int8-dynamic for the vnni target). Export times: two runs
each, back to back in the order Optimum, sertrt, sertrt, Optimum; medians.
Timing runs in sertrt's venv on one onnxruntime: each round calls every variant once on the same input, so
both systems see the same load; each ratio is that system's PyTorch eager FP32 median over the variant's.
Padded batches: a 1 s utterance's logits in a batch padded to 2 s vs alone, as each system's ONNX takes it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CELLS = {(2.0, 1): 20, (8.0, 1): 8, (2.0, 8): 6, (8.0, 8): 3}  # (window s, batch): timed rounds
THREADS = 2


def build_optimum(work: Path) -> None:
    """Optimum's side, run in its own venv: the HF model folder, its ONNX export and its INT8 quantisation."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    hf = work / "optimum-hf"
    config = json.loads((work / "xlsr-53-config.json").read_text())  # sertrt's, written by main()
    Wav2Vec2ForSequenceClassification(Wav2Vec2Config(**config, num_labels=4)).save_pretrained(hf)
    times = {}
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("optimum-cli")), "export", "onnx", "--task", "audio-classification",
                    "-m", str(hf), str(work / "optimum-fp32")], check=True)
    times["fp32"] = time.perf_counter() - t0
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    t0 = time.perf_counter()
    ORTQuantizer.from_pretrained(work / "optimum-fp32", file_name="model.onnx").quantize(
        save_dir=work / "optimum-int8", quantization_config=AutoQuantizationConfig.avx512_vnni(
        is_static=False, per_channel=False, operators_to_quantize=["MatMul"]))  # its default list adds Conv, which fails on the weight-normed conv
    times["int8-dynamic"] = time.perf_counter() - t0
    (work / "optimum-export-seconds.json").write_text(json.dumps(times))


def sertrt_checkpoint(work: Path, arch: str) -> Path:
    """sertrt's random-weight xlsr-53 checkpoint (untimed, made once) and its wav2vec2 config for Optimum's side."""
    import torch

    from sertrt.model.io import save_checkpoint
    from sertrt.model.ser import build_model
    from sertrt.model.upstream import WAV2VEC2_CONFIGS

    (work / "xlsr-53-config.json").write_text(json.dumps(WAV2VEC2_CONFIGS[arch]))
    ckpt = work / "sertrt-run" / "best.safetensors"
    if not ckpt.is_file():
        torch.manual_seed(0)
        save_checkpoint(ckpt, build_model(arch).eval(), {"strategy": "full", "epoch": None, "metrics": {}})
    return ckpt


def export_sertrt(work: Path, ckpt: Path) -> dict[str, float]:
    """`sertrt export --precision fp32` as a user runs it, timed; then int8-dynamic for the vnni target through the
    library (random weights: not gated on real utterances, as `sertrt bench` builds its artifacts)."""
    from sertrt.export.exporter import ExportOptions, export_bundle

    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("sertrt")), "export", str(ckpt.parent), "--precision", "fp32",
                    "--out", str(work / "sertrt-fp32"), "--overwrite"], check=True)
    times = {"fp32": time.perf_counter() - t0}
    t0 = time.perf_counter()
    export_bundle(ExportOptions(run=ckpt, out=work / "sertrt-int8-dynamic", precision="int8-dynamic", cpu_target="vnni",
                                overwrite=True, gate=False))
    times["int8-dynamic"] = time.perf_counter() - t0
    return times


def variants(work: Path, spinning: bool) -> dict[str, tuple[str, str, object]]:
    """name -> (system, precision, call(waveform (B, num_samples), lengths (B,)) -> logits (B, 4))."""
    import torch
    from transformers import Wav2Vec2ForSequenceClassification

    from sertrt.model.io import load_model
    from sertrt.runtime.runners import OrtRunner

    torch.set_num_threads(THREADS)
    ours, _ = load_model(work / "sertrt-run" / "best.safetensors")
    ours.eval()
    theirs = Wav2Vec2ForSequenceClassification.from_pretrained(work / "optimum-hf").eval()

    def sertrt_ort(precision):
        runner = OrtRunner(work / f"sertrt-{precision}" / "model.onnx", threads=THREADS, spinning=spinning, precision=precision).__enter__()
        return lambda w, n: runner.infer({"waveform": w, "lengths": n})["logits"]

    def optimum_ort(folder, file):  # the same runner, so the same session settings, as sertrt's side
        runner = OrtRunner(work / folder / file, threads=THREADS, spinning=spinning).__enter__()
        return lambda w, n: runner.infer({"input_values": w})["logits"]

    def eager(model, with_lengths):
        def call(w, n):
            with torch.inference_mode():
                out = model(torch.from_numpy(w), torch.from_numpy(n)) if with_lengths else model(torch.from_numpy(w)).logits
            return out.numpy()
        return call

    return {
        "sertrt eager fp32": ("sertrt", "eager-fp32", eager(ours, True)),
        "sertrt ort fp32": ("sertrt", "fp32", sertrt_ort("fp32")),
        "sertrt ort int8-dynamic": ("sertrt", "int8-dynamic", sertrt_ort("int8-dynamic")),
        "optimum eager fp32": ("optimum", "eager-fp32", eager(theirs, False)),
        "optimum ort fp32": ("optimum", "fp32", optimum_ort("optimum-fp32", "model.onnx")),
        "optimum ort int8-dynamic": ("optimum", "int8-dynamic", optimum_ort("optimum-int8", "model_quantized.onnx")),
    }


def time_cells(calls: dict, spinning: bool, quick: bool) -> list[dict]:
    """Every cell with spinning off; with spinning on, batch 1 (what a stream on an edge device sends)."""
    from sertrt.export.validate import speech_like

    rows = []
    for (window, batch), rounds in CELLS.items():
        if spinning and batch > 1:
            continue
        rounds = 1 if quick else rounds
        rng = np.random.default_rng(0)
        wave = np.stack([speech_like(window, rng) for _ in range(batch)])
        lengths = np.full(batch, wave.shape[1], dtype=np.int64)
        times: dict[str, list[float]] = {name: [] for name in calls}
        for name, (_, _, call) in calls.items():
            call(wave, lengths)  # warm-up
        for _ in range(rounds):
            for name, (_, _, call) in calls.items():
                t0 = time.perf_counter()
                call(wave, lengths)
                times[name].append(time.perf_counter() - t0)
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        for name, (system, precision, _) in calls.items():
            rows.append({"system": system, "precision": precision, "window_s": window, "batch": batch, "spinning": spinning,
                         "p50_ms": round(1000 * medians[name], 1), "ratio": round(medians[f"{system} eager fp32"] / medians[name], 2),
                         "calls": rounds, "loadavg_after": round(os.getloadavg()[0], 2)})
        print(f"{window:g} s x {batch}: " + ", ".join(f"{n} {1000 * m:.0f} ms" for n, m in medians.items()), flush=True)
    return rows


def padded(calls: dict) -> list[dict]:
    """A 1 s utterance padded into a 2 s batch vs alone, through each system's own inputs."""
    from sertrt.export.validate import speech_like

    rng = np.random.default_rng(1)
    short, long_ = speech_like(1.0, rng), speech_like(2.0, rng)
    batch = np.stack([np.pad(short, (0, long_.size - short.size)), long_])
    rows = []
    for name, (system, precision, call) in calls.items():
        alone = call(short[None], np.array([short.size]))[0]
        inside = call(batch, np.array([short.size, long_.size]))[0]
        rows.append({"system": system, "precision": precision, "max_abs_logit_diff": float(np.abs(alone - inside).max())})
    return rows


def markdown(data: dict) -> str:
    m = data["machine"]
    lines = ["# sertrt vs Hugging Face Optimum on this CPU", "",
             f"{m['cpu']}, {m['cores']} cores, flags {', '.join(m['cpu_flags'])}; onnxruntime {m['versions']['onnxruntime']}, "
             f"torch {m['versions']['torch']}, {m['threads']} threads; load average {data['loadavg_start']} at the start, "
             f"{data['loadavg_end']} at the end (a shared machine). {data['arch']} size, random weights; made by `{data['command']}`.", "",
             "Ratio = the system's own PyTorch eager FP32 median / the variant's median (higher is faster); "
             "p50 in ms; all variants interleaved call by call.", ""]
    for spinning in sorted({r["spinning"] for r in data["rows"]}):
        cells_run = [(w, b) for w, b in CELLS if any((r["window_s"], r["batch"], r["spinning"]) == (w, b, spinning)
                                                     for r in data["rows"])]
        lines += [f"### ONNX Runtime spinning {'on (while a call runs)' if spinning else 'off'}", "",
                  "| system | precision | " + " | ".join(f"{w:g} s x{b}" for w, b in cells_run) + " |",
                  "|---|---|" + "---|" * len(cells_run)]
        for system in ("optimum", "sertrt"):
            for precision in ("eager-fp32", "fp32", "int8-dynamic"):
                cells = [next(r for r in data["rows"] if (r["system"], r["precision"], r["window_s"], r["batch"], r["spinning"])
                              == (system, precision, w, b, spinning)) for w, b in cells_run]
                lines.append(f"| {system} | {precision} | " + " | ".join(f"{c['ratio']:.2f}x ({c['p50_ms']:.0f})" for c in cells) + " |")
        lines.append("")
    lines += ["## Export time (seconds: median of two runs each, in the order Optimum, sertrt, sertrt, Optimum)", "",
              "| precision | optimum | sertrt | sertrt / optimum |", "|---|---|---|---|"]
    for p, t in data["export_seconds"]["optimum"].items():
        s = data["export_seconds"]["sertrt"][p]
        lines.append(f"| {p} | {t:.0f} | {s:.0f} | {s / t:.2f}x |")
    lines += ["", "Optimum's int8-dynamic time is quantisation of its fp32 export; sertrt's is a whole `sertrt export` "
              "(its own fp32 export, checks at untraced shapes, the bundle).", "",
              "## Padded batch: a 1 s utterance in a batch padded to 2 s vs alone (max |logit difference|)", "",
              "| system | precision | max abs diff |", "|---|---|---|"]
    lines += [f"| {r['system']} | {r['precision']} | {r['max_abs_logit_diff']:.2g} |" for r in data["padded"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--optimum-python", default=".venv-optimum/bin/python")
    ap.add_argument("--spinning", default="off,on", help="ONNX Runtime thread spinning settings to time: off, on or both")
    ap.add_argument("--arch", default="xlsr-53", help="sertrt's wav2vec2 config on both sides (tiny: a smoke run)")
    ap.add_argument("--quick", action="store_true", help="one timed round per cell: a smoke run")
    ap.add_argument("--optimum-side", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.optimum_side:
        return build_optimum(args.work)
    load_start = round(os.getloadavg()[0], 2)
    ckpt = sertrt_checkpoint(args.work, args.arch)
    runs: dict[str, list[dict[str, float]]] = {"optimum": [], "sertrt": []}
    for system in ("optimum", "sertrt", "sertrt", "optimum"):  # ABBA: a drift in load weighs on both alike
        if system == "optimum":
            subprocess.run([args.optimum_python, __file__, "--work", str(args.work), "--optimum-side"], check=True)
        runs[system].append(json.loads((args.work / "optimum-export-seconds.json").read_text())
                            if system == "optimum" else export_sertrt(args.work, ckpt))
    export_seconds = {system: {p: statistics.median(r[p] for r in rs) for p in rs[0]} for system, rs in runs.items()}
    rows, pads = [], []
    for spin in args.spinning.split(","):
        calls = variants(args.work, spinning=spin == "on")
        rows += time_cells(calls, spinning=spin == "on", quick=args.quick)
        pads = pads or padded(calls)
        del calls
    from sertrt.bench.report import machine_info

    data = {"machine": {**machine_info(), "threads": THREADS}, "command": " ".join(["python benchmarks/peer_optimum.py", *sys.argv[1:]]),
            "arch": args.arch, "loadavg_start": load_start, "loadavg_end": round(os.getloadavg()[0], 2), "export_seconds": export_seconds,
            "export_runs": runs,
            "rows": rows, "padded": pads}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peer-optimum.json").write_text(json.dumps(data, indent=1) + "\n")
    (args.out / "peer-optimum.md").write_text(markdown(data))
    print(markdown(data))


if __name__ == "__main__":
    main()
