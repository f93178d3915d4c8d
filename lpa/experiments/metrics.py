"""Classification metrics and their files: pure functions, no model, no DVC, no argv.

All rates are in PERCENT, as the paper writes them (top-1 error 5.23 means 5.23 %):
``top1_error``, ``top5_error``, ``accuracy`` (= 100 - top1_error) and the per-class accuracies.

The attention maps' statistics (``attention_map_stats``) explain what a map does: how much of
its unit mass the largest position takes and its entropy in nats, against ln(H*W), a uniform map's.

The stage (``stages/evaluate.py``) runs the model over the test split, then::

    m = classification_metrics(logits, labels, num_classes)
    write_json(run_dir / "metrics.json", metrics_json(m, classes))
    write_per_class_csv(run_dir / "per_class.csv", m, classes)
    write_confusion_csv(run_dir / "confusion.csv", labels, m["predictions"], classes)

Every writer is atomic (temporary file in the destination directory, then ``os.replace``), so an
interrupted stage never leaves a half-written file that DVC could mistake for an output.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lpa.files import write_text

TOP_K = 5  # the paper's second metric; see classification_metrics for K < 5


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device or dtype, bf16 included) or array-like -> numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach()
        if x.is_floating_point():
            x = x.float()  # numpy has no bfloat16
        return x.cpu().numpy()
    return np.asarray(x)


def classification_metrics(logits: Any, labels: Any, num_classes: int) -> dict:
    """Top-1/top-5 error, accuracy, per-class accuracy and confusion matrix of one split.

    Args:
        logits: (N, K) scores (logits, log-probabilities or probabilities: only the order per row
            matters), torch tensor or numpy.
        labels: (N,) integer true classes in 0..K-1.
        num_classes: K; must equal logits.shape[1].

    Returns a dict:
        ``num_images`` (int), ``num_classes`` (int),
        ``top1_error``, ``top5_error``, ``accuracy`` (float, percent),
        ``top5_k`` (int): the k actually used for "top-5", min(5, K). With fewer than 5 classes
            top-5 is defined as top-K, which is always right, so ``top5_error`` is 0 then (an
            honest value rather than an undefined one; no dataset of this project has K < 10),
        ``per_class_accuracy`` (float array (K,), percent; NaN for a class with no test image),
        ``mean_class_accuracy`` (float, percent, mean over classes that have test images; differs
            from ``accuracy`` on unbalanced test sets such as SVHN),
        ``confusion`` (int64 array (K, K): ``confusion[true, predicted]``, rows = true class),
        ``predictions`` (int64 array (N,): the top-1 class of each image),
        ``num_nonfinite`` (int): rows with a NaN/inf score, the signature of a diverged run. NaN
            scores are ranked lowest (so they never win), +/-inf keep their order.

    Ties are broken towards the lower class index (a stable sort), the same rule as ``argmax``,
    so ``predictions`` always agrees with the top-1 error and the confusion matrix.
    """
    scores = to_numpy(logits).astype(np.float64, copy=False)
    y = to_numpy(labels)
    if scores.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, K), got shape {scores.shape}")
    n, k = scores.shape
    if k != num_classes:
        raise ValueError(f"logits have {k} columns but num_classes={num_classes}")
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    if n == 0:
        raise ValueError("no images to evaluate")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("labels must be integers")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {y.min()}..{y.max()}")

    nonfinite = ~np.isfinite(scores).all(axis=1)
    scores = np.where(np.isnan(scores), -np.inf, scores)

    top5_k = min(TOP_K, num_classes)
    # Stable sort of the negated scores: descending, ties to the lower index (= argmax's rule).
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :top5_k]
    predictions = ranked[:, 0].astype(np.int64)
    top1_correct = predictions == y
    top5_correct = (ranked == y[:, None]).any(axis=1)

    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (y, predictions), 1)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, 100.0 * np.diag(confusion) / support, np.nan)

    accuracy = 100.0 * float(top1_correct.mean())
    return {
        "num_images": int(n),
        "num_classes": int(num_classes),
        "top1_error": 100.0 * float((~top1_correct).mean()),
        "top5_error": 100.0 * float((~top5_correct).mean()),
        "top5_k": int(top5_k),
        "accuracy": accuracy,
        "per_class_accuracy": per_class,
        "mean_class_accuracy": float(np.nanmean(per_class)),
        "confusion": confusion,
        "predictions": predictions,
        "num_nonfinite": int(nonfinite.sum()),
    }


def attention_map_stats(maps: Sequence[Any]) -> dict:
    """Per attention level, the mean over images of the map's largest weight and of its entropy.

    Args:
        maps: one (N, 1, H, W) array or tensor per level, each image's map non-negative (softmax
            maps sum to 1; any other map is divided by its sum first, so the numbers describe the
            distribution it puts over positions).

    Returns ``{"level<k>" (k from 1): {"height", "width", "max_weight", "entropy" (nats),
    "max_entropy": ln(H*W)}}``: max_weight runs from 1/(H*W) (uniform) to 1 (one-hot), entropy
    from 0 (one-hot) to max_entropy (uniform). Numbers only, nested dicts (no lists), as
    ``dvc metrics show`` reads them.
    """
    out = {}
    for k, level in enumerate(maps, start=1):
        a = to_numpy(level).astype(np.float64, copy=False)
        if a.ndim != 4 or a.shape[1] != 1 or a.shape[0] == 0:
            raise ValueError(f"level {k}: maps must have shape (N, 1, H, W) with N > 0, got {a.shape}")
        if np.any(a < 0) or not np.all(np.isfinite(a)):
            raise ValueError(f"level {k}: maps must be finite and non-negative (softmax weights)")
        n, _, h, w = a.shape
        p = a.reshape(n, h * w)
        p = p / np.maximum(p.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(p), 0.0)  # 0 log 0 = 0
        out[f"level{k}"] = {"height": int(h), "width": int(w),
                            "max_weight": _round(float(p.max(axis=1).mean()), 6),
                            "entropy": _round(float(-plogp.sum(axis=1).mean()), 6),
                            "max_entropy": _round(math.log(h * w), 6)}
    return out


def _round(value: float, digits: int = 4) -> float:
    # 4 decimals of a percent is far below one image on any test set here (1/26032 = 0.0038 %)
    # and keeps `dvc metrics diff` free of float noise.
    return round(float(value), digits)


def metrics_json(metrics: Mapping, classes: Sequence[str], split: str = "test") -> dict:
    """The small, numbers-only dict for ``metrics.json`` (shown by ``dvc metrics show/diff``).

    ``{split: {"top1_error", "top5_error", "accuracy", "mean_class_accuracy" (percent),
    "num_images", "num_classes", "num_nonfinite"}}``. Per-class accuracies are deliberately left
    out (they go to ``per_class.csv``, a DVC plot) to keep the metrics diff readable.
    """
    if len(classes) != metrics["num_classes"]:
        raise ValueError(f"{len(classes)} class names for {metrics['num_classes']} classes")
    return {
        split: {
            "top1_error": _round(metrics["top1_error"]),
            "top5_error": _round(metrics["top5_error"]),
            "accuracy": _round(metrics["accuracy"]),
            "mean_class_accuracy": _round(metrics["mean_class_accuracy"]),
            "num_images": int(metrics["num_images"]),
            "num_classes": int(metrics["num_classes"]),
            "num_nonfinite": int(metrics["num_nonfinite"]),
        }
    }


def _csv_text(header: Sequence[str], rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")  # quotes class names containing commas
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_per_class_csv(path: str | os.PathLike, metrics: Mapping, classes: Sequence[str]) -> Path:
    """``class,accuracy`` (percent), one row per class in class-index order: a DVC bar plot.

    A class with no test image gets an empty accuracy cell (not "nan").
    """
    acc = to_numpy(metrics["per_class_accuracy"])
    if len(classes) != len(acc):
        raise ValueError(f"{len(classes)} class names for {len(acc)} per-class accuracies")
    rows = [(name, "" if math.isnan(a) else f"{a:.4f}") for name, a in zip(classes, acc)]
    return write_text(path, _csv_text(("class", "accuracy"), rows))


def write_confusion_csv(path: str | os.PathLike, labels: Any, predictions: Any,
                        classes: Sequence[str]) -> Path:
    """``actual,predicted`` class names, one row per test image, in test-set order.

    The long format DVC's ``confusion`` / ``confusion_normalized`` plot templates expect
    (``x: actual``, ``y: predicted``).
    """
    y = to_numpy(labels).astype(np.int64)
    p = to_numpy(predictions).astype(np.int64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and predictions {p.shape} must be equal 1-D shapes")
    names = np.asarray(list(classes), dtype=object)
    for what, arr in (("labels", y), ("predictions", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= len(names)):
            raise ValueError(f"{what} out of range for {len(names)} classes")
    return write_text(path, _csv_text(("actual", "predicted"), zip(names[y], names[p])))
