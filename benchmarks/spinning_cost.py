"""What ONNX Runtime's thread spinning costs a stream: latency and process CPU per 1 s hop, on vs off, interleaved.

    python benchmarks/spinning_cost.py /tmp/peer/sertrt-int8-dynamic/model.onnx   # 2 s windows, 12 hops each
"""

import resource
import statistics
import sys
import time

import numpy as np

from sertrt.runtime.runners import OrtRunner


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(path: str, hops: int = 12, hop_s: float = 1.0) -> None:
    wave = (0.1 * np.random.default_rng(0).standard_normal((1, 32000))).astype(np.float32)
    feeds = {"waveform": wave, "lengths": np.array([wave.shape[1]])}
    runners = {spin: OrtRunner(path, threads=2, spinning=spin, precision="int8-dynamic").__enter__() for spin in (False, True)}
    latency: dict[bool, list[float]] = {False: [], True: []}
    cpu = dict.fromkeys(runners, 0.0)
    for runner in runners.values():
        runner.infer(feeds)
    for _ in range(hops):
        for spin, runner in runners.items():
            c0, t0 = cpu_seconds(), time.perf_counter()
            runner.infer(feeds)
            latency[spin].append(time.perf_counter() - t0)
            time.sleep(max(0.0, hop_s - latency[spin][-1]))  # the rest of the hop: the stream waits for audio
            cpu[spin] += cpu_seconds() - c0
    for spin in runners:
        print(f"spinning {'on ' if spin else 'off'}: p50 {1000 * statistics.median(latency[spin]):.0f} ms, "
              f"{cpu[spin] / hops:.2f} CPU core-seconds per {hop_s:g} s hop")


if __name__ == "__main__":
    main(sys.argv[1])
