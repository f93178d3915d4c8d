"""A generated dataset where the object's position is known: scikit-learn's digits pasted at seeded
random places on a seeded textured background, with the digit's pixels as the test split's masks.

It stands in for Object Discovery (Rubinstein et al. 2013) where no real image+mask set can be
had: a model trained on these images can be scored, offline and in minutes, on whether its
attention finds the digit (lpa.experiments.segmentation), against a centre prior that cannot.

Each image: a background of smooth colour noise (a 4x4 random colour field upsampled bilinearly,
plus fine grain), values 0..140; the 8x8 digit (grey levels 0..16) resized to `digit_size`
(bilinear), then alpha-blended in a random bright colour at a uniformly random place. Mask: the
pixels where the digit's alpha is at least 0.25. The split is the digits dataset's (stratified).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from lpa.data.digits import GREY_LEVELS
from lpa.data.types import RawDataset

BACKGROUND_MAX = 140.0   # the background stays darker than the digit's ink
MASK_ALPHA = 0.25   # the stroke with its soft edge: at 16 px a digit is a few pixels wide


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 size x size x 3 in 0..BACKGROUND_MAX: a smooth colour field plus fine grain."""
    coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    grain = rng.uniform(-30, 30, size=(size, size, 3)).astype(np.float32)
    return np.clip(smooth * (BACKGROUND_MAX / 255.0) * 0.8 + grain + 20, 0, BACKGROUND_MAX)


def paste_digits(grey: np.ndarray, size: int, digit_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N x 3 x size x size images and bool N x size x size masks from N x 8 x 8 grey digits
    (0..GREY_LEVELS-1), one seeded background, colour and place per image."""
    if not 4 <= digit_size <= size:
        raise ValueError(f"digit_size {digit_size} must be between 4 and the image size {size}")
    rng = np.random.default_rng(seed)
    n = grey.shape[0]
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        ink = np.clip(np.rint(grey[i] * (255.0 / (GREY_LEVELS - 1))), 0, 255).astype(np.uint8)
        alpha = np.asarray(Image.fromarray(ink).resize((digit_size, digit_size), Image.Resampling.BILINEAR),
                           dtype=np.float32) / 255.0
        canvas = _background(rng, size)
        colour = rng.uniform(190, 255, size=3).astype(np.float32)
        top, left = rng.integers(0, size - digit_size + 1, size=2)
        window = canvas[top:top + digit_size, left:left + digit_size]
        canvas[top:top + digit_size, left:left + digit_size] = window * (1 - alpha[..., None]) + colour * alpha[..., None]
        masks[i, top:top + digit_size, left:left + digit_size] = alpha >= MASK_ALPHA
        images[i] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return images, masks


def load_pasted_digits(image_size: int = 32, digit_size: int = 16, test_fraction: float = 0.2,
                       split_seed: int = 0, seed: int = 0) -> RawDataset:
    """The dataset, with `test_masks` (bool N x H x W) for lpa.data.masks."""
    # local: scikit-learn costs ~1.5 s to import (measured); only download@pasted_digits needs it
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    images, masks = paste_digits(digits.images, image_size, digit_size, seed)
    train_idx, test_idx = train_test_split(np.arange(labels.shape[0]), test_size=test_fraction,
                                           random_state=split_seed, stratify=labels)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return RawDataset(
        images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], [str(d) for d in range(10)],
        source={"kind": "sklearn digits pasted on textured backgrounds (lpa.data.pasted_digits)",
                "image_size": image_size, "digit_size": digit_size, "seed": seed, "split": "stratified",
                "test_fraction": test_fraction, "split_seed": split_seed, "masks": "test split: test_masks.npy"},
        test_masks=masks[test_idx],
    )
