"""Attention-map overlays: the same fixed test images, one PNG (4x4 pairs) per attention level.

The evaluate stage (``lpa/experiments/evaluate.py``) picks the images once per dataset with
``fixed_image_indices(test_labels)``, runs the model on them (the maps come from
``model(x) -> (logits, maps)``), and calls::

    idx = fixed_image_indices(test_labels, n=16)
    titles = overlay_titles(test_labels[idx], predictions[idx], classes)
    save_attention_overlays(raw_uint8_images[idx], maps, run_dir / "attention", titles)

``raw_uint8_images`` are the *unprocessed* images (``data/extracted/<dataset>``), so a reader sees
the picture rather than its ZCA-whitened version; the model input for the same indices is the
processed split (or ``apply_saved_transform`` on the raw images).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
# A bare Figure on the Agg canvas: no display, no pyplot global state, and no change to the
# backend of whoever imported us (matplotlib.use would switch it process-wide).
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from lpa.experiments.metrics import to_numpy
from lpa.files import write_figure

GRID = 4  # 4 x 4 images per PNG
ALPHA = 0.5
CMAP = "jet"


def fixed_image_indices(labels: Any, n: int = 16) -> np.ndarray:
    """Indices of ``n`` test images that depend only on the labels (same for every run).

    Rule: round-robin over the classes in increasing class index; round r takes each class's
    r-th image (in test-set order), skipping classes that have run out. So with 10 classes and
    n=16 the grid shows the first image of classes 0..9, then the second image of classes 0..5.
    Every class appears before any class appears twice, and the choice never depends on a model,
    a seed or the order runs are evaluated in. Returns int64 indices in selection order; fewer
    than ``n`` when the split has fewer images.
    """
    y = to_numpy(labels).astype(np.int64).ravel()
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    per_class = [np.flatnonzero(y == c) for c in np.unique(y)]  # each already in test-set order
    chosen: list[int] = []
    rounds = max((len(ix) for ix in per_class), default=0)
    for r in range(rounds):
        for ix in per_class:
            if r < len(ix):
                chosen.append(int(ix[r]))
                if len(chosen) == n:
                    return np.asarray(chosen, dtype=np.int64)
    return np.asarray(chosen, dtype=np.int64)


def overlay_titles(labels: Any, predictions: Any, classes: Sequence[str]) -> list[str]:
    """Small titles: ``"true cat, pred cat"`` for a right prediction, ``"true dog, pred cat (wrong)"``
    for a wrong one: a reader sees both classes without knowing the convention."""
    y = to_numpy(labels).astype(np.int64).ravel()
    p = to_numpy(predictions).astype(np.int64).ravel()
    return [f"true {classes[t]}, pred {classes[q]}" + ("" if t == q else " (wrong)") for t, q in zip(y, p)]


def _as_maps(m: Any, n: int) -> np.ndarray:
    """One level's maps -> float32 (N, h, w). Accepts (N,1,h,w), (N,h,w) or (N,C,h,w).

    With C > 1 channels (not expected from the LTPA heads, possible from a mask-style model) the
    channels are averaged, a neutral summary for display.
    """
    a = to_numpy(m).astype(np.float32, copy=False)
    if a.ndim == 4:
        a = a.mean(axis=1) if a.shape[1] != 1 else a[:, 0]
    if a.ndim != 3 or a.shape[0] != n:
        raise ValueError(f"attention maps must be (N,1,h,w) with N={n}, got shape {a.shape}")
    return a


def upsample_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (align_corners=False, as F.interpolate / the ports' visualisations) to ``size``."""
    t = torch.from_numpy(np.ascontiguousarray(maps))[:, None]
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return t[:, 0].numpy()


def _minmax(maps: np.ndarray) -> np.ndarray:
    """Per-image min-max to [0, 1] for display; a constant map shows as 0, non-finite values as 0."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    finite = np.isfinite(flat)
    lo = np.where(finite, flat, np.inf).min(axis=1)
    hi = np.where(finite, flat, -np.inf).max(axis=1)
    span = hi - lo
    ok = np.isfinite(span) & (span > 0)
    out = np.zeros_like(flat)
    out[ok] = (flat[ok] - lo[ok, None]) / span[ok, None]
    out[~finite] = 0.0
    return out.reshape(maps.shape).astype(np.float32)


def _to_hwc_uint8(images: Any) -> np.ndarray:
    a = to_numpy(images)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N,3,H,W) or (N,1,H,W) uint8, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (the unprocessed images), got {a.dtype}")
    a = np.transpose(a, (0, 2, 3, 1))
    return np.repeat(a, 3, axis=3) if a.shape[3] == 1 else a


def _colorbar(fig: Figure, rect: tuple[float, float, float, float], label: str) -> None:
    """The overlays' horizontal 'jet' scale, lowest to highest, at `rect` of the figure."""
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=CMAP), cax=fig.add_axes(rect),
                       orientation="horizontal", ticks=[0.0, 1.0])
    bar.ax.set_xticklabels(["lowest", "highest"])
    bar.set_label(label, fontsize=8)


