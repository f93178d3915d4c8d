"""Where a suite's outputs live: a folder per suite, a folder per trial (<run>-seed<k>).

dvc.yaml spells the same paths with ${suite_name} and ${key}; keeping suites apart lets each keep
its own committed records (reports/<suite>/...) without overwriting another's.
"""
from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path("models")
REPORTS_DIR = Path("reports")
CHECKPOINTS_DIR = Path("checkpoints")


def suite_dir(suite: str) -> Path:
    """reports/<suite>/: results.md, summary.json, the interval figure, runs/."""
    return REPORTS_DIR / suite


def record_dir(suite: str, trial: str) -> Path:
    """reports/<suite>/runs/<trial>/: config.json, train/ (dvclive), metrics.json, plots, overlays."""
    return suite_dir(suite) / "runs" / trial


def model_file(suite: str, trial: str) -> Path:
    """models/<suite>/<trial>/model.pt: the DVC-cached weights with their resolved config."""
    return MODELS_DIR / suite / trial / "model.pt"


def checkpoint_dir(suite: str, trial: str) -> Path:
    """checkpoints/<suite>/<trial>/: resumable state, outside DVC (lpa.train.checkpoint)."""
    return CHECKPOINTS_DIR / suite / trial


def transfer_record(suite: str, trial: str, target: str) -> Path:
    """reports/<suite>/runs/<trial>/transfer/<target>.json: transfer@<trial>-to-<target>'s metrics."""
    return record_dir(suite, trial) / "transfer" / f"{target}.json"


def segmentation_record(suite: str, trial: str, name: str) -> tuple[Path, Path]:
    """segment@<trial>-on-<name>'s metrics (.../segmentation/<name>.json) and figures (.../segmentation/<name>/)."""
    base = record_dir(suite, trial) / "segmentation"
    return base / f"{name}.json", base / name
