"""The paper's notation of a run: a resolved run config in, a string such as
``(VGG-att2)-concat-pc [width 0.25]`` out. Used in the report's ``config`` column and in
``lpa/report/reference/numbers.csv``.

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

``core_notation`` drops the suffix, ``family_notation`` keeps the model family only (the part
before ``-{g_mode}-{compat}``, (NAL) and the suffix): the keys lpa.report.tables matches
reference rows by.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lpa.config.model_options import ATTENTION_SETTINGS, MODEL_SETTINGS

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
