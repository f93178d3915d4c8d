"""The `data:` section of params.yaml: allowed keys, defaults and validation.

Layout (params.yaml)::

    data:
      datasets: [cifar10, cifar100, svhn, digits, imagefolder]
      raw_dir: data/raw
      <dataset>:
        download:   {...}   # read by download@<dataset> (what is extracted, and how)
        preprocess: {...}   # read by preprocess@<dataset> (normalisation)

Each stage declares exactly the subsection it reads (`data.<dataset>.download` or
`data.<dataset>.preprocess`), so changing `zca_epsilon` re-runs preprocessing but not the
extraction. Missing keys take the defaults below; unknown keys and bad values raise
`DataParamError` (a ValueError) naming the key and listing what is allowed, before any download
or computation. `lpa.config` may call `validate_dataset_params` to check everything up front.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from lpa.config import to_plain
from lpa.data.errors import DataParamError

DATASETS = ("cifar10", "cifar100", "svhn", "digits", "imagefolder")
NORMALIZE_METHODS = ("zca", "standardize", "scale", "none")
SECTIONS = ("download", "preprocess")

# Largest flattened image size (C*H*W) ZCA accepts: the matrix is d x d float32
# (12288 -> 0.6 GB; CIFAR's 3072 -> 38 MB).
ZCA_MAX_DIM = 3 * 64 * 64

Rule = tuple[Any, Callable[[Any], bool], str]  # (default, check, what is allowed)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_BOOL = (lambda v: isinstance(v, bool), "true or false")
_IMAGE_SIZE = (lambda v: _is_int(v) and 8 <= v <= 1024, "an integer from 8 to 1024")
_SEED = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
_TEST_FRACTION = (lambda v: _is_num(v) and 0.05 <= v <= 0.95, "a number from 0.05 to 0.95")
_POSITIVE = (lambda v: _is_num(v) and v > 0, "a number > 0")
_PATH = (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty path")
_NORMALIZE = (lambda v: v in NORMALIZE_METHODS, "one of " + ", ".join(NORMALIZE_METHODS))


def _rule(default: Any, check: tuple[Callable[[Any], bool], str]) -> Rule:
    return (default, check[0], check[1])


DOWNLOAD_RULES: dict[str, dict[str, Rule]] = {
    "cifar10": {},
    "cifar100": {},
    # The paper does not say whether SVHN's 531k "extra" images were used; the Keras
    # reproduction used train only, so extra is off (and not downloaded) by default.
    "svhn": {"use_extra": _rule(False, _BOOL)},
    "digits": {
        "image_size": _rule(32, _IMAGE_SIZE),
        "test_fraction": _rule(0.2, _TEST_FRACTION),
        "split_seed": _rule(0, _SEED),
    },
    "imagefolder": {
        "root": _rule("data/raw/imagefolder", _PATH),
        "image_size": _rule(32, _IMAGE_SIZE),
    },
}


def _preprocess_rules(normalize: str, gcn: bool) -> dict[str, Rule]:
    return {
        "normalize": _rule(normalize, _NORMALIZE),
        # pylearn2-style global contrast normalisation before `normalize`: per image, subtract
        # the mean and scale to L2 norm `gcn_scale` (pylearn2's CIFAR recipe: scale 55).
        "gcn": _rule(gcn, _BOOL),
        "gcn_scale": _rule(55.0, _POSITIVE),
        # added to the covariance eigenvalues (pylearn2 ZCA filter_bias default 0.1)
        "zca_epsilon": _rule(0.1, _POSITIVE),
    }


PREPROCESS_RULES: dict[str, dict[str, Rule]] = {
    # The official CIFAR runs: GCN then ZCA, fitted on the training split (ltpa.md section 3).
    "cifar10": _preprocess_rules("zca", True),
    "cifar100": _preprocess_rules("zca", True),
    # SVHN is used raw by the paper: pixels scaled to [0, 1] only.
    "svhn": _preprocess_rules("scale", False),
    "digits": _preprocess_rules("standardize", False),
    "imagefolder": _preprocess_rules("standardize", False),
}

RULES = {"download": DOWNLOAD_RULES, "preprocess": PREPROCESS_RULES}


def check_dataset_name(name: Any) -> str:
    """Return `name` if it is a known dataset, else raise DataParamError listing them."""
    if name not in DATASETS:
        raise DataParamError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return name


def _validate(name: str, section: str, values: Any) -> dict:
    check_dataset_name(name)
    rules = RULES[section][name]
    where = f"data.{name}.{section}"
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise DataParamError(f"{where} must be a mapping (keys: {', '.join(rules) or 'none'})")
    values = to_plain(values)
    unknown = sorted(set(values) - set(rules))
    if unknown:
        raise DataParamError(
            f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(rules) or 'none'}"
        )
    out = {}
    for key, (default, check, what) in rules.items():
        value = values.get(key, default)
        if not check(value):
            raise DataParamError(f"{where}.{key}={value!r} is invalid; it must be {what}")
        out[key] = float(value) if key in ("test_fraction", "gcn_scale", "zca_epsilon") else value
    return out


def validate_download_params(name: str, params: Mapping | None) -> dict:
    """Validated `data.<name>.download` with defaults filled in (a new plain dict)."""
    return _validate(name, "download", params)


def validate_preprocess_params(name: str, params: Mapping | None) -> dict:
    """Validated `data.<name>.preprocess` with defaults filled in (a new plain dict)."""
    return _validate(name, "preprocess", params)


def check_zca_feasible(image_shape: tuple[int, ...] | list[int], where: str) -> None:
    dim = math.prod(int(s) for s in image_shape)
    if dim > ZCA_MAX_DIM:
        gb = dim * dim * 4 / 1e9
        raise DataParamError(
            f"{where}: normalize=zca on {'x'.join(map(str, image_shape))} images needs a "
            f"{dim}x{dim} matrix ({gb:.1f} GB); use normalize=standardize, or images of at most "
            f"{ZCA_MAX_DIM} values (e.g. 3x64x64)"
        )


def validate_dataset_params(name: str, params: Mapping | None) -> dict:
    """Validate a whole `data.<name>` section: {'download': {...}, 'preprocess': {...}}.

    Returns both subsections with defaults filled in. Raises DataParamError (a ValueError) for an
    unknown dataset, an unknown key or a bad value, listing what is allowed. Also rejects ZCA on
    images too large for it when the image size is known from the download params.
    """
    check_dataset_name(name)
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise DataParamError(f"data.{name} must be a mapping with keys {', '.join(SECTIONS)}")
    unknown = sorted(set(params) - set(SECTIONS))
    if unknown:
        raise DataParamError(
            f"data.{name} has unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(SECTIONS)}"
        )
    out = {
        "download": validate_download_params(name, params.get("download")),
        "preprocess": validate_preprocess_params(name, params.get("preprocess")),
    }
    size = out["download"].get("image_size", 32)
    if out["preprocess"]["normalize"] == "zca":
        check_zca_feasible((3, size, size), f"data.{name}.preprocess")
    return out


def validate_data_section(data: Mapping) -> dict:
    """Validate the whole `data:` section (datasets, raw_dir and each listed dataset)."""
    if not isinstance(data, Mapping):
        raise DataParamError("params.yaml `data` must be a mapping")
    allowed = {"datasets", "raw_dir", *DATASETS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DataParamError(f"data has unknown key(s) {', '.join(map(str, unknown))}; allowed: "
                             f"datasets, raw_dir, {', '.join(DATASETS)}")
    datasets = data.get("datasets", [])
    if not isinstance(datasets, (list, tuple)) or not datasets:
        raise DataParamError(f"data.datasets must be a non-empty list drawn from: {', '.join(DATASETS)}")
    for name in datasets:
        check_dataset_name(name)
    if not _PATH[0](data.get("raw_dir", "data/raw")):
        raise DataParamError("data.raw_dir must be a non-empty path")
    return {name: validate_dataset_params(name, data.get(name)) for name in datasets}
