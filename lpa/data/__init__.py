"""Datasets for lpa: official sources in, contract-format arrays out (docs/contracts.md, docs/data.md).

Public API:
    DATASETS, NORMALIZE_METHODS
    validate_dataset_params(name, section) / validate_download_params / validate_preprocess_params
    extract_dataset(name, download_params, out_dir=None, raw_dir="data/raw")     download@<name>
    preprocess_dataset(name, preprocess_params, in_dir=None, out_dir=None)       preprocess@<name>
    read_split(dir, split, mmap=False) -> (images, labels);  read_meta(dir) -> dict
    apply_saved_transform(dir, images_uint8) -> float32;  load_transform(dir) -> Transform
Errors: DataError and subclasses (DataParamError is also a ValueError).
"""
from lpa.data.arrays import read_meta, read_split
from lpa.data.errors import DataError, DataParamError, DatasetFormatError, DownloadError, IntegrityError
from lpa.data.params import (
    DATASETS,
    NORMALIZE_METHODS,
    check_dataset_name,
    validate_data_section,
    validate_dataset_params,
    validate_download_params,
    validate_preprocess_params,
)
from lpa.data.pipeline import extract_dataset, load_raw_dataset, preprocess_dataset
from lpa.data.sources import REMOTE_FILES, RemoteFile
from lpa.data.transforms import Transform, apply_saved_transform, fit_transform, load_transform

__all__ = [
    "DATASETS", "NORMALIZE_METHODS", "REMOTE_FILES", "RemoteFile", "Transform",
    "DataError", "DataParamError", "DatasetFormatError", "DownloadError", "IntegrityError",
    "apply_saved_transform", "check_dataset_name", "extract_dataset", "fit_transform",
    "load_raw_dataset", "load_transform", "preprocess_dataset", "read_meta", "read_split",
    "validate_data_section", "validate_dataset_params", "validate_download_params",
    "validate_preprocess_params",
]
