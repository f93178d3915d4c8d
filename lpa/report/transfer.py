"""The report's cross-domain part: each run's error on each target (mean over seeds) and the
attention-vs-baseline difference per target. Reads what transfer@<trial>-to-<target> writes
(reports/<suite>/runs/<trial>/transfer/<target>.json).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from lpa.report.tables import read_record, trial_columns

COLUMNS = ["run", "dataset", "config", "attention", "seed", "target", "top1_error"]


def load_transfer(records: Sequence[Mapping], run_dirs: Sequence[Path]) -> pd.DataFrame:
    """One row per (trial, target) that has a transfer record."""
    rows = []
    for record, run_dir in zip(records, run_dirs):
        for path in sorted((Path(run_dir) / "transfer").glob("*.json")):
            error = read_record(path, "transfer", f"transfer@{Path(run_dir).name}-to-{path.stem}",
                                lambda saved: float(saved["transfer"]["test"]["top1_error"]))
            rows.append({**trial_columns(record), "target": path.stem, "top1_error": error})
    return pd.DataFrame(rows, columns=COLUMNS)


def transfer_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per run and target: mean error over seeds and n."""
    if not len(points):
        return pd.DataFrame(columns=["run", "dataset", "config", "attention", "target", "mean", "n"])
    return (points.groupby(["run", "dataset", "config", "attention", "target"], sort=False)["top1_error"]
            .agg(mean="mean", n="count").reset_index())


def transfer_differences(summary: pd.DataFrame) -> pd.DataFrame:
    """Each attention run minus each baseline run of the same source dataset, per target."""
    rows = []
    for dataset, group in summary.groupby("dataset", sort=False):
        attention = group[group["attention"]]
        baseline = group[~group["attention"]]
        for a_run, a in attention.groupby("run", sort=False):
            for b_run, b in baseline.groupby("run", sort=False):
                both = a.merge(b, on="target", suffixes=("_a", "_b"))
                for row in both.itertuples():
                    rows.append({"attention run": a_run, "baseline run": b_run, "target": row.target,
                                 "difference": row.mean_a - row.mean_b})
    return pd.DataFrame(rows, columns=["attention run", "baseline run", "target", "difference"])


def transfer_json(summary: pd.DataFrame) -> dict:
    """{run: {target: mean top-1 error}} for summary.json."""
    out: dict = {}
    for row in summary.itertuples():
        out.setdefault(row.run, {})[row.target] = round(float(row.mean), 4)
    return out


def render_transfer_md(summary: pd.DataFrame, differences: pd.DataFrame) -> str:
    lines = ["## Cross-domain classification (frozen features, linear classifier; top-1 error %)", ""]
    if not len(summary):
        return "\n".join(lines + ["No transfer records yet (params `transfer.runs` and `transfer.targets`).", ""])
    targets = list(dict.fromkeys(summary["target"]))
    lines.append("| run | config | " + " | ".join(targets) + " |")
    lines.append("|---|---|" + "---:|" * len(targets))
    for run, rows in summary.groupby("run", sort=False):
        cell = {r.target: f"{r.mean:.2f} (n={r.n})" for r in rows.itertuples()}
        lines.append(f"| {run} | {rows['config'].iloc[0]} | " + " | ".join(cell.get(t, "") for t in targets) + " |")
    if len(differences):
        lines += ["", "Attention minus baseline (negative: the attention features transfer better):", ""]
        lines.append("| attention run | baseline run | " + " | ".join(targets) + " |")
        lines.append("|---|---|" + "---:|" * len(targets))
        for (a, b), rows in differences.groupby(["attention run", "baseline run"], sort=False):
            cell = {r.target: f"{r.difference:+.2f}" for r in rows.itertuples()}
            lines.append(f"| {a} | {b} | " + " | ".join(cell.get(t, "") for t in targets) + " |")
    lines += ["", "Each target converted and preprocessed as the source run's data; logistic regression with C "
              "chosen by cross-validation on the target's training split (lpa.experiments.transfer).", ""]
    return "\n".join(lines)
