"""A dataset of image files: ROOT/train/<class>/*.{png,jpg,jpeg} and ROOT/test/<class>/*.

Classes are the sorted class folder names (the same set must exist under train and test); every
image is converted to RGB and resized to `image_size` x `image_size` (bilinear, Pillow's
antialiased resize) unless it already has that size. Files are read in a deterministic order
(class, then file name) by a small process pool: JPEG decoding of tiny images is bound by Python
overhead, so threads do not help while processes scale with the cores.

ROOT may also be an archive (.tar, .tar.gz, .tgz, .zip) holding train/ and test/ at its top level
or inside one top-level folder; it is extracted to a temporary directory first.
"""
from __future__ import annotations

import hashlib
import os
import struct
import tarfile
import tempfile
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from lpa.data.arrays import SPLITS
from lpa.data.conversion import ImageConversion
from lpa.errors import DatasetFormatError, WriteError
from lpa.files import REFUSED_WRITE, write_problem
from lpa.data.types import RawDataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
CHUNK = 1000           # files per worker task
# what Pillow raises for a truncated, corrupt or unknown image file (UnidentifiedImageError is an
# OSError; some plugins raise SyntaxError or struct.error on malformed headers)
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error,
                Image.DecompressionBombError)
PARALLEL_MIN = 4000    # fewer files than this: read in this process (pool start-up is not free)


def _visible_dirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """The files directly in `folder` with one of `extensions` (lower case), not hidden, sorted by name."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions
    )


def scan_imagefolder(root: str | os.PathLike) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """List (path, label) per split; raise DatasetFormatError with one clear line on bad layouts."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(
            f"image folder root {root} does not exist or is not a directory; set "
            f"data.imagefolder.download.root to a folder holding train/<class>/ and test/<class>/"
        )
    class_sets = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise DatasetFormatError(
                f"{split_dir} not found: an image folder needs {root}/train/<class>/*.png|jpg|jpeg "
                f"and {root}/test/<class>/*"
            )
        class_sets[split] = _visible_dirs(split_dir)
    train_classes, test_classes = class_sets["train"], class_sets["test"]
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DatasetFormatError(
            f"class folders differ between {root}/train and {root}/test: "
            f"only in train: {', '.join(only_train) or 'none'}; only in test: {', '.join(only_test) or 'none'}"
        )
    classes = train_classes
    if not classes:
        raise DatasetFormatError(f"no images under {root}: {root}/train has no class folders")
    files: dict[str, list[tuple[Path, int]]] = {}
    for split in SPLITS:
        items = []
        for label, name in enumerate(classes):
            found = image_files(root / split / name)
            if not found:
                raise DatasetFormatError(
                    f"no images ({', '.join(IMAGE_EXTENSIONS)}) in class folder {root / split / name}"
                )
            items.extend((p, label) for p in found)
        files[split] = items
    return classes, files


def _read_chunk(paths: list[str], size: int) -> np.ndarray:
    conversion = ImageConversion("rgb", size)  # the same conversion lpa.experiments.predict gives a new picture
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                out[i] = conversion.convert(img)
        except IMAGE_ERRORS as err:
            first = (str(err).strip().splitlines() or [""])[0][:100]
            raise DatasetFormatError(f"cannot read image {path} ({type(err).__name__}: {first}); "
                                     f"replace or remove that file") from None
    return out


def read_images(paths: list[Path], size: int, workers: int | None = None) -> np.ndarray:
    """uint8 N x 3 x size x size from image files, in the given order."""
    names = [os.fspath(p) for p in paths]
    chunks = [names[i:i + CHUNK] for i in range(0, len(names), CHUNK)]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1 and len(names) >= PARALLEL_MIN:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_read_chunk, chunks, [size] * len(chunks)))
    else:
        parts = [_read_chunk(c, size) for c in chunks]
    if not parts:
        return np.empty((0, 3, size, size), dtype=np.uint8)
    return np.ascontiguousarray(np.concatenate(parts))


def _fingerprint(root: Path, files: dict[str, list[tuple[Path, int]]]) -> dict:
    digest = hashlib.sha256()
    total = 0
    count = 0
    for split in SPLITS:
        for path, label in files[split]:
            st = path.stat()
            total += st.st_size
            count += 1
            digest.update(f"{path.relative_to(root).as_posix()}\t{st.st_size}\t{label}\n".encode())
    return {"files": count, "bytes": total, "listing_sha256": digest.hexdigest()}


def _is_archive(path: Path) -> bool:
    return path.is_file() and any(path.name.lower().endswith(s) for s in ARCHIVE_SUFFIXES)


def _find_root(extracted: Path, archive: Path) -> Path:
    if all((extracted / s).is_dir() for s in SPLITS):
        return extracted
    tops = [p for p in extracted.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(tops) == 1 and all((tops[0] / s).is_dir() for s in SPLITS):
        return tops[0]
    raise DatasetFormatError(f"{archive} holds no train/ and test/ folders (at its top level or in one folder)")


def load_imagefolder(root: str | os.PathLike, image_size: int = 32, workers: int | None = None) -> RawDataset:
    """Read ROOT (a folder, or an archive of one) into a RawDataset."""
    root = Path(root)
    if _is_archive(root):
        # local: torchvision costs ~2-4 s to import (measured); only this archive/download step needs it
        from torchvision.datasets.utils import extract_archive

        with tempfile.TemporaryDirectory(prefix="lpa-imagefolder-") as tmp:
            try:
                extract_archive(os.fspath(root), tmp)
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError, RuntimeError,
                    ValueError) as err:
                if isinstance(err, OSError) and err.errno in REFUSED_WRITE:  # the archive may be fine, the disk is not
                    raise WriteError(tmp, f"the files of {root}", write_problem(err, Path(tmp), 0)) from None
                first = (str(err).strip().splitlines() or [""])[0][:100]
                raise DatasetFormatError(f"cannot extract {root} ({type(err).__name__}: {first}); "
                                         f"replace it with a good archive or point the root at a folder") from None
            data = load_imagefolder(_find_root(Path(tmp), root), image_size, workers)
        data.source["root"] = os.fspath(root)
        data.source["archive"] = True
        return data

    classes, files = scan_imagefolder(root)
    arrays = {}
    for split in SPLITS:
        paths = [p for p, _ in files[split]]
        arrays[split] = (
            read_images(paths, image_size, workers),
            np.array([label for _, label in files[split]], dtype=np.int64),
        )
    source = {"kind": "imagefolder", "root": os.fspath(root), "resize": "bilinear",
              "image_size": image_size, **_fingerprint(root, files)}
    return RawDataset(*arrays["train"], *arrays["test"], classes, source=source)
