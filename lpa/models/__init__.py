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

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lpa.config.model_options import (ATTENTION_SETTINGS, MODEL_NAMES, MODEL_SETTINGS, MODELS, OPTION_DEFAULTS,
                               OPTION_SETTINGS, accepted_options, model_spec, options_of, resolve_options)

from .init import init_weights
from .ran import ResidualAttentionNet
from .resnet import ResNet164, ResNetAttention
from .vgg_att import VGG, VGGGAP, VGGPAN, VGGAttention

__all__ = ["ATTENTION_SETTINGS", "MODEL_NAMES", "MODEL_SETTINGS", "MODELS", "OPTION_DEFAULTS", "OPTION_SETTINGS",
           "accepted_options", "build_model", "count_flops", "count_params", "describe", "model_spec",
           "model_summary", "options_of", "probe", "resolve_options"]

# name -> the factory that builds it (its options and summary: lpa.config.model_options.MODELS)
_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "vgg": VGG,
    "vgg-gap": VGGGAP,
    "vgg-pan": VGGPAN,
    "vgg-att1": partial(VGGAttention, levels=(3,)),
    "vgg-att2": partial(VGGAttention, levels=(2, 3)),
    "vgg-att3": partial(VGGAttention, levels=(1, 2, 3)),
    "resnet164": ResNet164,
    "resnet164-att1": partial(ResNetAttention, levels=(3,)),
    "resnet164-att2": partial(ResNetAttention, levels=(2, 3)),
    "resnet164-att3": partial(ResNetAttention, levels=(1, 2, 3)),
    "ran56": partial(ResidualAttentionNet, depth=56),
    "ran92": partial(ResidualAttentionNet, depth=92),
}


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    """Build network ``name`` for ``num_classes`` classes; ``model(x) -> (logits, maps)``.

    Raises ValueError for an unknown name, an option the model does not take, or a bad value.
    The model carries ``lpa_name`` and ``lpa_options`` (the resolved options).
    """
    model_spec(name)  # a clear error for an unknown name
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
    resolved = resolve_options(name, **options)
    init_options = {k: resolved.pop(k) for k in ("bn_init", "compat_init") if k in resolved}
    model = _FACTORIES[name](num_classes, **resolved)
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
            "gflops": flops / 1e9, "maps": sizes, "summary": MODELS[name].summary}


def describe(name: str) -> str:
    """One-line description of ``name``."""
    return model_spec(name).summary
