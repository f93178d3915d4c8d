"""The results report: our runs next to the paper's and other reproductions' numbers.

Pure functions (no DVC, no argv). lpa.report.suite does, per suite::

    records, missing = load_trials(trial_dirs)                           # lpa.report.records
    table = results_table(records)                                       # one row per trial
    runs, comps = run_summary(table), comparisons(table, configs)        # lpa.report.aggregate
    render_results_md(table, load_deviations(), reference=..., runs=runs, comparisons=comps)
    summary_json(table, runs, comps)                                     # nested numbers

The ``config`` column is the run in the paper's notation (lpa.report.notation); the reference
numbers and the deviations ledger are lpa.report.reference's.

Matching
--------
* ``paper`` column: the ``who == paper`` number for the run's dataset and its notation *without*
  the bracketed suffix, so a ``[width 0.25]`` run is shown next to the full-width paper number
  (the suffix in the config column says it is not the same network).
* ``other reproductions``: every other row of the same dataset and model family (the part before
  ``-{g_mode}-{compat}``, (NAL) and the suffix); a row whose notation differs from the run's is
  annotated with its own, e.g. ``caoquanjie (TF) 5.21 (as (VGG-att2)-concat-dp)``.
"""
from __future__ import annotations

import math
from numbers import Real
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from tabulate import tabulate

from lpa.report.machines import machines_sentence
from lpa.report.notation import core_notation, family_notation, paper_notation
from lpa.report.records import metrics_of_test_split, number_or_nan
from lpa.report.reference import DEVIATION_KEYS, PAPER, load_reference_numbers

COLUMNS = ("run", "dataset", "config", "top-1 error", "top-5 error", "paper", "difference",
           "other reproductions")
TRIAL_COLUMNS = ("trial", "seed") + COLUMNS
TITLE = "Learn To Pay Attention (Jetley et al., ICLR 2018): reproduction results"


