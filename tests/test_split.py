from collections import Counter

import pytest

from sertrt.core.errors import SertrtError
from sertrt.core.manifest import Utterance
from sertrt.data.split import split_utterances


def corpus(n_speakers=5, per=8):
    return [
        Utterance(f"/x/{c}-{s}-{label}-{i}.wav", label, c, "en", f"s{s}", 1.0, 16000)
        for c in ("a", "b")
        for s in range(n_speakers)
        for label in ("neutral", "happy", "angry", "sad")
        for i in range(per)
    ]


def test_stratified_four_to_one_and_reproducible():
    utts = corpus()
    train, test = split_utterances(utts, 0.2, seed=1)
    assert len(train) + len(test) == len(utts) and not set(train) & set(test)
    strata = Counter((u.corpus, u.label) for u in test)
    assert set(strata.values()) == {8}  # 20% of 40 in every (corpus, label)
    assert split_utterances(utts, 0.2, seed=1) == (train, test)
    assert split_utterances(utts, 0.2, seed=2) != (train, test)


def test_speaker_independent_split_shares_no_speaker():
    train, test = split_utterances(corpus(), 0.2, seed=0, group_by="speaker")
    spk = lambda us: {(u.corpus, u.speaker) for u in us}  # noqa: E731
    assert not spk(train) & spk(test)
    assert {u.corpus for u in test} == {"a", "b"}  # every corpus is represented


def test_bad_options():
    with pytest.raises(SertrtError, match="between 0 and 1"):
        split_utterances(corpus(), 1.5, 0)
    with pytest.raises(SertrtError, match="valid: none, speaker"):
        split_utterances(corpus(), 0.2, 0, group_by="session")
    with pytest.raises(SertrtError, match="one speaker"):
        split_utterances(corpus(n_speakers=1), 0.2, 0, group_by="speaker")


def test_validation_holds_out_whole_speakers_where_a_corpus_has_enough():
    from sertrt.data.split import carve_validation

    utts = corpus(n_speakers=6) + [Utterance(f"/x/t-{s}-{label}-{i}.wav", label, "tess", "en", f"t{s}", 1.0, 16000)
                                   for s in range(2) for label in ("neutral", "happy", "angry", "sad") for i in range(10)]
    train, valid, how = carve_validation(utts, 0.1, seed=0)
    assert how == {"a": "speaker-disjoint", "b": "speaker-disjoint", "tess": "speaker-dependent"}
    assert len(train) + len(valid) == len(utts) and not set(train) & set(valid)
    spk = lambda us, c: {u.speaker for u in us if u.corpus == c}  # noqa: E731
    assert spk(valid, "a") and not spk(train, "a") & spk(valid, "a")  # whole speakers
    assert spk(train, "tess") == spk(valid, "tess") == {"t0", "t1"}  # two speakers: stratified instead
    assert carve_validation(utts, 0.1, seed=0) == (train, valid, how)


def test_validation_of_a_tiny_manifest_still_holds_something_out():
    from sertrt.data.split import carve_validation

    utts = corpus(n_speakers=1, per=1)[:4]  # one utterance per label
    train, valid, how = carve_validation(utts, 0.1, seed=0)
    assert len(valid) == 1 and len(train) == 3 and "random" in how["a"]
    with pytest.raises(SertrtError, match="--valid-fraction 0"):
        carve_validation(utts, 0.0, seed=0)
