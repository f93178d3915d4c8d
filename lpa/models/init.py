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

The pc compatibility ``u`` is a 1x1 convolution to one channel, so MSRinit's fan_out rule gives
it std sqrt(2): with 256-512 input channels the scores start with a spread of tens and the softmax
maps start almost one-hot, attending to a single position. ``compat_init`` selects ``official``
(that) or ``fan_in`` (std 1/sqrt(C): scores of unit spread, soft maps at the start). With the
quick suite's recipe a width-0.25 vgg-att2 reached 0.35 % validation error on digits with
``fan_in`` and 6.62 % with ``official`` (see the deviations ledger).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lpa.config.model_options import BN_INITS, COMPAT_INITS

from .attention import AttentionLevel



@torch.no_grad()
def init_weights(model: nn.Module, bn_init: str = "one", compat_init: str = "official") -> nn.Module:
    """Initialise ``model`` in place as the official code does (see module docstring)."""
    if bn_init not in BN_INITS:
        raise ValueError(f"bn_init={bn_init!r}; allowed: {', '.join(BN_INITS)}")
    if compat_init not in COMPAT_INITS:
        raise ValueError(f"compat_init={compat_init!r}; allowed: {', '.join(COMPAT_INITS)}")
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
    if compat_init == "fan_in":  # after the loop above, which visits u as a plain conv
        for module in model.modules():
            if isinstance(module, AttentionLevel) and module.u is not None:
                nn.init.normal_(module.u.weight, 0.0, 1.0 / math.sqrt(module.u.in_channels))
    return model
