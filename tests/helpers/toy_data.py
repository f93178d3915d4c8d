"""Learnable toy images for the training tests: random normal pixels whose class shifts the mean
of the first channel, so a few epochs of a tiny model learn something."""
from __future__ import annotations

import numpy as np
import torch

from lpa.train.engine import DeviceData


def toy_arrays(n: int = 96, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 n x 3 x 32 x 32, labels int64 n, class k = k mod `classes`)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.normal(0, 1, (n, 3, 32, 32)).astype(np.float32)
    images[:, 0] += (labels[:, None, None] - classes / 2) / 2
    return images, labels.astype(np.int64)


def toy_data(n: int = 48, classes: int = 10, seed: int = 0) -> DeviceData:
    """toy_arrays as the engine's CPU DeviceData."""
    return DeviceData.from_arrays(*toy_arrays(n, classes, seed), torch.device("cpu"))
