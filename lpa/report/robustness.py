"""The report's robustness part: each run's FGSM curve (mean over seeds), a results.md section and
one figure per dataset with the attention runs and their baselines, as the paper draws them
(reports/<suite>/robustness/<dataset>.png). Reads the robustness.json that robustness@<trial> writes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
# A bare Figure on the Agg canvas: no display and no pyplot global state (see lpa.experiments.figures).
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lpa.config.experiment_options import epsilon_key, key_epsilon
from lpa.files import write_figure
from lpa.report.records import read_record, trial_columns

RECORD = "robustness.json"


def load_robustness(records: Sequence[Mapping], run_dirs: Sequence[Path]) -> pd.DataFrame:
    """One row per (trial, epsilon): run, dataset, config, seed, epsilon, top1_error. Trials
    without a robustness.json (not attacked yet) are left out; a damaged one is one error."""
    rows = []
    for record, run_dir in zip(records, run_dirs):
        path = Path(run_dir) / RECORD
        if not path.exists():
            continue
        points = read_record(path, "robustness", f"robustness@{Path(run_dir).name}", lambda saved: {
            key_epsilon(k): float(v) for k, v in saved["fgsm"]["top1_error"].items()})
        for eps, err in points.items():
            rows.append({**trial_columns(record), "epsilon": eps, "top1_error": err})
    return pd.DataFrame(rows, columns=["run", "dataset", "config", "attention", "seed", "epsilon", "top1_error"])


def robustness_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per run and epsilon: mean and sd of the top-1 error over seeds, and n (runs in given order)."""
    if not len(points):
        return pd.DataFrame(columns=["run", "dataset", "config", "attention", "epsilon", "mean", "sd", "n"])
    grouped = points.groupby(["run", "dataset", "config", "attention", "epsilon"], sort=False)["top1_error"]
    out = grouped.agg(mean="mean", sd="std", n="count").reset_index()
    return out


def robustness_json(summary: pd.DataFrame) -> dict:
    """{run: {eps_k: mean top-1 error}} for summary.json."""
    out: dict = {}
    for row in summary.itertuples():
        out.setdefault(row.run, {})[epsilon_key(row.epsilon)] = round(float(row.mean), 4)
    return out


def render_robustness_md(summary: pd.DataFrame) -> str:
    """A results.md section: rows runs, columns epsilons (mean over seeds, and n)."""
    lines = ["## Robustness to adversarial noise (FGSM, top-1 error %)", ""]
    if not len(summary):
        return "\n".join(lines + ["No robustness records yet (`dvc repro robustness@<trial>`).", ""])
    eps = sorted(summary["epsilon"].unique())
    lines.append("| run | config | n | " + " | ".join(f"ε={e:g}" for e in eps) + " |")
    lines.append("|---|---|---:|" + "---:|" * len(eps))
    for run, rows in summary.groupby("run", sort=False):
        by_eps = dict(zip(rows["epsilon"], rows["mean"]))
        n = int(rows["n"].max())
        cells = [f"{by_eps[e]:.2f}" if e in by_eps else "" for e in eps]
        lines.append(f"| {run} | {rows['config'].iloc[0]} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "ε in pixel units (0..255), added before preprocessing with the gradient taken through it; "
              "each run attacked on the same fixed subset of the test split (robustness.images). Figure per "
              "dataset: robustness/<dataset>.png (mean over seeds, band: ± one sd).", ""]
    lines += [f"![FGSM on {dataset}: top-1 error against ε, seed bands](robustness/{dataset}.png)"
              for dataset in dict.fromkeys(summary["dataset"])]
    return "\n".join(lines + [""])


def save_robustness_figures(summary: pd.DataFrame, out_dir: Path, title: str = "") -> list[Path]:
    """out_dir/<dataset>.png per dataset: top-1 error against epsilon, one line per run (attention
    runs solid, baselines dashed; a band of one sd where a run has several seeds)."""
    written = []
    for dataset, rows in summary.groupby("dataset", sort=False):
        fig = Figure(figsize=(7, 4.5), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        for run, curve in rows.groupby("run", sort=False):
            curve = curve.sort_values("epsilon")
            attention = bool(curve["attention"].iloc[0])
            line, = ax.plot(curve["epsilon"], curve["mean"], marker="o", linestyle="-" if attention else "--",
                            label=f"{curve['config'].iloc[0]} (n={int(curve['n'].max())})")
            sd = curve["sd"].fillna(0.0)
            if (curve["n"] > 1).any():
                ax.fill_between(curve["epsilon"], curve["mean"] - sd, curve["mean"] + sd, color=line.get_color(),
                                alpha=0.15, linewidth=0)
        ax.set_xlabel("FGSM ε (pixel units, 0..255)")
        ax.set_ylabel("top-1 error (%)")
        ax.set_title(f"{title}: {dataset}" if title else str(dataset))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="solid: attention, dashed: baseline", title_fontsize=8)
        fig.tight_layout()
        written.append(write_figure(fig, Path(out_dir) / f"{dataset}.png"))
    return written
