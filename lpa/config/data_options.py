"""The `data:` section of params.yaml: allowed keys, defaults and validation.

Layout (params.yaml)::

    data:
      datasets: [cifar10, cifar100, svhn, digits, imagefolder, cub200, pasted_digits, caltech101]
      raw_dir: data/raw
      <dataset>:
        download:   {...}   # read by download@<dataset> (what is extracted, and how)
        preprocess: {...}   # read by preprocess@<dataset> (normalisation)

Each stage declares exactly the subsection it reads (`data.<dataset>.download` or
`data.<dataset>.preprocess`), so changing `zca_epsilon` re-runs preprocessing but not the
extraction. Declared once with lpa.config.settings: params.yaml must list every key (lpa.config's
`check_params` calls `check_data_section` before any stage works); library callers may leave out
keys, which take the defaults below. Unknown keys and bad values raise `DataParamError` (a
ValueError) naming the key and listing what is allowed, before any download or computation.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lpa.errors import DataParamError
from lpa.config.params import to_plain
from lpa.config.settings import Setting, check_section

DATASETS = ("cifar10", "cifar100", "svhn", "digits", "imagefolder", "cub200", "pasted_digits", "caltech101")
TRANSFORMS = ("zca", "standardize", "scale", "none")
SECTIONS = ("download", "preprocess")
CIFAR_SOURCES = ("official", "imagefolder")
CALTECH101_SOURCES = ("official", "copy")

# Largest flattened image size (C*H*W) ZCA accepts: the matrix is d x d float32
# (12288 -> 0.6 GB; CIFAR's 3072 -> 38 MB; CUB's 3x80x80 = 19200 -> 1.5 GB, refused).
ZCA_MAX_DIM = 3 * 64 * 64

_IMAGE_SIZE = Setting("int", "every image converted to RGB and resized to this (pixels)", default=32, low=8, high=1024)


def _cifar_download(root: str) -> dict[str, Setting]:
    return {
        "source": Setting("choice", "official: the python archive, MD5-checked | imagefolder: the same classes "
                                    "as image files (e.g. the JPEG copy)", default="official", choices=CIFAR_SOURCES),
        "imagefolder_root": Setting("path", "source=imagefolder: a folder or archive of train/<class>/, test/<class>/",
                                    default=root),
    }


DOWNLOAD_SETTINGS: dict[str, dict[str, Setting]] = {
    "cifar10": _cifar_download("data/raw/cifar10-jpeg"),
    "cifar100": _cifar_download("data/raw/cifar100-jpeg"),
    # The paper does not say whether SVHN's 531k "extra" images were used; the Keras
    # reproduction used train only, so extra is off (and not downloaded) by default.
    "svhn": {"use_extra": Setting("bool", "add the 531k 'extra' images to train (paper: unstated)", default=False)},
    "digits": {
        "image_size": Setting("int", "the 8x8 digits upscaled (bilinear) to this, grey replicated to RGB",
                              default=32, low=8, high=1024),
        "test_fraction": Setting("number", "share of the 1,797 images held out as the test split (stratified)",
                                 default=0.2, low=0.05, high=0.95),
        "split_seed": Setting("int", "seed of the stratified train/test split", default=0, low=0),
    },
    "imagefolder": {
        "root": Setting("path", "a folder of train/<class>/ and test/<class>/ images, or an archive of one",
                        default="data/raw/imagefolder"),
        "image_size": _IMAGE_SIZE,
    },
    # CUB-200-2011 from the official CUB_200_2011.tgz (lpa.data.cub). The official code trains on a
    # ready-made `cubs-200.t7` (VGGNet/run_expt_cubs200.sh) whose building script is not in its
    # repository, so whether it was cropped is not recorded there; its CUB networks take 80x80
    # inputs (models_CUBS200/vgg_bn_drop.lua "sjmod(80x80)"). The Keras reproduction
    # (lshug/LearnToPayAttention-Keras, CUB200_preprocess.py) crops each image to its bounding box
    # and resizes it to 80x80; lpa does the same by default.
    "cub200": {
        "crop": Setting("bool", "crop each image to its bounding_boxes.txt box before resizing (official: "
                                "unrecorded; Keras reproduction: yes)", default=True),
        "image_size": Setting("int", "every image converted to RGB, cropped if crop, resized (bilinear) to this "
                                     "(official CUB networks: 80)", default=80, low=8, high=1024),
    },
    # generated (lpa.data.pasted_digits): the weakly supervised segmentation test of the quick suite
    "pasted_digits": {
        "image_size": Setting("int", "the textured canvas, image_size x image_size RGB", default=32, low=8, high=1024),
        "digit_size": Setting("int", "each 8x8 digit resized to this before pasting", default=16, low=4, high=1024),
        "test_fraction": Setting("number", "share held out as the test split (stratified)", default=0.2,
                                 low=0.05, high=0.95),
        "split_seed": Setting("int", "seed of the stratified train/test split", default=0, low=0),
        "seed": Setting("int", "seed of the backgrounds, colours and places", default=0, low=0),
    },
    # Caltech-101 (lpa.data.caltech101), a transfer target. It defines no split: the customary
    # protocol (Fei-Fei et al. 2004 onwards) draws a fixed number of training images per class
    # (15 or 30) and tests on the rest or on up to 50 of them, BACKGROUND_Google left out, and
    # reports mean per-class accuracy. The official code reshapes every transfer image to 3x32x32
    # (docs/reference.md), hence image_size 32.
    "caltech101": {
        "source": Setting("choice", "official: caltech-101.zip (CaltechDATA), MD5-checked | copy: a folder "
                                    "101_ObjectCategories/ or an archive holding it, read from root",
                          default="official", choices=CALTECH101_SOURCES),
        "root": Setting("path", "source=copy: a folder holding (or named) 101_ObjectCategories/, or a .tar.gz, "
                                ".tgz, .tar or .zip archive holding it", default="data/raw/caltech101.tar.gz"),
        "train_per_class": Setting("int", "training images drawn per class (seeded); every class needs at least one "
                                          "more image than this (the smallest class has 31)", default=30, low=1),
        "test_per_class": Setting("int", "test images per class, drawn from the rest (0: all the rest)", default=50,
                                  low=0),
        "split_seed": Setting("int", "seed of the per-class draw", default=0, low=0),
        "image_size": Setting("int", "every image converted to RGB and resized (bilinear, aspect not kept) to this "
                                     "(official transfer code: 32)", default=32, low=8, high=1024),
    },
}


def _preprocess(transform: str, gcn: bool) -> dict[str, Setting]:
    return {
        "transform": Setting("choice", "fitted on the train split only: zca | standardize (per-channel mean/std) "
                                       "| scale (x / 255) | none", default=transform, choices=TRANSFORMS),
        # pylearn2-style global contrast normalisation before `transform`
        "gcn": Setting("bool", "global contrast normalisation first (pylearn2: per image, mean 0 and L2 norm "
                               "gcn_scale)", default=gcn),
        "gcn_scale": Setting("number", "per-image L2 norm after GCN (pylearn2 CIFAR recipe: 55)", default=55.0,
                             low=0, low_open=True),
        "zca_epsilon": Setting("number", "added to the covariance eigenvalues (pylearn2 ZCA filter_bias: 0.1)",
                               default=0.1, low=0, low_open=True),
    }


PREPROCESS_SETTINGS: dict[str, dict[str, Setting]] = {
    # The official CIFAR runs: GCN then ZCA, fitted on the training split (ltpa.md section 3).
    "cifar10": _preprocess("zca", True),
    "cifar100": _preprocess("zca", True),
    # SVHN is used raw by the paper: pixels scaled to [0, 1] only.
    "svhn": _preprocess("scale", False),
    "digits": _preprocess("standardize", False),
    "imagefolder": _preprocess("standardize", False),
    # The paper says CUB is preprocessed as CIFAR-100 (GCN then ZCA); the official cubs-200.t7 was
    # made offline (no script in the repository) and its trainers normalise nothing further. ZCA
    # on 3x80x80 images needs a 19200 x 19200 matrix (1.5 GB, over ZCA_MAX_DIM), so lpa keeps the
    # per-image GCN and replaces the whitening by a per-channel mean/std fitted on train.
    "cub200": _preprocess("standardize", True),
    "pasted_digits": _preprocess("standardize", False),
    # a transfer target: transfer applies the source run's transform, not this one (preprocess@caltech101
    # only matters for a run trained on Caltech-101 itself)
    "caltech101": _preprocess("standardize", False),
}
SETTINGS = {"download": DOWNLOAD_SETTINGS, "preprocess": PREPROCESS_SETTINGS}


def data_settings(name: str) -> dict[str, dict[str, Setting]]:
    """The declaration of `data.<name>`: {download: {...}, preprocess: {...}}."""
    check_dataset_name(name)
    return {"download": DOWNLOAD_SETTINGS[name], "preprocess": PREPROCESS_SETTINGS[name]}


def check_dataset_name(name: Any) -> str:
    """Return `name` if it is a known dataset, else raise DataParamError listing them."""
    if name not in DATASETS:
        raise DataParamError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return name


def _validate(name: str, section: str, values: Any, fill_defaults: bool = True) -> dict:
    check_dataset_name(name)
    values = {} if values is None else values
    values = to_plain(values) if isinstance(values, Mapping) else values
    return check_section(values, SETTINGS[section][name], f"data.{name}.{section}",
                         fill_defaults=fill_defaults, error=DataParamError)


def validate_download_params(name: str, params: Mapping | None) -> dict:
    """Validated `data.<name>.download` with the library defaults filled in (a new plain dict)."""
    return _validate(name, "download", params)


def validate_preprocess_params(name: str, params: Mapping | None) -> dict:
    """Validated `data.<name>.preprocess` with the library defaults filled in (a new plain dict)."""
    return _validate(name, "preprocess", params)


def check_zca_feasible(image_shape: tuple[int, ...] | list[int], where: str) -> None:
    dim = math.prod(int(s) for s in image_shape)
    if dim > ZCA_MAX_DIM:
        gb = dim * dim * 4 / 1e9
        raise DataParamError(
            f"{where}: transform=zca on {'x'.join(map(str, image_shape))} images needs a "
            f"{dim}x{dim} matrix ({gb:.1f} GB); use transform=standardize, or images of at most "
            f"{ZCA_MAX_DIM} values (e.g. 3x64x64)"
        )


def validate_dataset_params(name: str, params: Mapping | None, fill_defaults: bool = True) -> dict:
    """Validate a whole `data.<name>` section: {'download': {...}, 'preprocess': {...}}.

    Raises DataParamError for an unknown dataset, an unknown key or a bad value (listing what is
    allowed), and for ZCA on images too large for it when the image size is known.
    """
    check_dataset_name(name)
    params = {} if params is None and fill_defaults else params
    if not isinstance(params, Mapping):
        raise DataParamError(f"data.{name} must be a mapping with keys {', '.join(SECTIONS)}")
    unknown = sorted(set(map(str, params)) - set(SECTIONS))
    if unknown:
        raise DataParamError(f"data.{name} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(SECTIONS)}")
    out = {section: _validate(name, section, params.get(section), fill_defaults)
           if section in params or fill_defaults else _validate(name, section, None, False)
           for section in SECTIONS}
    size = out["download"].get("image_size", 32)
    if out["preprocess"]["transform"] == "zca":
        check_zca_feasible((3, size, size), f"data.{name}.preprocess")
    return out


def check_data_section(data: Any) -> dict:
    """Validate the whole `data:` section of params.yaml: datasets, raw_dir and every dataset's
    section (listed or not), each key present, before any stage does work."""
    if not isinstance(data, Mapping):
        raise DataParamError("params.yaml `data` must be a mapping")
    allowed = {"datasets", "raw_dir", *DATASETS}
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        raise DataParamError(f"data has unknown key(s) {', '.join(unknown)}; allowed: datasets, raw_dir, "
                             f"{', '.join(DATASETS)}")
    missing = sorted(allowed - set(data))
    if missing:
        raise DataParamError(f"params.yaml lacks data.{', data.'.join(missing)}; recompose it with `make params`")
    datasets = data["datasets"]
    if not isinstance(datasets, (list, tuple)) or not datasets:
        raise DataParamError(f"data.datasets must be a non-empty list drawn from: {', '.join(DATASETS)}")
    for name in datasets:
        check_dataset_name(name)
    if len(set(datasets)) != len(datasets):
        raise DataParamError(f"data.datasets={list(datasets)} lists a dataset twice")
    if not isinstance(data["raw_dir"], str) or not data["raw_dir"].strip():
        raise DataParamError("data.raw_dir must be a non-empty path")
    return {name: validate_dataset_params(name, data[name], fill_defaults=False) for name in DATASETS}
