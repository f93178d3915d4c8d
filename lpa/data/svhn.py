"""SVHN (format 2, cropped digits) from the official `*_32x32.mat` files.

Each file holds `X`, uint8 32 x 32 x 3 x N, and `y`, N x 1 in 1..10 where 10 stands for the
digit 0; labels here are the digits themselves (10 -> 0), so class k is digit k.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from lpa.errors import DatasetFormatError

CLASSES = [str(d) for d in range(10)]


def load_svhn_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one SVHN .mat file: (uint8 N x 3 x 32 x 32 images, int64 labels 0..9)."""
    # local: scipy.io costs ~0.4 s to import (measured); only download@svhn needs it
    import scipy.io
    from scipy.io.matlab import MatReadError

    path = Path(path)
    redo = (f"it is not the official SVHN {path.name}; delete it and re-run `dvc repro -f download@svhn` "
            f"to download it again (or place a copy of it there)")
    try:
        mat = scipy.io.loadmat(os.fspath(path), variable_names=["X", "y"])
    except (MatReadError, ValueError, TypeError, OSError, EOFError, NotImplementedError, zlib.error,
            struct.error) as err:  # truncated file, not a MATLAB file, a v7.3 (HDF5) file, ...
        first = (str(err).strip().splitlines() or [""])[0][:100]
        raise DatasetFormatError(f"cannot read {path} as a MATLAB file ({type(err).__name__}: {first}): "
                                 f"{redo}") from None
    if "X" not in mat or "y" not in mat:
        raise DatasetFormatError(f"{path} has no 'X' and 'y' arrays: {redo}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetFormatError(f"{path}: X has shape {x.shape}, expected 32 x 32 x 3 x N: {redo}")
    if x.dtype != np.uint8:
        raise DatasetFormatError(f"{path}: X is {x.dtype}, expected uint8: {redo}")
    if y.shape[0] != x.shape[3]:
        raise DatasetFormatError(f"{path}: {x.shape[3]} images but {y.shape[0]} labels: {redo}")
    if y.dtype.kind not in "iuf" or (y.size and (y.min() < 1 or y.max() > 10 or np.any(y != np.round(y)))):
        raise DatasetFormatError(f"{path}: labels must be integers in 1..10 (10 = digit 0): {redo}")
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # H W C N -> N C H W
    labels = (y.astype(np.int64) % 10).astype(np.int64)
    return images, labels
