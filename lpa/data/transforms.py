"""Preprocessing transforms fitted on the training split and saved next to the processed arrays.

Pipeline, on uint8 pixel values taken as floats in 0..255::

    [gcn]        per image: subtract its mean, scale to L2 norm `gcn_scale` (pylearn2
                 global_contrast_normalize with subtract_mean=True, use_std=False, sqrt_bias=0;
                 images with a norm below 1e-8 are left unscaled)
    transform:
      zca          x -> (x - mean) @ W,  W = U diag(1 / sqrt(S + eps)) U^T, where U, S are the
                   eigenvectors / eigenvalues of the training covariance, from scikit-learn's PCA
                   (svd_solver="covariance_eigh": one d x d covariance and eigh, no n x d SVD)
      standardize  per channel: (x - mean_c) / std_c
      scale        x / 255 (values in [0, 1])
      none         x unchanged (0..255 as floats)

Every statistic comes from the training split only; the test split (and any new image) gets the
same fitted transform. `Transform.save` writes transform.npz (method, mean, matrix or std,
epsilon, GCN settings, image shape); `apply_saved_transform(dir, uint8_images)` applies it.
"""
from __future__ import annotations

import functools
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lpa.data.arrays import TRANSFORM_FILE, redo_advice
from lpa.errors import DataError, DataParamError
from lpa.config.data_options import TRANSFORMS
from lpa.errors import DamagedFileError

FORMAT_VERSION = 1
CHUNK = 2048               # images per block when fitting/applying (bounds temporary memory)
FLOAT16_MAX = 65504.0
GCN_MIN_DIVISOR = 1e-8


def global_contrast_normalize(x: np.ndarray, scale: float = 55.0, min_divisor: float = GCN_MIN_DIVISOR) -> np.ndarray:
    """pylearn2-style GCN of a float (n, d) array, in place; returns it."""
    x -= x.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)) / scale
    norms[norms < min_divisor] = 1.0
    x /= norms[:, None].astype(x.dtype)
    return x


