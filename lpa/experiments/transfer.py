"""The paper's cross-domain classification: a frozen network's features on another dataset, with a
linear classifier fitted on that dataset's training split.

The target's images (data/extracted/<target>, uint8) are converted as the source run's own data was
(lpa.data.conversion: resized to its input size, or the digits' grey recipe) and preprocessed with
the source run's fitted transform, both from its model file; the features are lpa.experiments.features'. The
classifier: scikit-learn's multinomial logistic regression on standardised features, its C chosen
by stratified k-fold cross-validation on the target's training features only; the test split is
used once, for the reported error. The official code stops at the features (CSV files): the
classifier is lpa's choice (ltpa.md section 7).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lpa.data.arrays import read_meta, read_split
from lpa.data.conversion import ImageConversion
from lpa.train.device import pick_device
from lpa.errors import ConfigError
from lpa.experiments.features import extract_features
from lpa.files import write_json
from lpa.train.modelfile import load_trained


def convert_images(images: np.ndarray, conversion: ImageConversion) -> np.ndarray:
    """uint8 N x 3 x H x W target images -> the source's N x 3 x S x S (unchanged when they are
    already RGB at its size)."""
    if conversion.kind == "rgb" and images.shape[-1] == conversion.size and images.shape[-2] == conversion.size:
        return images
    return np.stack([conversion.convert(Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))))
                     for img in images]) if len(images) else images


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced subset of `size` (every index when 0 or >= len)."""
    n = labels.shape[0]
    if size == 0 or size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    chosen: list[int] = []
    r = 0
    while len(chosen) < size:  # round-robin: every class gets its share before any gets more
        for ix in per_class:
            if r < len(ix) and len(chosen) < size:
                chosen.append(int(ix[r]))
        r += 1
    return np.sort(np.asarray(chosen))


def mean_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in `labels` of each class's accuracy, in percent: the measure
    the Caltech-101/256 literature reports, as test splits there are unbalanced (up to 50 per class,
    fewer for small classes), so top-1 accuracy weighs large classes more."""
    classes = np.unique(labels)
    return float(np.mean([(predicted[labels == c] == c).mean() for c in classes]) * 100.0)


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, c_grid, folds: int, seed: int):
    """GridSearchCV(StandardScaler -> LogisticRegression) over C, stratified folds on train only."""
    # local: scikit-learn costs ~1.5 s to import (measured); only the transfer stage fits a classifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(train_y)
    smallest = int(counts[counts > 0].min())
    folds = min(folds, smallest)
    if folds < 2:
        raise ConfigError(f"the target's smallest class has {smallest} training image(s): cross-validation needs at "
                          f"least 2 per class (raise transfer.max_train_images or use another target)")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    search = GridSearchCV(pipeline, {"logisticregression__C": list(c_grid)},
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed), n_jobs=1)
    return search.fit(train_x, train_y)


def transfer_run(model_file: Path, target_dir: Path, settings: Mapping, metrics_path: Path) -> dict:
    """Everything `transfer@<trial>-to-<target>` writes: metrics_path with the target's test
    accuracy, top-1 error and mean per-class accuracy, the chosen C, its cross-validated accuracy
    and the sizes."""
    meta = read_meta(target_dir)
    train_images, train_labels = read_split(target_dir, "train")
    test_images, test_labels = read_split(target_dir, "test")
    if train_labels.shape[0] == 0:
        raise ConfigError(f"target {target_dir} has no training images: nothing to fit a classifier on")
    if meta["num_classes"] < 2 or len(np.unique(train_labels)) < 2:
        raise ConfigError(f"target {target_dir} has one class: a classifier needs at least two")
    if test_labels.shape[0] == 0:
        raise ConfigError(f"target {target_dir} has no test images: nothing to report")
    device = pick_device()
    trained = load_trained(model_file, device)

    def features(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(trained.transform.apply(convert_images(images, trained.conversion))).to(device)
        return extract_features(trained.model, trained.config, trained.saved["num_classes"], x, settings["feature"],
                                trained.batch_size, trained.amp_dtype, trained.channels_last)

    seed = settings["subset_seed"]
    tr = balanced_subset(train_labels, settings["max_train_images"], seed)
    te = balanced_subset(test_labels, settings["max_test_images"], seed)
    train_x, test_x = features(train_images[tr]), features(test_images[te])
    search = fit_linear_probe(train_x, train_labels[tr], settings["C_grid"], settings["cv_folds"], seed)
    predicted = search.predict(test_x)
    accuracy = float((predicted == test_labels[te]).mean() * 100.0)
    record = {"transfer": {
        "test": {"accuracy": round(accuracy, 4), "top1_error": round(100.0 - accuracy, 4),
                 "mean_class_accuracy": round(mean_class_accuracy(predicted, test_labels[te]), 4)},
        "C": float(search.best_params_["logisticregression__C"]),
        "cv_accuracy": round(float(search.best_score_) * 100.0, 4),
        "feature_dim": int(train_x.shape[1]), "train_images": int(tr.shape[0]), "test_images": int(te.shape[0]),
        "target_classes": int(meta["num_classes"]),
    }}
    write_json(metrics_path, record)
    return record
