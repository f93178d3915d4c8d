"""download@<dataset>: the dataset in its official format -> data/extracted/<dataset>/.

    python -m stages.download DATASET      (cifar10 | cifar100 | svhn | digits | imagefolder)

Reads the params dvc.yaml declares for it (data.raw_dir, data.<dataset>.download). Official
archives are taken from data.raw_dir when present (MD5-checked), else downloaded there.
Writes uint8 images, int64 labels and meta.json (docs/contracts.md). Errors: one line, exit 1.
"""
from __future__ import annotations

from lpa.config.stage_runner import run_stage
from lpa.config.params import stage_params
from lpa.config.data_options import check_dataset_name
from lpa.data.pipeline import extract_dataset
from lpa.data.pipeline import EXTRACTED_DIR


def main(dataset: str) -> None:
    check_dataset_name(dataset)
    data = stage_params("download", dataset)["data"]
    out_dir = EXTRACTED_DIR / dataset
    meta = extract_dataset(dataset, data[dataset]["download"], out_dir, raw_dir=data["raw_dir"])
    shape = "x".join(map(str, meta["image_shape"]))
    print(f"download@{dataset}: {meta['splits']['train']} train + {meta['splits']['test']} test images "
          f"({shape} uint8, {meta['num_classes']} classes) -> {out_dir}")


if __name__ == "__main__":
    run_stage(main, "python -m stages.download")
