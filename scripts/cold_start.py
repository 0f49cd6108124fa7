"""Measurements that need a fresh process: cold start with peak resident memory, training
throughput, and PyTorch eager under OpenMP's default wait policy. A study beside `sertrt bench`:

    python scripts/cold_start.py cold BUNDLE [ort|trt]        import / open / session / first inference, peak RSS
    python scripts/cold_start.py train '{"upstream": "tiny"}'  samples/s of full fine-tuning steps
    python scripts/cold_start.py eager '{"checkpoint": "RUN/best.safetensors", "seconds": 2.0}'

The cold-start child is `python -c` with the clock started before `import sertrt`, so the import
cost is real (run as `python -m`, the package would be imported before the clock starts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sertrt.core.errors import SertrtError

# How the child opens each backend: the runtime's open_runner for the engines (bundle checked, sha256 of
# every file), the verify wing's TorchRunner for the PyTorch baseline (checkpoint digest checked).
_OPEN = {
    "ort": ("from sertrt.runtime.runners import RunnerOptions, open_runner",
            "runner, card = open_runner({bundle!r}, RunnerOptions(backend='ort', threads={threads})); rate = card.sample_rate"),
    "trt": ("from sertrt.runtime.runners import RunnerOptions, open_runner",
            "runner, card = open_runner({bundle!r}, RunnerOptions(backend='trt')); rate = card.sample_rate"),
    "torch": ("from sertrt.verify.torch_runner import TorchRunner",
              "runner = TorchRunner({checkpoint!r}); rate = 16000"),
}
_COLD_START = r"""
import time
t0 = time.perf_counter()
{import_line}
t1 = time.perf_counter()
{open_line}
t2 = time.perf_counter()
with runner:
    t3 = time.perf_counter()
    import sys
    torch_loaded = "torch" in sys.modules
    import numpy as np
    n = int({seconds} * rate)
    wave = (0.1 * np.sin(np.arange(n, dtype=np.float32) * 0.05))[None].astype(np.float32)
    t4 = time.perf_counter()
    runner.infer({{"waveform": wave, "lengths": np.array([n], dtype=np.int64)}})
    t5 = time.perf_counter()
import json, sys
sys.path.insert(0, {here!r})
from cold_start import peak_rss_mb
print("BENCH-JSON " + json.dumps({{
    "import_s": t1 - t0, "open_runner_s": t2 - t1, "session_s": t3 - t2, "first_inference_s": t5 - t4,
    "torch_imported_by_runtime": torch_loaded, "peak_rss_mb": peak_rss_mb(),
}}))
"""


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): VmHWM, which starts afresh at exec. ru_maxrss is the
    fallback only: Linux carries it over exec from the parent, so a child of a big process reads big."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_env(threads: int, omp_default_wait: bool = False) -> dict[str, str]:
    """The parent's environment (OMP_WAIT_POLICY included), torch's pool sized to `threads`."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    if omp_default_wait:
        env.pop("OMP_WAIT_POLICY", None)
    return env


def _run_child(args: list[str], threads: int, timeout: float, omp_default_wait: bool = False) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env=child_env(threads, omp_default_wait))
    wall = time.perf_counter() - t0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH-JSON ")), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"benchmark child {args[:2]} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return json.loads(line[len("BENCH-JSON "):]), wall


def cold_start(bundle: Path, backend: str = "ort", threads: int = 2, checkpoint: Path | None = None,
               seconds: float = 2.0, timeout: float = 600.0) -> dict[str, Any]:
    """One fresh interpreter: import the runtime, open the bundle (hashes checked), start the
    session, run one `seconds` window. cold_start_s = import + open + session (ready to infer)."""
    import_line, open_line = _OPEN[backend]
    open_line = open_line.format(bundle=str(bundle), threads=threads, checkpoint=None if checkpoint is None else str(checkpoint))
    code = _COLD_START.format(import_line=import_line, open_line=open_line, seconds=seconds, here=str(Path(__file__).parent))
    out, wall = _run_child(["-c", code], threads, timeout)
    out["cold_start_s"] = out["import_s"] + out["open_runner_s"] + out["session_s"]
    out["process_wall_s"] = wall  # with interpreter start-up and exit
    return out


