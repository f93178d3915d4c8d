"""preprocess@<dataset>: data/extracted/<dataset>/ -> data/processed/<dataset>/.

    python -m stages.preprocess DATASET

Reads the params dvc.yaml declares for it (data.<dataset>.preprocess): fits the normalisation
(ZCA, per-channel standardisation, [0,1] scaling, optional GCN) on the training split only,
applies it to train and test, writes float16 images, int64 labels, transform.npz and meta.json.
"""
from __future__ import annotations

import time

from lpa.config.stage_runner import run_stage
from lpa.config.params import stage_params
from lpa.config.data_options import check_dataset_name
from lpa.data.pipeline import preprocess_dataset
from lpa.data.pipeline import EXTRACTED_DIR, PROCESSED_DIR


def main(dataset: str) -> None:
    check_dataset_name(dataset)
    data = stage_params("preprocess", dataset)["data"]
    out_dir = PROCESSED_DIR / dataset
    start = time.perf_counter()
    meta = preprocess_dataset(dataset, data[dataset]["preprocess"], EXTRACTED_DIR / dataset, out_dir)
    p = meta["preprocessing"]
    what = ("gcn + " if p["gcn"] else "") + p["method"]
    print(f"preprocess@{dataset}: {what} fitted on {meta['splits']['train']} train images, "
          f"{time.perf_counter() - start:.1f} s -> {out_dir}")


if __name__ == "__main__":
    run_stage(main, "python -m stages.preprocess")
