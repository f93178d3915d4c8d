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

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lpa.data.types import RawDataset
from lpa.errors import DamagedFileError
from lpa.files import atomic_path

SPLITS = ("train", "test")
META_FILE = "meta.json"
TRANSFORM_FILE = "transform.npz"
MASKS_FILE = "test_masks.npy"  # extracted only, where the dataset has object masks (bool N x H x W)
META_KEYS = ("dataset", "classes", "num_classes", "image_shape", "dtype", "splits")
# which stage writes a dataset directory, by the name of its parent folder (docs/contracts.md)
WRITERS = {"extracted": "download", "processed": "preprocess"}


def images_file(split: str) -> str:
    return f"{split}_images.npy"


def labels_file(split: str) -> str:
    return f"{split}_labels.npy"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")


def redo_advice(directory: str | os.PathLike) -> str:
    """What to do about a damaged file in a dataset directory: re-run the stage that writes it
    (data/extracted/<ds> is download@<ds>'s output, data/processed/<ds> preprocess@<ds>'s)."""
    directory = Path(directory)
    stage = WRITERS.get(directory.parent.name)
    if stage is None:
        return (f"re-run the stage that writes {directory} "
                f"(`dvc repro -f download@<dataset>` or `dvc repro -f preprocess@<dataset>`)")
    return f"re-run `dvc repro -f {stage}@{directory.name}`"


def _reason(err: BaseException, limit: int = 160) -> str:
    """An exception as a short one-line reason for a message."""
    text = " ".join(str(err).split()).split(" (file seems")[0]  # numpy's guess; we say it ourselves
    return f"{type(err).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}" if text else type(err).__name__


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    """One .npy array; DamagedFileError (naming the file and the stage to re-run) if it is
    truncated, overwritten or not a plain .npy array."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, EOFError, OSError) as err:
        text, reason = str(err), _reason(err)
        if isinstance(err, EOFError) or text.startswith(("EOF", "Failed to read all data", "mmap length")):
            what = "is truncated"
        elif isinstance(err, ValueError):
            what = "is not a .npy array"
            if "pickled" in text:  # numpy's hint to load it unpickled is no advice for a damaged file
                reason = "it does not start with a .npy header: overwritten?"
        else:
            what = "cannot be read"
        raise DamagedFileError(f"{path} {what} ({reason}); {redo_advice(path.parent)}") from None
    if not isinstance(array, np.ndarray):  # np.load returns an NpzFile for a .npz archive
        if hasattr(array, "close"):
            array.close()
        raise DamagedFileError(f"{path} is not a .npy array (it is a {type(array).__name__}); "
                               f"{redo_advice(path.parent)}")
    return array


def read_split(directory: str | os.PathLike, split: str, mmap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of `split` ('train' or 'test') from a dataset directory.

    images: N x 3 x H x W (uint8 in data/extracted, float16 in data/processed); labels: int64.
    `mmap=True` memory-maps the images instead of reading them (read-only). A truncated or
    overwritten array, or arrays that disagree with each other or with meta.json, raise
    DamagedFileError naming the file and the stage to re-run.
    """
    _check_split(split)
    directory = Path(directory)
    paths = (directory / images_file(split), directory / labels_file(split))
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; {redo_advice(directory)}")
    meta = read_meta(directory) if (directory / META_FILE).exists() else None
    images = _load_array(paths[0], mmap)
    labels = _load_array(paths[1], False)
    redo = redo_advice(directory)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DamagedFileError(f"{paths[0]} holds a {images.dtype} array of shape {images.shape}, "
                               f"not N x C x H x W images; {redo}")
    if labels.ndim != 1 or labels.dtype != np.int64:
        raise DamagedFileError(f"{paths[1]} holds a {labels.dtype} array of shape {labels.shape}, "
                               f"not N int64 labels; {redo}")
    if images.shape[0] != labels.shape[0]:
        raise DamagedFileError(f"{paths[0]} has {images.shape[0]} images but {paths[1]} has "
                               f"{labels.shape[0]} labels; {redo}")
    if meta is not None:
        meta_path = directory / META_FILE
        expected = (meta["splits"][split], *meta["image_shape"])
        if tuple(images.shape) != expected or images.dtype != np.dtype(meta["dtype"]):
            raise DamagedFileError(
                f"{paths[0]} holds {images.dtype} {' x '.join(map(str, images.shape))} but {meta_path} says "
                f"{meta['dtype']} {' x '.join(map(str, expected))}; {redo}")
        k = meta["num_classes"]
        if labels.shape[0] != meta["splits"][split] or (labels.size and (labels.min() < 0 or labels.max() >= k)):
            raise DamagedFileError(f"{paths[1]} does not match {meta_path} ({labels.shape[0]} labels, "
                                   f"expected {meta['splits'][split]} in 0..{k - 1}); {redo}")
    return images, labels


