"""Real datasets prepared as the download and preprocess stages prepare them, in a tmp folder."""
from __future__ import annotations

from pathlib import Path

from lpa.data.pipeline import extract_dataset, preprocess_dataset


def prepare_digits(root: Path, image_size: int = 32, transform: str = "standardize") -> Path:
    """root/data/extracted/digits (uint8 image_size^2) and root/data/processed/digits (`transform`
    fitted on the train split), from scikit-learn's digits (no network). Returns `root`."""
    extracted, processed = root / "data/extracted/digits", root / "data/processed/digits"
    extract_dataset("digits", {"image_size": image_size}, extracted, root / "data/raw")
    preprocess_dataset("digits", {"transform": transform}, extracted, processed)
    return root
