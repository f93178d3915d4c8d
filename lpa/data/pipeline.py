"""The two data stages as library calls (no DVC, no argv): extract and preprocess a dataset.

    extract_dataset(name, download_params, out_dir, raw_dir)      # download@<name>
    preprocess_dataset(name, preprocess_params, in_dir, out_dir)   # preprocess@<name>

Both validate their params first (DataParamError before any download or computation) and write
their output directory atomically.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lpa.data import arrays
from lpa.data.caltech101 import load_caltech101
from lpa.data.cifar import check_cifar_classes, load_cifar_archive
from lpa.data.cub import load_cub_archive
from lpa.data.digits import load_digits_dataset
from lpa.data.pasted_digits import load_pasted_digits
from lpa.errors import DataParamError, DatasetFormatError
from lpa.data.fetch import ensure_file
from lpa.data.imagefolder import load_imagefolder
from lpa.config.data_options import check_zca_feasible, validate_download_params, validate_preprocess_params
from lpa.data.sources import REMOTE_FILES, RemoteFile
from lpa.data.svhn import CLASSES as SVHN_CLASSES, load_svhn_mat
from lpa.data.transforms import fit_transform
from lpa.data.types import RawDataset

EXTRACTED_DIR = Path("data/extracted")
PROCESSED_DIR = Path("data/processed")


def needed_files(name: str, params: Mapping, files: Mapping[str, RemoteFile] | None = None) -> dict[str, RemoteFile]:
    """The official files `download@<name>` needs with these (validated) params, by role."""
    remote = dict(REMOTE_FILES[name])
    if files:
        unknown = set(files) - set(remote)
        if unknown:
            raise ValueError(f"{name} has no file role(s) {sorted(unknown)}; roles: {', '.join(remote) or 'none'}")
        remote.update(files)
    if name == "svhn" and not params["use_extra"]:
        remote.pop("extra")
    if name in ("cifar10", "cifar100", "caltech101") and params["source"] != "official":
        remote.clear()  # read from a copy (image files, another archive) instead of the official archive
    return remote


def _source(remote: Mapping[str, RemoteFile], raw_dir: Path) -> dict:
    return {
        "kind": "official files",
        "files": {role: {"file": os.fspath(raw_dir / r.filename), "url": r.url, "md5": r.md5}
                  for role, r in remote.items()},
    }


def load_raw_dataset(
    name: str,
    params: Mapping | None,
    raw_dir: str | os.PathLike = "data/raw",
    *,
    files: Mapping[str, RemoteFile] | None = None,
    workers: int | None = None,
) -> RawDataset:
    """Read dataset `name` from its official source into memory (downloading into raw_dir if needed).

    `files` replaces official files by role (tests pass fixture archives with their own MD5s);
    the code path is the same.
    """
    params = validate_download_params(name, params)
    raw_dir = Path(raw_dir)
    remote = needed_files(name, params, files)
    # every file is verified (or fetched) before any parsing starts
    paths = {role: ensure_file(r, raw_dir) for role, r in remote.items()}

    if name in ("cifar10", "cifar100") and params["source"] == "imagefolder":
        data = load_imagefolder(params["imagefolder_root"], 32, workers=workers)
        check_cifar_classes(data.classes, name, params["imagefolder_root"])
        data.source["kind"] = f"{name} as image files (not the official archive)"
    elif name in ("cifar10", "cifar100"):
        data = load_cifar_archive(paths["archive"], name)
        data.source = _source(remote, raw_dir)
    elif name == "svhn":
        train_x, train_y = load_svhn_mat(paths["train"])
        if "extra" in paths:
            extra_x, extra_y = load_svhn_mat(paths["extra"])
            train_x = np.concatenate([train_x, extra_x])
            train_y = np.concatenate([train_y, extra_y])
            del extra_x, extra_y
        test_x, test_y = load_svhn_mat(paths["test"])
        data = RawDataset(train_x, train_y, test_x, test_y, list(SVHN_CLASSES),
                          source={**_source(remote, raw_dir), "use_extra": params["use_extra"],
                                  "labels": "digit value (the files' label 10 is digit 0)"})
    elif name == "digits":
        data = load_digits_dataset(params["image_size"], params["test_fraction"], params["split_seed"])
    elif name == "imagefolder":
        data = load_imagefolder(params["root"], params["image_size"], workers=workers)
    elif name == "pasted_digits":
        data = load_pasted_digits(params["image_size"], params["digit_size"], params["test_fraction"],
                                  params["split_seed"], params["seed"])
    elif name == "caltech101" and params["source"] == "copy":
        data = load_caltech101(params["root"], params, official=False, workers=workers)
        data.source = {"kind": "caltech101 from a copy (not the official archive)", "root": params["root"],
                       **data.source}
    elif name == "caltech101":
        data = load_caltech101(paths["archive"], params, official=True, workers=workers)
        data.source = {**_source(remote, raw_dir), **data.source}
    elif name == "cub200":
        data = load_cub_archive(paths["archive"], params["image_size"], params["crop"], workers=workers)
        data.source = {**_source(remote, raw_dir), **data.source}
    else:  # pragma: no cover - validate_download_params rejects unknown names
        raise DataParamError(f"unknown dataset {name!r}")
    return data


def extract_dataset(
    name: str,
    params: Mapping | None,
    out_dir: str | os.PathLike | None = None,
    raw_dir: str | os.PathLike = "data/raw",
    *,
    files: Mapping[str, RemoteFile] | None = None,
    workers: int | None = None,
) -> dict:
    """download@<name>: write data/extracted/<name>/ (uint8 NCHW, int64 labels, meta.json).

    Returns the meta dict. Nothing is written to out_dir unless everything succeeded.
    """
    out_dir = Path(out_dir) if out_dir is not None else EXTRACTED_DIR / name
    data = load_raw_dataset(name, params, raw_dir, files=files, workers=workers)
    return arrays.write_extracted(out_dir, name, data)


def preprocess_dataset(
    name: str,
    params: Mapping | None,
    in_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
) -> dict:
    """preprocess@<name>: fit on the extracted train split, write data/processed/<name>/.

    Images float16 N x C x H x W, labels int64, transform.npz (the fitted transform), meta.json.
    """
    params = validate_preprocess_params(name, params)
    in_dir = Path(in_dir) if in_dir is not None else EXTRACTED_DIR / name
    out_dir = Path(out_dir) if out_dir is not None else PROCESSED_DIR / name
    meta_in = arrays.read_meta(in_dir)
    if meta_in.get("dataset") != name:
        raise DatasetFormatError(f"{in_dir}/meta.json is for dataset {meta_in.get('dataset')!r}, not {name!r}")
    shape = meta_in["image_shape"]
    if params["transform"] == "zca":
        check_zca_feasible(shape, f"data.{name}.preprocess")
    train_images, _ = arrays.read_split(in_dir, "train", mmap=True)

    transform = fit_transform(train_images, params["transform"], gcn=params["gcn"],
                              gcn_scale=params["gcn_scale"], zca_epsilon=params["zca_epsilon"])

    def fill(tmp: Path) -> dict:
        for split in arrays.SPLITS:
            images, labels = arrays.read_split(in_dir, split, mmap=True)
            out = np.lib.format.open_memmap(tmp / arrays.images_file(split), mode="w+",
                                            dtype=np.float16, shape=images.shape)
            transform.apply(images, out=out)
            out.flush()
            del out
            np.save(tmp / arrays.labels_file(split), np.asarray(labels, dtype=np.int64), allow_pickle=False)
        transform.save(tmp / arrays.TRANSFORM_FILE)
        return {
            "dataset": name,
            "classes": meta_in["classes"],
            "num_classes": meta_in["num_classes"],
            "image_shape": list(shape),
            "dtype": "float16",
            "splits": meta_in["splits"],
            "preprocessing": transform.describe(),
            "source": meta_in.get("source", {}),
        }

    return arrays.write_dataset_dir(out_dir, fill)
