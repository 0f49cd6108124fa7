"""Distributed setup keyed off torchrun's RANK / LOCAL_RANK / WORLD_SIZE (nanochat's compute_init).

One process per device; NCCL on CUDA, gloo on CPU. Only rank 0 writes files or prints progress.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass

import numpy as np
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


def resolve_device(device: str, option: str = "--device") -> str:
    """`auto` -> cuda when this PyTorch sees a GPU, else cpu; cpu, cuda and cuda:N are checked and kept. Every
    command with a PyTorch device resolves it here, so `auto` means the same everywhere."""
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise SertrtError(f"{option} {device!r}: unknown (valid: auto, cpu, cuda, cuda:N)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SertrtError(f"{option} {device}: this PyTorch sees no CUDA GPU (torch {torch.__version__})")
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def compute_init(device: str = "auto") -> DistInfo:
    """Pick the device and, under torchrun, join the process group."""
    device = resolve_device(device)
    if not under_torchrun():
        return DistInfo(device=torch.device(device if device != "cuda" else "cuda:0"))
    rank, local_rank, world = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = device.startswith("cuda")
    if cuda:  # one process per GPU: the local rank picks it
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistInfo(rank, local_rank, world, torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


def compute_cleanup(info: DistInfo, wait: bool = True) -> None:
    """Leave the process group: a barrier first, as gloo aborts a rank whose peer leaves mid-collective (a failing
    rank, `wait=False`, skips it), then gc, so a DDP wrapper in a reference cycle releases the group now."""
    if info.distributed and dist.is_initialized():
        if wait:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def gather_rows(rows: np.ndarray, info: DistInfo) -> np.ndarray:
    """Every rank's share of `rows` (N, ...), zeros where another rank scored, summed over ranks (x + 0 is x, so
    each row is exactly as its rank computed it). Every rank gets the whole array."""
    if not info.distributed:
        return rows
    total = torch.from_numpy(np.ascontiguousarray(rows)).to(info.device)
    dist.all_reduce(total)  # a tensor collective: NCCL has no pickled objects on the GPU to gather
    return total.cpu().numpy()


def launch_torchrun(nproc: int, argv: list[str]) -> None:
    """`torchrun --standalone --nproc-per-node NPROC -m sertrt <argv>`. A failure is one SertrtError line: the
    first failed rank's error line (from its torchrun error file, sertrt.cli), or which rank stopped."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if nproc > 1 and not torch.cuda.is_available():
        # CPU processes: each its share of the cores
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // nproc)))
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # its per-child warnings would repeat the error
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "sertrt", *argv]))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if isinstance(failure.message, str) and failure.message.startswith("error: "):
            raise SertrtError(failure.message.removeprefix("error: ")) from None
        raise SertrtError(f"rank {rank} of {nproc} stopped (exit code {failure.exitcode}); "
                          "its output above says why") from None
