"""The report's weakly supervised segmentation part: the mean Jaccard index per class for each
run's maps (mean over seeds) and for the centre prior, per mask dataset; over seeds, each run's
Jaccard (mean over images) with its 95% t-interval, the paper's comparisons with Welch intervals
(each attention model vs VGG-GAP's class activation map, pc vs dp, concat vs indep; every map vs
the centre prior) and a figure of each run's seeds (reports/<suite>/segmentation.png). Reads what
segment@<trial>-on-<name> writes (reports/<suite>/runs/<trial>/segmentation/<name>.json).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from lpa.report.aggregate import MAP_BASELINES_OF, compare_runs, comparison_pairs
from lpa.report.claims import render_comparisons_md
from lpa.report.notation import paper_notation
from lpa.report.records import read_record
from lpa.report.seed_figure import save_seed_figure
from lpa.report.stats import summarize

PRIOR = "centre prior"
COLUMNS = ["run", "config", "seed", "name", "group", "jaccard"]
FIGURE = "segmentation.png"
VS_PRIOR = "map vs centre prior"


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


def _per_trial(points: pd.DataFrame, name: str) -> dict[str, list[float]]:
    """run -> its seeds' mean Jaccard (over the images) on dataset `name`; the prior's value once."""
    rows = points[(points["name"] == name) & (points["group"] == "mean")]
    out = {run: [float(v) for v in group["jaccard"]] for run, group in rows.groupby("run", sort=False)}
    if PRIOR in out:  # every trial computed the same prior: one value, not one per trial
        out[PRIOR] = out[PRIOR][:1]
    return out


def jaccard_seed_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, run): config, n, mean, sd and 95% t-interval of the mean Jaccard over seeds."""
    rows = []
    for name in dict.fromkeys(points["name"]):
        configs = dict(zip(points["run"], points["config"]))
        for run, values in _per_trial(points, name).items():
            s = summarize(values)
            rows.append({"name": name, "run": run, "config": configs[run], "n": s["n"], "mean": s["mean"],
                         "std": s["std"], "ci95": s["ci95"]})
    return pd.DataFrame(rows, columns=["name", "run", "config", "n", "mean", "std", "ci95"])


def jaccard_comparisons(points: pd.DataFrame, configs: Mapping[str, Mapping]) -> pd.DataFrame:
    """Per dataset: compare_runs' columns plus `name`. The paper's comparisons of the map runs
    (MAP_BASELINES_OF, pc vs dp, concat vs indep) and each run's maps against the centre prior,
    a fixed number (so its interval is the one-sample t-interval of the run's seeds)."""
    frames = []
    for name in dict.fromkeys(points["name"]):
        values = _per_trial(points, name)
        runs = [run for run in values if run != PRIOR]
        pairs = comparison_pairs({run: configs[run] for run in runs if run in configs}, MAP_BASELINES_OF)
        comps = compare_runs(values, pairs, higher_is_better=True)
        if PRIOR in values:
            prior = values[PRIOR][0]
            # the prior is the same number for every trial: a constant second sample, df = n - 1
            floor = compare_runs({**values, PRIOR: [prior] * max(len(v) for v in values.values())},
                                 [(VS_PRIOR, run, PRIOR) for run in runs], higher_is_better=True)
            floor["n_second"] = 1
            comps = pd.concat([comps, floor], ignore_index=True) if len(comps) else floor
        frames.append(comps.assign(name=name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def render_jaccard_seeds_md(table: pd.DataFrame, comps: pd.DataFrame, names: Mapping[str, str],
                            figure: str | None = FIGURE) -> str:
    """The over-seeds part of the segmentation section: per dataset, each run's mean Jaccard
    (mean ± sd over seeds, 95% t-interval), the comparisons with a sentence each, the figure."""
    if not len(table):
        return ""
    lines = ["### Over seeds: Jaccard index (mean over the images)", ""]
    for name, rows in table.groupby("name", sort=False):
        lines += [f"Dataset `{name}`:", "", "| run | map | n | Jaccard mean ± sd | 95% CI |", "|---|---|---:|---:|---|"]
        for r in rows.to_dict("records"):
            sd = f" ± {r['std']:.3f}" if r["std"] is not None else ""
            ci = f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]" if r["ci95"] is not None else "— (one value)"
            lines.append(f"| {r['run']} | {r['config']} | {r['n']} | {r['mean']:.3f}{sd} | {ci} |")
        lines.append("")
        part = comps[comps["name"] == name] if len(comps) else comps
        lines += render_comparisons_md(part, {**names, PRIOR: PRIOR}, f"Jaccard on {name}",
                                       "finds the object better", decimals=3)
    lines += ["Nothing is tuned on these images or masks: the level combination and the threshold are params "
              "(`segmentation.combine`, `segmentation.threshold`) the suites leave at their defaults, the mean of the "
              "rescaled levels and Otsu's threshold per image (which needs no tuning). Comparisons: "
              "first minus second (positive: the first finds more of the object), Welch's 95% interval; against the "
              "centre prior, which uses no model and is one number, the one-sample t-interval of the run's seeds.", ""]
    if figure:
        lines += [f"![Jaccard per method, seeds as dots]({figure})", ""]
    return "\n".join(lines)


def save_jaccard_figure(points: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Per dataset, each run's seeds (mean Jaccard) with their mean and 95% t-interval; the centre
    prior as a dotted line."""
    panels, references = [], {}
    for name in dict.fromkeys(points["name"]):
        values = _per_trial(points, name)
        panel = f"dataset {name}"
        panels.append((panel, [(run, v) for run, v in values.items() if run != PRIOR]))
        if PRIOR in values:
            references[panel] = (PRIOR, values[PRIOR][0])
    return save_seed_figure(panels, "Jaccard index, mean over the images", path, title=title, references=references)