def fit_zca(x: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ZCA of a float (n, d) matrix with scikit-learn's PCA: (mean (d,), W (d, d), eigenvalues).

    The eigenvalues are sklearn's explained_variance_ (covariance with n - 1). With n < d the
    PCA keeps n components and W is zero on the directions the training data never spans.
    """
    # local: scikit-learn costs ~1.5 s to import (measured); only a ZCA fit needs it
    from sklearn.decomposition import PCA

    n, d = x.shape
    solver = "covariance_eigh" if n >= d else "full"
    pca = PCA(svd_solver=solver, whiten=False).fit(x)
    u = pca.components_.T.astype(np.float64)           # d x k, orthonormal columns
    s = pca.explained_variance_.astype(np.float64)      # k eigenvalues, descending
    w = (u * (1.0 / np.sqrt(s + epsilon))) @ u.T
    return pca.mean_.astype(np.float64), w, s


@dataclass
class Transform:
    """A fitted preprocessing transform; `apply` maps uint8 N x C x H x W to float32."""

    method: str
    image_shape: tuple[int, int, int]
    gcn: bool = False
    gcn_scale: float = 55.0
    zca_epsilon: float | None = None
    mean: np.ndarray | None = None      # zca: (C*H*W,), standardize: (C,)
    std: np.ndarray | None = None       # standardize: (C,)
    matrix: np.ndarray | None = None    # zca: (C*H*W, C*H*W)
    info: dict = field(default_factory=dict)  # fit diagnostics for meta.json (not saved in the npz)

    def __post_init__(self) -> None:
        if self.method not in TRANSFORMS:
            raise DataParamError(f"unknown transform {self.method!r}; allowed: {', '.join(TRANSFORMS)}")
        self.image_shape = tuple(int(s) for s in self.image_shape)

    # -- applying -----------------------------------------------------------------------------
    def _flat(self, block: np.ndarray, dtype=np.float32) -> np.ndarray:
        x = np.asarray(block).reshape(block.shape[0], -1).astype(dtype)
        if self.gcn:
            global_contrast_normalize(x, self.gcn_scale)
        return x

    def _apply_block(self, block: np.ndarray) -> np.ndarray:
        n = block.shape[0]
        x = self._flat(block)
        if self.method == "zca":
            x -= self.mean
            x = x @ self.matrix
        elif self.method == "standardize":
            c = self.image_shape[0]
            x = x.reshape(n, c, -1)
            x -= self.mean[None, :, None]
            x /= self.std[None, :, None]
        elif self.method == "scale":
            x *= np.float32(1.0 / 255.0)
        return x.reshape((n, *self.image_shape))

    def check_images(self, images: np.ndarray) -> None:
        if images.dtype != np.uint8:
            raise ValueError(f"the transform takes uint8 images (0..255), got {images.dtype}")
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"the transform was fitted on N x {' x '.join(map(str, self.image_shape))} images, "
                f"got {' x '.join(map(str, images.shape))}"
            )

    def apply(self, images: np.ndarray, out: np.ndarray | None = None, chunk_size: int = CHUNK) -> np.ndarray:
        """Transform uint8 N x C x H x W images; into `out` (e.g. a float16 memmap) if given."""
        self.check_images(images)
        if out is None:
            out = np.empty(images.shape, dtype=np.float32)
        elif out.shape != images.shape:
            raise ValueError(f"out has shape {out.shape}, expected {images.shape}")
        check_f16 = out.dtype == np.float16
        for start in range(0, images.shape[0], chunk_size):
            y = self._apply_block(images[start:start + chunk_size])
            if check_f16:
                peak = float(np.abs(y).max()) if y.size else 0.0
                if not np.isfinite(peak) or peak > FLOAT16_MAX:
                    raise DataError(
                        f"{self.method} output reaches {peak:.3g}, beyond float16 (65504); "
                        f"use a larger zca_epsilon or gcn: true"
                    )
            out[start:start + y.shape[0]] = y
        return out

    # -- saving -------------------------------------------------------------------------------
    def describe(self) -> dict:
        """JSON-able summary for meta.json."""
        d = {"method": self.method, "gcn": self.gcn, "fit_split": "train", "input": "uint8 pixel values 0..255"}
        if self.gcn:
            d.update(gcn_scale=self.gcn_scale, gcn_subtract_mean=True, gcn_use_std=False, gcn_sqrt_bias=0.0,
                     gcn_min_divisor=GCN_MIN_DIVISOR)
        if self.method == "zca":
            d.update(zca_epsilon=self.zca_epsilon, library="scikit-learn PCA(svd_solver='covariance_eigh')")
        if self.method == "standardize":
            d.update(mean=[float(v) for v in self.mean], std=[float(v) for v in self.std])
        if self.method == "scale":
            d.update(scale=1.0 / 255.0)
        d.update(self.info)
        return d

    def to_bytes(self) -> bytes:
        """The transform.npz content: what `save` writes and a model file carries (lpa.train.modelfile)."""
        arrays = {
            "format_version": np.array(FORMAT_VERSION),
            "method": np.array(self.method),
            "image_shape": np.array(self.image_shape, dtype=np.int64),
            "gcn": np.array(self.gcn),
            "gcn_scale": np.array(self.gcn_scale, dtype=np.float64),
            "gcn_min_divisor": np.array(GCN_MIN_DIVISOR),
        }
        if self.zca_epsilon is not None:
            arrays["zca_epsilon"] = np.array(self.zca_epsilon, dtype=np.float64)
        for key in ("mean", "std", "matrix"):
            value = getattr(self, key)
            if value is not None:
                arrays[key] = value
        buffer = io.BytesIO()  # a file object: np.savez would append .npz to a name
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Transform:
        """The transform saved by `save`; DamagedFileError (naming the file and the stage to
        re-run) if it is truncated, overwritten, of another format or inconsistent."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; {redo_advice(path.parent)}")
        return cls._read(path, str(path), redo_advice(path.parent))

    @classmethod
    def from_bytes(cls, data: bytes, where: str, redo: str) -> Transform:
        """A transform from `to_bytes` content (carried in a model file); errors name `where`."""
        return cls._read(io.BytesIO(data), where, redo)

    @classmethod
    def _read(cls, source, where: str, redo: str) -> Transform:
        try:
            z = np.load(source, allow_pickle=False)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
            raise DamagedFileError(f"{where} is truncated or not a .npz archive ({type(err).__name__}); {redo}") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise DamagedFileError(f"{where} is not a .npz archive (it holds a single array); {redo}")
        try:
            with z:
                saved = {key: z[key] for key in z.files}
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
            raise DamagedFileError(f"{where} has a damaged entry ({type(err).__name__}: "
                                   f"{' '.join(str(err).split())[:100]}); {redo}") from None
        fields = _transform_fields(saved)
        if isinstance(fields, str):
            raise DamagedFileError(f"{where} {fields}; {redo}")
        return cls(**fields)


def _scalar(saved: dict, key: str, kinds: str):
    """saved[key] as a Python scalar if it is a 0-d array of a dtype kind in `kinds`, else None."""
    value = saved.get(key)
    if not isinstance(value, np.ndarray) or value.shape != () or value.dtype.kind not in kinds:
        return None
    return value.item()


