"""evaluate@<run>: test-split metrics, per-class accuracy, confusion matrix and attention overlays.

    python -m stages.evaluate RUN

Declares no params: everything it needs (the resolved config included) comes with
models/RUN/model.pt, so it cannot drift from what was trained. Writes reports/runs/RUN/
metrics.json, per_class.csv, confusion.csv and attention/level<k>.png (the same fixed 16 test
images for every run of a dataset, drawn on the original pixels from data/extracted).
"""
from __future__ import annotations

from pathlib import Path

from lpa.cli import run_stage
from lpa.evaluate import evaluate_run


def main(run: str) -> None:
    evaluate_run(Path("models") / run / "model.pt", data_dir=Path("data"), out_dir=Path("reports/runs") / run)


if __name__ == "__main__":
    run_stage(main, "python -m stages.evaluate RUN")