def results_table(runs: Sequence[Mapping], reference: pd.DataFrame | None = None,
                  dataset_aliases: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per run, columns ``COLUMNS`` in that order, rows in the order given.

    Args:
        runs: dicts ``{"run": name, "config": resolved config, "metrics": metrics_json(...)}``
            (lpa.report.records.load_trial gives them).
        reference: the reference numbers (default ``load_reference_numbers()``).
        dataset_aliases: our dataset name -> the reference dataset it should be compared with,
            e.g. ``{"cifar10-jpeg": "cifar10"}`` if a JPEG-copy dataset has its own name. The
            dataset column keeps our name.

    ``top-1 error``, ``top-5 error``, ``paper``, ``difference`` (ours - paper) are floats in
    percent, NaN where missing; ``other reproductions`` is a string ("" when none).
    """
    ref = load_reference_numbers() if reference is None else reference
    aliases = dict(dataset_aliases or {})
    ref_family = ref["config"].map(family_notation)
    rows = []
    for r in runs:
        config = r["config"]
        name = r.get("run") or config.get("run")
        dataset = config.get("dataset", "")
        ref_dataset = aliases.get(dataset, dataset)
        notation = paper_notation(config)
        core, family = core_notation(notation), family_notation(notation)
        test = metrics_of_test_split(r["metrics"])
        top1, top5 = number_or_nan(test.get("top1_error")), number_or_nan(test.get("top5_error"))

        same_dataset = ref["dataset"] == ref_dataset
        paper_rows = ref[same_dataset & (ref["who"] == PAPER) & (ref["config"] == core)]
        paper = float(paper_rows["top1_error"].iloc[0]) if len(paper_rows) else math.nan
        others = ref[same_dataset & (ref["who"] != PAPER) & (ref_family == family)]
        other_text = "; ".join(
            f"{o.who} {o.top1_error:.2f}" + ("" if o.config == core else f" (as {o.config})")
            for o in others.itertuples()
        )
        rows.append({
            "trial": r.get("trial") or name, "seed": r.get("seed", config.get("seed")),
            "run": name, "dataset": dataset, "config": notation,
            "top-1 error": top1, "top-5 error": top5,
            "paper": paper, "difference": top1 - paper,  # NaN if either is missing
            "other reproductions": other_text,
        })
    return pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))


def _defined(value: Any) -> bool:
    """Not None and not NaN (pandas turns a column's None into NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _interval(prefix: str, stats_row: Mapping) -> dict:
    out = {}
    mean, std, ci = stats_row[f"{prefix}_mean"], stats_row[f"{prefix}_std"], stats_row[f"{prefix}_ci95"]
    if _defined(mean):
        out["mean"] = round(mean, 4)
    if _defined(std):
        out["std"] = round(std, 4)
    if ci is not None:
        out["ci95_low"], out["ci95_high"] = round(ci[0], 4), round(ci[1], 4)
    return out


def summary_json(table: pd.DataFrame, runs: pd.DataFrame | None = None,
                 comparisons: pd.DataFrame | None = None) -> dict:
    """Nested numbers only, for `dvc metrics show/diff`: ``trials`` (top-1/top-5 per run and
    seed), ``runs`` (n, mean, std, 95% interval, the paper's number and whether it lies inside:
    1/0) and ``comparisons`` (difference of mean top-1 error, Welch 95% interval, the paper's
    difference). Keys whose value is missing are left out (JSON has no NaN)."""
    out: dict[str, dict] = {"trials": {}}
    for row in table.to_dict("records"):
        entry = {}
        for key, col in (("top1_error", "top-1 error"), ("top5_error", "top-5 error")):
            v = number_or_nan(row.get(col))
            if not math.isnan(v):
                entry[key] = round(v, 4)
        out["trials"][str(row.get("trial") or row["run"])] = entry
    if runs is not None:
        out["runs"] = {}
        for row in runs.to_dict("records"):
            entry = {"n": int(row["n"]), "top1_error": _interval("top1", row), "top5_error": _interval("top5", row)}
            if math.isfinite(row["paper"]):
                entry["paper_top1_error"] = round(row["paper"], 4)
                entry["diff_vs_paper"] = round(row["diff_vs_paper"], 4)
            if _defined(row["paper_in_ci95"]):
                entry["paper_in_ci95"] = int(row["paper_in_ci95"])
            out["runs"][str(row["run"])] = entry
    if comparisons is not None:
        out["comparisons"] = {}
        for row in comparisons.to_dict("records"):
            entry = {"top1_diff": round(row["diff"], 4)}
            if _defined(row["ci95"]):
                entry["ci95_low"], entry["ci95_high"] = round(row["ci95"][0], 4), round(row["ci95"][1], 4)
            if math.isfinite(row["paper_diff"]):
                entry["paper_top1_diff"] = round(row["paper_diff"], 4)
            out["comparisons"][f"{row['first']} vs {row['second']}"] = entry
    return out


def suite_header(suite: str, records: Sequence[Mapping]) -> str:
    """One paragraph: which suite, data source(s) and scale the trials ran at, and the machines that
    made them (lpa.report.machines: a seeded run repeats bit for bit only on the same kind), from
    their records (lpa.report.records.load_trial)."""
    if not records:
        return f"Suite `{suite}`: no trials."
    configs = [r["config"] for r in records]
    sources = sorted({(c.get("environment") or {}).get("data_source", "unknown") for c in configs})
    widths = sorted({float(c["model"].get("width", 1.0)) for c in configs})
    epochs = sorted({int(c["train"]["epochs"]) for c in configs})
    images = sorted({int(c["train"].get("max_images", 0)) for c in configs})
    seeds = sorted({c["seed"] for c in configs})
    runs = list(dict.fromkeys(c["run"] for c in configs))
    imgs = ", ".join("the whole training split" if n == 0 else f"{n:,} training images" for n in images)
    return (f"Suite `{suite}`: {len(records)} trials ({len(runs)} runs x seeds {', '.join(map(str, seeds))}). "
            f"Data: {'; '.join(sources)}. Scale: width {', '.join(f'{w:g}' for w in widths)}, {imgs}, "
            f"{', '.join(map(str, epochs))} epochs (the paper: width 1, 50,000 images, 300 epochs). "
            f"{machines_sentence(records)}")


# --------------------------------------------------------------------------- markdown


def _cell(value: Any, missing: str, fmt: str = "{:.2f}") -> str:
    if isinstance(value, Real) and not isinstance(value, bool):
        return missing if math.isnan(value) else fmt.format(value)
    if value is None:
        return missing
    text = " ".join(str(value).split())  # no newlines inside a markdown table row
    return text.replace("|", "\\|") if text else missing


def _md_table(rows: Iterable[Sequence[str]], headers: Sequence[str], colalign=None) -> str:
    return tabulate(list(rows), headers=list(headers), tablefmt="github",
                    disable_numparse=True, colalign=colalign)


def _mean_sd(mean: float, std: float | None) -> str:
    if not _defined(mean):
        return ""
    return f"{mean:.2f}" if not _defined(std) else f"{mean:.2f} ± {std:.2f}"


def _ci(ci: Sequence[float] | None, one: str = "— (one seed)") -> str:
    return one if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


RUN_COLUMNS = ("run", "config", "n", "top-1 mean ± sd", "top-1 95% CI", "top-5 mean ± sd", "paper",
               "paper in CI", "other reproductions")
COMPARISON_COLUMNS = ("comparison", "first", "second", "difference of top-1", "95% CI (Welch)",
                      "paper's difference", "the claim (first is better)")


def _runs_section(runs: pd.DataFrame, missing: str) -> list[str]:
    rows = []
    for r in runs.to_dict("records"):
        inside = "" if not _defined(r["paper_in_ci95"]) else ("yes" if r["paper_in_ci95"] else "no")
        rows.append([_cell(r["run"], missing), _cell(r["config"], missing), str(r["n"]),
                     _mean_sd(r["top1_mean"], r["top1_std"]), _ci(r["top1_ci95"]),
                     _mean_sd(r["top5_mean"], r["top5_std"]), _cell(r["paper"], missing), inside or missing,
                     _cell(r["other reproductions"], missing)])
    return ["## Mean over seeds (%)", "",
            _md_table(rows, RUN_COLUMNS, ["left", "left", "right", "right", "right", "right", "right", "left", "left"]),
            "", "Mean ± sample standard deviation over the run's seeds (n); *95% CI*: Student-t interval "
            "of the mean (absent with one seed). *paper*: the paper's number at full scale for the "
            "same notation without the [suffix]; *paper in CI*: whether it lies inside the interval.", ""]


def _comparisons_section(comps: pd.DataFrame, missing: str) -> list[str]:
    if not len(comps):
        return ["## The paper's comparisons", "", "No run of this suite has the other side of a comparison.", ""]
    rows = [[c["kind"], _cell(c["first config"], missing), _cell(c["second config"], missing),
             f"{c['diff']:+.2f}", _ci(c["ci95"], "— (needs 2+ seeds)"), _cell(c["paper_diff"], missing, "{:+.2f}"),
             c["verdict"]] for c in comps.to_dict("records")]
    return ["## The paper's comparisons", "",
            _md_table(rows, COMPARISON_COLUMNS, ["left", "left", "left", "right", "right", "right", "left"]),
            "", "Difference of mean top-1 error, first minus second (negative: the first, the paper's "
            "choice, is better), with Welch's 95% interval. *holds*: the interval lies below 0; "
            "*does not hold*: above 0; *not resolved*: it includes 0.", ""]


def render_results_md(table: pd.DataFrame, deviations: Sequence[Mapping],
                      extra_header: str | None = None, reference: pd.DataFrame | None = None,
                      missing: str = "", runs: pd.DataFrame | None = None,
                      comparisons: pd.DataFrame | None = None, extra_sections: Sequence[str] = ()) -> str:
    """Markdown report: title, optional ``extra_header`` paragraph, the per-run means over seeds
    and the paper's comparisons (when ``runs`` / ``comparisons`` are given), the per-trial table,
    notes, the deviations ledger and (when ``reference`` is given) every reference number with
    its source. Numbers have 2 decimals, differences a sign; missing cells are ``missing`` (empty
    by default), never "nan". ``extra_sections``: markdown sections of the other experiments
    (robustness, ...), placed after the comparisons.
    """
    parts = [f"# {TITLE}", ""]
    if extra_header:
        parts += [extra_header.strip(), ""]
    if runs is not None and len(runs):
        parts += _runs_section(runs, missing)
    if comparisons is not None:
        parts += _comparisons_section(comparisons, missing)
    for section in extra_sections:
        parts += [section.rstrip(), ""]

    parts += ["## Test error per trial (%)", ""]
    if len(table):
        fmts = {"difference": "{:+.2f}", "seed": "{:.0f}"}
        columns = [c for c in TRIAL_COLUMNS if c != "run"] if "trial" in table else list(COLUMNS)
        rows = [[_cell(row.get(c), missing, fmts.get(c, "{:.2f}")) for c in columns]
                for row in table.to_dict("records")]
        numeric = {"seed", "top-1 error", "top-5 error", "paper", "difference"}
        parts.append(_md_table(rows, columns, ["right" if c in numeric else "left" for c in columns]))
    else:
        parts.append("No evaluated runs.")
    parts += [
        "",
        "Errors in percent on the full test split. *paper*: the top-1 error that the paper which "
        "introduced the configuration reports for the same dataset and notation, ignoring the "
        "bracketed suffix (a `[...]` suffix marks options the paper did not use, so such a run "
        "is not the paper's network). *difference*: ours - paper. *other reproductions*: other "
        "implementations of the same model family, with their notation when it differs. An "
        "empty cell means no sourced number exists.",
        "",
        "## Deviations from the paper and the official code",
        "",
    ]
    if deviations:
        rows = [[_cell(d.get(k), missing) for k in DEVIATION_KEYS] for d in deviations]
        parts.append(_md_table(rows, ("topic", "paper / official code", "ours", "why")))
    else:
        parts.append("None recorded.")
    parts.append("")

    if reference is not None:
        parts += ["## Reference numbers (top-1 error, %)", ""]
        rows = [[_cell(r["dataset"], missing), _cell(r["config"], missing), _cell(r["who"], missing),
                 _cell(r["top1_error"], missing), _cell(r["source"], missing)]
                for r in reference.to_dict("records")]
        parts.append(_md_table(rows, ("dataset", "config", "who", "top-1 error", "source"),
                               ["left", "left", "left", "right", "left"]))
        parts.append("")
    return "\n".join(parts)
