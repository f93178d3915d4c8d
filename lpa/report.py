"""The results report: our runs next to the paper's and other reproductions' numbers.

Pure functions (no DVC, no argv). The stage (``stages/report.py``) does::

    runs = [load_run(Path("reports/runs") / name) for name in run_names]
    table = results_table(runs)
    md = render_results_md(table, load_deviations(), reference=load_reference_numbers())
    write_text("reports/results.md", md)          # from lpa.files
    write_json("reports/summary.json", summary_json(table))

Notation (the paper's, used in ``lpa/reference/numbers.csv`` and the ``config`` column)
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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from tabulate import tabulate

from lpa.reference import DEVIATIONS_YAML, NUMBERS_CSV

DATASETS = ("cifar10", "cifar100", "svhn")
PAPER = "paper"
NUMBER_COLUMNS = ("dataset", "config", "who", "top1_error", "source")
DEVIATION_KEYS = ("topic", "paper_or_official", "ours", "why")
COLUMNS = ("run", "dataset", "config", "top-1 error", "top-5 error", "paper", "difference",
           "other reproductions")
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

# Options of the LTPA attention heads that the paper's notation does not carry:
# key -> (the paper's / official code's value, how a different value is written in the suffix).
ATTENTION_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "normalize": ("softmax", lambda v: str(v)),
    "project": ("g_down", lambda v: str(v)),
    "compat_init": ("official", lambda v: f"{v} init"),
}
# Model options that change the network away from the paper suite's (conf/config.yaml).
MODEL_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "dropout": (True, lambda v: "no dropout"),
    "branch_grad": ("sum", lambda v: f"branch_grad {v}"),
    "bn_init": ("one", lambda v: f"bn_init {v}"),
    "g_head": ("conv", lambda v: f"g_head {v}"),
    "module_layout": ("uniform", lambda v: f"layout {v}"),
}
DEFAULT_WIDTH = 1.0


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

    ``config`` is the resolved run config (``lpa.config.resolve_run``): ``config["model"]["name"]``
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
        for key, (default, label) in ATTENTION_DEFAULTS.items():
            if key in attention and attention[key] is not None and attention[key] != default:
                suffix.append(label(attention[key]))
        if attention.get("g_mode") == "indep" and attention.get("indep_combine") is not None:
            suffix.append(f"combine {attention['indep_combine']}")
    elif kind == "ran":
        learning = model.get("attention_learning", attention.get("attention_learning", "arl"))
        learning = str(learning or "arl").lower()
        notation = base if learning == "arl" else f"{base} ({learning.upper()})"
    else:
        notation = base

    for key, (default, label) in MODEL_DEFAULTS.items():
        if model.get(key) is not None and model[key] != default:
            suffix.append(label(model[key]))
    width = model.get("width", DEFAULT_WIDTH)
    if width is not None and float(width) != DEFAULT_WIDTH:
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
    """``lpa/reference/numbers.csv`` as a DataFrame, validated.

    Columns ``dataset, config, who, top1_error, source``; top1_error is a float in percent.
    Raises ValueError on a missing column or source, an unknown dataset, a value outside
    [0, 100], or a duplicated (dataset, config, who).
    """
    path = Path(path) if path is not None else NUMBERS_CSV
    df = pd.read_csv(path, dtype={"dataset": str, "config": str, "who": str, "source": str},
                     keep_default_na=False)
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
    """``lpa/reference/deviations.yaml``: list of ``{topic, paper_or_official, ours, why}`` (strings)."""
    path = Path(path) if path is not None else DEVIATIONS_YAML
    with open(path) as f:
        entries = yaml.safe_load(f) or []
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
    """``{run, config, metrics}`` from ``reports/runs/<run>/{config.json, metrics.json}``."""
    run_dir = Path(run_dir)
    with open(run_dir / "config.json") as f:
        config = json.load(f)
    with open(run_dir / "metrics.json") as f:
        metrics = json.load(f)
    return {"run": config.get("run", run_dir.name), "config": config, "metrics": metrics}


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
            "run": name, "dataset": dataset, "config": notation,
            "top-1 error": top1, "top-5 error": top5,
            "paper": paper, "difference": top1 - paper,  # NaN if either is missing
            "other reproductions": other_text,
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summary_json(table: pd.DataFrame) -> dict:
    """``{run: {"top1_error", "top5_error", "paper_top1_error"?, "diff_vs_paper"?}}``, numbers only.

    Keys whose value is missing are left out (JSON has no NaN), so ``dvc metrics`` shows only
    what exists.
    """
    keys = (("top1_error", "top-1 error"), ("top5_error", "top-5 error"),
            ("paper_top1_error", "paper"), ("diff_vs_paper", "difference"))
    out: dict[str, dict[str, float]] = {}
    for row in table.to_dict("records"):
        entry = {}
        for key, col in keys:
            v = _number(row.get(col))
            if not math.isnan(v):
                entry[key] = round(v, 4)
        out[str(row["run"])] = entry
    return out


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


def render_results_md(table: pd.DataFrame, deviations: Sequence[Mapping],
                      extra_header: str | None = None, reference: pd.DataFrame | None = None,
                      missing: str = "") -> str:
    """Markdown report: title, optional ``extra_header`` paragraph, the results table, notes,
    the deviations ledger and (when ``reference`` is given) every reference number with its
    source. Numbers have 2 decimals, differences a sign; missing cells are ``missing`` (empty by
    default), never "nan".
    """
    parts = [f"# {TITLE}", ""]
    if extra_header:
        parts += [extra_header.strip(), ""]

    parts += ["## Test error (%)", ""]
    if len(table):
        fmts = {"difference": "{:+.2f}"}
        rows = [[_cell(row[c], missing, fmts.get(c, "{:.2f}")) for c in COLUMNS]
                for row in table.to_dict("records")]
        align = ["left", "left", "left", "right", "right", "right", "right", "left"]
        parts.append(_md_table(rows, COLUMNS, align))
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
