import numpy as np
import pytest

from sertrt.core.metrics import classification_report, confusion_matrix, scores


def test_known_values():
    targets = np.array([0, 0, 0, 0, 1, 1, 2, 3])
    preds = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    cm = confusion_matrix(targets, preds, 4)
    assert cm.tolist() == [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]
    s = scores(cm)
    assert s["wa"] == pytest.approx(5 / 8)
    assert s["ua"] == pytest.approx((0.75 + 0.5 + 1.0 + 0.0) / 4)
    f1 = [2 * 0.75 * 0.75 / 1.5, 0.5, 2 * 0.5 * 1 / 1.5, 0.0]
    assert s["macro_f1"] == pytest.approx(np.mean(f1))


def test_ua_differs_from_wa_on_imbalance():
    targets = np.array([0] * 9 + [1])
    preds = np.zeros(10, dtype=int)
    r = classification_report(targets, preds, ["a", "b"])
    assert r["wa"] == pytest.approx(0.9)
    assert r["ua"] == pytest.approx(0.5)
    assert r["per_class_recall"] == {"a": 1.0, "b": 0.0}


def test_absent_class_not_counted():
    r = classification_report(np.array([0, 1]), np.array([0, 1]), ["a", "b", "c"])
    assert r["ua"] == 1.0 and r["macro_f1"] == 1.0
    assert r["per_class_recall"]["c"] is None
