import json
from collections import Counter

import pytest

from sertrt.core.errors import SertrtError
from sertrt.core.manifest import Utterance
from sertrt.data.protocol import (
    ProtocolOptions,
    make_folds,
    read_protocol,
    write_protocol,
)


def corpus(speakers=6, per=10, sessions=False):
    return [
        Utterance(f"/x/{c}-{s}-{label}-{i}.wav", label, c, "en", f"s{s}", 1.0, 16000,
                  session=f"Session{s % 5 + 1}" if sessions else None)
        for c in ("a", "b")
        for s in range(speakers)
        for label in ("neutral", "happy", "angry", "sad")
        for i in range(per)
    ]


def key(u):
    return u.path


def test_random_protocol_is_the_papers():
    utts = corpus()
    folds = make_folds(utts, ProtocolOptions(manifest="m", out="o", folds=5, seed=3))
    assert len(folds) == 5
    test = {key(u) for u in folds[0]["test"]}
    assert len(test) == 0.2 * len(utts)
    assert all({key(u) for u in f["test"]} == test for f in folds)  # one fixed test part
    valids = [{key(u) for u in f["valid"]} for f in folds]
    assert set().union(*valids) == {key(u) for u in utts} - test  # folds cover the train part
    assert sum(len(v) for v in valids) == len(utts) - len(test)  # and do not overlap
    for f in folds:
        assert not {key(u) for u in f["train"]} & ({key(u) for u in f["valid"]} | test)
        counts = Counter((u.corpus, u.label) for u in f["valid"])
        assert max(counts.values()) - min(counts.values()) <= 1  # stratified
    again = make_folds(utts, ProtocolOptions(manifest="m", out="o", folds=5, seed=3))
    assert [[key(u) for u in f["valid"]] for f in again] == [[key(u) for u in f["valid"]] for f in folds]


def test_speaker_protocol_never_shares_a_speaker():
    folds = make_folds(corpus(speakers=12), ProtocolOptions(manifest="m", out="o", protocol="speaker", folds=5))
    spk = lambda us: {(u.corpus, u.speaker) for u in us}  # noqa: E731
    for f in folds:
        assert not spk(f["train"]) & spk(f["valid"])
        assert not (spk(f["train"]) | spk(f["valid"])) & spk(f["test"])
    with pytest.raises(SertrtError, match="too few for 5 speaker folds"):
        make_folds(corpus(speakers=5), ProtocolOptions(manifest="m", out="o", protocol="speaker", folds=5))


def test_session_protocol_is_leave_one_session_out():
    folds = make_folds(corpus(speakers=10, sessions=True), ProtocolOptions(manifest="m", out="o", protocol="session"))
    assert len(folds) == 5
    for k, f in enumerate(folds):
        assert {u.session for u in f["test"]} == {f"Session{k + 1}"}
        assert f"Session{k + 1}" not in {u.session for u in f["train"] + f["valid"]}
    with pytest.raises(SertrtError, match="needs a session in every row"):
        make_folds(corpus(), ProtocolOptions(manifest="m", out="o", protocol="session"))


def test_written_protocol_round_trips(tone_corpus, tmp_path):
    path = write_protocol(ProtocolOptions(tone_corpus, tmp_path / "p", folds=2))
    record, folds = read_protocol(tmp_path / "p")
    assert record["protocol"] == "random" and len(folds) == 2
    assert json.loads(path.read_text())["fold_sizes"][0]["test"] == len(folds[0]["test"].read_text().splitlines())
    with pytest.raises(SertrtError, match="no protocol.json"):
        read_protocol(tmp_path)
