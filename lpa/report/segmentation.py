"""The report's weakly supervised segmentation part: the mean Jaccard index per class for each
run's maps (mean over seeds) and for the centre prior, per mask dataset. Reads what
segment@<trial>-on-<name> writes (reports/<suite>/runs/<trial>/segmentation/<name>.json).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from lpa.report.tables import paper_notation, read_record

PRIOR = "centre prior"
COLUMNS = ["run", "config", "seed", "name", "group", "jaccard"]


def load_segmentation(records: Sequence[Mapping], run_dirs: Sequence[Path]) -> pd.DataFrame:
    """One row per (trial, dataset, class) for the run's maps, and one for the centre prior."""
    rows = []
    for record, run_dir in zip(records, run_dirs):
        for path in sorted((Path(run_dir) / "segmentation").glob("*.json")):
            pairs = read_record(path, "segmentation", f"segment@{Path(run_dir).name}-on-{path.stem}", lambda saved: [
                (who, group, float(v)) for who in ("model", "centre_prior") for group, v in saved["jaccard"][who].items()])
            for who, group, value in pairs:
                model = who == "model"
                rows.append({"run": record["run"] if model else PRIOR,
                             "config": paper_notation(record["config"]) if model else "Gaussian at the centre",
                             "seed": record["seed"], "name": path.stem, "group": group, "jaccard": value})
    return pd.DataFrame(rows, columns=COLUMNS)


def segmentation_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Mean Jaccard per (dataset, run, class) over seeds; the centre prior once per dataset."""
    if not len(points):
        return pd.DataFrame(columns=["name", "run", "config", "group", "mean", "n"])
    prior = points["run"] == PRIOR
    # the prior uses no model: every trial computed the same numbers, keep one
    points = pd.concat([points[~prior], points[prior].drop_duplicates(["name", "group"])])
    return (points.groupby(["name", "run", "config", "group"], sort=False)["jaccard"]
            .agg(mean="mean", n="count").reset_index())


def segmentation_json(summary: pd.DataFrame) -> dict:
    """{dataset: {run: {class or mean: Jaccard}}} for summary.json."""
    out: dict = {}
    for row in summary.itertuples():
        out.setdefault(row.name, {}).setdefault(row.run, {})[row.group] = round(float(row.mean), 4)
    return out


def render_segmentation_md(summary: pd.DataFrame) -> str:
    lines = ["## Weakly supervised segmentation (Jaccard index of the thresholded map, higher is better)", ""]
    if not len(summary):
        return "\n".join(lines + ["No segmentation records yet (params `segmentation.runs`, `segmentation.datasets`).",
                                  ""])
    for name, table in summary.groupby("name", sort=False):
        groups = [g for g in dict.fromkeys(table["group"]) if g != "mean"] + ["mean"]
        lines += [f"Dataset `{name}`:", "", "| run | map | n | " + " | ".join(groups) + " |",
                  "|---|---|---:|" + "---:|" * len(groups)]
        for run, rows in table.groupby("run", sort=False):
            cell = {r.group: f"{r.mean:.3f}" for r in rows.itertuples()}
            lines.append(f"| {run} | {rows['config'].iloc[0]} | {int(rows['n'].max())} | "
                         + " | ".join(cell.get(g, "") for g in groups) + " |")
        lines.append("")
    lines += ["Maps upsampled to each image, combined and thresholded as `segmentation` says (lpa.experiments.segmentation); "
              "vgg-gap's map is its class activation map; the centre prior uses no model (the floor). Figures: "
              "runs/<trial>/segmentation/<dataset>/<class>.png.", ""]
    return "\n".join(lines)
