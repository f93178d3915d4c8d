"""segment@<trial>-on-<name>: the trial's attention maps as object masks, scored by the Jaccard index.

    python -m stages.segment PAIR         (PAIR = <trial>-on-<name>, a key of params.yaml segmentation_pairs)

Declares suite_name, the segmentation settings it reads and its pair (the dataset's ROOT is in it).
Writes reports/SUITE/runs/TRIAL/segmentation/NAME.json (mean Jaccard per class and overall, for the
run's maps and the centre prior) and segmentation/NAME/<class>.png (image, mask, map, binarised).
"""
from __future__ import annotations

from lpa.layout import model_file, segmentation_record
from lpa.config.params import stage_params, to_plain
from lpa.experiments.segmentation import segmentation_run
from lpa.config.stage_runner import run_stage


def main(pair: str) -> None:
    params = stage_params("segment", pair)
    suite, item = params["suite_name"], to_plain(params["segmentation_pairs"][pair])
    settings = to_plain(params["segmentation"])  # exactly the keys dvc.yaml declares for this stage
    metrics, figures = segmentation_record(suite, item["trial"], item["other"])
    record = segmentation_run(model_file(suite, item["trial"]), item["root"], metrics, figures, settings)
    scores = record["jaccard"]
    print(f"segment@{pair}: mean Jaccard {scores['model']['mean']:.3f} (centre prior "
          f"{scores['centre_prior']['mean']:.3f}) over {record['images']} images")


if __name__ == "__main__":
    run_stage(main, "python -m stages.segment")
