"""Reading the records a suite's stages wrote: each trial's ``config.json`` (train) and
``metrics.json`` (evaluate) under ``reports/<suite>/runs/<trial>/``, and the other experiments'
JSON next to them.

    load_trial(trial_dir)        {run, trial, seed, config, metrics, dir} of one trial
    load_trials(trial_dirs)      the evaluated trials' records, and the names of the others
    trial_columns(record)        the columns every experiment's table row starts with
    read_record(path, ...)       one experiment's JSON, damaged files named with the stage to re-run
    metrics_of_test_split(m)     metrics.json's test numbers (nested or flat)
    number_or_nan(value)         a finite float, NaN for anything else

A missing file is a FileNotFoundError and a damaged one a DamagedFileError, each naming the file
and the DVC stage that writes it.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lpa.errors import DamagedFileError
from lpa.report.notation import paper_notation


def load_trial(trial_dir: str | Path) -> dict:
    """``{run, trial, seed, config, metrics, dir}`` from a trial's record directory
    (``reports/<suite>/runs/<trial>/{config.json, metrics.json}``); a missing file is a
    FileNotFoundError, a damaged one a DamagedFileError, each naming the file and the stage to re-run."""
    trial_dir = Path(trial_dir)
    config = _read_json(trial_dir / "config.json", f"train@{trial_dir.name}")
    metrics = _read_json(trial_dir / "metrics.json", f"evaluate@{trial_dir.name}")
    if not isinstance(config.get("model"), Mapping) or "name" not in config["model"] or "dataset" not in config:
        raise DamagedFileError(f"{trial_dir / 'config.json'} is not a resolved run config; "
                               f"re-run `dvc repro -f train@{trial_dir.name}`")
    test = metrics_of_test_split(metrics)
    if not isinstance(test, Mapping) or "top1_error" not in test:
        raise DamagedFileError(f"{trial_dir / 'metrics.json'} has no test.top1_error; "
                               f"re-run `dvc repro -f evaluate@{trial_dir.name}`")
    return {"run": config.get("run", trial_dir.name), "trial": config.get("trial", trial_dir.name),
            "seed": config.get("seed"), "config": config, "metrics": metrics, "dir": trial_dir}


def load_trials(trial_dirs: Sequence[Path]) -> tuple[list[dict], list[str]]:
    """The records of the trials that have been evaluated, and the names of those that have not.

    Under DVC every evaluate stage runs before the report; run by hand over a suite cut short,
    the report covers the evaluated trials and names the others instead of failing."""
    done = [Path(d) for d in trial_dirs if (Path(d) / "metrics.json").exists()]
    missing = [Path(d).name for d in trial_dirs if Path(d) not in done]
    return [load_trial(d) for d in done], missing


def trial_columns(record: Mapping) -> dict:
    """The columns every experiment's table row starts with, from a trial's record (load_trial)."""
    config = record["config"]
    return {"run": record["run"], "dataset": config["dataset"], "config": paper_notation(config),
            "attention": bool(config.get("attention")), "seed": record["seed"]}


def read_record(path: Path, what: str, stage: str, extract: Callable[[Any], Any]) -> Any:
    """`extract` of the JSON a stage wrote at `path`; a file that is not JSON, or whose JSON lacks
    what `extract` reads, is one DamagedFileError naming it and the stage to re-run."""
    try:
        return extract(json.loads(Path(path).read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DamagedFileError(f"{path} is not a {what} record ({type(err).__name__}); "
                               f"re-run `dvc repro -f {stage}`") from None


def _read_json(path: Path, stage: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found; run `dvc repro {stage}` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedFileError(f"{path} is not valid JSON ({type(err).__name__}); "
                               f"re-run `dvc repro -f {stage}`") from None
    if not isinstance(data, dict):
        raise DamagedFileError(f"{path} must hold a JSON object; re-run `dvc repro -f {stage}`")
    return data


def metrics_of_test_split(metrics: Mapping) -> Mapping:
    """The test split's numbers of a metrics.json: its ``test`` mapping, or the whole of it."""
    # metrics_json() nests under "test"; the flat form is accepted too.
    return metrics["test"] if "test" in metrics else metrics


def number_or_nan(value: Any) -> float:
    """`value` as a float; NaN when it is missing, not a number, or infinite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan
