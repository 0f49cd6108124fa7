"""Is the engine the model we trained? PyTorch FP32 (the checkpoint) against a bundle's engine.

    torch_runner.py   TorchRunner: the PyTorch reference behind the same runner contract as the engines
    compare.py        compare(): agreement, WA/UA/F1 of both and their difference, logit errors; used by
                      `sertrt parity` and `sertrt export --test-manifest` alike
    parity.py         `sertrt parity`: whole utterances and streaming windows, thresholds per precision

The one wing that stands on both torch (model/) and the engines (runtime/); neither of those imports it.
"""
