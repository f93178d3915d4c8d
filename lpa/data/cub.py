"""CUB-200-2011 from the official archive `CUB_200_2011.tgz`.

The archive holds one top folder `CUB_200_2011/` with, among others::

    images.txt               <image_id> <path under images/>
    image_class_labels.txt   <image_id> <class_id 1..K>
    train_test_split.txt     <image_id> <1 = train | 0 = test>
    bounding_boxes.txt       <image_id> <x> <y> <width> <height>    (pixels, floats)
    classes.txt              <class_id> <name>, e.g. 001.Black_footed_Albatross
    images/<class folder>/<file>.jpg

Labels are class_id - 1, class names come from classes.txt (in class_id order), the splits from
train_test_split.txt, and images are kept in image_id order within each split. Every image is
converted to RGB (a few CUB images are greyscale), cropped to its bounding box if `crop`
(integer box: floor(x), floor(y), ceil(x + width), ceil(y + height), clamped to the image), then
resized to `image_size` x `image_size` with Pillow's bilinear resize, as lpa.data.imagefolder does.

The archive is read in one streaming pass (no extraction to disk; the text files may come after
the images in a tar, so the JPEG bytes are kept in memory: about 1.1 GB for the real archive),
then the JPEGs are decoded by a small process pool, as lpa.data.imagefolder.read_images does for
large counts. Measured on a full-size archive in the official layout (11,788 JPEGs of 500 x 375,
0.98 GB; 2 shared cores): 45 s, peak 1.5 GB in the main process.
"""
from __future__ import annotations

import io
import math
import os
import tarfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lpa.data.conversion import ImageConversion
from lpa.errors import DatasetFormatError
from lpa.data.fetch import redownload_advice
from lpa.data.imagefolder import IMAGE_ERRORS
from lpa.data.types import RawDataset

DATASET = "cub200"  # its name in params.yaml data.datasets: what to re-run is download@cub200
TOP = "CUB_200_2011"
IMAGES_DIR = "images"
TEXT_FILES = {
    "images": "images.txt",
    "labels": "image_class_labels.txt",
    "split": "train_test_split.txt",
    "boxes": "bounding_boxes.txt",
    "classes": "classes.txt",
}
CHUNK = 500            # images per worker task
PARALLEL_MIN = 2000    # fewer images than this: decode in this process (pool start-up is not free)

# what reading a truncated, corrupt or foreign archive raises (gzip.BadGzipFile is an OSError)
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)

Box = tuple[float, float, float, float]


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:100]


def _member_name(name: str) -> str:
    return name.removeprefix("./")


def read_archive(archive: Path, want_boxes: bool) -> tuple[dict[str, str], dict[str, bytes]]:
    """One streaming pass over the archive: (text files by role, JPEG bytes by path under images/)."""
    wanted = {f"{TOP}/{name}": role for role, name in TEXT_FILES.items() if want_boxes or role != "boxes"}
    texts: dict[str, str] = {}
    images: dict[str, bytes] = {}
    image_prefix = f"{TOP}/{IMAGES_DIR}/"
    tops: set[str] = set()
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                name = _member_name(member.name)
                tops.add(name.split("/", 1)[0])
                if not member.isfile():
                    continue
                if name in wanted:
                    payload = tar.extractfile(member).read()
                    try:
                        texts[wanted[name]] = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise DatasetFormatError(f"{archive}: {name} is not a text file (not UTF-8); "
                                                 f"{redownload_advice(archive, DATASET)}") from None
                elif name.startswith(image_prefix):
                    images[name[len(image_prefix):]] = tar.extractfile(member).read()
    except ARCHIVE_ERRORS as err:
        raise DatasetFormatError(f"cannot read {archive} ({type(err).__name__}: {_first_line(err)}): it is not "
                                 f"the official CUB-200-2011 archive; {redownload_advice(archive, DATASET)}") from None
    if TOP not in tops:
        found = ", ".join(sorted(t for t in tops if t)[:8]) or "nothing"
        raise DatasetFormatError(f"{archive} has no top-level directory {TOP}/ (found: {found}): it is not the "
                                 f"official CUB-200-2011 archive; {redownload_advice(archive, DATASET)}")
    for member, role in wanted.items():
        if role not in texts:
            raise DatasetFormatError(f"{archive}: {member} is missing from the archive: it is not the official "
                                     f"CUB-200-2011 archive; {redownload_advice(archive, DATASET)}")
    return texts, images


