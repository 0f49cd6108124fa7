"""A client of the bundle format that needs neither sertrt nor torch: numpy, soundfile, soxr and onnxruntime.

    python examples/bundle_client.py BUNDLE speech.wav [more.wav ...]

Reads the bundle's `manifest.json` (labels, sample rate, the model's file name), scores each file whole and prints
one JSON line per file: path, label, logits. Channels are averaged and other rates resampled (soxr, high quality), as
sertrt reads audio. This is what a program in another language does with a bundle; `sertrt evaluate` gives the same labels (tests/test_export.py),
and scripts/jetson_check.sh runs it on aarch64.
"""

import json
import sys
from pathlib import Path

sys.modules["torch"] = None  # type: ignore[assignment]  # neither may be used: importing them fails
sys.modules["sertrt"] = None  # type: ignore[assignment]

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402


def main(bundle: Path, wavs: list[str]) -> None:
    card = json.loads((bundle / "manifest.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the same arithmetic on every machine: no split of reductions across threads
    if card["precision"] == "int8":  # run the Q/DQ graph as written (sertrt.core.precisions: LIMITS["int8"].ort_config)
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    session = ort.InferenceSession(str(bundle / card["model"]), options, providers=["CPUExecutionProvider"])
    for wav in wavs:
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1, dtype=np.float32)
        if rate != card["sample_rate"]:
            audio = soxr.resample(audio, rate, card["sample_rate"], quality="HQ").astype(np.float32)
        logits = session.run(["logits"], {"waveform": audio[None], "lengths": np.array([len(audio)], dtype=np.int64)})
        row = logits[0][0]
        print(json.dumps({"path": wav, "label": card["labels"][int(row.argmax())], "logits": row.tolist()}))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2:])
