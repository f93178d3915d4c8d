"""evaluate@<trial>: test-split metrics, per-class accuracy, confusion matrix and attention overlays.

    python -m stages.evaluate TRIAL       (TRIAL = <run>-seed<k>)

Declares only suite_name (where the files are): everything else (the resolved config included)
comes with models/SUITE/TRIAL/model.pt, so it cannot drift from what was trained. Writes
reports/SUITE/runs/TRIAL/ metrics.json, per_class.csv, confusion.csv and attention/level<k>.png (the same fixed 16 test
images for every run of a dataset, drawn on the original pixels from data/extracted).
"""
from __future__ import annotations

from pathlib import Path

from lpa.config.stage_runner import run_stage
from lpa.config.params import stage_params
from lpa.experiments.evaluate import evaluate_run
from lpa.layout import model_file, record_dir


def main(trial: str) -> None:
    suite = stage_params("evaluate", trial)["suite_name"]
    evaluate_run(model_file(suite, trial), data_dir=Path("data"), out_dir=record_dir(suite, trial))


if __name__ == "__main__":
    run_stage(main, "python -m stages.evaluate")
