"""The embedded dataset: scikit-learn's 8 x 8 handwritten digits (bundled, no network).

Grey levels 0..16 are mapped to 0..255, the 8 x 8 image is resized to `image_size` (bilinear)
and replicated to 3 channels; a stratified train/test split with a fixed seed.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from lpa.data.types import RawDataset

GREY_LEVELS = 17  # scikit-learn's digits have grey levels 0..16


def resize_grey(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 N x h x w -> uint8 N x 3 x size x size (bilinear, grey replicated to RGB)."""
    out = np.empty((images.shape[0], size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(np.repeat(out[:, None], 3, axis=1))


def load_digits_dataset(image_size: int = 32, test_fraction: float = 0.2, split_seed: int = 0) -> RawDataset:
    # local: scikit-learn costs ~1.5 s to import (measured); only download@digits needs it
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    grey = np.clip(np.rint(digits.images * (255.0 / (GREY_LEVELS - 1))), 0, 255).astype(np.uint8)
    images = resize_grey(grey, image_size)
    labels = digits.target.astype(np.int64)
    index = np.arange(labels.shape[0])
    train_idx, test_idx = train_test_split(
        index, test_size=test_fraction, random_state=split_seed, stratify=labels
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return RawDataset(
        images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
        [str(d) for d in range(10)],
        source={"kind": "sklearn.datasets.load_digits", "images": int(labels.shape[0]),
                "original_size": [8, 8], "resize": "bilinear", "split": "stratified",
                "test_fraction": test_fraction, "split_seed": split_seed},
    )
