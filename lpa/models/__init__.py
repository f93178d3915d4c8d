"""lpa's networks, built from a name and options.

    build_model(name, num_classes, **options) -> nn.Module;  model(x) -> (logits, maps)

logits: (B, num_classes) (log-probabilities for indep + sum_log_softmax / mean_prob; see
attention.py). maps: one (B, 1, H, W) tensor per attention level -- softmax/sigmoid attention for
vgg-att* / resnet164-att*, the sigmoid gates for vgg-pan, the class activation map of the predicted
class for vgg-gap, the channel-mean soft mask of every attention module for ran*; [] for vgg and
resnet164. ``MODEL_NAMES`` lists the names, ``accepted_options(name)`` the options each takes,
``count_flops(model, input_size)`` counts forward FLOPs per image. ``python -m lpa.models`` prints
the table of every model. See docs/models.md.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from .attention import BRANCH_GRADS, COMPATS, G_MODES, INDEP_COMBINES, NORMALIZES, PROJECTS
from .init import BN_INITS, COMPAT_INITS, init_weights
from .ran import ATTENTION_LEARNINGS, MODULE_LAYOUTS, ResidualAttentionNet
from .resnet import G_HEADS, ResNet164, ResNetAttention
from .vgg_att import VGG, VGGGAP, VGGPAN, VGGAttention

__all__ = ["MODEL_NAMES", "OPTION_DEFAULTS", "accepted_options", "build_model", "count_flops",
           "count_params", "describe", "model_summary", "probe", "resolve_options"]

MIN_INPUT_SIZE = 32


# ----------------------------------------------------------------------------- options

@dataclass(frozen=True)
class _Option:
    default: Any
    choices: tuple | None = None   # allowed values, or None for a custom check
    kind: str = "choice"           # choice | bool | width | size

    def check(self, name: str, value: Any) -> Any:
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError(f"option {name}={value!r} is not allowed; choose one of: {', '.join(self.choices)}")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"option {name}={value!r} must be a boolean: true or false")
            return value
        if self.kind == "width":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 16:
                raise ValueError(f"option {name}={value!r} must be a number in (0, 16] (channel multiplier)")
            return float(value)
        if self.kind == "size":
            if isinstance(value, bool) or not isinstance(value, int) or value < MIN_INPUT_SIZE:
                raise ValueError(f"option {name}={value!r} must be an integer >= {MIN_INPUT_SIZE} "
                                 "(input height = width in pixels)")
            return value
        raise AssertionError(self.kind)


_OPTIONS: dict[str, _Option] = {
    "compat": _Option("pc", COMPATS),
    "g_mode": _Option("concat", G_MODES),
    "indep_combine": _Option("sum_logits", INDEP_COMBINES),
    "normalize": _Option("softmax", NORMALIZES),
    "project": _Option("g_down", PROJECTS),
    "branch_grad": _Option("sum", BRANCH_GRADS),
    "g_head": _Option("conv", G_HEADS),
    "attention_learning": _Option("arl", ATTENTION_LEARNINGS),
    "module_layout": _Option("uniform", MODULE_LAYOUTS),
    "dropout": _Option(True, kind="bool"),
    "width": _Option(1.0, kind="width"),
    "input_size": _Option(32, kind="size"),
    "bn_init": _Option("one", BN_INITS),
    "compat_init": _Option("official", COMPAT_INITS),
}
OPTION_DEFAULTS: dict[str, Any] = {k: o.default for k, o in _OPTIONS.items()}

_COMMON = frozenset({"width", "input_size", "bn_init"})
_LTPA = frozenset({"compat", "g_mode", "indep_combine", "normalize", "project", "branch_grad", "dropout",
                   "compat_init"})
_RAN = frozenset({"attention_learning", "module_layout"})


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]
    options: frozenset
    summary: str


_REGISTRY: dict[str, _Entry] = {
    "vgg": _Entry(VGG, _COMMON | {"dropout"},
                  "cifar.torch VGG-16-BN + dropout, 5 max-pools, FC-BN-FC classifier"),
    "vgg-gap": _Entry(VGGGAP, _COMMON | {"dropout"},
                      "attention backbone to conv13 (8x8), global average pool, Linear; map = CAM"),
    "vgg-pan": _Entry(VGGPAN, _COMMON | {"dropout"},
                      "progressive attention: sigmoid gates after conv10 and conv13, gated maps passed on"),
    "vgg-att1": _Entry(partial(VGGAttention, levels=(3,)), _COMMON | _LTPA,
                       "LTPA VGG, attention at L3 (conv13)"),
    "vgg-att2": _Entry(partial(VGGAttention, levels=(2, 3)), _COMMON | _LTPA,
                       "LTPA VGG, attention at L2, L3 (conv10, conv13)"),
    "vgg-att3": _Entry(partial(VGGAttention, levels=(1, 2, 3)), _COMMON | _LTPA,
                       "LTPA VGG, attention at L1, L2, L3 (conv7, conv10, conv13)"),
    "resnet164": _Entry(ResNet164, _COMMON,
                        "pre-activation bottleneck ResNet-164 (18 units x 3 stages)"),
    "resnet164-att1": _Entry(partial(ResNetAttention, levels=(3,)), _COMMON | _LTPA | {"g_head"},
                             "LTPA ResNet-164, attention at stage 3"),
    "resnet164-att2": _Entry(partial(ResNetAttention, levels=(2, 3)), _COMMON | _LTPA | {"g_head"},
                             "LTPA ResNet-164, attention at stages 2, 3 (the paper's RN-att2)"),
    "resnet164-att3": _Entry(partial(ResNetAttention, levels=(1, 2, 3)), _COMMON | _LTPA | {"g_head"},
                             "LTPA ResNet-164, attention at stages 1, 2, 3"),
    "ran56": _Entry(partial(ResidualAttentionNet, depth=56), _COMMON | _RAN,
                    "Residual Attention Network, Attention-56 (1, 1, 1 modules)"),
    "ran92": _Entry(partial(ResidualAttentionNet, depth=92), _COMMON | _RAN,
                    "Residual Attention Network, Attention-92 (2, 2, 2 modules; see module_layout)"),
}

MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return _REGISTRY[name]


def accepted_options(name: str) -> set[str]:
    """The option names ``build_model(name, ...)`` takes."""
    return set(_entry(name).options)


def resolve_options(name: str, **options) -> dict[str, Any]:
    """Validated options for ``name`` with the defaults filled in (ValueError on anything bad)."""
    accepted = _entry(name).options
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"model {name} does not take option(s) {', '.join(unknown)}; "
                         f"it takes: {', '.join(sorted(accepted))}")
    resolved = {k: _OPTIONS[k].default for k in sorted(accepted)}
    for key, value in options.items():
        resolved[key] = _OPTIONS[key].check(key, value)
    return resolved


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    """Build network ``name`` for ``num_classes`` classes; ``model(x) -> (logits, maps)``.

    Raises ValueError for an unknown name, an option the model does not take, or a bad value.
    The model carries ``lpa_name`` and ``lpa_options`` (the resolved options).
    """
    entry = _entry(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
    resolved = resolve_options(name, **options)
    init_options = {k: resolved.pop(k) for k in ("bn_init", "compat_init") if k in resolved}
    model = entry.factory(num_classes, **resolved)
    init_weights(model, **init_options)
    resolved.update(init_options)
    model.lpa_name = name
    model.lpa_options = resolved
    return model


# ----------------------------------------------------------------------------- inspection

def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def probe(model: nn.Module, input_size: int = 32) -> tuple[int, list[tuple[int, int]]]:
    """(forward FLOPs per image, [(H, W) of each map]) from one batch-1 eval-mode forward.

    Runs on the model's device (a model built under ``torch.device("meta")`` costs nothing) and
    restores the model's train/eval mode. FLOPs are torch.utils.flop_counter's count
    (a multiply-add is 2 FLOPs; convolutions, matmuls, bmm/einsum -- not element-wise ops).
    """
    from torch.utils.flop_counter import FlopCounterMode

    ref = next(model.parameters())
    x = torch.zeros(1, 3, input_size, input_size, device=ref.device, dtype=ref.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            _, maps = model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()), [tuple(m.shape[-2:]) for m in maps]


def count_flops(model: nn.Module, input_size: int = 32) -> int:
    """Forward FLOPs per image of ``model`` at ``input_size`` x ``input_size`` (see :func:`probe`)."""
    return probe(model, input_size)[0]


def model_summary(name: str, input_size: int = 32, **options) -> dict[str, Any]:
    """Parameters (10 and 100 classes), forward GFLOP per image and map sizes; built on meta."""
    with torch.device("meta"):
        m10 = build_model(name, 10, input_size=input_size, **options)
        m100 = build_model(name, 100, input_size=input_size, **options)
    flops, sizes = probe(m10, input_size)
    return {"name": name, "params_10": count_params(m10), "params_100": count_params(m100),
            "gflops": flops / 1e9, "maps": sizes, "summary": _REGISTRY[name].summary}


def describe(name: str) -> str:
    """One-line description of ``name``."""
    return _entry(name).summary
