"""What ONNX Runtime's thread spinning costs a stream: latency and process CPU per 1 s hop, interleaved, on an idle
machine and beside a busy job (one process computing on one core): benchmarks/results/spinning.{json,md}.

    python benchmarks/spinning_cost.py /tmp/peer/sertrt-int8-dynamic/model.onnx   # 2 s windows, 12 hops each

Modes: `OrtRunner` with spinning off and on (threads spin while a call runs and stop when it returns), and ONNX
Runtime's own default (on, threads keep spinning for a while after a call).
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from sertrt.bench.report import machine_info
from sertrt.runtime.runners import OrtRunner

BUSY_JOB = "import numpy as np\na = np.random.rand(300, 300)\nwhile True: a = np.tanh(a @ a)"


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def runners(path: str) -> dict:
    import onnxruntime as ort

    ours = {f"sertrt spinning {'on' if spin else 'off'}": OrtRunner(path, threads=2, spinning=spin, precision="int8-dynamic")
            for spin in (False, True)}
    options = ort.SessionOptions()  # ONNX Runtime's own settings but the thread count
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    ort_default = SimpleNamespace(infer=lambda feeds: session.run(None, feeds))
    return {**{name: r.__enter__() for name, r in ours.items()}, "onnxruntime's default": ort_default}


def measure(calls: dict, feeds: dict, hops: int, hop_s: float, busy: bool) -> list[dict]:
    job = subprocess.Popen([sys.executable, "-c", BUSY_JOB], env=dict(os.environ, OMP_NUM_THREADS="1")) if busy else None
    latency: dict[str, list[float]] = {name: [] for name in calls}
    cpu = dict.fromkeys(calls, 0.0)
    try:
        time.sleep(1.0 if busy else 0.0)
        for _ in range(hops):
            for name, runner in calls.items():
                c0, t0 = cpu_seconds(), time.perf_counter()
                runner.infer(feeds)
                latency[name].append(time.perf_counter() - t0)
                time.sleep(max(0.0, hop_s - latency[name][-1]))  # the rest of the hop: the stream waits for audio
                cpu[name] += cpu_seconds() - c0
    finally:
        if job is not None:
            job.kill()
    return [{"mode": name, "busy": busy, "p50_ms": round(1000 * statistics.median(latency[name]), 1),
             "cpu_core_s_per_hop": round(cpu[name] / hops, 3)} for name in calls]


def main(path: str, out: Path = Path("benchmarks/results"), hops: int = 12, hop_s: float = 1.0) -> None:
    wave = (0.1 * np.random.default_rng(0).standard_normal((1, 32000))).astype(np.float32)
    feeds = {"waveform": wave, "lengths": np.array([wave.shape[1]])}
    calls = runners(path)
    for runner in calls.values():
        runner.infer(feeds)
    rows = measure(calls, feeds, hops, hop_s, busy=False) + measure(calls, feeds, hops, hop_s, busy=True)
    machine = machine_info()
    data = {"machine": machine, "command": f"python benchmarks/spinning_cost.py {path}", "window_s": 2.0,
            "hop_s": hop_s, "hops": hops, "threads": 2, "rows": rows}
    lines = ["# ONNX Runtime thread spinning: a 2 s window every 1 s, xlsr-53 int8-dynamic, 2 threads", "",
             f"{machine['cpu']}, onnxruntime {machine['versions']['onnxruntime']}, flags {', '.join(machine['cpu_flags'])}; "
             f"`{data['command']}`.", "",
             "| mode | idle: p50 ms | idle: CPU core-s per hop | beside a busy job: p50 ms | busy: CPU core-s per hop |",
             "|---|---|---|---|---|"]
    for name in calls:
        idle, busy = (next(r for r in rows if r["mode"] == name and r["busy"] is b) for b in (False, True))
        lines.append(f"| {name} | {idle['p50_ms']:.0f} | {idle['cpu_core_s_per_hop']:.2f} | {busy['p50_ms']:.0f} | "
                     f"{busy['cpu_core_s_per_hop']:.2f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "spinning.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "spinning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
