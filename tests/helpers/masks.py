"""Pictures and masks written to tmp folders, and the small pasted_digits extract, for the mask-dataset
reader's tests (tests/data/test_masks.py) and the segmentation run's (tests/experiments/test_segmentation.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PASTED = {"image_size": 32, "digit_size": 16, "test_fraction": 0.05, "split_seed": 0, "seed": 0}
N_TEST = 90  # 5% of the 1,797 digits, stratified


def save_image(path: Path, rgb: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, fmt)


def save_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, dtype=np.uint8)).save(path)


def grey_mask(h, w, seed) -> np.ndarray:
    """Grey values around the MASK_LEVEL (128): 127 is background, 128 is object."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 127, 128, 255], dtype=np.uint8), size=(h, w))


def rgb(h, w, seed) -> np.ndarray:
    """A random h x w x 3 uint8 picture."""
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
