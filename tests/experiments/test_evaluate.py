"""lpa.experiments.metrics on a hand-made case whose metrics are known by hand."""
import csv
import json
import math

import numpy as np
import pytest
import torch

from lpa.files import write_json
from lpa.experiments.metrics import (classification_metrics, metrics_json, write_confusion_csv,
                          write_per_class_csv)

# 8 images, 6 classes. Each row lists the classes from highest to lowest score.
RANKINGS = [
    [0, 1, 2, 3, 4, 5],  # true 0: top-1 right
    [1, 0, 2, 3, 4, 5],  # true 0: predicted 1, true class 2nd -> top-5 right
    [1, 0, 2, 3, 4, 5],  # true 1: top-1 right
    [2, 3, 4, 5, 0, 1],  # true 1: predicted 2, true class 6th -> top-5 wrong
    [2, 0, 1, 3, 4, 5],  # true 2: top-1 right
    [5, 4, 3, 0, 1, 2],  # true 3: predicted 5, true class 3rd -> top-5 right
    [4, 0, 1, 2, 3, 5],  # true 4: top-1 right
    [0, 1, 2, 3, 4, 5],  # true 5: predicted 0, true class 6th -> top-5 wrong
]
LABELS = np.array([0, 0, 1, 1, 2, 3, 4, 5])
K = 6
CLASSES = ["plane", "car", "bird", "cat", "deer", "dog"]


def _logits(rankings, k=K):
    logits = np.zeros((len(rankings), k), dtype=np.float32)
    for i, order in enumerate(rankings):
        for pos, cls in enumerate(order):
            logits[i, cls] = k - pos  # higher score = earlier in the ranking
    return logits


EXPECTED_CONFUSION = np.array([
    [1, 1, 0, 0, 0, 0],
    [0, 1, 1, 0, 0, 0],
    [0, 0, 1, 0, 0, 0],
    [0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 1, 0],
    [1, 0, 0, 0, 0, 0],
])


def test_hand_made_metrics():
    m = classification_metrics(_logits(RANKINGS), LABELS, K)
    assert m["num_images"] == 8 and m["num_classes"] == K
    assert m["top1_error"] == pytest.approx(50.0)   # 4 of 8 wrong
    assert m["top5_error"] == pytest.approx(25.0)   # images 3 and 7
    assert m["accuracy"] == pytest.approx(50.0)
    assert m["top5_k"] == 5
    np.testing.assert_allclose(m["per_class_accuracy"], [50, 50, 100, 0, 100, 0])
    assert m["mean_class_accuracy"] == pytest.approx(50.0)
    np.testing.assert_array_equal(m["confusion"], EXPECTED_CONFUSION)
    np.testing.assert_array_equal(m["predictions"], [0, 1, 1, 2, 2, 5, 4, 0])
    assert m["num_nonfinite"] == 0


def test_torch_inputs_match_numpy_including_bf16():
    ref = classification_metrics(_logits(RANKINGS), LABELS, K)
    for dtype in (torch.float32, torch.bfloat16):
        m = classification_metrics(torch.tensor(_logits(RANKINGS), dtype=dtype), torch.tensor(LABELS), K)
        for key in ("top1_error", "top5_error", "accuracy"):
            assert m[key] == pytest.approx(ref[key])
        np.testing.assert_array_equal(m["confusion"], ref["confusion"])


def test_ties_go_to_lower_index_like_argmax():
    logits = np.array([[1.0, 3.0, 3.0, 0.0]])
    m = classification_metrics(logits, [2], 4)
    assert m["predictions"][0] == np.argmax(logits[0]) == 1
    assert m["top1_error"] == 100.0


def test_fewer_than_five_classes_uses_top_k():
    logits = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    m = classification_metrics(logits, [2, 2], 3)
    assert m["top5_k"] == 3
    assert m["top5_error"] == 0.0
    assert m["top1_error"] == pytest.approx(50.0)


def test_nonfinite_rows_are_counted_and_nan_never_wins():
    logits = np.array([[np.nan, 1.0, 0.0], [0.0, 1.0, 2.0]])
    m = classification_metrics(logits, [0, 2], 3)
    assert m["num_nonfinite"] == 1
    assert m["predictions"][0] == 1
    assert m["top1_error"] == pytest.approx(50.0)


def test_class_without_test_images_is_nan_and_skipped_in_mean():
    m = classification_metrics(np.eye(3)[[0, 0, 1]], [0, 0, 1], 3)
    assert math.isnan(m["per_class_accuracy"][2])
    assert m["mean_class_accuracy"] == pytest.approx(100.0)


@pytest.mark.parametrize("logits,labels,k", [
    (np.zeros((2, 3)), [0, 3], 3),        # label out of range
    (np.zeros((2, 3)), [0], 3),           # wrong length
    (np.zeros((2, 3)), [0, 1], 4),        # K mismatch
    (np.zeros(3), [0], 3),                # not 2-D
])
def test_bad_inputs_raise(logits, labels, k):
    with pytest.raises(ValueError):
        classification_metrics(logits, labels, k)


def _numbers_only(obj):
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _numbers_only(v) for k, v in obj.items())
    return isinstance(obj, (int, float)) and not isinstance(obj, bool) and math.isfinite(obj)


def test_metrics_json_is_small_and_numbers_only(tmp_path):
    m = classification_metrics(_logits(RANKINGS), LABELS, K)
    mj = metrics_json(m, CLASSES)
    assert set(mj) == {"test"}
    assert mj["test"]["top1_error"] == 50.0 and mj["test"]["top5_error"] == 25.0
    assert mj["test"]["num_images"] == 8
    assert _numbers_only(mj)
    write_json(tmp_path / "metrics.json", mj)
    assert json.loads((tmp_path / "metrics.json").read_text()) == mj
    with pytest.raises(ValueError):
        metrics_json(m, CLASSES[:3])


def test_per_class_csv(tmp_path):
    m = classification_metrics(_logits(RANKINGS), LABELS, K)
    path = write_per_class_csv(tmp_path / "sub" / "per_class.csv", m, CLASSES)
    rows = list(csv.DictReader(path.open()))
    assert [r["class"] for r in rows] == CLASSES
    assert [float(r["accuracy"]) for r in rows] == [50, 50, 100, 0, 100, 0]
    # a class with no test image: empty cell, never "nan"
    m2 = classification_metrics(np.eye(3)[[0, 1]], [0, 1], 3)
    text = write_per_class_csv(tmp_path / "pc2.csv", m2, ["a", "b", "c"]).read_text()
    assert text.splitlines()[-1] == "c," and "nan" not in text


def test_confusion_csv_one_row_per_image(tmp_path):
    m = classification_metrics(_logits(RANKINGS), LABELS, K)
    names = ["plane", "car, small", "bird", "cat", "deer", "dog"]  # a comma must be quoted
    path = write_confusion_csv(tmp_path / "confusion.csv", LABELS, m["predictions"], names)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 8 and list(rows[0]) == ["actual", "predicted"]
    assert rows[1] == {"actual": "plane", "predicted": "car, small"}
    assert rows[7] == {"actual": "dog", "predicted": "plane"}
    # counting the long format back gives the confusion matrix
    idx = {n: i for i, n in enumerate(names)}
    counts = np.zeros((K, K), dtype=int)
    for r in rows:
        counts[idx[r["actual"]], idx[r["predicted"]]] += 1
    np.testing.assert_array_equal(counts, EXPECTED_CONFUSION)
    # atomic write leaves no temporary file behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.csv"]
