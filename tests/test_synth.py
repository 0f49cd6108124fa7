"""sertrt.data.synth: corpus layouts, labels, manifests, determinism and acted prosody."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sertrt.core.audio import audio_info
from sertrt.core.errors import SertrtError
from sertrt.core.labels import LABELS
from sertrt.core.manifest import read_manifest
from sertrt.data import synth
from sertrt.data.synth import SynthOptions, synthesize

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
    "savee": re.compile(r"savee/AudioData/(?P<spk>DC|JE|JK|KL)/(?P<emo>n|h|a|sa)(?P<text>\d\d)\.wav"),
    # eNTERFACE'05 with WAV for AVI; the stem's subject part is checked apart (the `s_3_` glitch).
    "enterface": re.compile(
        r"enterface/subject (?P<spk>[1-8])/(?P<folder>anger|happiness|sadness)/sentence (?P<text>[1-5])/"
        r"(?P<stem>s[1-8]|s_[1-8])_(?P<emo>an|ha|sa)_(?P=text)\.wav"
    ),
}
CODE_TO_LABEL = {
    "emodb": {"W": "angry", "F": "happy", "T": "sad", "N": "neutral"},
    "emovo": {"rab": "angry", "gio": "happy", "tri": "sad", "neu": "neutral"},
    "tess": {e: e for e in LABELS},
    "savee": {"a": "angry", "h": "happy", "sa": "sad", "n": "neutral"},
    "enterface": {"an": "angry", "ha": "happy", "sa": "sad"},
}
LANGUAGE = {"emodb": "de", "emovo": "it", "tess": "en", "savee": "en", "enterface": "fr"}
ENTERFACE_FOLDERS = {"an": "anger", "ha": "happiness", "sa": "sadness"}
TRANSFER_LABELS = {"happy", "angry", "sad"}
TESS_FOLDERS = {"OAF_angry", "OAF_happy", "OAF_neutral", "OAF_Sad", "YAF_angry", "YAF_happy", "YAF_neutral", "YAF_sad"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list, list]:
    """Default languages at scale 0.1: (OUT, manifest.jsonl rows, transfer_manifest.jsonl rows)."""
    out = tmp_path_factory.mktemp("synth")
    calls = []
    manifest = synthesize(SynthOptions(out=out, seed=0, scale=0.1), progress=lambda d, t: calls.append((d, t)))
    assert manifest == out.resolve() / "manifest.jsonl"
    assert calls and calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == list(range(1, len(calls) + 1))
    return out, read_manifest(manifest), read_manifest(out / "transfer_manifest.jsonl")


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
    out, train, transfer = corpus
    utts = train + transfer
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
        if u.corpus == "enterface":
            assert m["folder"] == ENTERFACE_FOLDERS[m["emo"]], rel
            assert m["stem"] == ("s_3" if m["spk"] == "3" else f"s{m['spk']}"), rel
    emodb_speakers = {"03", "08", "09", "10", "11", "12", "13", "14", "15", "16"}
    assert {u.speaker for u in utts if u.corpus == "emodb"} == emodb_speakers
    assert {u.speaker for u in utts if u.corpus == "emovo"} == {"f1", "f2", "f3", "m1", "m2", "m3"}
    assert {Path(u.path).parent.name for u in utts if u.corpus == "tess"} == TESS_FOLDERS
    assert {u.speaker for u in utts if u.corpus == "savee"} == {"DC", "JE", "JK", "KL"}
    assert {u.speaker for u in utts if u.corpus == "enterface"} == {str(n) for n in range(1, 9)}
    assert any(Path(u.path).name.startswith("s_3_") for u in utts)


def test_every_training_language_has_six_distinct_voices():
    """Enough voices for a speaker-independent split to mean something: six or more per language, no two alike in
    espeak voice+variant (each variant has its own formants), base pitch and rate."""
    from sertrt.data import synth

    for language, corpora in synth.CORPORA_BY_LANGUAGE.items():
        speakers = [spk for corpus in corpora for spk in corpus.speakers]
        assert len(speakers) >= 6, language
        assert len({spk.voice for spk in speakers}) == len(speakers), language
        assert len({(spk.pitch, spk.wpm) for spk in speakers}) == len(speakers), language


def test_every_corpus_acts_its_labels_with_a_text_for_each():
    """Every label has a style; a training corpus speaks all of LABELS, the held-out one a subset; a text per
    emotion covers exactly the corpus's emotions."""
    assert set(synth.STYLES) == set(LABELS)
    for c in synth.CORPORA.values():
        assert set(c.emotions) <= set(LABELS) and (c.held_out or set(c.emotions) == set(LABELS)), c.name
        assert all(isinstance(t, str) or set(t) == set(c.emotions) for t in c.texts.values()), c.name


@needs_espeak
def test_transfer_manifest_is_separate_and_disjoint(corpus):
    out, train, transfer = corpus
    assert {u.corpus for u in train} == {"emodb", "emovo", "tess", "savee"}
    assert {u.corpus for u in transfer} == {"enterface"} and {u.language for u in transfer} == {"fr"}
    assert {u.label for u in transfer} == TRANSFER_LABELS
    assert not {u.path for u in train} & {u.path for u in transfer}
    assert not {u.speaker for u in train} & {u.speaker for u in transfer}
    # 8 subjects x 3 emotions x 1 of 5 sentences at scale 0.1: every subject keeps every emotion.
    expected = {(str(n), label): 1 for n in range(1, 9) for label in TRANSFER_LABELS}
    assert Counter((u.speaker, u.label) for u in transfer) == expected