def _rows(text: str, file: str, fields: int, archive: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line; `fields` counts the leading id. The last
    field may hold spaces (a path or a name)."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=fields - 1)
        if len(parts) != fields:
            raise DatasetFormatError(f"{archive}: {TOP}/{file} line {number} ({line.strip()[:60]!r}) does not "
                                     f"have {fields} fields; {redownload_advice(archive, DATASET)}")
        rows.append((number, parts))
    return rows


def _parse_int(value: str, file: str, number: int, archive: Path, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DatasetFormatError(f"{archive}: {TOP}/{file} line {number}: {what} {value!r} is not an integer; "
                                 f"{redownload_advice(archive, DATASET)}") from None


def _by_id(text: str, role: str, fields: int, archive: Path) -> dict[int, list[str]]:
    """{id: the other fields} of one text file; ids must be positive integers, each listed once."""
    file = TEXT_FILES[role]
    out: dict[int, list[str]] = {}
    for number, parts in _rows(text, file, fields, archive):
        key = _parse_int(parts[0], file, number, archive, "id")
        if key < 1:
            raise DatasetFormatError(f"{archive}: {TOP}/{file} line {number}: id {key} is not positive; "
                                     f"{redownload_advice(archive, DATASET)}")
        if key in out:
            raise DatasetFormatError(f"{archive}: {TOP}/{file} line {number}: id {key} is listed twice; "
                                     f"{redownload_advice(archive, DATASET)}")
        out[key] = parts[1:]
    if not out:
        raise DatasetFormatError(f"{archive}: {TOP}/{file} is empty; {redownload_advice(archive, DATASET)}")
    return out


def _same_ids(ids: set[int], other: dict[int, list[str]], role: str, archive: Path) -> None:
    if set(other) != ids:
        only_images = sorted(ids - set(other))[:5]
        only_other = sorted(set(other) - ids)[:5]
        raise DatasetFormatError(
            f"{archive}: the image ids of {TOP}/{TEXT_FILES[role]} differ from those of {TOP}/images.txt "
            f"(missing: {only_images or 'none'}; unknown: {only_other or 'none'}); "
            f"{redownload_advice(archive, DATASET)}"
        )


def parse_metadata(texts: dict[str, str], archive: Path) -> dict:
    """Classes, and per image id (ascending): path, label (0-based), is_train, box (or None)."""
    classes_rows = _by_id(texts["classes"], "classes", 2, archive)
    count = len(classes_rows)
    if sorted(classes_rows) != list(range(1, count + 1)):
        raise DatasetFormatError(f"{archive}: {TOP}/classes.txt must number its classes 1..{count} "
                                 f"(found ids {sorted(classes_rows)[:8]}...); {redownload_advice(archive, DATASET)}")
    classes = [classes_rows[k][0].strip() for k in range(1, count + 1)]

    paths = _by_id(texts["images"], "images", 2, archive)
    ids = set(paths)
    labels = _by_id(texts["labels"], "labels", 2, archive)
    split = _by_id(texts["split"], "split", 2, archive)
    _same_ids(ids, labels, "labels", archive)
    _same_ids(ids, split, "split", archive)
    boxes = None
    if "boxes" in texts:
        boxes = _by_id(texts["boxes"], "boxes", 5, archive)
        _same_ids(ids, boxes, "boxes", archive)

    records = []
    for image_id in sorted(ids):
        class_id = labels[image_id][0].strip()
        label = int(class_id) if class_id.isascii() and class_id.isdigit() else 0
        if not 1 <= label <= count:
            raise DatasetFormatError(f"{archive}: {TOP}/image_class_labels.txt gives image {image_id} the class "
                                     f"{class_id!r}, not one of 1..{count} (classes.txt); "
                                     f"{redownload_advice(archive, DATASET)}")
        flag = split[image_id][0].strip()
        if flag not in ("0", "1"):
            raise DatasetFormatError(f"{archive}: {TOP}/train_test_split.txt gives image {image_id} the value "
                                     f"{flag!r}, not 1 (train) or 0 (test); {redownload_advice(archive, DATASET)}")
        box = None
        if boxes is not None:
            try:
                box = tuple(float(v) for v in boxes[image_id])
            except ValueError:
                box = (math.nan,)
            if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
                raise DatasetFormatError(
                    f"{archive}: {TOP}/bounding_boxes.txt gives image {image_id} the box "
                    f"{' '.join(boxes[image_id])!r}, not <x> <y> <width> <height> with a positive size; "
                    f"{redownload_advice(archive, DATASET)}")
        records.append({"id": image_id, "path": paths[image_id][0].strip(), "label": label - 1,
                        "train": flag == "1", "box": box})
    for split_name, flag in (("train", True), ("test", False)):
        if not any(r["train"] == flag for r in records):
            raise DatasetFormatError(f"{archive}: {TOP}/train_test_split.txt puts no image in the {split_name} "
                                     f"split; {redownload_advice(archive, DATASET)}")
    return {"classes": classes, "records": records}


def crop_box(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The integer crop (left, upper, right, lower) of a CUB box (x, y, w, h) in a width x height image:
    floor of x, y; ceil of x + w, y + h; clamped to the image."""
    x, y, w, h = box
    left = min(max(math.floor(x), 0), width)
    upper = min(max(math.floor(y), 0), height)
    right = min(max(math.ceil(x + w), 0), width)
    lower = min(max(math.ceil(y + h), 0), height)
    return left, upper, right, lower


def convert_image(img: Image.Image, size: int, crop: tuple[int, int, int, int] | None) -> np.ndarray:
    """uint8 3 x size x size: RGB, cut to the integer `crop` box (if given), then the conversion a
    new picture gets (lpa.data.conversion: bilinear resize), so lpa.experiments.predict feeds CUB models alike."""
    img = img.convert("RGB")
    return ImageConversion("rgb", size).convert(img.crop(crop) if crop is not None else img)


Item = tuple[int, str, bytes, Box | None]  # image id, path under images/, JPEG bytes, box


def _decode_chunk(items: list[Item], size: int, where: str) -> tuple[np.ndarray, int]:
    """(uint8 n x 3 x size x size, how many were not stored as RGB) for (id, path, JPEG, box) items."""
    out = np.empty((len(items), 3, size, size), dtype=np.uint8)
    not_rgb = 0
    archive = Path(where)
    for i, (image_id, path, payload, box) in enumerate(items):
        try:
            with Image.open(io.BytesIO(payload)) as img:
                crop = None
                if box is not None:
                    crop = crop_box(box, *img.size)
                    if crop[2] <= crop[0] or crop[3] <= crop[1]:
                        raise DatasetFormatError(
                            f"{archive}: {TOP}/bounding_boxes.txt gives image {image_id} the box "
                            f"{' '.join(f'{v:g}' for v in box)}, which lies outside its {img.size[0]} x "
                            f"{img.size[1]} image; {redownload_advice(archive, DATASET)}")
                not_rgb += img.mode != "RGB"
                out[i] = convert_image(img, size, crop)
        except IMAGE_ERRORS as err:
            reason = ("not an image Pillow can identify" if isinstance(err, UnidentifiedImageError)
                      else _first_line(err))
            raise DatasetFormatError(f"cannot read image {TOP}/{IMAGES_DIR}/{path} (image {image_id}) in {archive} "
                                     f"({type(err).__name__}: {reason}); "
                                     f"{redownload_advice(archive, DATASET)}") from None
    return out, not_rgb


def decode_images(items: list[Item], size: int, where: str,
                  workers: int | None = None) -> tuple[np.ndarray, int]:
    """Decode items in order, in a process pool when there are many."""
    chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1 and len(items) >= PARALLEL_MIN:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_decode_chunk, chunks, [size] * len(chunks), [where] * len(chunks)))
    else:
        parts = [_decode_chunk(c, size, where) for c in chunks]
    if not parts:
        return np.empty((0, 3, size, size), dtype=np.uint8), 0
    return np.ascontiguousarray(np.concatenate([p[0] for p in parts])), sum(p[1] for p in parts)


def load_cub_archive(archive: str | os.PathLike, image_size: int = 80, crop: bool = True,
                     workers: int | None = None) -> RawDataset:
    """Read an official CUB_200_2011.tgz into a RawDataset (see the module docstring).

    Anything malformed (not a tar/gzip, a missing member, a line that does not parse, ids that
    differ between files, a class out of range, an unreadable image) is a DatasetFormatError
    naming the archive, the member and what to do."""
    archive = Path(archive)
    texts, jpegs = read_archive(archive, want_boxes=crop)
    meta = parse_metadata(texts, archive)
    records = meta["records"]
    items = []
    for r in records:
        payload = jpegs.get(r["path"])
        if payload is None:
            raise DatasetFormatError(f"{archive}: {TOP}/{IMAGES_DIR}/{r['path']} (image {r['id']} of images.txt) "
                                     f"is missing from the archive; {redownload_advice(archive, DATASET)}")
        items.append((r["id"], r["path"], payload, r["box"] if crop else None))
    del jpegs  # JPEGs images.txt does not list are ignored
    images, not_rgb = decode_images(items, image_size, os.fspath(archive), workers)
    del items
    labels = np.array([r["label"] for r in records], dtype=np.int64)
    train = np.array([r["train"] for r in records], dtype=bool)
    source = {
        "crop": crop,
        "box": "floor(x), floor(y), ceil(x + width), ceil(y + height), clamped to the image" if crop else None,
        "image_size": image_size,
        "resize": "bilinear",
        "order": "image_id",
        "counts": {"images": len(records), "train": int(train.sum()), "test": int((~train).sum()),
                   "classes": len(meta["classes"]), "converted_to_rgb": not_rgb},
    }
    return RawDataset(np.ascontiguousarray(images[train]), labels[train],
                      np.ascontiguousarray(images[~train]), labels[~train], meta["classes"], source=source)
