"""The reference data shipped with lpa, read and validated: the numbers our runs are shown next to,
and the deviations ledger.

* ``numbers.csv``: published and reproduced top-1 errors, one sourced number per row
  (``dataset,config,who,top1_error,source``; ``config`` in the paper's notation,
  lpa.report.notation). ``who`` is ``paper`` (PAPER) for the paper that introduced the
  configuration (Jetley et al. 2018 for the LTPA models, Wang et al. 2017 for ``Attention-*``;
  the ``source`` column says which and through which copy), otherwise the name of the
  reproduction. Read by ``load_reference_numbers``.
* ``deviations.yaml``: the deviations ledger (list of ``{topic, paper_or_official, ours, why}``).
  Read by ``load_deviations``.

A damaged file is one DamagedFileError; a readable one that breaks the format is a ValueError
naming what is wrong.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import yaml

from lpa.errors import DamagedFileError

REFERENCE_DIR = Path(__file__).resolve().parent
NUMBERS_CSV = REFERENCE_DIR / "numbers.csv"
DEVIATIONS_YAML = REFERENCE_DIR / "deviations.yaml"

DATASETS = ("cifar10", "cifar100", "svhn")
PAPER = "paper"
NUMBER_COLUMNS = ("dataset", "config", "who", "top1_error", "source")
DEVIATION_KEYS = ("topic", "paper_or_official", "ours", "why")


def load_reference_numbers(path: str | Path | None = None) -> pd.DataFrame:
    """``lpa/report/reference/numbers.csv`` as a DataFrame, validated.

    Columns ``dataset, config, who, top1_error, source``; top1_error is a float in percent.
    Raises ValueError on a missing column or source, an unknown dataset, a value outside
    [0, 100], or a duplicated (dataset, config, who).
    """
    path = Path(path) if path is not None else NUMBERS_CSV
    try:
        df = pd.read_csv(path, dtype={"dataset": str, "config": str, "who": str, "source": str},
                         keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DamagedFileError(f"{path} is not a readable CSV ({type(err).__name__}); "
                               f"restore it with `git checkout -- {path}`") from None
    if tuple(df.columns) != NUMBER_COLUMNS:
        raise ValueError(f"{path}: columns must be {','.join(NUMBER_COLUMNS)}, got {','.join(df.columns)}")
    df["top1_error"] = pd.to_numeric(df["top1_error"], errors="raise").astype(float)
    for col in ("dataset", "config", "who", "source"):
        df[col] = df[col].str.strip()
        if (df[col] == "").any():
            rows = (df.index[df[col] == ""] + 2).tolist()
            raise ValueError(f"{path}: empty {col} on line(s) {rows}")
    bad = sorted(set(df["dataset"]) - set(DATASETS))
    if bad:
        raise ValueError(f"{path}: unknown dataset(s) {bad}; allowed: {', '.join(DATASETS)}")
    if not df["top1_error"].between(0, 100).all():
        raise ValueError(f"{path}: top1_error must be a percentage in [0, 100]")
    dup = df.duplicated(["dataset", "config", "who"], keep=False)
    if dup.any():
        raise ValueError(f"{path}: duplicated (dataset, config, who): "
                         f"{df.loc[dup, ['dataset', 'config', 'who']].values.tolist()}")
    return df


def load_deviations(path: str | Path | None = None) -> list[dict]:
    """``lpa/report/reference/deviations.yaml``: list of ``{topic, paper_or_official, ours, why}`` (strings)."""
    path = Path(path) if path is not None else DEVIATIONS_YAML
    try:
        with open(path, encoding="utf-8") as f:
            entries = yaml.safe_load(f) or []
    except yaml.YAMLError as err:
        raise DamagedFileError(f"{path} is not valid YAML ({type(err).__name__}); "
                               f"restore it with `git checkout -- {path}`") from None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: must be a list of entries")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or set(entry) != set(DEVIATION_KEYS):
            raise ValueError(f"{path}: entry {i} must have exactly the keys {', '.join(DEVIATION_KEYS)}")
        if not all(isinstance(entry[k], str) and entry[k].strip() for k in DEVIATION_KEYS):
            raise ValueError(f"{path}: entry {i} ({entry.get('topic')}): every field must be a non-empty string")
        out.append({k: " ".join(entry[k].split()) for k in DEVIATION_KEYS})
    return out
