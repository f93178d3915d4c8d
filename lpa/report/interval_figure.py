"""The report's figure: each run's top-1 error over seeds with its 95% interval, the paper's
full-scale number marked, one panel per dataset (reports/<suite>/intervals.png)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
# A bare Figure on the Agg canvas: no display and no pyplot global state (see lpa.experiments.figures).
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lpa.files import write_figure


def save_interval_figure(table: pd.DataFrame, runs: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """`table`: per-trial rows (lpa.report.tables.results_table); `runs`: lpa.report.aggregate.run_summary."""
    datasets = list(dict.fromkeys(runs["dataset"])) if len(runs) else []
    fig = Figure(figsize=(9, 1.2 + 0.55 * max(1, len(runs)) + 0.6 * max(0, len(datasets) - 1)), dpi=110)
    FigureCanvasAgg(fig)
    if not datasets:
        fig.text(0.5, 0.5, "no evaluated runs", ha="center")
    heights = [max(1, int((runs["dataset"] == d).sum())) for d in datasets]
    axes = fig.subplots(len(datasets), 1, squeeze=False, gridspec_kw={"height_ratios": heights or [1]})[:, 0] \
        if datasets else []
    labelled: set[str] = set()

    def label(text: str) -> str | None:  # each legend entry once, whichever panel draws it first
        if text in labelled:
            return None
        labelled.add(text)
        return text

    for ax, dataset in zip(axes, datasets):
        rows = runs[runs["dataset"] == dataset].reset_index(drop=True)
        for y, r in rows.iterrows():
            seeds = table[table["run"] == r["run"]]["top-1 error"].astype(float)
            ax.scatter(seeds, [y] * len(seeds), s=14, color="0.55", zorder=2, label=label("one seed"))
            ci = r["top1_ci95"]
            if ci is not None:
                ax.plot(ci, [y, y], color="tab:blue", lw=2.5, zorder=3, label=label("95% t-interval of the mean"))
            ax.scatter([r["top1_mean"]], [y], marker="D", s=36, color="tab:blue", zorder=4,
                       label=label("mean over seeds"))
            if math.isfinite(r["paper"]):
                ax.scatter([r["paper"]], [y], marker="x", s=60, color="tab:red", zorder=5,
                           label=label("the paper (full scale)"))
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([f"{c}  (n={n})" for c, n in zip(rows["config"], rows["n"])], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(dataset, fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("top-1 test error (%)", fontsize=8)
    if len(axes):
        fig.legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return write_figure(fig, path)
