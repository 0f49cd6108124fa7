"""`sertrt evaluate`: a manifest is scored as a stream of batches, each decoded when it is scored."""

import json

import numpy as np
import pytest
import torch
from conftest import make_tone_corpus

from sertrt.core.manifest import read_manifest
from sertrt.core.metrics import softmax
from sertrt.model.io import save_checkpoint
from sertrt.model.ser import SERModel, build_model
from sertrt.training.data import AudioSet
from sertrt.training.evaluate import EvaluateOptions, evaluate, predict_logits


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    save_checkpoint(root / "run" / "best.safetensors", model, {"strategy": "full", "epoch": 0, "metrics": {}})
    return root, model, make_tone_corpus(root / "tones", per_label=5, seed=3)  # 20 rows


def test_each_batch_is_decoded_only_when_it_is_scored(scored, monkeypatch):
    """Memory holds one batch of audio whatever the manifest's length: no row is decoded before the batches
    ahead of it are scored."""
    import sertrt.core.audio

    root, _, manifest = scored
    decoded, before_each_call = [], []
    read = sertrt.core.audio.open_audio
    monkeypatch.setattr(sertrt.core.audio, "open_audio", lambda path: decoded.append(path) or read(path))
    forward = SERModel.forward
    monkeypatch.setattr(SERModel, "forward", lambda self, *a: before_each_call.append(len(decoded)) or forward(self, *a))
    evaluate(EvaluateOptions(root / "run", manifest, out=root / "lazy", batch_size=6))
    assert before_each_call == [6, 12, 18, 20]


def test_stream_gives_what_decoding_everything_first_gave(scored):
    """Same logits, predictions and metrics as scoring the manifest decoded up front (AudioSet, as training
    scores), with progress in utterances up to the total."""
    root, model, manifest = scored
    reference = predict_logits(model, AudioSet(read_manifest(manifest)), batch_size=6)
    progress = []
    report = evaluate(EvaluateOptions(root / "run", manifest, out=root / "eval", batch_size=6),
                      progress=lambda done, total: progress.append((done, total)))
    rows = [json.loads(line) for line in (root / "eval" / "manifest.predictions.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([r["probabilities"] for r in rows], softmax(reference), rtol=0, atol=1e-6)
    labels = list(model.dims.labels)
    assert [r["predicted"] for r in rows] == [labels[i] for i in reference.argmax(1)]
    truth = [labels.index(u.label) for u in read_manifest(manifest)]
    assert report["wa"] == pytest.approx(np.mean(reference.argmax(1) == truth)) and report["count"] == 20
    assert progress == [(0, 20), (6, 20), (12, 20), (18, 20), (20, 20)]
