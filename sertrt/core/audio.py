"""Audio I/O and the signal constants every stage shares (numpy only: the runtime imports this).

All models see mono float32 audio at SAMPLE_RATE in [-1, 1]. Shapes: `(num_samples,)` for one
utterance, `(B, num_samples)` for a batch, `(B,)` int64 lengths beside it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SertrtError


def exact_div(x: int, y: int) -> int:
    assert x % y == 0, f"{x} is not a multiple of {y}"
    return x // y


SAMPLE_RATE = 16000
FRAME_STRIDE = 320  # wav2vec2's conv stack: strides 5*2*2*2*2*2*2 = 320 samples, 20 ms
RECEPTIVE_FIELD = 400  # one wav2vec2 frame sees 400 samples (25 ms): the shortest useful input
FRAMES_PER_SECOND = exact_div(SAMPLE_RATE, FRAME_STRIDE)  # 50 frames/s

FBANK_WINDOW = 400  # 25 ms Hamming window for the Fbank/MFCC baselines
FBANK_HOP = 160  # 10 ms hop
FBANK_FFT = 512

WINDOW_SECONDS = 2.0  # streaming defaults (runtime): 2 s windows every 0.5 s
HOP_SECONDS = 0.5


def seconds_to_samples(seconds: float, rate: int = SAMPLE_RATE) -> int:
    """The one rounding from seconds to samples (nearest): streams, parity and bundle cards all use it."""
    return int(round(seconds * rate))


WINDOW_SAMPLES = seconds_to_samples(WINDOW_SECONDS)  # 32000
HOP_SAMPLES = seconds_to_samples(HOP_SECONDS)  # 8000
assert exact_div(WINDOW_SAMPLES, HOP_SAMPLES) == 4


def pad_batch(clips: list[np.ndarray], min_samples: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clips `(n_i,)` -> waveform (B, num_samples) float32 zero-padded to the longest clip (and to at least
    `min_samples`), lengths (B,) int64: the valid samples of each row."""
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    waveform = np.zeros((len(clips), max(int(lengths.max()), min_samples)), dtype=np.float32)
    for row, clip in enumerate(clips):
        waveform[row, : len(clip)] = clip
    return waveform, lengths


