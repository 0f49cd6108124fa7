"""The VAD comparison of benchmarks/results/vad.md: energy gate vs WebRTC vs Silero on synthetic scenes.

    .venv/bin/python scripts/vad_table.py [--scenes 6] [--seed 0]

A scene is about 30 s at 16 kHz: espeak-ng sentences (en, de, it; -20 dBFS) between silences of 0.3-2 s and
music-like tone passages (chords of harmonic notes with vibrato, -20 dBFS, 1-2.5 s), then continuous
white + 1/f noise at an SNR to the speech (clean, 20, 10, 5, 0 dB). Ground truth per sample: speech where the
clean sentence's 10 ms frames are within 35 dB of its loudest (so the pauses between phrases are not speech).
Each detector frame is speech in truth when most of its samples are. Scored: precision and recall of speech
frames, and the stream's gate on 2 s windows every 0.5 s (`--min-speech 0.3`): the share of windows with
real speech (>= 30% of samples) that are kept, and of windows without any that are dropped. Cost: detector time
per second of audio (median of 3 passes, one thread). Needs espeak-ng, webrtcvad-wheels and silero-vad.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sertrt.core import atomic  # noqa: E402
from sertrt.core.audio import SAMPLE_RATE, colored_noise, resample  # noqa: E402
from sertrt.runtime.stream import window_starts  # noqa: E402
from sertrt.runtime.vad import make_vad  # noqa: E402

SENTENCES = [
    ("en", "The kettle was left on the back of the stove."), ("en", "We counted the boxes twice before lunch."),
    ("de", "Die Tasse steht neben dem blauen Teller."), ("de", "Am Montag bringt sie die Bücher zurück."),
    ("it", "Il treno parte alle nove."), ("it", "La riunione di giovedì è stata spostata."),
    ("en", "Every Tuesday the market opens an hour later."), ("de", "Heute Abend gibt es Kartoffeln und Brot."),
]
VOICES = {"en": ["en+m3", "en+f2"], "de": ["de+m2", "de+f4"], "it": ["it+m5", "it+f3"]}
CONDITIONS = (None, 20.0, 10.0, 5.0, 0.0)  # SNR in dB; None: no noise
DETECTORS = ("energy", "webrtc", "silero")
WINDOW, HOP, MIN_SPEECH = 2 * SAMPLE_RATE, SAMPLE_RATE // 2, 0.3


def speak(text: str, voice: str, pitch: int, rate: int) -> np.ndarray:
    import io

    import soundfile as sf

    out = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate), "--stdout", text],
                         capture_output=True, check=True).stdout
    audio, sr = sf.read(io.BytesIO(out), dtype="float32")
    return resample(audio, sr, SAMPLE_RATE)


def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return (x * 10 ** (dbfs / 20) / (np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)).astype(np.float32)


def active(x: np.ndarray) -> np.ndarray:
    """Per sample: inside a 10 ms frame within 35 dB of the sentence's loudest."""
    hop = SAMPLE_RATE // 100
    n = len(x) // hop
    e = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-12)
    flags = np.repeat(e > e.max() - 35, hop)
    return np.concatenate([flags, np.zeros(len(x) - len(flags), dtype=bool)])