def _transform_fields(saved: dict) -> dict | str:
    """Transform(**fields) from the arrays of a transform.npz, or what is wrong with them."""
    missing = [k for k in ("format_version", "method", "image_shape", "gcn", "gcn_scale") if k not in saved]
    if missing:
        return f"lacks {', '.join(missing)} (not a transform written by preprocess)"
    version = _scalar(saved, "format_version", "iu")
    if version != FORMAT_VERSION:
        return f"is transform format {version}, this code reads {FORMAT_VERSION}"
    method = _scalar(saved, "method", "U")
    if method not in TRANSFORMS:
        return f"has method {method!r}; allowed: {', '.join(TRANSFORMS)}"
    shape = saved["image_shape"]
    if shape.shape != (3,) or shape.dtype.kind not in "iu" or np.any(shape <= 0):
        return f"has image_shape {shape.tolist()!r}, expected [C, H, W]"
    shape = tuple(int(v) for v in shape)
    gcn, gcn_scale = _scalar(saved, "gcn", "b"), _scalar(saved, "gcn_scale", "f")
    if gcn is None or gcn_scale is None:
        return "has a gcn or gcn_scale that is not a scalar"
    d, c = int(np.prod(shape)), shape[0]
    needed = {"zca": {"mean": (d,), "matrix": (d, d)}, "standardize": {"mean": (c,), "std": (c,)}}.get(method, {})
    for key, want in needed.items():
        value = saved.get(key)
        if value is None or value.shape != want or value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            got = "nothing" if value is None else f"{value.dtype} {value.shape}"
            return f"has {key} {got}, expected finite floats of shape {want} for {method}"
    zca_epsilon = _scalar(saved, "zca_epsilon", "f")
    if method == "zca" and zca_epsilon is None:
        return "lacks zca_epsilon"
    return {"method": method, "image_shape": shape, "gcn": bool(gcn), "gcn_scale": float(gcn_scale),
            "zca_epsilon": zca_epsilon, **{k: saved[k] for k in ("mean", "std", "matrix") if k in saved}}


def fit_transform(
    train_images: np.ndarray,
    method: str,
    *,
    gcn: bool = False,
    gcn_scale: float = 55.0,
    zca_epsilon: float = 0.1,
    chunk_size: int = CHUNK,
) -> Transform:
    """Fit `method` on uint8 N x C x H x W training images (memory-mapped input is fine)."""
    if method not in TRANSFORMS:
        raise DataParamError(f"transform={method!r} is not allowed; choose one of {', '.join(TRANSFORMS)}")
    if train_images.ndim != 4 or train_images.shape[0] == 0:
        raise ValueError(f"need N x C x H x W training images, got shape {train_images.shape}")
    shape = tuple(int(s) for s in train_images.shape[1:])
    t = Transform(method, shape, gcn=gcn, gcn_scale=float(gcn_scale),
                  zca_epsilon=float(zca_epsilon) if method == "zca" else None)
    t.check_images(train_images)
    n = train_images.shape[0]
    blocks = range(0, n, chunk_size)

    if method == "zca":
        # float64 for the fit: the covariance of 0..255 data loses digits in float32
        x = np.empty((n, int(np.prod(shape))), dtype=np.float64)
        for start in blocks:
            x[start:start + chunk_size] = t._flat(train_images[start:start + chunk_size], np.float64)
        mean, w, eig = fit_zca(x, float(zca_epsilon))
        del x
        t.mean = mean.astype(np.float32)
        t.matrix = w.astype(np.float32)
        t.info = {"eigenvalue_max": float(eig[0]), "eigenvalue_min": float(eig[-1]),
                  "components": int(eig.shape[0]), "train_images": n}
    elif method == "standardize":
        c = shape[0]
        total = np.zeros(c)
        count = 0
        for start in blocks:
            x = t._flat(train_images[start:start + chunk_size], np.float64).reshape(-1, c, shape[1] * shape[2])
            total += x.sum(axis=(0, 2))
            count += x.shape[0] * x.shape[2]
        mean = total / count
        sq = np.zeros(c)
        for start in blocks:
            x = t._flat(train_images[start:start + chunk_size], np.float64).reshape(-1, c, shape[1] * shape[2])
            sq += ((x - mean[None, :, None]) ** 2).sum(axis=(0, 2))
        std = np.sqrt(sq / count)
        std[std < 1e-8] = 1.0  # a constant channel is only centred
        t.mean = mean.astype(np.float32)
        t.std = std.astype(np.float32)
        t.info = {"train_images": n}
    return t


def transform_path(directory: str | os.PathLike) -> Path:
    path = Path(directory)
    return path if path.suffix == ".npz" else path / TRANSFORM_FILE


@functools.lru_cache(maxsize=4)
def _load_cached(resolved: str, mtime_ns: int, size: int, path: str) -> Transform:
    return Transform.load(path)  # `path` as the caller spelled it: error messages name it so


def load_transform(directory: str | os.PathLike) -> Transform:
    """The Transform saved in a processed dataset directory (or a transform.npz path)."""
    path = transform_path(directory)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {redo_advice(path.parent)}")
    st = path.stat()
    return _load_cached(os.fspath(path.resolve()), st.st_mtime_ns, st.st_size, os.fspath(path))


def apply_saved_transform(directory: str | os.PathLike, images_uint8: np.ndarray) -> np.ndarray:
    """Apply data/processed/<dataset>/transform.npz to uint8 N x C x H x W images -> float32.

    A single C x H x W image is accepted too (and returned without the batch axis). The result
    equals the stored processed arrays up to their float16 rounding.
    """
    images = np.asarray(images_uint8)
    single = images.ndim == 3
    if single:
        images = images[None]
    out = load_transform(directory).apply(images)
    return out[0] if single else out
