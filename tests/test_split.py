import dataclasses
from collections import Counter

import pytest

from sertrt.core.errors import SertrtError
from sertrt.core.manifest import Utterance
from sertrt.data.split import (
    SPEAKER_DEPENDENT,
    SPEAKER_INDEPENDENT,
    split_kind,
    split_utterances,
)


def corpus(n_speakers=5, per=8, languages=("en", "en")):
    return [
        Utterance(f"/x/{c}-{s}-{label}-{i}.wav", label, c, language, f"s{s}", 1.0, 16000)
        for c, language in zip(("a", "b"), languages)
        for s in range(n_speakers)
        for label in ("neutral", "happy", "angry", "sad")
        for i in range(per)
    ]


def test_stratified_four_to_one_and_reproducible():
    utts = corpus()
    train, test = split_utterances(utts, 0.2, seed=1, group_by="none")
    assert len(train) + len(test) == len(utts) and not set(train) & set(test)
    strata = Counter((u.corpus, u.label) for u in test)
    assert set(strata.values()) == {8}  # 20% of 40 in every (corpus, label)
    assert split_utterances(utts, 0.2, seed=1, group_by="none") == (train, test)
    assert split_utterances(utts, 0.2, seed=2, group_by="none") != (train, test)
    assert split_kind(train, test) == SPEAKER_DEPENDENT


def test_speaker_independent_split_shares_no_speaker():
    utts = corpus(languages=("de", "it"))
    train, test = split_utterances(utts, 0.2, seed=0, group_by="speaker")
    spk = lambda us: {(u.corpus, u.speaker) for u in us}  # noqa: E731
    assert not spk(train) & spk(test) and split_kind(train, test) == SPEAKER_INDEPENDENT
    assert {u.language for u in test} == {"de", "it"}  # every language is represented
    assert len(test) == 64  # one of five equal speakers per language: exactly 20%
    assert split_utterances(utts, 0.2, seed=0) == (train, test)  # "auto": speakers are named, so by speaker


def test_speaker_split_takes_the_speakers_closest_to_the_fraction_per_language():
    """English as in the synthetic corpus: TESS's two big speakers and SAVEE's four small ones. One TESS speaker
    would be 33% of English; two SAVEE speakers are 17%, the closest to 20%."""
    utts = [Utterance(f"/x/t{s}-{i}.wav", "neutral", "tess", "en", f"T{s}", 1.0, 16000) for s in range(2) for i in range(100)]
    utts += [Utterance(f"/x/s{s}-{i}.wav", "sad", "savee", "en", f"S{s}", 1.0, 16000) for s in range(4) for i in range(25)]
    for seed in range(5):
        train, test = split_utterances(utts, 0.2, seed)
        assert {u.corpus for u in test} == {"savee"} and len(test) == 50, seed
    # a speaker with the same code in two corpora is two speakers (merged, s0 would be 64 utterances, not 32)
    train, test = split_utterances(corpus(n_speakers=3), 0.2, seed=0, group_by="speaker")
    assert split_kind(train, test) == SPEAKER_INDEPENDENT and len(test) == 32


def test_auto_falls_back_to_the_random_split_without_speakers():
    utts = [dataclasses.replace(u, speaker="") for u in corpus()]
    train, test = split_utterances(utts, 0.2, seed=0)
    assert split_kind(train, test) == SPEAKER_DEPENDENT and len(test) == 64
    with pytest.raises(SertrtError, match="no speaker in the manifest"):
        split_utterances(utts, 0.2, seed=0, group_by="speaker")


def test_bad_options():
    with pytest.raises(SertrtError, match="between 0 and 1"):
        split_utterances(corpus(), 1.5, 0)
    with pytest.raises(SertrtError, match="valid: auto, none, speaker"):
        split_utterances(corpus(), 0.2, 0, group_by="session")
    with pytest.raises(SertrtError, match="language 'de' has one speaker"):
        split_utterances(corpus(n_speakers=1, languages=("de", "it")), 0.2, 0, group_by="speaker")


def test_validation_holds_out_whole_speakers_where_a_language_has_enough():
    from sertrt.data.split import carve_validation

    utts = corpus(n_speakers=3, languages=("de", "de")) + [
        Utterance(f"/x/t-{s}-{label}-{i}.wav", label, "tess", "en", f"t{s}", 1.0, 16000)
        for s in range(2) for label in ("neutral", "happy", "angry", "sad") for i in range(10)]
    train, valid, how = carve_validation(utts, 0.1, seed=0)
    assert how == {"de": "speaker-disjoint", "en": "speaker-dependent"}  # de: six speakers in two corpora
    assert len(train) + len(valid) == len(utts) and not set(train) & set(valid)
    spk = lambda us, lang: {(u.corpus, u.speaker) for u in us if u.language == lang}  # noqa: E731
    assert spk(valid, "de") and not spk(train, "de") & spk(valid, "de")  # whole speakers
    assert spk(train, "en") == spk(valid, "en") == {("tess", "t0"), ("tess", "t1")}  # two speakers: stratified instead
    assert carve_validation(utts, 0.1, seed=0) == (train, valid, how)


def test_validation_of_a_tiny_manifest_still_holds_something_out():
    from sertrt.data.split import carve_validation

    utts = corpus(n_speakers=1, per=1)[:4]  # one utterance per label
    train, valid, how = carve_validation(utts, 0.1, seed=0)
    assert len(valid) == 1 and len(train) == 3 and "random" in how["en"]
    with pytest.raises(SertrtError, match="--valid-fraction 0"):
        carve_validation(utts, 0.0, seed=0)


def test_an_existing_split_is_never_replaced(tone_corpus, tmp_path):
    from sertrt.data.split import SplitOptions, split_manifest

    train, test, _ = split_manifest(SplitOptions(tone_corpus, out_dir=tmp_path))
    before = train.read_bytes(), test.read_bytes()
    for seed, out_dir in ((1, tmp_path), (0, tmp_path)):
        with pytest.raises(SertrtError, match=r"train_manifest\.jsonl: already exists; a split is never replaced"):
            split_manifest(SplitOptions(tone_corpus, seed=seed, out_dir=out_dir))
    test.unlink()  # one of the two left from an earlier split: still refused, nothing written
    with pytest.raises(SertrtError, match=r"train_manifest\.jsonl: already exists"):
        split_manifest(SplitOptions(tone_corpus, seed=1, out_dir=tmp_path))
    assert train.read_bytes() == before[0] and not test.exists()
