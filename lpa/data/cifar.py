"""CIFAR-10 / CIFAR-100 from the official python-version archives.

The archive (`cifar-10-python.tar.gz` / `cifar-100-python.tar.gz`) is extracted with torchvision's
`extract_archive` into a temporary directory; the pickled batches are read the way the dataset
page describes (`pickle.load(f, encoding="latin1")`): `data` is N x 3072 uint8 (1024 red, then
green, then blue values, row-major 32 x 32), labels are `labels` (CIFAR-10) or `fine_labels`
(CIFAR-100), class names come from `batches.meta` `label_names` / `meta` `fine_label_names`.
"""
from __future__ import annotations

import os
import pickle
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

from lpa.data.errors import DatasetFormatError
from lpa.data.sources import CIFAR_LAYOUT
from lpa.data.types import RawDataset


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise DatasetFormatError(f"{path.name} is missing from the archive (expected {path})") from None
    except Exception as err:  # truncated or not a pickle
        raise DatasetFormatError(f"cannot read CIFAR batch {path.name}: {type(err).__name__}: {err}") from None
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"CIFAR batch {path.name} is a {type(obj).__name__}, expected a dict")
    # latin1 decoding gives str keys; a file pickled with bytes keys under Python 3 also appears
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _read_batches(top: Path, files: list[str], label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in files:
        batch = _unpickle(top / name)
        for key in ("data", label_key):
            if key not in batch:
                raise DatasetFormatError(f"CIFAR batch {name} has no '{key}' entry (keys: {', '.join(map(str, batch))})")
        data = np.asarray(batch["data"])
        y = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetFormatError(f"CIFAR batch {name}: 'data' is {data.dtype} {data.shape}, expected uint8 N x 3072")
        if y.shape[0] != data.shape[0]:
            raise DatasetFormatError(f"CIFAR batch {name}: {data.shape[0]} images but {y.shape[0]} labels")
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise DatasetFormatError(f"CIFAR batch {name}: labels outside 0..{num_classes - 1}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(y)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def read_cifar_dir(top: Path, name: str) -> RawDataset:
    """Parse an extracted `cifar-10-batches-py` / `cifar-100-python` directory."""
    layout = CIFAR_LAYOUT[name]
    meta = _unpickle(top / layout["meta"])
    classes = meta.get(layout["names_key"])
    if not isinstance(classes, list) or len(classes) != layout["num_classes"]:
        raise DatasetFormatError(
            f"{layout['meta']}: '{layout['names_key']}' should list {layout['num_classes']} class names"
        )
    classes = [c.decode("latin1") if isinstance(c, bytes) else str(c) for c in classes]
    train_x, train_y = _read_batches(top, layout["train"], layout["label_key"], len(classes))
    test_x, test_y = _read_batches(top, layout["test"], layout["label_key"], len(classes))
    return RawDataset(train_x, train_y, test_x, test_y, classes)


def load_cifar_archive(archive: str | os.PathLike, name: str) -> RawDataset:
    """Extract an official CIFAR python archive to a temporary directory and parse it."""
    from torchvision.datasets.utils import extract_archive

    archive = Path(archive)
    layout = CIFAR_LAYOUT[name]
    with tempfile.TemporaryDirectory(prefix=f"lpa-{name}-") as tmp:
        try:
            extract_archive(os.fspath(archive), tmp)
        except (tarfile.TarError, EOFError, zlib.error, OSError, RuntimeError) as err:
            raise DatasetFormatError(f"cannot extract {archive}: {type(err).__name__}: {err}") from None
        top = Path(tmp) / layout["top"]
        if not top.is_dir():
            found = ", ".join(sorted(os.listdir(tmp))) or "nothing"
            raise DatasetFormatError(
                f"{archive.name} has no top-level directory {layout['top']}/ (found: {found}); "
                f"is it the official python-version archive?"
            )
        return read_cifar_dir(top, name)
