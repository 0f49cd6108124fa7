"""sertrt.data.prepare on the generated corpus trees of tests/test_corpora.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
from test_corpora import (
    EMODB_KEPT,
    EMODB_SPEAKERS,
    EMOVO_KEPT,
    IEMOCAP_KEPT,
    make_emodb,
    make_emovo,
    make_enterface,
    make_iemocap,
    make_savee,
    make_tess,
    write_audio,
)

from sertrt.core.errors import SertrtError
from sertrt.core.manifest import read_manifest
from sertrt.data.prepare import PrepareOptions, prepare


def run(corpora: dict[str, Path], out: Path, **kwargs):
    """prepare() with warnings captured: (report, [warning messages])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = prepare(PrepareOptions(corpora=corpora, out=out, **kwargs))
    return report, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Every corpus but EMA (its adapter is covered in test_corpora), prepared once."""
    src = tmp_path_factory.mktemp("corpora")
    corpora = {
        "iemocap": make_iemocap(src / "IEMOCAP_full_release"),
        "emodb": make_emodb(src / "emodb"),
        "tess": make_tess(src / "TESS"),
        "savee": make_savee(src / "SAVEE"),
        "emovo": make_emovo(src / "EMOVO"),
        "enterface": make_enterface(src / "enterface"),
    }
    out = tmp_path_factory.mktemp("prepared")
    calls = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = prepare(PrepareOptions(corpora, out, workers=3), progress=lambda *args: calls.append(args))
    return corpora, out, report, [str(w.message) for w in caught], calls


def test_manifests_counts_and_fields(prepared):
    corpora, out, report, _, calls = prepared
    expected = {
        "iemocap": IEMOCAP_KEPT,
        "emodb": EMODB_KEPT,
        "tess": {"neutral": 1, "happy": 1, "angry": 1, "sad": 2},
        "savee": {"neutral": 1, "happy": 1, "angry": 2, "sad": 1},
        "emovo": EMOVO_KEPT,
        "enterface": {"neutral": 0, "happy": 4, "angry": 5, "sad": 5},
    }
    languages = {"iemocap": "en", "emodb": "de", "tess": "en", "savee": "en", "emovo": "it", "enterface": "en"}
    for name, counts in expected.items():
        utts = read_manifest(out / f"{name}_manifest.jsonl")
        labels = Counter(u.label for u in utts)
        assert {label: labels[label] for label in counts} == counts, name
        assert {u.corpus for u in utts} == {name} and {u.language for u in utts} == {languages[name]}
        for u in utts:
            assert Path(u.original_path).is_absolute() and Path(u.original_path).is_file()
            assert Path(u.original_path).is_relative_to(corpora[name])
            assert Path(u.path).is_relative_to(out / "audio" / name)
            assert u.sample_rate == 16000 and 0.09 < u.duration < 0.31
            assert (u.session is not None) == (name == "iemocap")
    emodb = read_manifest(out / "emodb_manifest.jsonl")
    assert sorted({u.speaker for u in emodb}) == list(EMODB_SPEAKERS)
    by_source = {Path(u.original_path).name: u for u in emodb}
    assert by_source["03a01Ea.wav"].label == "angry"
    assert by_source["03a01Ea.wav"].path == str(out / "audio/emodb/wav/03a01Ea.wav")
    iemocap = {Path(u.original_path).stem: u for u in read_manifest(out / "iemocap_manifest.jsonl")}
    assert iemocap["Ses01F_impro01_F001"].label == "happy"  # exc
    assert iemocap["Ses01F_impro01_M000"].speaker == "01M" and iemocap["Ses01F_impro01_M000"].session == "Session1"
    assert iemocap["Ses03M_script01_1_F000"].session == "Session3"
    enterface = read_manifest(out / "enterface_manifest.jsonl")
    assert sorted({u.speaker for u in enterface}, key=int) == ["1", "3", "6", "11", "16"]
    assert calls[-1] == (report_total := sum(sum(v.values()) for v in expected.values()), report_total)


def test_cache_is_16k_mono_16bit(prepared):
    _, out, _, _, _ = prepared
    files = sorted((out / "audio").rglob("*.wav"))
    assert len(files) == 60  # every kept utterance, nothing else
    for path in files:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    # a stereo 0.1 s source at 16 kHz and a 0.2 s one at TESS's 24414 Hz
    stereo = out / "audio/iemocap/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
    assert sf.info(str(stereo)).frames == 1600
    assert abs(sf.info(str(out / "audio/tess/YAF_happy/YAF_dog_happy.wav")).frames - 3200) <= 1


def test_mixed_manifest_excludes_enterface(prepared):
    _, out, report, _, _ = prepared
    mixed = read_manifest(out / "manifest.jsonl")
    assert {u.corpus for u in mixed} == {"iemocap", "emodb", "tess", "savee", "emovo"}
    assert len(mixed) == 13 + 14 + 5 + 5 + 9
    assert report.manifest == "manifest.jsonl" and "enterface" not in report.mixed


def test_report_json_and_markdown(prepared):
    _, out, report, messages, _ = prepared
    data = json.loads((out / "prepare_report.json").read_text())
    assert data == json.loads(json.dumps(report.to_dict()))
    corpora = {c["name"]: c for c in data["corpora"]}
    assert list(corpora) == ["iemocap", "emodb", "tess", "savee", "emovo", "enterface"]
    assert corpora["emodb"]["found"] == 16 and corpora["emodb"]["dropped"] == {"A": 1, "L": 1}
    assert corpora["emodb"]["kept"] == EMODB_KEPT and corpora["emodb"]["unreadable"] == []
    assert corpora["iemocap"]["dropped"] == {"fru": 1, "oth": 4, "xxx": 1}
    assert corpora["iemocap"]["sessions"] == {"Session1": 5, "Session2": 2, "Session3": 2, "Session4": 2, "Session5": 2}
    assert corpora["tess"]["speakers"] == {"OAF": 2, "YAF": 3}
    assert corpora["enterface"]["dropped"] == {"disgust": 4, "fear": 4, "surprise": 4}
    assert corpora["enterface"]["manifest"] == "enterface_manifest.jsonl" and not corpora["enterface"]["in_mix"]
    assert any("subject 6: 2" in w for w in corpora["enterface"]["warnings"])
    assert any(m.startswith("enterface: 1 incomplete subject(s)") for m in messages)
    assert all(c["converted"] == sum(c["kept"].values()) and c["reused"] == 0 for c in corpora.values())
    md = (out / "prepare_report.md").read_text()
    assert "## EmoDB (`emodb`, de)" in md and "| `A` | 1 |" in md and "| angry | 2 |" in md


def test_rerun_reuses_the_cache_and_writes_identical_manifests(prepared, tmp_path):
    corpora, out, _, _, _ = prepared
    out2 = tmp_path / "again"
    shutil.copytree(out, out2)
    manifests = sorted(out.glob("*manifest.jsonl"))
    stamps = {p: p.stat().st_mtime_ns for p in (out2 / "audio").rglob("*.wav")}
    report, _ = run(corpora, out2)
    assert all(c.converted == 0 and c.reused == sum(c.kept.values()) for c in report.corpora)
    assert {p: p.stat().st_mtime_ns for p in (out2 / "audio").rglob("*.wav")} == stamps
    for path in manifests:
        # paths in manifests are relative to OUT, so a copied OUT gives byte-identical manifests
        assert (out2 / path.name).read_bytes() == path.read_bytes(), path.name


def test_changed_source_is_converted_again(tmp_path):
    root = make_emodb(tmp_path / "emodb")
    out = tmp_path / "out"
    run({"emodb": root}, out)
    write_audio(root / "wav/03a01Wa.wav", 48000, 0.25)
    report, _ = run({"emodb": root}, out)
    assert (report.corpora[0].converted, report.corpora[0].reused) == (1, 13)
    utt = next(u for u in read_manifest(out / "emodb_manifest.jsonl") if u.original_path.endswith("03a01Wa.wav"))
    assert utt.duration == 0.25


def test_unreadable_files_are_reported_not_skipped_silently(tmp_path):
    root = make_emodb(tmp_path / "emodb")
    (root / "wav/09a04Wa.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    (root / "wav/10a04Ta.wav").write_bytes(b"")
    report, messages = run({"emodb": root}, tmp_path / "out")
    corpus = report.corpora[0]
    assert [Path(u["path"]).name for u in corpus.unreadable] == ["09a04Wa.wav", "10a04Ta.wav"]
    assert all(u["error"].startswith(u["path"]) for u in corpus.unreadable)
    assert corpus.found == 18 and corpus.kept == EMODB_KEPT  # the two are not in the manifest
    assert len(read_manifest(tmp_path / "out/emodb_manifest.jsonl")) == 14
    assert [m for m in messages if "unreadable" in m] == [
        f"2 unreadable file(s) skipped (emodb 2): listed in {tmp_path / 'out/prepare_report.md'}"
    ]
    assert "Unreadable files (2, not in the manifest)" in (tmp_path / "out/prepare_report.md").read_text()


def test_partial_corpus_errors_unless_allowed(tmp_path):
    root = make_emodb(tmp_path / "emodb", speakers=EMODB_SPEAKERS[:8])
    out = tmp_path / "out"
    message = r"^emodb: partial corpus: 8 of 10 EmoDB speakers \(missing 15, 16\) \(use --allow-partial"
    with pytest.raises(SertrtError, match=message):
        prepare(PrepareOptions({"emodb": root}, out))
    assert "8 of 10 EmoDB speakers" in json.loads((out / "prepare_report.json").read_text())["error"]
    assert not (out / "emodb_manifest.jsonl").exists()
    report, messages = run({"emodb": root}, out, allow_partial=True)
    assert messages == ["emodb: partial corpus: 8 of 10 EmoDB speakers (missing 15, 16)"]
    assert report.corpora[0].partial == ["8 of 10 EmoDB speakers (missing 15, 16)"] and report.error is None
    assert len(read_manifest(out / "emodb_manifest.jsonl")) == 12


def test_bad_options(tmp_path):
    valid = r"\(valid: iemocap, emodb, tess, savee, ema, emovo, enterface\)"
    with pytest.raises(SertrtError, match=rf"unknown corpus 'emodbb' {valid}"):
        prepare(PrepareOptions({"emodbb": tmp_path}, tmp_path / "out"))
    with pytest.raises(SertrtError, match=r"no EmoDB files .* under"):
        prepare(PrepareOptions({"emodb": make_tess(tmp_path / "tess")}, tmp_path / "out"))
    with pytest.raises(SertrtError, match="does not exist"):
        prepare(PrepareOptions({"savee": tmp_path / "missing"}, tmp_path / "out"))
    with pytest.raises(SertrtError, match="no corpus given"):
        prepare(PrepareOptions({}, tmp_path / "out"))


def test_ema_options_reach_the_adapter(tmp_path):
    root = tmp_path / "ema"
    for rel in ("spk1_A01.wav", "spk1_S01.wav", "spk2_H01.wav"):
        write_audio(root / rel, 22050)
    report, _ = run({"ema": root}, tmp_path / "out", ema_pattern=r"(?P<speaker>spk\d)_(?P<emotion>[A-Z])\d+",
                    ema_labels={"A": "angry", "S": "sad"})
    assert report.corpora[0].kept == {"neutral": 0, "happy": 0, "angry": 1, "sad": 1}
    assert report.corpora[0].dropped == {"h": 1}


def make_avi(path: Path, seconds: float = 0.3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc=size=32x32:rate=5:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
           "-ac", "2", "-c:v", "mjpeg", "-c:a", "pcm_s16le", "-shortest", "-f", "avi", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_enterface_audio_is_extracted_from_avi(tmp_path):
    root = make_enterface(tmp_path / "enterface")
    make_avi(root / "subject 2/anger/sentence 1/s2_an_1.avi")
    make_avi(root / "subject 2/sadness/sentence 1/s2_sa_1avi")  # the dotless name glitch
    report, _ = run({"enterface": root}, tmp_path / "out")
    assert report.corpora[0].unreadable == []
    utts = {Path(u.original_path).name: u for u in read_manifest(tmp_path / "out/enterface_manifest.jsonl")}
    for name, cached in (("s2_an_1.avi", "s2_an_1.wav"), ("s2_sa_1avi", "s2_sa_1avi.wav")):
        assert Path(utts[name].path).name == cached and utts[name].speaker == "2"
        assert abs(utts[name].duration - 0.3) < 0.03
        assert sf.info(utts[name].path).samplerate == 16000


def test_avi_without_ffmpeg_is_one_clear_error(tmp_path, monkeypatch):
    root = make_enterface(tmp_path / "enterface")
    (root / "subject 2/anger/sentence 1").mkdir(parents=True)
    (root / "subject 2/anger/sentence 1/s2_an_1.avi").write_bytes(b"RIFF....AVI ")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SertrtError, match=r"^enterface: 1 AVI file\(s\) need ffmpeg .*install it"):
        run({"enterface": root}, tmp_path / "out")
