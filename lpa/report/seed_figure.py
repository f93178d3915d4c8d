"""A figure of per-seed values: per panel, one row per method with its seeds as dots, their mean
and its 95% t-interval (lpa.report.stats.summarize), and optional reference lines (e.g. the
centre prior). Used for the transfer accuracy and the Jaccard index (reports/<suite>/*.png).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

# A bare Figure on the Agg canvas: no display and no pyplot global state (see lpa.experiments.figures).
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lpa.files import write_figure
from lpa.report.stats import summarize

Panel = tuple[str, Sequence[tuple[str, Sequence[float]]]]   # (title, [(row label, per-seed values)])


def save_seed_figure(panels: Sequence[Panel], xlabel: str, path: str | Path, title: str = "",
                     references: Mapping[str, tuple[str, float]] | None = None) -> Path:
    """Write `path` (PNG): one panel per (title, rows); `references`: panel title -> (label, x) drawn
    as a vertical dotted line."""
    references = references or {}
    rows_total = sum(max(1, len(rows)) for _, rows in panels)
    fig = Figure(figsize=(8, 1.3 + 0.45 * max(1, rows_total) + 0.5 * max(0, len(panels) - 1)), dpi=110)
    FigureCanvasAgg(fig)
    if not panels:
        fig.text(0.5, 0.5, "no records", ha="center")
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [max(1, len(rows)) for _, rows in panels]})[:, 0] \
        if panels else []
    labelled: set[str] = set()

    def label(text: str) -> str | None:  # each legend entry once
        if text in labelled:
            return None
        labelled.add(text)
        return text

    for ax, (panel, rows) in zip(axes, panels):
        for y, (name, values) in enumerate(rows):
            values = [float(v) for v in values]
            ax.scatter(values, [y] * len(values), s=16, color="0.5", zorder=2, label=label("one seed"))
            s = summarize(values)
            if s["ci95"] is not None:
                ax.plot(s["ci95"], [y, y], color="tab:blue", lw=2.5, zorder=3, label=label("95% t-interval of the mean"))
            ax.scatter([s["mean"]], [y], marker="D", s=34, color="tab:blue", zorder=4, label=label("mean over seeds"))
        if panel in references:
            name, x = references[panel]
            ax.axvline(x, color="tab:red", linestyle=":", label=label(name))
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([f"{name}  (n={len(values)})" for name, values in rows], fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(panel, fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(xlabel, fontsize=8)
    if len(axes):  # one row below the panels: it never covers a point or an axis label
        fig.legend(fontsize=7, loc="lower center", ncol=4, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.07 if len(axes) else 0, 1, 1))
    return write_figure(fig, path)
