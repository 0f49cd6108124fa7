"""How long each rank of `sertrt train --devices N` waits in collectives (benchmarks/results/dataloader.md).

    torchrun --standalone --nproc-per-node 2 scripts/dataloader_bench.py OUT.json train ... --devices 2

Wraps the collectives the training loop calls outside the backward pass (barrier, all_reduce, broadcast,
gather/all_gather of objects) with a timer, runs `sertrt train ...` in this process, and writes
OUT.json.rank<R>: {"rank", "wait_seconds", "epochs", "wait_after_training_seconds"}. Time in a collective is
time a rank waits for the others (validation or test scoring on rank 0 alone, or an uneven share of the work);
`wait_after_training_seconds` is the part after the last epoch's validation (checkpoint writes, test scoring).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch.distributed as dist

waited = [0.0]


def _timed(fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            waited[0] += time.perf_counter() - t0
    return wrapper


for name in ("barrier", "all_reduce", "broadcast", "gather_object", "all_gather_object", "all_gather", "gather"):
    setattr(dist, name, _timed(getattr(dist, name)))

if __name__ == "__main__":
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    run, epochs_asked = Path(argv[argv.index("--out") + 1]), int(argv[argv.index("--epochs") + 1])
    sys.argv = ["sertrt", *argv]
    from sertrt.cli import main
    from sertrt.training import train as trainer

    scored, at_last_validation = [0], [0.0]

    def _predict_logits(*args, **kwargs):
        logits = predict_logits(*args, **kwargs)
        scored[0] += 1
        if scored[0] == epochs_asked:  # the last epoch's validation: what follows is checkpoints and the test set
            at_last_validation[0] = waited[0]
        return logits

    predict_logits, trainer.predict_logits = trainer.predict_logits, _predict_logits

    try:
        main()
    except SystemExit:
        pass
    finally:
        rank = int(os.environ.get("RANK", 0))
        epochs = sum(1 for _ in (run / "metrics.jsonl").open()) if (run / "metrics.jsonl").is_file() else None
        Path(f"{out}.rank{rank}").write_text(json.dumps({"rank": rank, "wait_seconds": waited[0], "epochs": epochs,
                                                     "wait_after_training_seconds": waited[0] - at_last_validation[0]}) + "\n")
