"""The segmentation thumbnails: the first few images of a mask dataset as one segment stage saw
them (photo, ground-truth mask, thresholded map, thresholded centre prior, the map's Jaccard), small,
as PNG files in one folder. The segment stage writes them (lpa.experiments.segmentation); the report
reads them for its grid across methods (lpa.report.overlay_grid). A leaf, so that both import the
one format and lpa.report stays torch-free.

Layout of the folder (FOLDER, inside the stage's figure folder):
    index.json         {"names": [...], "jaccard": [...]}, one entry per image i
    <i>-image.png      the photo, RGB, at most SIDE pixels on its longer side
    <i>-mask.png       the ground-truth mask, 1-bit
    <i>-binary.png     the run's thresholded map, 1-bit
    <i>-prior.png      the thresholded centre prior, 1-bit
PNG, not a NumPy archive: a run record in git is something a reader can open.
"""
from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lpa.files import write_bytes, write_json

FOLDER = "first_images"
INDEX = "index.json"
SIDE = 128   # pixels on the longer side: a grid cell, not a measurement
MASKS = ("mask", "binary", "prior")


@dataclass(frozen=True)
class Thumbnail:
    name: str
    jaccard: float
    image: np.ndarray    # H x W x 3 uint8
    mask: np.ndarray     # H x W bool
    binary: np.ndarray   # H x W bool
    prior: np.ndarray    # H x W bool


def shrink(a: np.ndarray) -> np.ndarray:
    """`a` (H x W [x 3], uint8 or bool) shrunk to SIDE on its longer side (never enlarged):
    bilinear for photos, nearest for masks (a mask stays a mask)."""
    h, w = a.shape[:2]
    scale = min(1.0, SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    is_mask = a.dtype == bool
    picture = Image.fromarray(a.astype(np.uint8) * 255 if is_mask else a)
    small = np.asarray(picture.resize(size, Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR))
    return small >= 128 if is_mask else small


def _png(a: np.ndarray) -> bytes:
    picture = Image.fromarray(a.astype(np.uint8) * 255).convert("1") if a.dtype == bool else Image.fromarray(a)
    buffer = io.BytesIO()
    picture.save(buffer, format="png", optimize=True)
    return buffer.getvalue()


def save_thumbnails(items: Sequence[Thumbnail], folder: Path) -> Path:
    """Each item shrunk and written into `folder` (created) in the layout above."""
    folder = Path(folder)
    for i, item in enumerate(items):
        write_bytes(folder / f"{i}-image.png", _png(shrink(np.asarray(item.image, dtype=np.uint8))))
        for part in MASKS:
            write_bytes(folder / f"{i}-{part}.png", _png(shrink(np.asarray(getattr(item, part), dtype=bool))))
    write_json(folder / INDEX, {"names": [it.name for it in items], "jaccard": [float(it.jaccard) for it in items]})
    return folder


def load_thumbnails(folder: Path) -> list[Thumbnail]:
    """The items `save_thumbnails` wrote into `folder` (masks back as bool)."""
    folder = Path(folder)
    index = json.loads((folder / INDEX).read_text())

    def read(i: int, part: str) -> np.ndarray:
        with Image.open(folder / f"{i}-{part}.png") as picture:
            return np.asarray(picture.convert("RGB" if part == "image" else "L"))

    return [Thumbnail(name, float(score), read(i, "image"), *(read(i, part) >= 128 for part in MASKS))
            for i, (name, score) in enumerate(zip(index["names"], index["jaccard"]))]