def train_throughput(upstream: str, batch: int = 4, seconds: float = 2.0, steps: int = 3, warmup: int = 1,
                     threads: int = 2, timeout: float = 1800.0) -> dict[str, Any]:
    """Full fine-tuning steps (AdamW, cross-entropy, clip 5.0, as `sertrt train`) in a child process."""
    args = {"upstream": upstream, "batch": batch, "seconds": seconds, "steps": steps, "warmup": warmup, "threads": threads}
    out, wall = _run_child([__file__, "child-train", json.dumps(args)], threads, timeout)
    out["process_wall_s"] = wall
    return out


def eager_latency(checkpoint: Path, seconds: float = 2.0, batch: int = 1, repeats: int = 5, threads: int = 2,
                  timeout: float = 900.0) -> dict[str, Any]:
    """PyTorch eager FP32 latency with OpenMP's default wait policy, alone in a child process."""
    args = {"checkpoint": str(checkpoint), "seconds": seconds, "batch": batch, "repeats": repeats, "threads": threads}
    out, _ = _run_child([__file__, "child-eager", json.dumps(args)], threads, timeout, omp_default_wait=True)
    return out


def _eager(checkpoint: str, seconds: float, batch: int, repeats: int, threads: int) -> dict[str, Any]:
    import torch

    from sertrt.bench.measure import latency_stats, make_feeds
    from sertrt.verify.torch_runner import TorchRunner

    torch.set_num_threads(threads)
    feeds = make_feeds(seconds, batch)
    with TorchRunner(checkpoint) as runner:
        runner.infer(feeds)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            runner.infer(feeds)
            times.append(time.perf_counter() - t0)
    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "window_s": seconds, "batch": batch,
            **latency_stats(times, seconds, batch)}


def _train(upstream: str, batch: int, seconds: float, steps: int, warmup: int, threads: int) -> dict[str, Any]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from sertrt.export.validate import speech_like
    from sertrt.model.ser import apply_strategy, build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(upstream)
    apply_strategy(model, "full")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01)
    rng = np.random.default_rng(0)
    waveform = torch.from_numpy(np.stack([speech_like(seconds, rng) for _ in range(batch)]))
    lengths = torch.full((batch,), waveform.shape[1], dtype=torch.long)
    labels = torch.from_numpy(rng.integers(0, len(model.dims.labels), batch))
    times = []
    for _ in range(warmup + steps):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(waveform, lengths), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        times.append(time.perf_counter() - t0)
    step = float(np.median(times[warmup:]))
    return {"upstream": upstream, "batch": batch, "seconds": seconds, "steps": steps, "warmup": warmup,
            "step_s": times[warmup:], "median_step_s": step, "samples_per_s": batch / step,
            "audio_s_per_s": batch * seconds / step,
            "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str]) -> None:
    if len(argv) in (2, 3) and argv[0] == "cold":
        print(json.dumps(cold_start(Path(argv[1]), *(argv[2:] or ["ort"])), indent=1))
    elif len(argv) == 2 and argv[0] in ("train", "eager"):
        print(json.dumps({"train": train_throughput, "eager": eager_latency}[argv[0]](**json.loads(argv[1])), indent=1))
    elif len(argv) == 2 and argv[0] in ("child-train", "child-eager"):  # the fresh process the two above start
        print("BENCH-JSON " + json.dumps({"child-train": _train, "child-eager": _eager}[argv[0]](**json.loads(argv[1]))))
    else:
        raise SertrtError("usage: python scripts/cold_start.py {cold BUNDLE [ort|trt] | train JSON | eager JSON}")


if __name__ == "__main__":
    main(sys.argv[1:])
