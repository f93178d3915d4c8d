"""A suite's trials summarised per run over seeds, and the paper's comparisons between runs.

Input: the per-trial table of lpa.report.tables.results_table (one row per (run, seed)) and
each run's resolved config. Output:

* `run_summary(table)`: per run, n, mean, sd and 95% t-interval of top-1 and top-5 error
  (lpa.report.stats), the paper's number and whether it lies inside the interval;
* `comparisons(table, configs)`: every comparison the paper makes within one dataset that the
  suite has both sides of: each attention model vs its backbone baseline, pc vs dp, concat vs
  indep (runs otherwise identical); the difference of mean top-1 error (first minus second, so
  negative = the paper's choice is better) with its Welch 95% interval and a verdict;
* `compare_runs(values, pairs, higher_is_better)`: the same difference, interval and verdict for
  any per-seed measure (the other experiments: transfer accuracy, Jaccard index).

Pure functions over pandas/numbers: no files, no DVC.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lpa.report.stats import contains, excludes_zero, summarize, welch

# backbone baseline of each attention family (lpa model names)
BASELINE_OF = {"vgg-att1": "vgg", "vgg-att2": "vgg", "vgg-att3": "vgg",
               "resnet164-att1": "resnet164", "resnet164-att2": "resnet164", "resnet164-att3": "resnet164"}
# one-option comparisons: (option in `attention`, the paper's headline value, the alternative)
# the baselines an attention model's features (transfer) are compared with: the backbone and its GAP variant
FEATURE_BASELINES_OF = {name: (base, f"{base}-gap") if base == "vgg" else (base,) for name, base in BASELINE_OF.items()}
# the baseline with a map for the segmentation experiment: VGG-GAP's class activation map
MAP_BASELINES_OF = {name: ("vgg-gap",) for name, base in BASELINE_OF.items() if base == "vgg"}
OPTION_COMPARISONS = (("compat", "pc", "dp"), ("g_mode", "concat", "indep"))
# options that only exist on one side of a comparison and so do not make two runs different
# (compat_init initialises pc's u, which dp does not have)
IGNORED_IN_COMPARISON = {"g_mode": {"indep_combine"}, "compat": {"compat_init"}}

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_RESOLVED = "not resolved at this scale (the interval includes 0)"
ONE_SEED = "not resolved: needs 2+ seeds on both sides"
NO_SPREAD = "not resolved: the seeds of both sides agree exactly (no spread to build an interval from)"


def _finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def run_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run (first-seen order): run, dataset, config, n, top1/top5 mean, std, ci95
    bounds, paper, diff_vs_paper, paper_in_ci95 (True/False, None without an interval or paper),
    other reproductions, seeds."""
    rows = []
    for run, group in table.groupby("run", sort=False):
        first = group.iloc[0]
        row: dict[str, Any] = {"run": run, "dataset": first["dataset"], "config": first["config"],
                               "seeds": [int(s) for s in group["seed"] if not pd.isna(s)]}
        for metric in ("top1", "top5"):
            values = _finite(group[f"top-{metric[-1]} error"])
            s = summarize(values) if values else {"n": 0, "mean": math.nan, "std": None, "ci95": None}
            row[f"{metric}_n"] = s["n"]
            row[f"{metric}_mean"] = s["mean"]
            row[f"{metric}_std"] = s["std"]
            row[f"{metric}_ci95"] = s["ci95"]
        row["n"] = row["top1_n"]
        paper = float(first["paper"]) if "paper" in group and not pd.isna(first["paper"]) else math.nan
        row["paper"] = paper
        row["diff_vs_paper"] = row["top1_mean"] - paper if math.isfinite(paper) else math.nan
        row["paper_in_ci95"] = contains(row["top1_ci95"], paper) if math.isfinite(paper) else None
        row["other reproductions"] = first.get("other reproductions", "")
        rows.append(row)
    return pd.DataFrame(rows)


def _comparable(config: Mapping, drop: set[str]) -> str:
    """A config's identity for pairing runs: everything but the run's name, seed and `drop`."""
    attention = {k: v for k, v in (config.get("attention") or {}).items() if k not in drop}
    return json.dumps({"dataset": config["dataset"], "model": config["model"], "attention": attention,
                       "train": config["train"]}, sort_keys=True)


def _shared_model(config: Mapping, keys: set[str]) -> str:
    model = {k: v for k, v in config["model"].items() if k in keys}
    return json.dumps({"dataset": config["dataset"], "model": model, "train": config["train"]}, sort_keys=True)


