"""Where the datasets come from: official file names, URLs and MD5 checksums.

The CIFAR, SVHN and Caltech-101 URLs and MD5s are the ones torchvision uses
(`torchvision.datasets.CIFAR10/CIFAR100/SVHN/Caltech101`); tests/data/test_data_sources.py and
tests/data/test_caltech101.py check that they still agree. torchvision has no CUB-200-2011 class:
where its URL and MD5 come from is said next to CUB200_ARCHIVE. Sizes are for the documentation
and for the "place the file by hand" message only; integrity is decided by the MD5.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """One official file: saved as `<raw_dir>/<filename>`, fetched from `url`, checked by `md5`."""

    filename: str
    url: str
    md5: str
    size: int | None = None  # bytes, approximate documentation value


CIFAR10_ARCHIVE = RemoteFile(
    "cifar-10-python.tar.gz",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
    170_498_071,
)
CIFAR100_ARCHIVE = RemoteFile(
    "cifar-100-python.tar.gz",
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "eb9058c3a382ffc7106e4002c42a8d85",
    169_001_437,
)
SVHN_TRAIN = RemoteFile(
    "train_32x32.mat",
    "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
    "e26dedcc434d2e4c54c9b2d4a06d8373",
    182_040_794,
)
SVHN_TEST = RemoteFile(
    "test_32x32.mat",
    "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
    "eb5a983be6a315427106f1b164d9cef3",
    64_275_384,
)
SVHN_EXTRA = RemoteFile(
    "extra_32x32.mat",
    "http://ufldl.stanford.edu/housenumbers/extra_32x32.mat",
    "a93ce644f1a588dc4d68dda5feec44a7",
    1_329_278_602,
)

# CUB-200-2011 (https://www.vision.caltech.edu/datasets/cub_200_2011/), now hosted by CaltechDATA
# (record 65de6-vp158). The URL is the one tensorflow_datasets' CaltechBirds2011 downloads
# (tensorflow_datasets/image_classification/caltech_birds.py); the MD5 is the one every
# torchvision-style loader checks for this archive (avalanche's CUB200.tgz_md5 in
# avalanche/benchmarks/datasets/cub200/cub200.py, TDeVries' cub2011.py Cub2011.tgz_md5), and the
# size is tensorflow_datasets' recorded size of the same archive (url_checksums/caltech_birds2011.txt).
CUB200_ARCHIVE = RemoteFile(
    "CUB_200_2011.tgz",
    "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
    "97eceeb196236b17998738112f37df78",
    1_150_585_339,
)

# Caltech-101 (Fei-Fei, Fergus, Perona 2004), CaltechDATA record mzrjq-6wc02 (DOI 10.22002/D1.20086):
# the record's caltech-101.zip holds caltech-101/101_ObjectCategories.tar.gz (the images, the
# classic official archive) and caltech-101/Annotations.tar. URL, file name and MD5 are the ones
# torchvision uses (torchvision.datasets.Caltech101.download, torchvision 0.29); that code checks
# no size, so none is recorded here.
CALTECH101_ARCHIVE = RemoteFile(
    "caltech-101.zip",
    "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
    "3138e1922a9193bfa496528edbbc45d0",
)

# Per dataset: role -> official file. Roles are what `extract_dataset(files=...)` overrides.
REMOTE_FILES: dict[str, dict[str, RemoteFile]] = {
    "cifar10": {"archive": CIFAR10_ARCHIVE},
    "cifar100": {"archive": CIFAR100_ARCHIVE},
    "svhn": {"train": SVHN_TRAIN, "test": SVHN_TEST, "extra": SVHN_EXTRA},
    "digits": {},
    "imagefolder": {},
    "cub200": {"archive": CUB200_ARCHIVE},
    "pasted_digits": {},  # generated from scikit-learn's bundled digits
    "caltech101": {"archive": CALTECH101_ARCHIVE},
}

# Top-level directory inside each official CIFAR archive and the files read from it.
CIFAR_LAYOUT = {
    "cifar10": {
        "top": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "label_key": "labels",
        "names_key": "label_names",
        "num_classes": 10,
    },
    "cifar100": {
        "top": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "label_key": "fine_labels",
        "names_key": "fine_label_names",
        "num_classes": 100,
    },
}
