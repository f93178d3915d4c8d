"""The paper's weakly supervised segmentation: attention maps, thresholded, as object masks, scored
by the Jaccard index against ground-truth masks (Object Discovery, Rubinstein et al. 2013).

Per image: the picture is converted and preprocessed as the run's own data (its model file says
how), each level's map is upsampled (bilinear) to the picture's size and min-max rescaled to
[0, 1]; the levels are combined (mean or max of those, or one level), rescaled again and binarised
(Otsu's threshold per image, or a fixed one); the Jaccard index |P & M| / |P | M| against the mask
(1 when both are empty). A vgg-gap run's map is its class activation map (Zhou et al. 2016). Every
table gets a floor that uses no model: a Gaussian centred on the picture (`centre_prior`),
binarised the same way.

The mask datasets (`segmentation.datasets`, NAME=ROOT: Object Discovery, generic image + mask
folders, or an extracted lpa dataset with masks) are read by lpa.data.masks.read_mask_dataset.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from lpa.data.masks import MaskedImage, read_mask_dataset
from lpa.train.device import pick_device
from lpa.errors import ConfigError
from lpa.experiments.figures import ALPHA, CMAP, upsample_maps
from lpa.files import atomic_path, write_figure, write_json
from lpa.thumbnails import FOLDER as THUMBNAILS, Thumbnail, save_thumbnails
from lpa.train.modelfile import TrainedModel, load_trained



# -- maps -----------------------------------------------------------------------------------------
def rescale_to_unit(m: np.ndarray) -> np.ndarray:
    """`m` min-max rescaled to [0, 1] (its minimum to 0, its maximum to 1); a constant map becomes all zeros."""
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def combine_levels(maps: Sequence[np.ndarray], shape: tuple[int, int], how: str) -> np.ndarray:
    """One [0, 1] map at `shape` from per-level maps: mean | max of the rescaled levels, or levelK."""
    levels = [rescale_to_unit(upsample_maps(np.asarray(m, dtype=np.float32)[None], shape)[0]) for m in maps]
    if how.startswith("level"):
        k = int(how[len("level"):])
        if k > len(levels):
            raise ConfigError(f"segmentation.combine={how}, but the model has {len(levels)} attention level(s)")
        return levels[k - 1]
    stacked = np.stack(levels)
    return rescale_to_unit(stacked.mean(0) if how == "mean" else stacked.max(0))


def centre_prior(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A Gaussian at the centre, sigma = `sigma` x the shorter side, peak 1."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    s = sigma * min(h, w)
    return np.exp(-(((y - (h - 1) / 2) ** 2 + (x - (w - 1) / 2) ** 2) / (2 * s * s))).astype(np.float32)


def otsu_threshold(m: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the bin edge that maximises the between-class variance."""
    hist, edges = np.histogram(m, bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    omega = np.cumsum(p)
    mu = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)
    between = (mu[-1] * omega - mu) ** 2 / np.maximum(omega * (1 - omega), 1e-12)
    between[(omega <= 0) | (omega >= 1)] = -1
    return float(edges[int(np.argmax(between)) + 1])


def binarise(m: np.ndarray, threshold: str, value: float) -> np.ndarray:
    """Object where the [0, 1] map reaches the threshold (Otsu's, or the fixed `value`)."""
    return m >= (otsu_threshold(m) if threshold == "otsu" else value)


def jaccard(pred: np.ndarray, mask: np.ndarray) -> float:
    """|pred & mask| / |pred | mask|; 1 when both are empty (nothing to find, nothing found)."""
    union = np.logical_or(pred, mask).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, mask).sum() / union)


def model_maps(trained: TrainedModel, images: Sequence[np.ndarray], device: torch.device) -> list[list[np.ndarray]]:
    """Per picture (H x W x 3 uint8), each level's raw map at the model's resolution."""
    converted = np.stack([trained.conversion.convert(Image.fromarray(img)) for img in images])
    _, maps = trained.predict(torch.from_numpy(trained.transform.apply(converted)).to(device), with_maps=True)
    if not maps:
        raise ConfigError(f"{trained.config['model']['name']} has no attention maps: segmentation.runs takes "
                          f"attention runs (their maps) and vgg-gap runs (the class activation map)")
    return [[level[i, 0].numpy() for level in maps] for i in range(len(images))]


