"""Weight initialisation for every lpa network, in one place.

The official Torch code (cd_ICLR18_LearnToPayAttention) runs ``MSRinit`` on every
``SpatialConvolution``: weights ~ N(0, sqrt(2 / (kW * kH * nOutputPlane))) -- He-normal with
fan_out -- and biases zeroed. Linear layers keep Torch7's default U(-1/sqrt(fan_in), 1/sqrt(fan_in))
weights (PyTorch's default is the same bound); the ResNet code (``utils.FCinit``) zeroes their
biases, and so do we everywhere (the VGG code leaves Torch7's uniform biases: a negligible
difference, listed in docs/models.md).

BatchNorm: Torch7's ``nn.BatchNormalization:reset()`` draws the scale from U(0, 1) and the official
code never overrides it; the usual modern choice (and lpa's default) is scale 1. ``bn_init``
selects: ``one`` (default) or ``uniform`` (the Torch7 behaviour). Shift 0 either way.
"""
from __future__ import annotations

import math

import torch
from torch import nn

BN_INITS = ("one", "uniform")


@torch.no_grad()
def init_weights(model: nn.Module, bn_init: str = "one") -> nn.Module:
    """Initialise ``model`` in place as the official code does (see module docstring)."""
    if bn_init not in BN_INITS:
        raise ValueError(f"bn_init={bn_init!r}; allowed: {', '.join(BN_INITS)}")
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.in_features)
            nn.init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if module.affine:
                if bn_init == "one":
                    nn.init.ones_(module.weight)
                else:
                    nn.init.uniform_(module.weight, 0.0, 1.0)
                nn.init.zeros_(module.bias)
    return model
