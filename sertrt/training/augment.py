"""Waveform augmentation for training, per clip on the fly (`sertrt train --augment speed,noise`).

    speed   speed perturbation by 0.9, 1.0 or 1.1 (resampled: pitch and tempo move together, as in Kaldi)
    noise   white + 1/f noise at a random SNR of 5-30 dB, on half of the clips
    gain    a random gain of -6..+6 dB
    reverb  on half of the clips, a synthetic room: exponentially decaying noise, RT60 0.15-0.6 s
"""

from __future__ import annotations

import numpy as np

from ..core.audio import SAMPLE_RATE, colored_noise, resample
from ..core.errors import SertrtError

AUGMENTATIONS = ("speed", "noise", "gain", "reverb")
SPEEDS = (0.9, 1.0, 1.1)
SNR_DB = (5.0, 30.0)
GAIN_DB = 6.0
RT60_S = (0.15, 0.6)


def parse_augment(spec: str) -> tuple[str, ...]:
    """"speed,noise" -> ("speed", "noise") in AUGMENTATIONS order; "" and "none" -> ()."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise SertrtError(f"--augment {','.join(names)}: unknown {', '.join(unknown)} (valid: {', '.join(AUGMENTATIONS)}, none)")
    return tuple(n for n in AUGMENTATIONS if n in names)


def augment(audio: np.ndarray, kinds: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """One training clip, `(num_samples,)` float32 at 16 kHz, through `kinds` in AUGMENTATIONS order."""
    if not kinds:
        return audio
    x = audio.astype(np.float64)
    if "speed" in kinds:
        factor = SPEEDS[int(rng.integers(len(SPEEDS)))]
        if factor != 1.0:  # factor times faster: read at SAMPLE_RATE * factor, write at SAMPLE_RATE
            x = resample(x.astype(np.float32), int(SAMPLE_RATE * factor), SAMPLE_RATE).astype(np.float64)
    if "reverb" in kinds and rng.random() < 0.5:
        rt60 = rng.uniform(*RT60_S)
        t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
        ir = rng.standard_normal(t.shape[0]) * np.exp(-6.9 * t / rt60) * 0.3
        ir[0] = 1.0
        ir /= np.sqrt(np.sum(ir**2))
        n = 1 << (x.shape[0] + ir.shape[0] - 2).bit_length()  # FFT size for the full linear convolution
        x = np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(ir, n), n)[: x.shape[0]]
    if "noise" in kinds and rng.random() < 0.5:
        power = float(np.mean(x**2))
        snr_db = rng.uniform(*SNR_DB)
        x = x + colored_noise(rng, x.shape[0]) * np.sqrt(power / 10 ** (snr_db / 10))
    if "gain" in kinds:
        x = x * 10 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20)
    return x.astype(np.float32)
