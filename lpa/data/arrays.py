"""The on-disk format of data/extracted/<dataset>/ and data/processed/<dataset>/ (docs/contracts.md).

A dataset directory holds::

    train_images.npy  test_images.npy   N x 3 x H x W (uint8 extracted, float16 processed)
    train_labels.npy  test_labels.npy   int64, 0..K-1
    meta.json                            dataset, classes, num_classes, image_shape, dtype, splits, ...
    transform.npz                        processed only: the fitted transform (lpa.data.transforms)

Directories are written whole under a temporary name next to the target and renamed into place
at the end (`write_dataset_dir`), so a failure never leaves a half-written dataset.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lpa.data.types import RawDataset
from lpa.files import atomic_path

SPLITS = ("train", "test")
META_FILE = "meta.json"
TRANSFORM_FILE = "transform.npz"


def images_file(split: str) -> str:
    return f"{split}_images.npy"


def labels_file(split: str) -> str:
    return f"{split}_labels.npy"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")


def read_split(directory: str | os.PathLike, split: str, mmap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of `split` ('train' or 'test') from a dataset directory.

    images: N x 3 x H x W (uint8 in data/extracted, float16 in data/processed); labels: int64.
    `mmap=True` memory-maps the images instead of reading them (read-only).
    """
    _check_split(split)
    directory = Path(directory)
    paths = (directory / images_file(split), directory / labels_file(split))
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; run the stage that writes {directory} "
                f"(dvc repro download@<dataset> / preprocess@<dataset>)"
            )
    images = np.load(paths[0], mmap_mode="r" if mmap else None, allow_pickle=False)
    labels = np.load(paths[1], allow_pickle=False)
    if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{directory}: {split} images {images.shape} and labels {labels.shape} do not match "
            f"(expected N x C x H x W and N)"
        )
    return images, labels


def read_meta(directory: str | os.PathLike) -> dict:
    """meta.json of a dataset directory as a dict."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run the stage that writes {Path(directory)}")
    with open(path) as f:
        return json.load(f)


def check_arrays(images: np.ndarray, labels: np.ndarray, num_classes: int, where: str) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{where}: images have shape {images.shape}, expected N x 3 x H x W")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{where}: {images.shape[0]} images but labels of shape {labels.shape}")
    if labels.dtype != np.int64:
        raise ValueError(f"{where}: labels are {labels.dtype}, expected int64")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: labels outside 0..{num_classes - 1}")


def write_dataset_dir(out_dir: str | os.PathLike, fill: Callable[[Path], dict]) -> dict:
    """Create `out_dir` atomically: `fill(tmp)` writes the files into `tmp` and returns meta.

    meta.json is written last; then the temporary directory replaces `out_dir`. On any error the
    temporary directory is removed and an existing `out_dir` is left as it was.
    """
    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        meta = fill(tmp)
        with open(tmp / META_FILE, "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
    return meta


def write_extracted(out_dir: str | os.PathLike, name: str, data: RawDataset) -> dict:
    """Write a RawDataset as data/extracted/<name>/ (uint8 images, int64 labels, meta.json)."""
    num_classes = len(data.classes)
    shapes = set()
    for split in SPLITS:
        images, labels = data.split(split)
        check_arrays(images, labels, num_classes, f"{name} {split}")
        if images.dtype != np.uint8:
            raise ValueError(f"{name} {split}: images are {images.dtype}, expected uint8")
        shapes.add(tuple(images.shape[1:]))
    if len(shapes) != 1:
        raise ValueError(f"{name}: train and test images differ in shape: {sorted(shapes)}")

    def fill(tmp: Path) -> dict:
        for split in SPLITS:
            images, labels = data.split(split)
            np.save(tmp / images_file(split), np.ascontiguousarray(images), allow_pickle=False)
            np.save(tmp / labels_file(split), labels, allow_pickle=False)
        return {
            "dataset": name,
            "classes": list(data.classes),
            "num_classes": num_classes,
            "image_shape": [int(s) for s in shapes.pop()],
            "dtype": "uint8",
            "splits": {s: int(data.split(s)[1].shape[0]) for s in SPLITS},
            "class_counts": {s: np.bincount(data.split(s)[1], minlength=num_classes).tolist() for s in SPLITS},
            "source": data.source,
        }

    return write_dataset_dir(out_dir, fill)


def fingerprint(directory: str | os.PathLike) -> str:
    """SHA-256 of a dataset directory's meta.json and transform.npz (if any): changes whenever the
    data or its preprocessing does, cheaply (the arrays themselves are not read)."""
    import hashlib

    digest = hashlib.sha256()
    for name in (META_FILE, TRANSFORM_FILE):
        path = Path(directory) / name
        if path.exists():
            digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()

