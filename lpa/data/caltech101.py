"""Caltech-101 (Fei-Fei, Fergus, Perona 2004) with the customary per-class split.

The images are `101_ObjectCategories/<class>/image_NNNN.jpg`: 102 folders, the 101 object classes
and `BACKGROUND_Google` (clutter, not a class: always left out, as torchvision and the literature
do). Where they are read from:

    official   caltech-101.zip (CaltechDATA, MD5-checked by lpa.data.fetch), which holds
               caltech-101/101_ObjectCategories.tar.gz: that inner archive is streamed from the zip
    copy       a folder holding (or named) 101_ObjectCategories/, or a .tar/.tar.gz/.tgz/.zip archive
               holding it at its top level or inside one top folder (an archive holding the
               official 101_ObjectCategories.tar.gz is read as the official zip is)

Archives are read in one streaming pass without extracting them (the JPEG bytes stay in memory:
about 130 MB for the whole set). Only .jpg/.jpeg/.png files count (the official
BACKGROUND_Google folder also holds a file `tmp`).

The dataset defines no split. Per class (classes: the sorted folder names, so labels match
torchvision's Caltech101), its image files sorted by name are permuted by a generator seeded
with (split_seed, CRC-32 of the class name), so one class's draw depends on nothing but its own
files: the first `train_per_class` are train, the next `test_per_class` (0: all the rest) test.
A class with no more than `train_per_class` images would have no test image: that is a
DataParamError naming the class and the largest train_per_class that works (the real set's smallest
class, inline_skate, has 31 images, so 30 leaves it one test image). Within each split, images
are in label order, then file name order.

Every kept image is converted to RGB (some are greyscale) and resized to image_size x image_size
(Pillow bilinear, the aspect ratio not kept), as lpa.data.conversion converts a new picture; the
images not drawn are never decoded.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
import zlib
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from lpa.data.conversion import ImageConversion
from lpa.data.fetch import redownload_advice
from lpa.data.imagefolder import IMAGE_ERRORS, IMAGE_EXTENSIONS, image_files
from lpa.data.types import RawDataset
from lpa.errors import DataParamError, DatasetFormatError

DATASET = "caltech101"                     # its name in params.yaml: what to re-run is download@caltech101
TOP = "101_ObjectCategories"
INNER_ARCHIVE = f"{TOP}.tar.gz"            # inside the official caltech-101.zip
BACKGROUND = "BACKGROUND_Google"
CHUNK = 500            # images per worker task
PARALLEL_MIN = 2000    # fewer images than this: decode in this process (pool start-up is not free)

# what reading a truncated, corrupt or foreign archive raises (gzip.BadGzipFile is an OSError;
# a zip member whose CRC does not match raises BadZipFile)
ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)

Payload = Path | bytes                                  # a file in a folder, or a member's bytes
Listing = dict[str, dict[str, Payload]]                 # class folder -> image file name -> payload


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:100]


def _advice(source: Path, official: bool) -> str:
    if official:
        return redownload_advice(source, DATASET)
    return (f"replace {source} with a good copy, or set data.caltech101.download.root to a folder or "
            f"archive holding {TOP}/")


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def _member_key(name: str) -> tuple[str, str] | None:
    """(class, file) if archive member `name` is <TOP>/<class>/<image>, at the top level or inside
    one top folder; None for anything else (Annotations, __MACOSX, BACKGROUND_Google's `tmp`)."""
    parts = PurePosixPath(name.removeprefix("./")).parts
    for start in (0, 1):
        if len(parts) == start + 3 and parts[start] == TOP and not parts[0].startswith("__MACOSX"):
            return (parts[start + 1], parts[-1]) if _is_image_name(parts[-1]) else None
    return None


def _is_inner_archive(name: str) -> bool:
    path = PurePosixPath(name.removeprefix("./"))
    return path.name == INNER_ARCHIVE and not path.parts[0].startswith("__MACOSX")


def _read_tar_stream(fileobj, listing: Listing) -> None:
    """One streaming pass; a member that is the official inner archive is streamed in turn (a
    copy that holds 101_ObjectCategories.tar.gz is read as the official zip is)."""
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            if _is_inner_archive(member.name):
                _read_tar_stream(tar.extractfile(member), listing)
            elif (key := _member_key(member.name)) is not None:
                listing.setdefault(key[0], {})[key[1]] = tar.extractfile(member).read()


def _read_zip(archive: Path, listing: Listing) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            if _is_inner_archive(info.filename):  # the official caltech-101.zip: the images are in here
                with zf.open(info) as stream:
                    _read_tar_stream(stream, listing)
            elif (key := _member_key(info.filename)) is not None:
                listing.setdefault(key[0], {})[key[1]] = zf.read(info)


def _folder_listing(root: Path) -> Listing:
    top = root / TOP if (root / TOP).is_dir() else root if root.name == TOP else None
    if top is None:
        raise DatasetFormatError(f"{root} holds no {TOP}/ folder; set data.caltech101.download.root to a folder "
                                 f"holding (or named) {TOP}/, or to an archive of it")
    return {d.name: {p.name: p for p in image_files(d)}
            for d in sorted(top.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def read_listing(source: Path, official: bool) -> Listing:
    """Every image of `source` (a folder, a zip, a tar), by class folder and file name
    (BACKGROUND_Google included); DatasetFormatError if it cannot be read or holds no TOP/."""
    if source.is_dir():
        listing = _folder_listing(source)
    elif not source.is_file():
        raise DatasetFormatError(f"Caltech-101 copy {source} does not exist; set data.caltech101.download.root to "
                                 f"a folder holding {TOP}/ or an archive of it (e.g. data/raw/caltech101.tar.gz)")
    else:
        listing = {}
        try:
            if zipfile.is_zipfile(source):
                _read_zip(source, listing)
            else:
                with open(source, "rb") as f:
                    _read_tar_stream(f, listing)
        except ARCHIVE_ERRORS as err:
            raise DatasetFormatError(f"cannot read {source} ({type(err).__name__}: {_first_line(err)}): it is not a "
                                     f"complete Caltech-101 archive; {_advice(source, official)}") from None
    if not any(name != BACKGROUND for name in listing):
        raise DatasetFormatError(f"{source} holds no {TOP}/<class>/ folders with images (.jpg, .jpeg, .png); "
                                 f"{_advice(source, official)}")
    return listing


def draw_split(files: list[str], class_name: str, train_per_class: int, test_per_class: int,
               seed: int) -> tuple[list[str], list[str]]:
    """(train, test) file names of one class, each sorted: a seeded draw of train_per_class, then
    test_per_class (0: all the rest) of the remaining ones."""
    names = sorted(files)
    rng = np.random.default_rng([seed, zlib.crc32(class_name.encode())])
    order = rng.permutation(len(names))
    train = order[:train_per_class]
    rest = order[train_per_class:]
    test = rest[:test_per_class] if test_per_class else rest
    return [names[i] for i in sorted(train)], [names[i] for i in sorted(test)]


def check_class_sizes(listing: Listing, classes: list[str], train_per_class: int, source: Path) -> None:
    """DataParamError when a class has no image left for the test split."""
    small = sorted((len(listing[c]), c) for c in classes if len(listing[c]) <= train_per_class)
    if small:
        fewest = small[0][0]
        named = ", ".join(f"{c} ({n} images)" for n, c in small[:5]) + (", ..." if len(small) > 5 else "")
        fix = (f"set it to at most {fewest - 1}" if fewest > 1 else "remove that class folder from the copy")
        raise DataParamError(f"data.caltech101.download.train_per_class={train_per_class} leaves no test image "
                             f"for {len(small)} class(es) of {source}: {named}; {fix}")


Item = tuple[str, Payload]  # (class/file for messages, payload)


def _decode_chunk(items: list[Item], size: int, where: str, advice: str) -> tuple[np.ndarray, int]:
    """(uint8 n x 3 x size x size, how many were not stored as RGB)."""
    conversion = ImageConversion("rgb", size)  # the conversion a new picture gets (lpa.experiments.predict)
    out = np.empty((len(items), 3, size, size), dtype=np.uint8)
    not_rgb = 0
    for i, (name, payload) in enumerate(items):
        try:
            with Image.open(payload if isinstance(payload, Path) else io.BytesIO(payload)) as img:
                not_rgb += img.mode != "RGB"
                out[i] = conversion.convert(img)
        except IMAGE_ERRORS as err:
            reason = "not an image Pillow can identify" if isinstance(err, UnidentifiedImageError) else _first_line(err)
            raise DatasetFormatError(f"cannot read image {TOP}/{name} in {where} ({type(err).__name__}: {reason}); "
                                     f"{advice}") from None
    return out, not_rgb


def decode_images(items: list[Item], size: int, where: str, advice: str,
                  workers: int | None = None) -> tuple[np.ndarray, int]:
    """Decode items in order, in a process pool when there are many."""
    chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
    workers = workers or min(os.cpu_count() or 1, 8)
    n = len(chunks)
    if workers > 1 and len(items) >= PARALLEL_MIN:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_decode_chunk, chunks, [size] * n, [where] * n, [advice] * n))
    else:
        parts = [_decode_chunk(c, size, where, advice) for c in chunks]
    if not parts:
        return np.empty((0, 3, size, size), dtype=np.uint8), 0
    return np.ascontiguousarray(np.concatenate([p[0] for p in parts])), sum(p[1] for p in parts)


def _listing_sha256(listing: Listing) -> str:
    """A fingerprint of what was read: every class/file and its size, sorted."""
    digest = hashlib.sha256()
    for c in sorted(listing):
        for name in sorted(listing[c]):
            payload = listing[c][name]
            size = payload.stat().st_size if isinstance(payload, Path) else len(payload)
            digest.update(f"{c}/{name}\t{size}\n".encode())
    return digest.hexdigest()


def load_caltech101(source: str | os.PathLike, params: Mapping, *, official: bool,
                    workers: int | None = None) -> RawDataset:
    """Read Caltech-101 from `source` and draw the split of validated `data.caltech101.download`
    params (train_per_class, test_per_class, split_seed, image_size); see the module docstring.
    `official`: source is the MD5-checked caltech-101.zip (only the error advice differs)."""
    source = Path(source)
    advice = _advice(source, official)
    listing = read_listing(source, official)
    classes = sorted(c for c in listing if c != BACKGROUND)
    fingerprint = _listing_sha256(listing)
    check_class_sizes(listing, classes, params["train_per_class"], source)
    items: dict[str, list[Item]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    for label, c in enumerate(classes):
        drawn = draw_split(list(listing[c]), c, params["train_per_class"], params["test_per_class"],
                           params["split_seed"])
        for split, names in zip(("train", "test"), drawn):
            items[split] += [(f"{c}/{name}", listing[c][name]) for name in names]
            labels[split] += [label] * len(names)
    del listing  # the images not drawn (and BACKGROUND_Google) are not decoded
    size = params["image_size"]
    arrays, not_rgb = {}, 0
    for split in ("train", "test"):
        images, grey = decode_images(items[split], size, os.fspath(source), advice, workers)
        arrays[split] = (images, np.array(labels[split], dtype=np.int64))
        not_rgb += grey
    counts = {"classes": len(classes), "train": len(labels["train"]), "test": len(labels["test"]),
              "converted_to_rgb": not_rgb}
    source_record = {
        "left_out": [BACKGROUND],
        "split": {"train_per_class": params["train_per_class"], "test_per_class": params["test_per_class"],
                  "split_seed": params["split_seed"],
                  "draw": "per class: files sorted by name, permuted by default_rng([split_seed, crc32(class)])"},
        "image_size": size,
        "resize": "bilinear",
        "counts": counts,
        "listing_sha256": fingerprint,
    }
    return RawDataset(*arrays["train"], *arrays["test"], classes, source=source_record)