def save_attention_overlays(images_uint8: Any, maps: Sequence[Any] | None, out_dir: str | os.PathLike,
                            titles: Sequence[str] | None = None) -> list[Path]:
    """Write ``level1.png``, ``level2.png``, ... into ``out_dir``, one per attention level.

    Args:
        images_uint8: (N, 3, H, W) uint8 images (N <= 16; usually ``fixed_image_indices``).
        maps: one (N, 1, h, w) array/tensor per level, in level order (the model's ``maps``).
            ``None`` or empty (a model without attention): nothing is written, returns ``[]``.
        out_dir: created if missing.
        titles: optional N short strings (e.g. ``overlay_titles``) drawn above each image.

    Each PNG is a 4x4 grid of pairs: the image, and the image with the level's map bilinearly
    upsampled to H x W over it, min-max scaled per image (the maps' absolute scale differs by orders of magnitude between a
    32x32 and an 8x8 softmax; only the pattern is comparable) and drawn in 'jet' at alpha 0.5.
    Returns the written paths in level order. Each PNG is written atomically.
    """
    if maps is None or len(maps) == 0:
        return []
    imgs = _to_hwc_uint8(images_uint8)
    n, h, w = imgs.shape[:3]
    if n > GRID * GRID:
        raise ValueError(f"at most {GRID * GRID} images per grid, got {n}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} images")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    written = []
    for level, level_maps in enumerate(maps, start=1):
        raw = _as_maps(level_maps, n)
        shown = _minmax(upsample_maps(raw, (h, w)))
        # each cell is a pair, the picture as it is and the map over it: at 32x32 an overlay alone
        # hides the object it is meant to explain
        fig = Figure(figsize=(2.2 * 2 * GRID, 2.3 * GRID + 1.0), dpi=100)
        FigureCanvasAgg(fig)
        fig.suptitle(f"attention level {level}: map {raw.shape[1]}x{raw.shape[2]} upsampled to {h}x{w} "
                     f"(bilinear); left the original pixels, right the map over them", fontsize=10)
        axes = fig.subplots(GRID, 2 * GRID)
        for i in range(GRID * GRID):
            left, right = axes[i // GRID, 2 * (i % GRID)], axes[i // GRID, 2 * (i % GRID) + 1]
            left.set_axis_off()
            right.set_axis_off()
            if i >= n:
                continue
            left.imshow(imgs[i], interpolation="nearest")
            right.imshow(imgs[i], interpolation="nearest")
            right.imshow(shown[i], cmap=CMAP, alpha=ALPHA, vmin=0.0, vmax=1.0,
                                    interpolation="bilinear")
            if titles is not None:
                left.text(1.03, 1.04, str(titles[i]), transform=left.transAxes, ha="center",
                          va="bottom", fontsize=8, color="firebrick" if "wrong" in str(titles[i]) else "black")
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.12, top=0.92, wspace=0.06, hspace=0.28)
        _colorbar(fig, (0.3, 0.07, 0.4, 0.018), "attention weight, scaled to [0, 1] per image (absolute scales "
                                                "differ between levels and images)")
        written.append(write_figure(fig, out_dir / f"level{level}.png"))
    return written


def save_prediction_figure(picture: np.ndarray, maps: Sequence[Any], path: str | os.PathLike, title: str) -> Path:
    """One picture's attention, as lpa.experiments.predict draws it: the picture, then one panel per level
    with that level's map bilinearly upsampled to the picture and drawn over it (min-max scaled,
    'jet' at alpha 0.5: the look of `save_attention_overlays`). Written atomically.

    Args:
        picture: H x W x 3 uint8, the picture as the user gave it (any size).
        maps: one (h, w) map per attention level (none for a model without attention).
        title: above the panels (the predicted class and its probability).
    """
    if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
        raise ValueError(f"picture must be H x W x 3 uint8, got {picture.dtype} {picture.shape}")
    h, w = picture.shape[:2]
    panels = 1 + len(maps)
    fig = Figure(figsize=(3.2 * panels, 3.2 * h / w + 1.5), dpi=100)
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=11)
    axes = np.atleast_1d(fig.subplots(1, panels))
    axes[0].imshow(picture)
    axes[0].set_title("picture" if maps else "picture (this model has no attention maps)", fontsize=9)
    for level, (ax, level_map) in enumerate(zip(axes[1:], maps), start=1):
        raw = np.asarray(to_numpy(level_map), dtype=np.float32).reshape(1, *np.shape(level_map)[-2:])
        shown = _minmax(upsample_maps(raw, (h, w)))[0]
        ax.imshow(picture)
        ax.imshow(shown, cmap=CMAP, alpha=ALPHA, vmin=0.0, vmax=1.0, interpolation="bilinear")
        ax.set_title(f"level {level}: {raw.shape[1]}x{raw.shape[2]} map", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.26 if maps else 0.03, top=0.84, wspace=0.04)
    if maps:
        _colorbar(fig, (0.3, 0.14, 0.4, 0.03), "attention weight, scaled to [0, 1] per map")
    return write_figure(fig, Path(path))