def run_batched(lengths: Sequence[float], load: Callable[[int], np.ndarray],
                run: Callable[[np.ndarray, np.ndarray], np.ndarray], batch_size: int, min_samples: int = 0,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Rows of `run(waveform (B, num_samples), lengths (B,))` for the clips `load(i)`, i < len(lengths), stacked
    in input order. Clips go `batch_size` at a time in order of `lengths` (less padding), each loaded when its
    batch runs (memory holds one batch). `progress(done, total)` before each batch and at the end."""
    order = np.argsort(lengths, kind="stable")
    out = np.empty((0,), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        if progress is not None:
            progress(start, len(order))
        rows = order[start : start + batch_size]
        result = np.asarray(run(*pad_batch([load(int(i)) for i in rows], min_samples)))
        if start == 0:
            out = np.empty((len(order), *result.shape[1:]), dtype=result.dtype)
        out[rows] = result
    if progress is not None:
        progress(len(order), len(order))
    return out


def resample(audio: np.ndarray, orig_rate: int, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of `(num_samples,)` float32 audio (soxr, high quality)."""
    if orig_rate == rate:
        return audio
    import soxr

    return soxr.resample(audio, orig_rate, rate, quality="HQ").astype(np.float32, copy=False)


def colored_noise(rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """Unit-power mix of white and 1/f noise: `(num_samples,)` float64. Pink alone sounds like rumble."""
    white = rng.standard_normal(num_samples)
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    pink = np.fft.irfft(spectrum, num_samples)
    pink /= pink.std() + 1e-12
    return (white + pink) / np.sqrt(2)


MAX_CHANNELS = 8  # a 2-D array's axis of 1-8 is its channels (no audio is 8 samples long), the other its samples


def as_mono(audio: Any, where: str, channels_first: bool | None = None, rate: int | None = None,
            offset: int = 0) -> np.ndarray:
    """An array of audio as float32 mono `(num_samples,)`: the one door every array passes.

    2-D arrays are averaged over channels, `(num_samples, channels)` or `(channels, num_samples)`: the axis of 1 to
    MAX_CHANNELS says which, and when both or neither are that small, `channels_first` must. Integers are scaled
    to [-1, 1) (unsigned ones centred first); floats are taken as they are. SertrtError naming `where` for another
    shape or dtype, or NaN/Inf samples (their time given `rate`, counted from `offset` earlier samples).
    """
    x = np.asarray(audio)
    if x.dtype.kind not in "iuf":
        raise SertrtError(f"{where}: audio must be float or integer samples, got dtype {x.dtype}")
    if x.ndim == 2:
        if channels_first is None:
            small = [1 <= d <= MAX_CHANNELS for d in x.shape]
            if small[0] == small[1]:
                raise SertrtError(f"{where}: shape {x.shape} is ambiguous (which axis is channels?): pass "
                                  "channels_first=True for (channels, num_samples) or False for (num_samples, channels)")
            channels_first = small[0]
        x = x.T if channels_first else x
        if x.shape[1] == 0:  # the mean of no channels is NaN
            raise SertrtError(f"{where}: shape {audio.shape} with channels_first={channels_first} has no channels")
    elif x.ndim != 1:
        raise SertrtError(f"{where}: audio must be (num_samples,) or 2-D with channels, got shape {x.shape}")
    if x.dtype.kind == "f":
        check_finite(x, where, rate, offset)  # before any arithmetic: a signalling NaN would make numpy warn
    else:  # before the downmix: a mean of integers is float64 still at their scale
        half = 2.0 ** (8 * x.dtype.itemsize - 1)
        x = (x.astype(np.float64) - (half if x.dtype.kind == "u" else 0.0)) / half
    return (x.mean(axis=1) if x.ndim == 2 else x).astype(np.float32, copy=False)


def check_finite(audio: np.ndarray, where: str, rate: int | None = None, offset: int = 0) -> None:
    """SertrtError naming `where`, how many samples of `audio` `(num_samples, ...)` are NaN/Inf and (given `rate`)
    when the first one is, counting `offset` earlier samples."""
    finite = np.isfinite(audio)
    if not finite.all():
        bad = ~finite if finite.ndim == 1 else ~finite.all(axis=tuple(range(1, finite.ndim)))
        first = offset + int(np.argmax(bad))
        at = f", the first at {first / rate:.3f} s (sample {first})" if rate else f", the first at sample {first}"
        raise SertrtError(f"{where}: audio has {int((~finite).sum())} NaN/Inf samples{at}")


def load_audio(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any soundfile-readable file as mono float32 `(num_samples,)` at `rate`, downmixed and resampled.
    Unreadable, empty or non-finite audio is a SertrtError naming the file."""
    import soundfile as sf

    with open_audio(path) as f:
        orig_rate = f.samplerate
        try:
            audio = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as e:
            raise SertrtError(f"{path}: cannot read audio ({str(e).strip().splitlines()[-1]})") from None
    check_finite(audio, str(path), orig_rate)
    return resample(audio.mean(axis=1, dtype=np.float32), orig_rate, rate)  # (num_samples, channels): downmixed


def open_audio(path: str | Path):
    """An open soundfile.SoundFile, after the checks every command makes: a missing, unreadable or empty file, or
    a float file holding NaN/Inf samples, is a SertrtError naming it; a truncated WAV is a warning."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise SertrtError(f"{path}: no such audio file")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise SertrtError(f"{path}: cannot read audio ({str(e).strip().splitlines()[-1]})") from None
    if f.frames == 0:
        f.close()
        raise SertrtError(f"{path}: audio is empty (0 samples)")
    _warn_if_truncated(path, f.frames)
    if f.subtype in ("FLOAT", "DOUBLE"):  # only float files can hold NaN/Inf: refused before any output, memory flat
        try:
            done, block = 0, 10 * f.samplerate
            while len(data := f.read(block, dtype="float32", always_2d=True)):
                check_finite(data, str(path), f.samplerate, done)
                done += len(data)
            f.seek(0)
        except SertrtError:
            f.close()
            raise
    return f


def _warn_if_truncated(path: Path, frames: int) -> None:
    """libsndfile quietly reads what a cut-off WAV still holds; say so, since it is usually a bad copy."""
    import wave

    if path.suffix.lower() != ".wav":
        return
    try:
        with wave.open(str(path)) as w:
            declared = w.getnframes()
    except (wave.Error, EOFError, OSError):
        return  # not plain PCM WAV (float, extensible): nothing to compare with
    if declared > frames:
        warnings.warn(f"{path}: truncated WAV: header declares {declared} samples, file holds {frames}; using {frames}")


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(sample_rate, num_samples, channels) from the header alone; SertrtError if unreadable."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise SertrtError(f"{path}: cannot read audio header ({str(e).strip().splitlines()[-1]})") from None
    return int(info.samplerate), int(info.frames), int(info.channels)


def write_wav(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """Write 16-bit PCM WAV (what the real corpora ship), atomically: a kill mid-write keeps the old file."""
    import soundfile as sf

    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
