import json

import pytest

from sertrt.core.errors import SertrtError
from sertrt.core.manifest import read_manifest, write_manifest


def rows(manifest):
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def write_rows(path, rows_):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows_))


def test_round_trip_with_relative_paths(tone_corpus, tmp_path):
    utts = read_manifest(tone_corpus)
    assert len(utts) == 24 and {u.label for u in utts} == {"neutral", "happy", "angry", "sad"}
    assert all(not r["path"].startswith("/") for r in rows(tone_corpus))  # portable
    copy = tone_corpus.parent / "copy.jsonl"
    write_manifest(copy, utts)
    assert read_manifest(copy) == utts


def test_paths_relative_to_the_current_folder_round_trip(tone_corpus, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    (tmp_path / "data").mkdir()
    utt = read_manifest(tone_corpus)[0]
    shutil.copy(utt.path, tmp_path / "data" / "a.wav")
    monkeypatch.chdir(tmp_path)
    for manifest in ("data/m.jsonl", "m.jsonl", "sub/m.jsonl"):
        write_manifest(manifest, [dataclasses.replace(utt, path="data/a.wav")])
        assert read_manifest(manifest)[0].path == str((tmp_path / "data" / "a.wav").resolve())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(label="bored"), "unknown label 'bored'"),
        (lambda r: r.update(path="missing.wav"), "does not exist"),
        (lambda r: r.pop("speaker"), "missing field"),
        (lambda r: r.update(duration="long"), "field 'duration' is \"long\", not an integer or a number"),
        (lambda r: r.update(path=None), "field 'path' is null, not a string"),  # a TypeError deep inside once
        (lambda r: r.update(label=3), "field 'label' is 3, not a string"),
        (lambda r: r.update(sample_rate=True), "field 'sample_rate' is true, not an integer"),
        (lambda r: r.update(sample_rate=0), "sample_rate > 0"),
        (lambda r: r.update(path=""), "field 'path' is empty"),
    ],
)
def test_errors_name_the_line(tone_corpus, tmp_path, change, message):
    rs = rows(tone_corpus)
    for r in rs:
        r["path"] = str(tone_corpus.parent / r["path"])
    change(rs[2])
    bad = tmp_path / "bad.jsonl"
    write_rows(bad, rs)
    with pytest.raises(SertrtError, match=rf"bad\.jsonl:3: .*{message}"):
        read_manifest(bad)


def test_unreadable_audio_and_bad_json(tone_corpus, tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"junk" * 100)
    bad = tmp_path / "bad.jsonl"
    write_rows(bad, [dict(path=str(junk), label="sad", corpus="c", language="en", speaker="s", duration=1.0, sample_rate=16000)])
    with pytest.raises(SertrtError, match=r"bad\.jsonl:1: .*junk\.wav: cannot read audio header"):
        read_manifest(bad)
    bad.write_text("{not json\n")
    with pytest.raises(SertrtError, match=r"bad\.jsonl:1: not valid JSON"):
        read_manifest(bad)


def test_failed_write_keeps_the_old_manifest(tone_corpus, tmp_path, monkeypatch):
    from pathlib import Path

    target = tmp_path / "m.jsonl"
    utts = read_manifest(tone_corpus)
    write_manifest(target, utts[:3])
    before = target.read_bytes()

    def disk_full(self, text, encoding=None):
        with open(self, "w") as f:
            f.write(text[:10])
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError):
        write_manifest(target, utts)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]  # no temp file left behind


def test_written_files_get_normal_permissions(tone_corpus, tmp_path):
    import os

    mask = os.umask(0)
    os.umask(mask)
    target = tmp_path / "m.jsonl"
    write_manifest(target, read_manifest(tone_corpus)[:2])
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
