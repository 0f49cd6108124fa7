"""Distributed setup keyed off torchrun's RANK / LOCAL_RANK / WORLD_SIZE (nanochat's compute_init).

One process per device; NCCL on CUDA, gloo on CPU. Only rank 0 writes files or prints progress.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..core.errors import SertrtError


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def compute_init(device: str = "auto") -> DistInfo:
    """Pick the device and, under torchrun, join the process group."""
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise SertrtError(f"--device {device!r}: unknown (valid: auto, cpu, cuda, cuda:N)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SertrtError(f"--device {device}: this PyTorch sees no CUDA GPU (torch {torch.__version__})")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not under_torchrun():
        return DistInfo(device=torch.device(device if device != "cuda" else "cuda:0"))
    rank, local_rank, world = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    if device.startswith("cuda"):  # one process per GPU: the local rank picks it
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank, local_rank, world, dev)


def compute_cleanup(info: DistInfo, wait: bool = True) -> None:
    """Leave the process group together: a barrier first, so no rank tears down its connections while
    another still has collective traffic in flight with it (a rank that destroyed the group early was
    killed by SIGABRT, "terminate called without an active exception", about 1 run in 10 on CPU/gloo).
    Then collect garbage, so a DDP wrapper caught in a reference cycle releases the group now, while the
    interpreter is whole, not during its finalization. `wait=False` (a rank failing) skips the barrier:
    the other ranks may never reach it."""
    if info.distributed and dist.is_initialized():
        if wait:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def launch_torchrun(nproc: int, argv: list[str]) -> int:
    """Re-run `sertrt <argv>` under `torch.distributed.run --standalone` with `nproc` processes.

    Equivalent to: torchrun --standalone --nproc-per-node NPROC -m sertrt <argv>
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "sertrt", *argv]
    env = dict(os.environ)
    if nproc > 1 and not torch.cuda.is_available():
        # Two CPU processes on a small machine: give each its share of the cores.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // nproc)))
    return subprocess.run(cmd, env=env).returncode
