"""The transfer stage's mean per-class accuracy (lpa.experiments.transfer.mean_class_accuracy): the
measure the Caltech-101 literature reports, written next to top-1 error for every target."""
from __future__ import annotations

import numpy as np
import pytest

from lpa.experiments.transfer import mean_class_accuracy


def test_mean_class_accuracy_weighs_every_class_alike():
    labels = np.array([0] * 8 + [1] * 2)
    predicted = np.array([0] * 8 + [0, 1])            # class 0: 8/8, class 1: 1/2
    assert mean_class_accuracy(predicted, labels) == pytest.approx(75.0)
    assert (predicted == labels).mean() * 100 == pytest.approx(90.0), "top-1 accuracy favours the large class"


def test_mean_class_accuracy_of_balanced_classes_is_the_accuracy():
    labels = np.repeat(np.arange(4), 5)
    predicted = labels.copy()
    predicted[[0, 7, 8]] = 3
    assert mean_class_accuracy(predicted, labels) == pytest.approx((predicted == labels).mean() * 100)


def test_mean_class_accuracy_counts_only_classes_in_the_test_labels():
    # a class the classifier predicts but the (subset of the) test split lacks adds no term
    labels = np.array([1, 1, 2, 2])
    predicted = np.array([1, 0, 2, 2])
    assert mean_class_accuracy(predicted, labels) == pytest.approx(75.0)
