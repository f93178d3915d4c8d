"""The networks lpa builds, by name, and their options: declared once, without torch.

Each option is a `Setting` (lpa.config.settings) with its allowed values, the library's default (so
`build_model("vgg-att2", 10)` works in a notebook) and the paper suite's value, which the results
table's notation compares against (a run with another value gets a [suffix]). `MODELS` says which
options each network takes. The model code (lpa.models) imports its allowed values from here, and
lpa.config validates a run's options from here, without building anything (and without torch, so
the data stages' import closure stays small).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lpa.config.settings import Setting

MIN_INPUT_SIZE = 32

COMPATS = ("pc", "dp")
NORMALIZES = ("softmax", "sigmoid")
PROJECTS = ("g_down", "l_up")
G_MODES = ("concat", "indep")
INDEP_COMBINES = ("sum_log_softmax", "sum_logits", "mean_prob")
BRANCH_GRADS = ("sum", "mean")
BN_INITS = ("one", "uniform")
COMPAT_INITS = ("official", "fan_in")
ATTENTION_LEARNINGS = ("arl", "nal")
MODULE_LAYOUTS = ("increasing", "uniform")
G_HEADS = ("conv", "gap")

MODEL_SETTINGS: dict[str, Setting] = {
    "width": Setting("number", "channel multiplier (0.25 = 1/16 of the FLOPs, same shape)",
                     default=1.0, low=0, low_open=True, high=16, paper=1.0),
    "dropout": Setting("bool", "dropout where the official network has it", default=True, paper=True),
    "branch_grad": Setting("choice", "sum (autograd) | mean (official: gradients averaged at branch points)",
                           default="sum", choices=BRANCH_GRADS, paper="sum"),
    "bn_init": Setting("choice", "BN scale at init: one | uniform (the Torch7 default, official code)",
                       default="one", choices=BN_INITS, paper="one"),
    "g_head": Setting("choice", "resnet164-att*: conv (official head) | gap (stage-3 average pooling)",
                      default="conv", choices=G_HEADS, paper="conv"),
    "attention_learning": Setting("choice", "ran*: arl = (1 + M) * T (the paper) | nal = M * T",
                                  default="arl", choices=ATTENTION_LEARNINGS),
    "module_layout": Setting("choice", "ran*: uniform (CIFAR: m modules per stage) | increasing (ImageNet 1,2,3)",
                             default="uniform", choices=MODULE_LAYOUTS, paper="uniform"),
}
ATTENTION_SETTINGS: dict[str, Setting] = {
    "compat": Setting("choice", "compatibility: pc <u, l + g> | dp <l, g>", default="pc", choices=COMPATS),
    "g_mode": Setting("choice", "concat (one classifier on all g_a) | indep (one classifier per level)",
                      default="concat", choices=G_MODES),
    "indep_combine": Setting("choice", "indep only: how per-level classifiers combine (the paper does not say)",
                             default="sum_logits", choices=INDEP_COMBINES),
    "normalize": Setting("choice", "attention weights over positions: softmax (paper) | sigmoid",
                         default="softmax", choices=NORMALIZES, paper="softmax"),
    "project": Setting("choice", "g_down (official: g projected to the local width) | l_up (1x1 conv)",
                       default="g_down", choices=PROJECTS, paper="g_down"),
    "compat_init": Setting("choice", "pc's u at init: official (He fan_out: near one-hot maps) | fan_in",
                           default="official", choices=COMPAT_INITS, paper="official"),
}
# Not a params.yaml setting: the pipeline takes it from the data (data/processed/<ds>/meta.json).
INPUT_SIZE = Setting("int", "input height = width in pixels (the pipeline takes it from the data)",
                     default=32, low=MIN_INPUT_SIZE)
OPTION_SETTINGS: dict[str, Setting] = {**MODEL_SETTINGS, **ATTENTION_SETTINGS, "input_size": INPUT_SIZE}
OPTION_DEFAULTS: dict[str, Any] = {k: o.default for k, o in OPTION_SETTINGS.items()}


_COMMON = frozenset({"width", "input_size", "bn_init"})
_LTPA = frozenset({"compat", "g_mode", "indep_combine", "normalize", "project", "branch_grad", "dropout",
                   "compat_init"})
_RAN = frozenset({"attention_learning", "module_layout"})


@dataclass(frozen=True)
class ModelSpec:
    options: frozenset   # the option names build_model takes for this network
    summary: str


MODELS: dict[str, ModelSpec] = {
    "vgg": ModelSpec(_COMMON | {"dropout"}, "cifar.torch VGG-16-BN + dropout, 5 max-pools, FC-BN-FC classifier"),
    "vgg-gap": ModelSpec(_COMMON | {"dropout"},
                         "attention backbone to conv13 (8x8), global average pool, Linear; map = CAM"),
    "vgg-pan": ModelSpec(_COMMON | {"dropout"},
                         "progressive attention: sigmoid gates after conv10 and conv13, gated maps passed on"),
    "vgg-att1": ModelSpec(_COMMON | _LTPA, "LTPA VGG, attention at L3 (conv13)"),
    "vgg-att2": ModelSpec(_COMMON | _LTPA, "LTPA VGG, attention at L2, L3 (conv10, conv13)"),
    "vgg-att3": ModelSpec(_COMMON | _LTPA, "LTPA VGG, attention at L1, L2, L3 (conv7, conv10, conv13)"),
    "resnet164": ModelSpec(_COMMON, "pre-activation bottleneck ResNet-164 (18 units x 3 stages)"),
    "resnet164-att1": ModelSpec(_COMMON | _LTPA | {"g_head"}, "LTPA ResNet-164, attention at stage 3"),
    "resnet164-att2": ModelSpec(_COMMON | _LTPA | {"g_head"},
                                "LTPA ResNet-164, attention at stages 2, 3 (the paper's RN-att2)"),
    "resnet164-att3": ModelSpec(_COMMON | _LTPA | {"g_head"}, "LTPA ResNet-164, attention at stages 1, 2, 3"),
    "ran56": ModelSpec(_COMMON | _RAN, "Residual Attention Network, Attention-56 (1, 1, 1 modules)"),
    "ran92": ModelSpec(_COMMON | _RAN, "Residual Attention Network, Attention-92 (2, 2, 2 modules; see module_layout)"),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return MODELS[name]


def accepted_options(name: str) -> set[str]:
    """The option names ``build_model(name, ...)`` takes."""
    return set(model_spec(name).options)


def resolve_options(name: str, **options) -> dict[str, Any]:
    """Validated options for ``name`` with the defaults filled in (ValueError on anything bad)."""
    accepted = model_spec(name).options
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"model {name} does not take option(s) {', '.join(unknown)}; "
                         f"it takes: {', '.join(sorted(accepted))}")
    resolved = {k: OPTION_SETTINGS[k].default for k in sorted(accepted)}
    for key, value in options.items():
        resolved[key] = OPTION_SETTINGS[key].check(value, f"option {key}", ValueError)
    return resolved


def options_of(config: Mapping) -> dict:
    """The keyword options for build_model recorded in a resolved run config."""
    opts = {k: v for k, v in config["model"].items() if k != "name"}
    opts.update(config.get("attention") or {})
    return opts