def _meta_problem(meta: object) -> str | None:
    """What is wrong with a parsed meta.json, or None."""
    if not isinstance(meta, dict):
        return f"holds a JSON {type(meta).__name__}, not an object"
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        return f"lacks {', '.join(missing)}"
    shape, splits, k, classes = meta["image_shape"], meta["splits"], meta["num_classes"], meta["classes"]

    def count(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not (isinstance(shape, list) and len(shape) == 3 and all(count(v) and v > 0 for v in shape)):
        return f"has image_shape {shape!r}, expected [C, H, W]"
    try:
        if not isinstance(meta["dtype"], str):
            raise TypeError
        np.dtype(meta["dtype"])
    except TypeError:
        return f"has dtype {meta['dtype']!r}, expected uint8 or float16"
    if not (isinstance(splits, dict) and all(count(splits.get(s)) for s in SPLITS)):
        return f"has splits {splits!r}, expected image counts for {' and '.join(SPLITS)}"
    if not (count(k) and k > 0 and isinstance(classes, list) and len(classes) == k):
        return f"has num_classes {k!r} and {len(classes) if isinstance(classes, list) else 'no list of'} classes"
    if not isinstance(meta.get("source", {}), dict):
        return "has a source that is not an object"
    return None


def read_meta(directory: str | os.PathLike) -> dict:
    """meta.json of a dataset directory as a dict (checked: DamagedFileError if it is not JSON
    or lacks what the readers need, naming the file and the stage to re-run)."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {redo_advice(directory)}")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as err:
        raise DamagedFileError(f"{path} is not valid JSON ({err.msg}, line {err.lineno}); "
                               f"{redo_advice(directory)}") from None
    except (UnicodeDecodeError, OSError) as err:
        raise DamagedFileError(f"{path} cannot be read as JSON text ({_reason(err)}); "
                               f"{redo_advice(directory)}") from None
    problem = _meta_problem(meta)
    if problem:
        raise DamagedFileError(f"{path} {problem}; {redo_advice(directory)}")
    return meta


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
    test_images = data.split("test")[0]
    if data.test_masks is not None and data.test_masks.shape != (test_images.shape[0], *test_images.shape[2:]):
        raise ValueError(f"{name}: test masks of shape {data.test_masks.shape} for test images {test_images.shape}")

    def fill(tmp: Path) -> dict:
        for split in SPLITS:
            images, labels = data.split(split)
            np.save(tmp / images_file(split), np.ascontiguousarray(images), allow_pickle=False)
            np.save(tmp / labels_file(split), labels, allow_pickle=False)
        if data.test_masks is not None:
            np.save(tmp / MASKS_FILE, np.ascontiguousarray(data.test_masks, dtype=bool), allow_pickle=False)
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
    digest = hashlib.sha256()
    for name in (META_FILE, TRANSFORM_FILE):
        path = Path(directory) / name
        if path.exists():
            digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()

