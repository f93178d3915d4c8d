"""The report's cross-domain part: each run's error on each target (mean over seeds) and the
attention-vs-baseline difference per target; over seeds, the accuracy and mean per-class accuracy
with their 95% t-intervals, the paper's comparisons with Welch intervals (lpa.report.aggregate)
and a figure of each run's seeds (reports/<suite>/transfer.png). Reads what
transfer@<trial>-to-<target> writes (reports/<suite>/runs/<trial>/transfer/<target>.json).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from lpa.report.aggregate import FEATURE_BASELINES_OF, compare_runs, comparison_pairs
from lpa.report.claims import render_comparisons_md
from lpa.report.records import number_or_nan, read_record, trial_columns
from lpa.report.seed_figure import save_seed_figure
from lpa.report.stats import summarize

COLUMNS = ["run", "dataset", "config", "attention", "seed", "target", "top1_error", "accuracy", "mean_class_accuracy"]
# the measures compared over seeds: (column, how the report names it); higher is better for both
MEASURES = (("accuracy", "top-1 accuracy"), ("mean_class_accuracy", "mean per-class accuracy"))
FIGURE = "transfer.png"


def load_transfer(records: Sequence[Mapping], run_dirs: Sequence[Path]) -> pd.DataFrame:
    """One row per (trial, target) that has a transfer record."""
    rows = []
    for record, run_dir in zip(records, run_dirs):
        for path in sorted((Path(run_dir) / "transfer").glob("*.json")):
            test = read_record(path, "transfer", f"transfer@{Path(run_dir).name}-to-{path.stem}",
                               lambda saved: {**saved["transfer"]["test"],
                                              "top1_error": float(saved["transfer"]["test"]["top1_error"])})
            # mean_class_accuracy is absent from records made before it was added: NaN, left out of its table
            rows.append({**trial_columns(record), "target": path.stem, "top1_error": test["top1_error"],
                         "accuracy": 100.0 - test["top1_error"],
                         "mean_class_accuracy": number_or_nan(test.get("mean_class_accuracy"))})
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


def _seed_values(points: pd.DataFrame, target: str, column: str) -> dict[str, list[float]]:
    """run -> its seeds' finite values of `column` on `target` (runs in first-seen order)."""
    rows = points[(points["target"] == target) & points[column].notna()]
    return {run: [float(v) for v in group[column]] for run, group in rows.groupby("run", sort=False)}


def transfer_seed_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per (target, run): n and, for each measure of MEASURES, mean, sd and 95% t-interval over seeds."""
    rows = []
    for target in dict.fromkeys(points["target"]):
        for run, group in points[points["target"] == target].groupby("run", sort=False):
            row = {"target": target, "run": run, "config": group["config"].iloc[0], "n": len(group)}
            for column, _ in MEASURES:
                values = [float(v) for v in group[column] if pd.notna(v)]
                s = summarize(values) if values else {"n": 0, "mean": None, "std": None, "ci95": None}
                row.update({f"{column}_n": s["n"], f"{column}_mean": s["mean"], f"{column}_std": s["std"],
                            f"{column}_ci95": s["ci95"]})
            rows.append(row)
    return pd.DataFrame(rows)


def transfer_comparisons(points: pd.DataFrame, configs: Mapping[str, Mapping]) -> pd.DataFrame:
    """The paper's comparisons of the source runs (each attention model vs VGG and VGG-GAP, pc vs
    dp, concat vs indep), per target and measure: compare_runs' columns plus target and measure."""
    pairs = comparison_pairs({run: configs[run] for run in dict.fromkeys(points["run"]) if run in configs},
                             FEATURE_BASELINES_OF)
    frames = []
    for target in dict.fromkeys(points["target"]):
        for column, _ in MEASURES:
            comps = compare_runs(_seed_values(points, target, column), pairs, higher_is_better=True)
            frames.append(comps.assign(target=target, measure=column))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _mean_sd_ci(row: Mapping, column: str) -> list[str]:
    if not row[f"{column}_n"]:
        return ["", ""]
    sd = row[f"{column}_std"]
    ci = row[f"{column}_ci95"]
    return [f"{row[f'{column}_mean']:.2f}" + (f" ± {sd:.2f}" if sd is not None else ""),
            f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci is not None else "— (one seed)"]


def render_transfer_seeds_md(table: pd.DataFrame, comps: pd.DataFrame, names: Mapping[str, str],
                             figure: str | None = FIGURE) -> str:
    """The over-seeds part of the transfer section: per target, accuracy and mean per-class
    accuracy (mean ± sd, 95% t-interval), the paper's comparisons with a sentence each, the figure."""
    if not len(table):
        return ""
    lines = ["### Over seeds: accuracy and mean per-class accuracy (%)", ""]
    for target, rows in table.groupby("target", sort=False):
        lines += [f"Target `{target}`:", "",
                  "| run | config | n | accuracy mean ± sd | accuracy 95% CI | mean per-class accuracy mean ± sd "
                  "| mean per-class 95% CI |", "|---|---|---:|---:|---|---:|---|"]
        for r in rows.to_dict("records"):
            lines.append(f"| {r['run']} | {r['config']} | {r['n']} | "
                         + " | ".join(_mean_sd_ci(r, "accuracy") + _mean_sd_ci(r, "mean_class_accuracy")) + " |")
        lines.append("")
        for column, measure in MEASURES:
            part = comps[(comps["target"] == target) & (comps["measure"] == column)] if len(comps) else comps
            lines += render_comparisons_md(part, names, f"{measure} on {target}, points",
                                           "transfers better")
    lines += ["Mean ± sample sd over the seeds of each source run, Student-t 95% interval of the mean; comparisons: "
              "first minus second (positive: the first, the paper's choice, transfers better) with Welch's 95% "
              "interval. Mean per-class accuracy is the measure the Caltech-101 literature reports (its test split "
              "is unbalanced).", ""]
    if figure:
        lines += [f"![transfer accuracy per run, seeds as dots]({figure})", ""]
    return "\n".join(lines)


def save_transfer_figure(points: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Per target, each source run's seeds (accuracy %) with their mean and 95% t-interval."""
    panels = [(f"target {target}", list(_seed_values(points, target, "accuracy").items()))
              for target in dict.fromkeys(points["target"])]
    return save_seed_figure(panels, "top-1 accuracy on the target's test split (%)", path, title=title)
