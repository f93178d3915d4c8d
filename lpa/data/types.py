"""The in-memory form of an extracted dataset (what `download@<dataset>` writes to disk)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RawDataset:
    """uint8 N x 3 x H x W images, int64 labels in 0..K-1, class names in label order."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    source: dict = field(default_factory=dict)  # provenance, stored in meta.json
    test_masks: np.ndarray | None = None        # bool N x H x W object masks of the test split, where known
                                                # (stored as test_masks.npy; lpa.data.masks reads them)

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split == "train":
            return self.train_images, self.train_labels
        if split == "test":
            return self.test_images, self.test_labels
        raise ValueError(f"unknown split {split!r}; allowed: train, test")
