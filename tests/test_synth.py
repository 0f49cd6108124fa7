"""sertrt.data.synth: corpus layouts, labels, manifest, determinism and acted prosody."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sertrt.audio import audio_info
from sertrt.data import synth
from sertrt.data.synth import SynthOptions, synthesize
from sertrt.errors import SertrtError
from sertrt.labels import LABELS
from sertrt.manifest import read_manifest

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

# The real corpora's naming, written out independently of synth.py's tables.
PATTERNS = {
    "emodb": re.compile(
        r"emodb/wav/(?P<spk>03|08|09|10|11|12|13|14|15|16)"
        r"(?P<text>a01|a02|a04|a05|a07|b01|b02|b03|b09|b10)(?P<emo>[WFTN])[ab]\.wav"
    ),
    "emovo": re.compile(
        r"emovo/(?P<spk>[fm][123])/(?P<emo>neu|gio|rab|tri)-(?P=spk)-(?P<text>b[1-3]|l[1-4]|n[1-5]|d[12])\.wav"
    ),
    "tess": re.compile(
        r"tess/(?P<spk>OAF|YAF)_(?P<folder>angry|happy|neutral|sad|Sad)/"
        r"(?P=spk)_(?P<text>[a-z]+)_(?P<emo>angry|happy|neutral|sad)\.wav"
    ),
}
CODE_TO_LABEL = {
    "emodb": {"W": "angry", "F": "happy", "T": "sad", "N": "neutral"},
    "emovo": {"rab": "angry", "gio": "happy", "tri": "sad", "neu": "neutral"},
    "tess": {e: e for e in LABELS},
}
LANGUAGE = {"emodb": "de", "emovo": "it", "tess": "en"}
TESS_FOLDERS = {"OAF_angry", "OAF_happy", "OAF_neutral", "OAF_Sad", "YAF_angry", "YAF_happy", "YAF_neutral", "YAF_sad"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("synth")
    calls = []
    manifest = synthesize(SynthOptions(out=out, seed=0, scale=0.1), progress=lambda d, t: calls.append((d, t)))
    assert manifest == out.resolve() / "manifest.jsonl"
    assert calls and calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == list(range(1, len(calls) + 1))
    return out, read_manifest(manifest)


def _rel(out: Path, path: str) -> str:
    return Path(path).relative_to(out.resolve()).as_posix()


def _f0(audio: np.ndarray, rate: int) -> float:
    """Median autocorrelation pitch of the voiced 40 ms frames, in Hz (60-500 Hz search)."""
    frame, hop = int(0.04 * rate), int(0.01 * rate)
    lo, hi = rate // 500, rate // 60
    level = np.sqrt(np.mean(audio**2))
    pitches = []
    for start in range(0, len(audio) - frame, hop):
        x = audio[start : start + frame] - audio[start : start + frame].mean()
        if np.sqrt(np.mean(x**2)) < 0.3 * level:
            continue
        ac = np.correlate(x, x, "full")[frame - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            pitches.append(rate / lag)
    return float(np.median(pitches))


@needs_espeak
def test_layout_and_labels_match_real_corpora(corpus):
    out, utts = corpus
    listed = {_rel(out, u.path) for u in utts}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.wav")}
    assert listed == on_disk
    for u in utts:
        rel = _rel(out, u.path)
        m = PATTERNS[u.corpus].fullmatch(rel)
        assert m, rel
        assert u.label == CODE_TO_LABEL[u.corpus][m["emo"]], rel
        assert u.speaker == m["spk"] and u.language == LANGUAGE[u.corpus]
        if u.corpus == "tess":
            assert f"{m['spk']}_{m['folder']}" in TESS_FOLDERS and m["folder"].lower() == m["emo"]
    emodb_speakers = {"03", "08", "09", "10", "11", "12", "13", "14", "15", "16"}
    assert {u.speaker for u in utts if u.corpus == "emodb"} == emodb_speakers
    assert {u.speaker for u in utts if u.corpus == "emovo"} == {"f1", "f2", "f3", "m1", "m2", "m3"}
    assert {Path(u.path).parent.name for u in utts if u.corpus == "tess"} == TESS_FOLDERS


@needs_espeak
def test_manifest_rows_are_valid_and_balanced(corpus):
    out, utts = corpus
    assert [u.path for u in utts] == sorted(u.path for u in utts)
    for u in utts:
        rate, frames, channels = audio_info(u.path)
        assert (rate, channels) == (22050, 1) and u.sample_rate == 22050
        assert sf.info(u.path).subtype == "PCM_16"
        assert abs(u.duration - frames / rate) < 1e-3 and 0.5 < u.duration < 15
    for name in PATTERNS:
        counts = Counter(u.label for u in utts if u.corpus == name)
        assert set(counts) == set(LABELS) and len(set(counts.values())) == 1, (name, counts)
    readme = (out / "README.txt").read_text()
    assert "espeak-ng" in readme.lower() and "seed=0" in readme and f"{len(utts)} utterances" in readme


@needs_espeak
def test_prosody_differs_by_emotion(corpus):
    _, utts = corpus
    stats = {label: [] for label in LABELS}
    for u in utts:
        audio, rate = sf.read(u.path, dtype="float32")
        stats[u.label].append((u.duration, float(np.sqrt(np.mean(audio**2))), _f0(audio, rate)))
    dur, rms, f0 = ({k: np.mean([s[i] for s in v]) for k, v in stats.items()} for i in range(3))
    assert dur["sad"] > dur["neutral"] > dur["angry"]
    assert rms["angry"] > rms["neutral"] > rms["sad"] and rms["happy"] > rms["neutral"]
    assert f0["happy"] > f0["neutral"] > f0["sad"] and f0["angry"] > f0["neutral"]


@needs_espeak
def test_same_seed_same_bytes_whatever_the_workers(tmp_path, corpus):
    runs = {}
    for name, seed, workers in (("a", 5, 1), ("b", 5, 3), ("c", 6, 2)):
        out = tmp_path / name
        synthesize(SynthOptions(out=out, seed=seed, languages=("it",), scale=0.1, workers=workers))
        runs[name] = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert runs["a"] == runs["b"]
    assert runs["a"]["manifest.jsonl"] != runs["c"]["manifest.jsonl"]
    shared = set(runs["a"]) & set(runs["c"]) - {"manifest.jsonl", "README.txt"}
    assert all(runs["a"][k] != runs["c"][k] for k in shared)
    # An utterance does not depend on which other languages were spoken beside it.
    out, _ = corpus
    only_de = tmp_path / "de"
    synthesize(SynthOptions(out=only_de, seed=0, languages=("de",), scale=0.1))
    for p in (only_de / "emodb").rglob("*.wav"):
        assert p.read_bytes() == (out / p.relative_to(only_de)).read_bytes()


def test_missing_espeak_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SertrtError) as e:
        synthesize(SynthOptions(out=tmp_path / "out"))
    message = str(e.value)
    assert "\n" not in message and "apt-get install espeak-ng" in message and "brew install espeak-ng" in message
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


@needs_espeak
def test_espeak_failure_names_voice_and_leaves_no_manifest(tmp_path, monkeypatch):
    # espeak ignores an unknown variant, but not an unknown voice.
    broken = dataclasses.replace(synth.EMOVO, speakers=(synth.Speaker("f1", "nosuchvoice", 50, 170),))
    monkeypatch.setitem(synth.CORPORA, "it", broken)
    with pytest.raises(SertrtError, match=r"emovo/f1/.*, voice nosuchvoice\).*does not exist"):
        synthesize(SynthOptions(out=tmp_path, languages=("it",), scale=0.1))
    assert not (tmp_path / "manifest.jsonl").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"languages": ("fr",)}, "valid: de, it, en"),
        ({"scale": 0.0}, "scale"),
        ({"workers": 0}, "workers"),
        ({"seed": -1}, "seed"),
    ],
)
@needs_espeak
def test_bad_options_are_one_line_errors(tmp_path, change, message):
    with pytest.raises(SertrtError, match=message):
        synthesize(SynthOptions(out=tmp_path, **change))
