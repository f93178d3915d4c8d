"""The report's map statistics: per attention run and level, the mean over seeds of its softmax
maps' largest weight and entropy over the test images (what evaluate@<trial> writes into
metrics.json as `attention_stats`, lpa.experiments.metrics.attention_map_stats), and what a
pc-vs-dp comparison of top-1 error does and does not say about the maps.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from lpa.report.records import trial_columns

COLUMNS = ["run", "config", "seed", "level", "height", "width", "max_weight", "entropy", "max_entropy"]


def load_map_stats(records: Sequence[Mapping]) -> pd.DataFrame:
    """One row per (trial, level) of the records that hold `attention_stats` (attention runs
    evaluated by this code; older records and runs without attention have none)."""
    rows = []
    for record in records:
        for level, s in (record["metrics"].get("attention_stats") or {}).items():
            rows.append({**{k: trial_columns(record)[k] for k in ("run", "config", "seed")},
                         "level": int(str(level).removeprefix("level")), "height": int(s["height"]),
                         "width": int(s["width"]), "max_weight": float(s["max_weight"]),
                         "entropy": float(s["entropy"]), "max_entropy": float(s["max_entropy"])})
    return pd.DataFrame(rows, columns=COLUMNS)


def map_stats_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per (run, level): size, n (seeds), mean largest weight and mean entropy over seeds."""
    if not len(points):
        return pd.DataFrame(columns=["run", "config", "level", "height", "width", "max_entropy", "n",
                                     "max_weight", "entropy"])
    keys = ["run", "config", "level", "height", "width", "max_entropy"]
    return (points.groupby(keys, sort=False)
            .agg(n=("seed", "count"), max_weight=("max_weight", "mean"), entropy=("entropy", "mean"))
            .reset_index())


def map_stats_json(summary: pd.DataFrame) -> dict:
    """{run: {level<k>: {max_weight, entropy}}} for summary.json."""
    out: dict = {}
    for r in summary.itertuples():
        out.setdefault(r.run, {})[f"level{r.level}"] = {"max_weight": round(float(r.max_weight), 4),
                                                        "entropy": round(float(r.entropy), 4)}
    return out


def render_map_stats_md(summary: pd.DataFrame) -> str:
    lines = ["## What the attention maps do (test images, mean over seeds)", ""]
    if not len(summary):
        return "\n".join(lines + ["No map statistics yet (evaluate@<trial> of an attention run writes them).", ""])
    lines += ["| run | config | n | level | map | largest weight | entropy (nats) | uniform map's entropy |",
              "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in summary.itertuples():
        lines.append(f"| {r.run} | {r.config} | {r.n} | {r.level} | {r.height}x{r.width} | {r.max_weight:.3f} "
                     f"| {r.entropy:.2f} | {r.max_entropy:.2f} |")
    lines += ["", "Each level's softmax map puts a unit mass over its H x W positions: *largest weight* is the mean over "
              "the test images of its largest position's share (1/(H W) for a uniform map, 1 for one position), "
              "*entropy* the mean of -sum a log a (ln(H W) uniform, 0 one position). The pc vs dp comparison in the "
              "comparisons table measures top-1 test error only; these statistics show how the two compatibility "
              "functions spread their attention: a largest weight near 1 and an entropy near 0 mean the map has "
              "saturated on one or two positions, so the attended vector is nearly one local feature.", ""]
    return "\n".join(lines)
