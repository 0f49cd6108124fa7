import numpy as np
import pytest

from sertrt.core.metrics import classification_report


def test_known_values():
    targets = np.array([0, 0, 0, 0, 1, 1, 2, 3])
    preds = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    s = classification_report(targets, preds, ["a", "b", "c", "d"])
    assert s["confusion_matrix"] == [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]
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


def test_compare_logits_errors_tolerance_cosine_and_agreement():
    from sertrt.core.metrics import compare_logits

    ref = np.array([[1.0, 2.0], [3.0, -4.0]], np.float32)
    out = np.array([[1.0, 2.5], [2.0, -4.0]], np.float32)
    e = compare_logits(ref, out, rtol=0.1)
    assert e["max_abs"] == pytest.approx(1.0) and e["max_rel"] == pytest.approx(1 / 3)
    assert e["required_atol"] == pytest.approx(0.7)  # the row-2 label-0 error, less 0.1 * |3|
    assert e["cosine"] == pytest.approx(28 / np.sqrt(30 * 27.25)) and e["agreement"] == 1.0
    flipped = compare_logits(ref, out[:, ::-1])
    assert flipped["agreement"] == 0.0 and flipped["cosine"] < 0
    assert compare_logits(ref, ref) == {"max_abs": 0.0, "max_rel": 0.0, "required_atol": 0.0,
                                        "cosine": pytest.approx(1.0), "agreement": 1.0}