@needs_espeak
def test_manifest_rows_are_valid_and_balanced(corpus):
    out, utts, transfer = corpus
    assert [u.path for u in utts] == sorted(u.path for u in utts)
    assert [u.path for u in transfer] == sorted(u.path for u in transfer)
    for u in utts + transfer:
        rate, frames, channels = audio_info(u.path)
        assert (rate, channels) == (22050, 1) and u.sample_rate == 22050
        assert sf.info(u.path).subtype == "PCM_16"
        assert abs(u.duration - frames / rate) < 1e-3 and 0.5 < u.duration < 15
    for name in PATTERNS:
        counts = Counter(u.label for u in utts + transfer if u.corpus == name)
        labels = TRANSFER_LABELS if name == "enterface" else set(LABELS)
        assert set(counts) == labels and len(set(counts.values())) == 1, (name, counts)
    readme = (out / "README.txt").read_text()
    assert "espeak-ng" in readme.lower() and "seed=0" in readme and f"{len(utts)} utterances" in readme
    assert f"{len(transfer)} held-out utterances" in readme and "transfer_manifest.jsonl" in readme


@needs_espeak
def test_prosody_differs_by_emotion(corpus):
    _, utts, transfer = corpus
    for rows in (utts, transfer):
        stats = {label: [] for label in {u.label for u in rows}}
        for u in rows:
            audio, rate = sf.read(u.path, dtype="float32")
            stats[u.label].append((u.duration, float(np.sqrt(np.mean(audio**2))), _f0(audio, rate)))
        dur, rms, f0 = ({k: np.mean([s[i] for s in v]) for k, v in stats.items()} for i in range(3))
        assert dur["sad"] > dur["angry"] and rms["angry"] > rms["sad"] and f0["happy"] > f0["sad"]
        if rows is utts:
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
    shared = set(runs["a"]) & set(runs["c"]) - {"manifest.jsonl", "README.txt", ".sertrt-output.json"}  # the marker says only "synth"
    assert all(runs["a"][k] != runs["c"][k] for k in shared)
    # An utterance does not depend on which other languages were spoken beside it.
    out, _, _ = corpus
    only_de = tmp_path / "de"
    synthesize(SynthOptions(out=only_de, seed=0, languages=("de",), scale=0.1))
    for p in (only_de / "emodb").rglob("*.wav"):
        assert p.read_bytes() == (out / p.relative_to(only_de)).read_bytes()


@needs_espeak
def test_transfer_part_alone_is_deterministic_and_has_no_training_manifest(tmp_path, corpus):
    out, _, transfer = corpus
    only_fr = tmp_path / "fr"
    manifest = synthesize(SynthOptions(out=only_fr, seed=0, languages=("fr",), scale=0.1, workers=3))
    assert manifest == only_fr.resolve() / "transfer_manifest.jsonl"
    assert not (only_fr / "manifest.jsonl").exists()
    # Same seed, other workers and languages: the same bytes as the fixture's eNTERFACE part.
    assert [_rel(only_fr, u.path) for u in read_manifest(manifest)] == [_rel(out, u.path) for u in transfer]
    wavs = sorted(p.relative_to(only_fr) for p in only_fr.rglob("*.wav"))
    assert len(wavs) == len(transfer)
    assert all((only_fr / p).read_bytes() == (out / p).read_bytes() for p in wavs)


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
    monkeypatch.setitem(synth.CORPORA_BY_LANGUAGE, "it", (broken,))
    with pytest.raises(SertrtError, match=r"emovo/f1/.*, voice nosuchvoice\).*does not exist"):
        synthesize(SynthOptions(out=tmp_path, languages=("it",), scale=0.1))
    assert not (tmp_path / "manifest.jsonl").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"languages": ("xx",)}, "valid: de, it, en, fr"),
        ({"scale": 0.0}, "scale"),
        ({"workers": 0}, "workers"),
        ({"seed": -1}, "seed"),
    ],
)
@needs_espeak
def test_bad_options_are_one_line_errors(tmp_path, change, message):
    with pytest.raises(SertrtError, match=message):
        synthesize(SynthOptions(out=tmp_path, **change))


@needs_espeak
def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, cli):
    """libsndfile's answer to a full disk is "System error."; the command says which file, in one line, exit 1."""
    def full(*args, **kwargs):
        raise sf.LibsndfileError(2)  # SF_ERR_SYSTEM: what a write onto a full tmpfs raised

    monkeypatch.setattr(sf, "write", full)
    out = tmp_path / "out"
    result = cli("data", "synth", out, "--languages", "it", "--scale", "0.1", "--workers", "1")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert re.fullmatch(rf"error: {re.escape(str(out))}/emovo/\S+\.wav: could not write .*System error.*", lines[0])
    assert not (out / "manifest.jsonl").exists() and not list(out.rglob("*.wav"))
