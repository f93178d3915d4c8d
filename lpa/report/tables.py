"""The results report: our runs next to the paper's and other reproductions' numbers.

Pure functions (no DVC, no argv). The stage (``stages/report.py``) does, per suite::

    records = [load_run(record_dir(suite, trial)) for trial in trials]   # one per (run, seed)
    table = results_table(records)                                       # one row per trial
    runs, comps = run_summary(table), comparisons(table, configs)        # lpa.report.aggregate
    render_results_md(table, load_deviations(), reference=..., runs=runs, comparisons=comps)
    summary_json(table, runs, comps)                                     # nested numbers

Notation (the paper's, used in ``lpa/report/reference/numbers.csv`` and the ``config`` column)
-------------------------------------------------------------------------------------
* ``(VGG-att{k})-{g_mode}-{compat}``: the attention VGG with k attention levels (att1: L3;
  att2: L2, L3; att3: L1, L2, L3), ``g_mode`` in {concat, indep}, ``compat`` in {pc, dp}; e.g.
  ``(VGG-att3)-concat-pc``.
* ``(RN-att{k})-{g_mode}-{compat}``: the same module on the pre-activation ResNet-164.
* Baselines: ``VGG`` (the backbone with all five pools and its FC classifier), ``VGG-GAP``,
  ``VGG-PAN``, ``RN-164``.
* Residual Attention Network (Wang et al., CVPR 2017): ``Attention-{depth}`` with attention
  residual learning (ARL, that paper's method), ``Attention-{depth} (NAL)`` with naive attention
  learning.
* A bracketed suffix lists what the paper's notation does not carry but that changes the
  network: ``[sigmoid]`` (sigmoid gating instead of softmax), ``[l_up]`` (local features
  projected up instead of g projected down), ``[combine <how>]`` (how an indep model merges its
  per-level classifiers: the paper does not say, the official code and the ports differ),
  ``[width 0.25]`` (channel multiplier), e.g. ``(VGG-att2)-concat-pc [sigmoid, width 0.25]``.
  ``numbers.csv`` uses it for reproductions too (``[l_up]`` for SaoYan's port) and
  ``[g_mode/compat not stated]`` where a source gives the level count only.
* Names a source uses that are not the paper's (``VGG19``, ``VGG19-att``) stay as the source
  wrote them and match none of our runs.

``who`` in numbers.csv is ``paper`` for the paper that introduced the configuration (Jetley et
al. 2018 for the LTPA models, Wang et al. 2017 for ``Attention-*``; the ``source`` column says
which and through which copy), otherwise the name of the reproduction.

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

import json
import math
import re
from numbers import Real
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from tabulate import tabulate

from lpa.errors import DamagedFileError
from lpa.config.model_options import ATTENTION_SETTINGS, MODEL_SETTINGS
from lpa.report.reference import DEVIATIONS_YAML, NUMBERS_CSV

DATASETS = ("cifar10", "cifar100", "svhn")
PAPER = "paper"
NUMBER_COLUMNS = ("dataset", "config", "who", "top1_error", "source")
DEVIATION_KEYS = ("topic", "paper_or_official", "ours", "why")
COLUMNS = ("run", "dataset", "config", "top-1 error", "top-5 error", "paper", "difference",
           "other reproductions")
TRIAL_COLUMNS = ("trial", "seed") + COLUMNS
TITLE = "Learn To Pay Attention (Jetley et al., ICLR 2018): reproduction results"

# --------------------------------------------------------------------------- notation

# Model-name spellings -> (notation base, kind). Names are lower-cased and '_' -> '-' first, so
# "vgg_att2", "VGG-att2" and "vgg-att2" all parse. kind "ltpa" gets -{g_mode}-{compat}, "ran"
# gets (NAL) when it applies.
_MODEL_PATTERNS: tuple[tuple[re.Pattern, str, str | None], ...] = (
    (re.compile(r"^vgg(?:-?16)?(?:-bn)?$"), "VGG", None),
    (re.compile(r"^vgg(?:-?16)?-gap$"), "VGG-GAP", None),
    (re.compile(r"^vgg(?:-?16)?-pan$"), "VGG-PAN", None),
    (re.compile(r"^vgg(?:-?16)?-att-?([1-3])$"), "(VGG-att{0})", "ltpa"),
    (re.compile(r"^(?:resnet|rn)-?164$"), "RN-164", None),
    (re.compile(r"^(?:resnet|rn)-?164-att-?([1-3])$"), "(RN-att{0})", "ltpa"),
    (re.compile(r"^(?:attention|ran|resattn|res-attention|residual-attention)-?(\d+)$"),
     "Attention-{0}", "ran"),
)

# How an option whose value departs from the paper suite's (Setting.paper, declared in lpa.config.model_options)
# is written in the notation's [suffix]; options without a label never get one.
ATTENTION_LABELS: dict[str, Any] = {
    "normalize": lambda v: str(v),
    "project": lambda v: str(v),
    "compat_init": lambda v: f"{v} init",
}
MODEL_LABELS: dict[str, Any] = {
    "dropout": lambda v: "no dropout",
    "branch_grad": lambda v: f"branch_grad {v}",
    "bn_init": lambda v: f"bn_init {v}",
    "g_head": lambda v: f"g_head {v}",
    "module_layout": lambda v: f"layout {v}",
}


def _model_base(name: str) -> tuple[str, str | None]:
    key = str(name).strip().lower().replace("_", "-")
    for pattern, template, kind in _MODEL_PATTERNS:
        m = pattern.match(key)
        if m:
            return template.format(*m.groups()), kind
    # Unknown model: its own name, which matches no reference row (visible, never mistaken).
    return str(name), None


def paper_notation(config: Mapping) -> str:
    """The paper's notation for a resolved run config, with non-paper options as a suffix.

    ``config`` is the resolved run config (``lpa.config.run.resolve_run``): ``config["model"]["name"]``
    (e.g. ``vgg-att2``, ``resnet164-att2``, ``vgg``, ``attention56``), ``config["model"]["width"]``,
    ``config["attention"]`` (``compat``, ``g_mode``, ``normalize``, ``project``,
    ``indep_combine``; null for models without attention) and, for the Residual Attention
    Network, ``attention_learning`` (``arl``/``nal``, in ``model`` or ``attention``).

    Examples: ``(VGG-att2)-concat-pc``, ``(RN-att2)-concat-pc``, ``VGG``, ``RN-164``,
    ``Attention-56 (NAL)``, ``(VGG-att3)-indep-dp [sigmoid, l_up, combine logits, width 0.5]``.
    Unknown model names are returned as they are (with the width suffix if any).
    """
    model = config.get("model") or {}
    if not model.get("name"):
        raise ValueError("config has no model.name")
    attention = config.get("attention") or {}
    base, kind = _model_base(model["name"])
    suffix: list[str] = []

    if kind == "ltpa":
        notation = f"{base}-{attention.get('g_mode', '?')}-{attention.get('compat', '?')}"
        for key, label in ATTENTION_LABELS.items():
            if key in attention and attention[key] is not None and attention[key] != ATTENTION_SETTINGS[key].paper:
                suffix.append(label(attention[key]))
        if attention.get("g_mode") == "indep" and attention.get("indep_combine") is not None:
            suffix.append(f"combine {attention['indep_combine']}")
    elif kind == "ran":
        learning = model.get("attention_learning", attention.get("attention_learning", "arl"))
        learning = str(learning or "arl").lower()
        notation = base if learning == "arl" else f"{base} ({learning.upper()})"
    else:
        notation = base

    for key, label in MODEL_LABELS.items():
        if model.get(key) is not None and model[key] != MODEL_SETTINGS[key].paper:
            suffix.append(label(model[key]))
    width = model.get("width", MODEL_SETTINGS["width"].paper)
    if width is not None and float(width) != MODEL_SETTINGS["width"].paper:
        suffix.append(f"width {float(width):g}")
    return f"{notation} [{', '.join(suffix)}]" if suffix else notation


_SUFFIX = re.compile(r"\s*\[[^\]]*\]\s*$")


def core_notation(notation: str) -> str:
    """Notation without the bracketed suffix: ``(VGG-att2)-concat-pc [width 0.5]`` -> ``(VGG-att2)-concat-pc``."""
    return _SUFFIX.sub("", str(notation)).strip()


def family_notation(notation: str) -> str:
    """The model family: ``(VGG-att2)-concat-dp [l_up]`` -> ``(VGG-att2)``; ``Attention-56 (NAL)`` -> ``Attention-56``."""
    core = core_notation(notation)
    core = re.sub(r"\s*\((?:NAL|ARL)\)$", "", core)
    m = re.match(r"^(\([^)]*\))", core)
    return m.group(1) if m else core


# --------------------------------------------------------------------------- reference data


def load_reference_numbers(path: str | Path | None = None) -> pd.DataFrame:
    """``lpa/report/reference/numbers.csv`` as a DataFrame, validated.

    Columns ``dataset, config, who, top1_error, source``; top1_error is a float in percent.
    Raises ValueError on a missing column or source, an unknown dataset, a value outside
    [0, 100], or a duplicated (dataset, config, who).
    """
    path = Path(path) if path is not None else NUMBERS_CSV
    try:
        df = pd.read_csv(path, dtype={"dataset": str, "config": str, "who": str, "source": str},
                         keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DamagedFileError(f"{path} is not a readable CSV ({type(err).__name__}); "
                               f"restore it with `git checkout -- {path}`") from None
    if tuple(df.columns) != NUMBER_COLUMNS:
        raise ValueError(f"{path}: columns must be {','.join(NUMBER_COLUMNS)}, got {','.join(df.columns)}")
    df["top1_error"] = pd.to_numeric(df["top1_error"], errors="raise").astype(float)
    for col in ("dataset", "config", "who", "source"):
        df[col] = df[col].str.strip()
        if (df[col] == "").any():
            rows = (df.index[df[col] == ""] + 2).tolist()
            raise ValueError(f"{path}: empty {col} on line(s) {rows}")
    bad = sorted(set(df["dataset"]) - set(DATASETS))
    if bad:
        raise ValueError(f"{path}: unknown dataset(s) {bad}; allowed: {', '.join(DATASETS)}")
    if not df["top1_error"].between(0, 100).all():
        raise ValueError(f"{path}: top1_error must be a percentage in [0, 100]")
    dup = df.duplicated(["dataset", "config", "who"], keep=False)
    if dup.any():
        raise ValueError(f"{path}: duplicated (dataset, config, who): "
                         f"{df.loc[dup, ['dataset', 'config', 'who']].values.tolist()}")
    return df


def load_deviations(path: str | Path | None = None) -> list[dict]:
    """``lpa/report/reference/deviations.yaml``: list of ``{topic, paper_or_official, ours, why}`` (strings)."""
    path = Path(path) if path is not None else DEVIATIONS_YAML
    try:
        with open(path, encoding="utf-8") as f:
            entries = yaml.safe_load(f) or []
    except yaml.YAMLError as err:
        raise DamagedFileError(f"{path} is not valid YAML ({type(err).__name__}); "
                               f"restore it with `git checkout -- {path}`") from None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: must be a list of entries")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or set(entry) != set(DEVIATION_KEYS):
            raise ValueError(f"{path}: entry {i} must have exactly the keys {', '.join(DEVIATION_KEYS)}")
        if not all(isinstance(entry[k], str) and entry[k].strip() for k in DEVIATION_KEYS):
            raise ValueError(f"{path}: entry {i} ({entry.get('topic')}): every field must be a non-empty string")
        out.append({k: " ".join(entry[k].split()) for k in DEVIATION_KEYS})
    return out


# --------------------------------------------------------------------------- runs -> table


def load_run(run_dir: str | Path) -> dict:
    """``{run, trial, seed, config, metrics, dir}`` from a trial's record directory
    (``reports/<suite>/runs/<trial>/{config.json, metrics.json}``); a missing or damaged file is
    one DamagedFileError naming it and the stage to re-run."""
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json", f"train@{run_dir.name}")
    metrics = _read_json(run_dir / "metrics.json", f"evaluate@{run_dir.name}")
    if not isinstance(config.get("model"), Mapping) or "name" not in config["model"] or "dataset" not in config:
        raise DamagedFileError(f"{run_dir / 'config.json'} is not a resolved run config; "
                               f"re-run `dvc repro -f train@{run_dir.name}`")
    if not isinstance(_test_metrics(metrics), Mapping) or "top1_error" not in _test_metrics(metrics):
        raise DamagedFileError(f"{run_dir / 'metrics.json'} has no test.top1_error; "
                               f"re-run `dvc repro -f evaluate@{run_dir.name}`")
    return {"run": config.get("run", run_dir.name), "trial": config.get("trial", run_dir.name),
            "seed": config.get("seed"), "config": config, "metrics": metrics, "dir": run_dir}


def load_trials(run_dirs: Sequence[Path]) -> tuple[list[dict], list[str]]:
    """The records of the trials that have been evaluated, and the names of those that have not.

    Under DVC every evaluate stage runs before the report; run by hand over a suite cut short,
    the report covers the evaluated trials and names the others instead of failing."""
    done = [Path(d) for d in run_dirs if (Path(d) / "metrics.json").exists()]
    missing = [Path(d).name for d in run_dirs if Path(d) not in done]
    return [load_run(d) for d in done], missing


def trial_columns(record: Mapping) -> dict:
    """The columns every experiment's table row starts with, from a trial's record (load_run)."""
    config = record["config"]
    return {"run": record["run"], "dataset": config["dataset"], "config": paper_notation(config),
            "attention": bool(config.get("attention")), "seed": record["seed"]}


def read_record(path: Path, what: str, stage: str, extract: Callable[[Any], Any]) -> Any:
    """`extract` of the JSON a stage wrote at `path`; a file that is not JSON, or whose JSON lacks
    what `extract` reads, is one DamagedFileError naming it and the stage to re-run."""
    try:
        return extract(json.loads(Path(path).read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DamagedFileError(f"{path} is not a {what} record ({type(err).__name__}); "
                               f"re-run `dvc repro -f {stage}`") from None


def _read_json(path: Path, stage: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found; run `dvc repro {stage}` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedFileError(f"{path} is not valid JSON ({type(err).__name__}); "
                               f"re-run `dvc repro -f {stage}`") from None
    if not isinstance(data, dict):
        raise DamagedFileError(f"{path} must hold a JSON object; re-run `dvc repro -f {stage}`")
    return data


def _test_metrics(metrics: Mapping) -> Mapping:
    # metrics_json() nests under "test"; accept the flat form too.
    return metrics["test"] if "test" in metrics else metrics


def _number(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def results_table(runs: Sequence[Mapping], reference: pd.DataFrame | None = None,
                  dataset_aliases: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per run, columns ``COLUMNS`` in that order, rows in the order given.

    Args:
        runs: dicts ``{"run": name, "config": resolved config, "metrics": metrics_json(...)}``.
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
        test = _test_metrics(r["metrics"])
        top1, top5 = _number(test.get("top1_error")), _number(test.get("top5_error"))

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
            v = _number(row.get(col))
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
    """One paragraph: which suite, data source(s) and scale the trials ran at, from their records."""
    if not records:
        return f"Suite `{suite}`: no trials."
    configs = [r["config"] for r in records]
    sources = sorted({(c.get("environment") or {}).get("data_source", "unknown") for c in configs})
    devices = sorted({(c.get("environment") or {}).get("device", "unknown") for c in configs})
    widths = sorted({float(c["model"].get("width", 1.0)) for c in configs})
    epochs = sorted({int(c["train"]["epochs"]) for c in configs})
    images = sorted({int(c["train"].get("max_images", 0)) for c in configs})
    seeds = sorted({c["seed"] for c in configs})
    runs = list(dict.fromkeys(c["run"] for c in configs))
    imgs = ", ".join("the whole training split" if n == 0 else f"{n:,} training images" for n in images)
    return (f"Suite `{suite}`: {len(records)} trials ({len(runs)} runs x seeds {', '.join(map(str, seeds))}). "
            f"Data: {'; '.join(sources)}. Scale: width {', '.join(f'{w:g}' for w in widths)}, {imgs}, "
            f"{', '.join(map(str, epochs))} epochs (the paper: width 1, 50,000 images, 300 epochs). "
            f"Device: {', '.join(devices)}.")


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
