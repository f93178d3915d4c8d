"""Tiny model files for the tests that read one (predict, robustness, segmentation, transfer, warm
start, damaged files): the quick suite's models at width 0.125, saved as the train stage saves them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lpa.data.conversion import ImageConversion
from lpa.data.transforms import Transform
from lpa.train.engine import build_for_training
from lpa.train.modelfile import save_model

CPU = torch.device("cpu")
DIGIT_CLASSES = [str(d) for d in range(10)]


def numbered_classes(n: int) -> list[str]:
    """Class names c0 .. c<n-1>: classes no dataset has."""
    return [f"c{k}" for k in range(n)]


def preprocessing(conversion: ImageConversion, transform: Transform) -> dict:
    """A model file's preprocessing record (as modelfile.preprocessing_record reads it from disk)."""
    return {"conversion": conversion.to_dict(), "transform": transform.to_bytes()}


def identity_preprocessing(kind: str, input_size: int, source_size: int = 0) -> dict:
    """The image conversion `kind` to input_size (grey: from source_size), then a standardize that
    changes nothing (mean 0, std 1)."""
    transform = Transform("standardize", (3, input_size, input_size), mean=np.zeros(3, np.float32),
                          std=np.ones(3, np.float32))
    return preprocessing(ImageConversion(kind, input_size, source_size), transform)


def save_model_file(path: Path, config: dict, preprocessing_record: dict, *, model: torch.nn.Module | None = None,
                    classes: list[str] = DIGIT_CLASSES, input_size: int = 32, seed: int | None = None) -> Path:
    """Write `model` (default: a fresh build of `config`, after torch.manual_seed(seed) when a seed
    is given) to `path` as the train stage does; returns `path`."""
    if model is None:
        if seed is not None:
            torch.manual_seed(seed)
        model = build_for_training(config, len(classes), input_size, CPU)
    save_model(path, model, config, len(classes), list(classes), input_size, preprocessing_record)
    return path
