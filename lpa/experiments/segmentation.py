"""The paper's weakly supervised segmentation: attention maps, thresholded, as object masks, scored
by the Jaccard index against ground-truth masks (Object Discovery, Rubinstein et al. 2013).

Per image: the picture is converted and preprocessed as the run's own data (its model file says
how), each level's map is upsampled (bilinear) to the picture's size and min-max normalised; the
levels are combined (mean or max of those, or one level), normalised again and binarised (Otsu's
threshold per image, or a fixed one); the Jaccard index |P & M| / |P | M| against the mask (1 when
both are empty). A vgg-gap run's map is its class activation map (Zhou et al. 2016). Every
table gets a floor that uses no model: a Gaussian centred on the picture (`centre_prior`),
binarised the same way.

Mask datasets (`segmentation.datasets`, NAME=ROOT), read by `read_mask_dataset`:
    Object Discovery   ROOT/<Class>100/*.jpg|png with ROOT/<Class>100/GroundTruth/<same stem>.png (only
                       the 100-image subsets when ROOT also holds the full sets, as its Data/ folder does)
    generic            ROOT/<class>/images/* with ROOT/<class>/masks/<same stem>.png
    lpa dataset        an extracted dataset with test_masks.npy (data/extracted/pasted_digits): its test split
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from lpa.data.arrays import MASKS_FILE, META_FILE, read_meta, read_split
from lpa.errors import DatasetFormatError
from lpa.data.imagefolder import IMAGE_ERRORS, IMAGE_EXTENSIONS, image_files
from lpa.train.engine import pick_device
from lpa.errors import ConfigError
from lpa.experiments.figures import ALPHA, CMAP, upsample_maps
from lpa.files import atomic_path, write_bytes, write_json
from lpa.train.modelfile import TrainedModel, load_trained

MASK_LEVEL = 128  # a ground-truth mask pixel is object where its grey value is at least this


@dataclass
class MaskedImage:
    group: str          # the class folder (Object Discovery: Airplane100 -> airplane)
    name: str
    image: np.ndarray   # H x W x 3 uint8
    mask: np.ndarray    # H x W bool


# -- reading ------------------------------------------------------------------------------------
def _open_rgb(path: Path) -> np.ndarray:
    # the stored pixels, no EXIF turn: masks are drawn on the stored pixels and carry no EXIF
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except IMAGE_ERRORS as err:
        raise DatasetFormatError(f"cannot read image {path} ({type(err).__name__}); replace or remove it") from None


def _open_mask(path: Path, image_path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as img:
            mask = np.asarray(img.convert("L")) >= MASK_LEVEL
    except IMAGE_ERRORS as err:
        raise DatasetFormatError(f"cannot read mask {path} ({type(err).__name__}); replace or remove it") from None
    if mask.shape != shape:
        raise DatasetFormatError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
                                 f"{shape[1]}x{shape[0]}; masks must have their image's size")
    return mask


def _read_pairs(group: str, images_dir: Path, masks_dir: Path) -> list[MaskedImage]:
    items = []
    masks = {p.stem: p for p in image_files(masks_dir)} if masks_dir.is_dir() else {}
    images = image_files(images_dir)
    if not images:
        raise DatasetFormatError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {images_dir}")
    for path in images:
        if path.stem not in masks:
            raise DatasetFormatError(f"image {path} has no mask {masks_dir / (path.stem + '.png')}; add it or "
                                     f"remove the image")
        image = _open_rgb(path)
        items.append(MaskedImage(group, path.stem, image, _open_mask(masks[path.stem], path, image.shape[:2])))
    return items


def read_mask_dataset(root: str | Path) -> list[MaskedImage]:
    """Every (image, mask) of a mask dataset, grouped by class, in a fixed order (class, name)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"segmentation dataset {root} does not exist; set segmentation.datasets to "
                                 f"NAME=ROOT with ROOT an Object Discovery folder, ROOT/<class>/images+masks, or an "
                                 f"extracted lpa dataset with {MASKS_FILE}")
    if (root / META_FILE).exists():
        if not (root / MASKS_FILE).exists():
            raise DatasetFormatError(f"{root} is an lpa dataset without object masks ({MASKS_FILE}); only datasets "
                                     f"that have them (pasted_digits) can be segmentation datasets")
        images, labels = read_split(root, "test")
        masks = np.load(root / MASKS_FILE, allow_pickle=False)
        if masks.shape != (images.shape[0], *images.shape[2:]):
            raise DatasetFormatError(f"{root / MASKS_FILE} holds {masks.shape} masks for test images of shape "
                                     f"{images.shape}; re-run the download stage that wrote {root}")
        classes = read_meta(root)["classes"]
        order = np.argsort(labels, kind="stable")
        return [MaskedImage(str(classes[labels[i]]), f"test{i:05d}", images[i].transpose(1, 2, 0), masks[i].astype(bool))
                for i in order]
    groups = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    subsets = [p for p in groups if p.name.endswith("100") and (p / "GroundTruth").is_dir()]
    if subsets:  # Object Discovery's Data/ holds the full sets next to the 100-image ones: the paper's are these
        groups = subsets
    items: list[MaskedImage] = []
    for folder in groups:
        if (folder / "GroundTruth").is_dir():      # Object Discovery: Airplane100/GroundTruth
            name = folder.name[:-3] if folder.name.endswith("100") else folder.name
            items += _read_pairs(name.lower(), folder, folder / "GroundTruth")
        elif (folder / "images").is_dir():
            items += _read_pairs(folder.name, folder / "images", folder / "masks")
    if not items:
        raise DatasetFormatError(f"{root} holds no <Class>100/GroundTruth or <class>/images + <class>/masks folders")
    return items


# -- maps -----------------------------------------------------------------------------------------
def normalise(m: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a constant map becomes all zeros."""
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def combine_levels(maps: Sequence[np.ndarray], shape: tuple[int, int], how: str) -> np.ndarray:
    """One [0, 1] map at `shape` from per-level maps: mean | max of the normalised levels, or levelK."""
    levels = [normalise(upsample_maps(np.asarray(m, dtype=np.float32)[None], shape)[0]) for m in maps]
    if how.startswith("level"):
        k = int(how[len("level"):])
        if k > len(levels):
            raise ConfigError(f"segmentation.combine={how}, but the model has {len(levels)} attention level(s)")
        return levels[k - 1]
    stacked = np.stack(levels)
    return normalise(stacked.mean(0) if how == "mean" else stacked.max(0))


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
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_bytes(path, buf.getvalue())


def segmentation_run(model_file: Path, dataset_root: Path, metrics_path: Path, figures_dir: Path,
                     settings: Mapping) -> dict:
    """Everything `segment@<trial>-on-<name>` writes: the Jaccard index per class and its mean, for
    the run's maps and the centre prior (metrics_path), and one figure per class (figures_dir)."""
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
    return record
