"""How a new picture becomes one of a dataset's images: the conversion its own images went through.

A trained model saw uint8 3 x S x S images made by its dataset's reader (download@<dataset>);
`lpa.experiments.predict` and the transfer experiments must give it any other picture the same way, before
the fitted transform (lpa.data.transforms). The recipe is decided by the dataset's meta.json
(`conversion_for`) and saved inside every model file (lpa.train.modelfile), so a model file alone says
how to feed it:

    rgb    convert to RGB, resize to S x S (Pillow bilinear, antialiased when shrinking): CIFAR,
           SVHN, CUB-200-2011 (not cropped: a new picture has no bounding box), image folders
    grey   the embedded digits: convert to grey, shrink to the original 8 x 8, quantise to the
           original 17 grey levels (0..16 -> 0..255), upscale to S x S (bilinear) and replicate to
           3 channels, exactly as lpa.data.digits converts scikit-learn's digits. Those digits are
           light strokes on a dark ground: a dark digit on white paper must be inverted first.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from lpa.data.digits import GREY_LEVELS, resize_grey

KINDS = ("rgb", "grey")


@dataclass(frozen=True)
class ImageConversion:
    """Picture -> uint8 3 x size x size, as one dataset's images were made."""

    kind: str                 # rgb | grey
    size: int                 # S: the model's input size
    source_size: int = 0      # grey: the original images' size (8 for the digits)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown image conversion {self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.size <= 0 or (self.kind == "grey" and self.source_size <= 0):
            raise ValueError(f"image conversion sizes must be positive, got {self}")

    def convert(self, picture: Image.Image) -> np.ndarray:
        """uint8 3 x size x size from a Pillow image of any size and mode."""
        if self.kind == "rgb":
            img = picture.convert("RGB")
            if img.size != (self.size, self.size):
                img = img.resize((self.size, self.size), Image.Resampling.BILINEAR)
            return np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1))
        small = picture.convert("L").resize((self.source_size, self.source_size), Image.Resampling.BILINEAR)
        top = GREY_LEVELS - 1
        levels = np.rint(np.asarray(small, dtype=np.float64) * (top / 255.0))
        grey = np.clip(np.rint(levels * (255.0 / top)), 0, 255).astype(np.uint8)
        return resize_grey(grey[None], self.size)[0]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Any) -> ImageConversion:
        """From `to_dict`; ValueError (one line) if the record is not one."""
        if not isinstance(record, dict) or set(record) - {"kind", "size", "source_size"} or "kind" not in record:
            raise ValueError(f"not an image conversion record: {record!r}")
        try:
            return cls(**record)
        except TypeError as err:
            raise ValueError(f"not an image conversion record: {record!r} ({err})") from None


def conversion_for(meta: dict) -> ImageConversion:
    """The conversion of dataset directory `meta` (meta.json of data/extracted or data/processed)."""
    size = int(meta["image_shape"][-1])
    source = meta.get("source") or {}
    if meta.get("dataset") == "digits":
        original = source.get("original_size") or [8, 8]
        return ImageConversion("grey", size, int(original[-1]))
    return ImageConversion("rgb", size)