def tones(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A short melody: chords of 3 harmonic notes with vibrato, a note every 0.25-0.5 s."""
    out = []
    while sum(len(o) for o in out) < seconds * SAMPLE_RATE:
        n = int(rng.uniform(0.25, 0.5) * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        root = 110 * 2 ** (rng.integers(0, 24) / 12)
        note = sum(np.sin(2 * np.pi * f * root * t + 0.3 * np.sin(2 * np.pi * 5 * t)) / h
                   for f in (1.0, 1.26, 1.5) for h in (1,))
        note = note + 0.5 * np.sin(4 * np.pi * root * t)
        out.append(note * np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02))
    return np.concatenate(out)[: int(seconds * SAMPLE_RATE)].astype(np.float32)


def scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """(audio, speech truth per sample, speech power) of one clean scene."""
    parts, truth = [], []
    for k in rng.permutation(len(SENTENCES))[:6]:
        language, text = SENTENCES[k]
        silence = np.zeros(int(rng.uniform(0.3, 2.0) * SAMPLE_RATE), dtype=np.float32)
        voice = VOICES[language][int(rng.integers(2))]
        speech = level(speak(text, voice, int(rng.integers(30, 70)), int(rng.integers(150, 185))), -20)
        parts += [silence, speech]
        truth += [np.zeros(len(silence), dtype=bool), active(speech)]
        if rng.random() < 0.6:
            music = level(tones(rng, rng.uniform(1.0, 2.5)), -20)
            parts.append(music)
            truth.append(np.zeros(len(music), dtype=bool))
    audio, truth_all = np.concatenate(parts), np.concatenate(truth)
    return audio, truth_all, float(np.mean(audio[truth_all].astype(np.float64) ** 2))


def score(vad, audio: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    flags = vad.frames(audio)
    f = vad.frame_samples
    real = truth[: len(flags) * f].reshape(len(flags), f).mean(1) > 0.5
    tp = float(np.sum(flags & real))
    kept = dropped = speech_windows = empty_windows = 0
    for start, end in window_starts(len(audio), WINDOW, HOP):
        share = truth[start:end].mean()
        verdict = vad.speech_share(audio[start:end]) >= MIN_SPEECH
        if share >= 0.3:
            speech_windows += 1
            kept += verdict
        elif share == 0:
            empty_windows += 1
            dropped += not verdict
    return {"precision": tp / max(flags.sum(), 1), "recall": tp / max(real.sum(), 1),
            "windows_kept": kept / max(speech_windows, 1), "empty_windows_dropped": dropped / max(empty_windows, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("error: espeak-ng not found (apt-get install espeak-ng)")
    rng = np.random.default_rng(args.seed)
    scenes = [scene(rng) for _ in range(args.scenes)]
    vads = {name: make_vad(name) for name in DETECTORS}
    rows = []
    for snr in CONDITIONS:
        noisy = []
        for audio, truth, power in scenes:
            x = audio.astype(np.float64)
            if snr is not None:
                x = x + colored_noise(rng, len(x)) * np.sqrt(power / 10 ** (snr / 10))
            noisy.append((np.clip(x, -1, 1).astype(np.float32), truth))
        for name, vad in vads.items():
            per = [score(vad, a, t) for a, t in noisy]
            rows.append({"condition": "clean" if snr is None else f"{snr:g} dB SNR", "vad": name,
                         **{k: float(np.mean([p[k] for p in per])) for k in per[0]}})
            print(rows[-1], flush=True)
    seconds = sum(len(a) for a, _, _ in scenes) / SAMPLE_RATE
    cost = {}
    for name, vad in vads.items():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            for audio, _, _ in scenes:
                vad.frames(audio)
            times.append(time.perf_counter() - t0)
        cost[name] = 1000 * float(np.median(times)) / seconds
    result = {"command": "python scripts/vad_table.py " + " ".join(sys.argv[1:]), "scenes": args.scenes,
              "seconds": seconds, "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
              "rows": rows, "ms_per_audio_second": cost}
    lines = ["# Voice-activity gates on synthetic scenes", "",
             f"`{result['command']}`: {args.scenes} scenes, {seconds:.0f} s of audio (espeak-ng speech in en/de/it between "
             "silences and music-like tone passages, then noise at each SNR). Frames: precision / recall of speech "
             f"frames. Windows: 2 s every 0.5 s gated at `--min-speech {MIN_SPEECH}`; kept = windows that hold speech "
             "(>= 30% of samples) and are scored, dropped = windows without any speech that skip inference.", "",
             "| condition | VAD | frame precision | frame recall | speech windows kept | empty windows dropped |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['condition']} | {r['vad']} | {r['precision']:.2f} | {r['recall']:.2f} | "
                     f"{r['windows_kept']:.0%} | {r['empty_windows_dropped']:.0%} |")
    lines += ["", "| VAD | ms per second of audio (one thread) |", "|---|---|"]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in cost.items()]
    lines += ["", "energy: today's level gate per 30 ms frame (-50 dBFS). webrtc: webrtcvad-wheels, aggressiveness 3. "
              "silero: Silero VAD v6's ONNX model (silero_vad.onnx) in ONNX Runtime, threshold 0.5. Synthetic speech "
              "and tones: a check of the gate's behaviour, not a VAD benchmark on real recordings."]
    args.results.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.results / "vad.json", json.dumps(result, indent=1) + "\n")
    atomic.write_text(args.results / "vad.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