def comparison_pairs(configs: Mapping[str, Mapping],
                     baselines: Mapping[str, Sequence[str]] | None = None) -> list[tuple[str, str, str]]:
    """(kind, first run, second run) for every comparison the paper makes that `configs` (run ->
    resolved config, any seed) has both sides of. First = the paper's proposal. `baselines`: the
    model names each attention model is compared with (default: its backbone, BASELINE_OF)."""
    baselines = baselines if baselines is not None else {k: (v,) for k, v in BASELINE_OF.items()}
    pairs = []
    runs = list(configs)
    for a in runs:
        ca = configs[a]
        name_a = ca["model"]["name"]
        bases = baselines.get(name_a, ())
        for b in runs:
            if a == b:
                continue
            cb = configs[b]
            if cb["model"]["name"] in bases:
                shared = set(ca["model"]) & set(cb["model"]) - {"name"}
                if _shared_model(ca, shared) == _shared_model(cb, shared):
                    pairs.append(("attention vs baseline", a, b))
            for option, ours, alternative in OPTION_COMPARISONS:
                att_a, att_b = ca.get("attention") or {}, cb.get("attention") or {}
                if name_a == cb["model"]["name"] and att_a.get(option) == ours and att_b.get(option) == alternative:
                    drop = {option} | IGNORED_IN_COMPARISON.get(option, set())
                    if _comparable(ca, drop) == _comparable(cb, drop):
                        pairs.append((f"{ours} vs {alternative}", a, b))
    return pairs


def verdict(ci95: Sequence[float] | None, diff: float, higher_is_better: bool = False) -> str:
    """The claim "the first is better" (lower error, or higher when `higher_is_better`) against the
    Welch interval of first - second."""
    if ci95 is None:
        return ONE_SEED
    if excludes_zero(ci95):
        return HOLDS if (diff > 0) == higher_is_better else DOES_NOT_HOLD
    return NOT_RESOLVED


def welch_comparison(first: Sequence[float], second: Sequence[float], higher_is_better: bool = False) -> dict:
    """{diff, ci95, df, n_first, n_second, verdict} of mean(first) - mean(second), per-seed values."""
    w = welch(first, second)
    if w["ci95"] is not None and len(set(first)) == 1 and len(set(second)) == 1:
        w = {**w, "ci95": None, "df": None}  # a zero-width interval is no evidence either way
    judged = (NO_SPREAD if w["ci95"] is None and min(len(first), len(second)) >= 2
              else verdict(w["ci95"], w["diff"], higher_is_better))
    return {"diff": w["diff"], "ci95": w["ci95"], "df": w["df"], "n_first": w["n_a"], "n_second": w["n_b"],
            "verdict": judged}


COMPARED = ["kind", "first", "second", "diff", "ci95", "df", "n_first", "n_second", "verdict"]


def compare_runs(values: Mapping[str, Sequence[float]], pairs: Sequence[tuple[str, str, str]],
                 higher_is_better: bool = False) -> pd.DataFrame:
    """One row per (kind, first, second) of `pairs` whose runs both have values (run -> per-seed
    values of one measure): the columns of COMPARED, diff = first - second."""
    rows = []
    for kind, a, b in pairs:
        va, vb = _finite(values.get(a, ())), _finite(values.get(b, ()))
        if va and vb:
            rows.append({"kind": kind, "first": a, "second": b, **welch_comparison(va, vb, higher_is_better)})
    return pd.DataFrame(rows, columns=COMPARED)


def comparisons(table: pd.DataFrame, configs: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per comparison: kind, first, second, configs, diff (top-1, first - second), ci95,
    df, n_first, n_second, paper_diff (when the paper gives both numbers), verdict."""
    rows = []
    for kind, a, b in comparison_pairs(configs):
        ga, gb = table[table["run"] == a], table[table["run"] == b]
        va, vb = _finite(ga["top-1 error"]), _finite(gb["top-1 error"])
        if not va or not vb:
            continue
        w = welch_comparison(va, vb)
        pa, pb = ga["paper"].iloc[0], gb["paper"].iloc[0]
        rows.append({"kind": kind, "first": a, "second": b,
                     "first config": ga["config"].iloc[0], "second config": gb["config"].iloc[0],
                     "diff": w["diff"], "ci95": w["ci95"], "df": w["df"], "n_first": w["n_first"],
                     "n_second": w["n_second"],
                     "paper_diff": float(pa - pb) if not (pd.isna(pa) or pd.isna(pb)) else math.nan,
                     "verdict": w["verdict"]})
    return pd.DataFrame(rows, columns=["kind", "first", "second", "first config", "second config", "diff",
                                       "ci95", "df", "n_first", "n_second", "paper_diff", "verdict"])
