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

from lpa.errors import DatasetFormatError, WriteError
from lpa.files import REFUSED_WRITE, write_problem
from lpa.data.fetch import redownload_advice
from lpa.data.sources import CIFAR_LAYOUT
from lpa.data.types import RawDataset


# What unpickling a truncated or foreign file raises (reducers fed garbage give the last ones)
UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, OSError, ValueError, AttributeError, ImportError,
                   TypeError, KeyError, IndexError, OverflowError)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise DatasetFormatError(f"{path.name} is missing from the archive (expected {path})") from None
    except UNPICKLE_ERRORS as err:  # truncated or not a pickle
        first = (str(err).strip().splitlines() or [""])[0][:100]
        raise DatasetFormatError(f"cannot read CIFAR batch {path.name}: {type(err).__name__}: {first}") from None
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


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def check_cifar_classes(classes: list[str], name: str, root: str) -> None:
    """An image-folder copy of CIFAR must have the official classes (sorted names = label order)."""
    expected = {"cifar10": list(CIFAR10_CLASSES)}.get(name)
    count = CIFAR_LAYOUT[name]["num_classes"]
    if len(classes) != count or (expected is not None and list(classes) != expected):
        raise DatasetFormatError(
            f"{root} is not a {name} image folder: it has {len(classes)} class folders "
            f"({', '.join(classes[:12])}{', ...' if len(classes) > 12 else ''}); {name} needs {count}"
            + (f" named {', '.join(expected)}" if expected else "")
        )


def load_cifar_archive(archive: str | os.PathLike, name: str) -> RawDataset:
    """Extract an official CIFAR python archive to a temporary directory and parse it.

    An archive that passed its MD5 check but is no gzipped tar, lacks the official top directory
    or holds unreadable batches is a DatasetFormatError naming it and what to do."""
    # local: torchvision costs ~2-4 s to import (measured); only this archive/download step needs it
    from torchvision.datasets.utils import extract_archive

    archive = Path(archive)
    layout = CIFAR_LAYOUT[name]
    official = f"the official {name} python-version archive"
    with tempfile.TemporaryDirectory(prefix=f"lpa-{name}-") as tmp:
        try:
            extract_archive(os.fspath(archive), tmp)
        except (tarfile.TarError, EOFError, zlib.error, OSError, RuntimeError) as err:
            if isinstance(err, OSError) and err.errno in REFUSED_WRITE:  # the archive may be fine, the disk is not
                raise WriteError(tmp, f"the files of {archive}", write_problem(err, Path(tmp), 0)) from None
            first = (str(err).strip().splitlines() or [""])[0][:100]
            raise DatasetFormatError(f"cannot extract {archive} ({type(err).__name__}: {first}): it is not "
                                     f"{official}; {redownload_advice(archive, name)}") from None
        top = Path(tmp) / layout["top"]
        if not top.is_dir():
            found = ", ".join(sorted(os.listdir(tmp))[:8]) or "nothing"
            raise DatasetFormatError(
                f"{archive} has no top-level directory {layout['top']}/ (found: {found}): it is not "
                f"{official}; {redownload_advice(archive, name)}"
            )
        try:
            return read_cifar_dir(top, name)
        except DatasetFormatError as err:
            raise DatasetFormatError(f"{archive}: {err}: it is not {official}; "
                                     f"{redownload_advice(archive, name)}") from None