# -- the stage ---------------------------------------------------------------------------------
def _mean_by_group(groups: Sequence[str], values: Sequence[float]) -> dict:
    out = {g: float(np.mean([v for gg, v in zip(groups, values) if gg == g])) for g in dict.fromkeys(groups)}
    out["mean"] = float(np.mean(values)) if values else float("nan")
    return out


def save_group_figure(items: Sequence[MaskedImage], maps: Sequence[np.ndarray], binary: Sequence[np.ndarray],
                      scores: Sequence[float], path: Path, title: str) -> Path:
    """Rows: image, ground-truth mask, the combined map over the image, the binarised map."""
    fig = Figure(figsize=(8, 2.1 * len(items) + 0.6), dpi=90)
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=10)
    axes = np.atleast_2d(fig.subplots(len(items), 4))
    for row, (item, m, b, s) in enumerate(zip(items, maps, binary, scores)):
        panels = [(item.image, None, item.name), (item.mask, "gray", "ground truth"),
                  (item.image, None, "map"), (b, "gray", f"binarised: Jaccard {s:.2f}")]
        for ax, (img, cmap, label) in zip(axes[row], panels):
            ax.imshow(img, cmap=cmap, interpolation="nearest")
            if label == "map":
                ax.imshow(m, cmap=CMAP, alpha=ALPHA, vmin=0, vmax=1, interpolation="bilinear")
            ax.set_title(label, fontsize=8)
            ax.set_axis_off()
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return write_figure(fig, path)


def segmentation_run(model_file: Path, dataset_root: Path, metrics_path: Path, figures_dir: Path,
                     settings: Mapping) -> dict:
    """Everything `segment@<trial>-on-<name>` writes: the Jaccard index per class and its mean, for
    the run's maps and the centre prior (metrics_path), one figure per class (figures_dir) and the
    first `figure_images` images' thumbnails for the report's grid (figures_dir/first_images/,
    lpa.thumbnails)."""
    device = pick_device()
    trained = load_trained(model_file, device)
    items = read_mask_dataset(dataset_root)
    raw = model_maps(trained, [it.image for it in items], device)
    how, threshold, value = settings["combine"], settings["threshold"], settings["threshold_value"]
    scores = {"model": [], "centre_prior": []}
    combined, binary, prior_masks = [], [], {}
    for item, levels in zip(items, raw):
        shape = item.mask.shape
        m = combine_levels(levels, shape, how)
        b = binarise(m, threshold, value)
        combined.append(m)
        binary.append(b)
        scores["model"].append(jaccard(b, item.mask))
        if shape not in prior_masks:  # the prior depends on the image's size only
            prior_masks[shape] = binarise(centre_prior(shape, settings["centre_sigma"]), threshold, value)
        scores["centre_prior"].append(jaccard(prior_masks[shape], item.mask))
    groups = [it.group for it in items]
    record = {"jaccard": {k: _mean_by_group(groups, v) for k, v in scores.items()}, "images": len(items)}
    write_json(metrics_path, record)
    n = settings["figure_images"]
    with atomic_path(figures_dir, directory=True) as tmp:
        for group in dict.fromkeys(groups):
            idx = [i for i, g in enumerate(groups) if g == group][:n]
            if idx:
                save_group_figure([items[i] for i in idx], [combined[i] for i in idx], [binary[i] for i in idx],
                                  [scores["model"][i] for i in idx], tmp / f"{group}.png",
                                  f"{trained.trial}: {group}, maps combined by {how}, "
                                  f"threshold {threshold}")
        if n:
            first = list(range(min(n, len(items))))
            save_thumbnails([Thumbnail(items[i].name, scores["model"][i], items[i].image, items[i].mask, binary[i],
                                       prior_masks[items[i].mask.shape]) for i in first], tmp / THUMBNAILS)
    return record
