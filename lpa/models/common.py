"""Small building blocks shared by the backbones (width scaling, optional dropout, conv-BN-ReLU)."""
from __future__ import annotations

from torch import nn


def scaled(channels: int, width: float) -> int:
    """Channel count under the width multiplier: max(1, round(channels * width))."""
    return max(1, int(round(channels * width)))


def dropout(p: float, enabled: bool) -> nn.Module:
    """Dropout(p) where the official network has it, Identity when dropout is switched off."""
    return nn.Dropout(p) if enabled and p > 0 else nn.Identity()


def conv_bn_relu(cin: int, cout: int, drop: float = 0.0, use_dropout: bool = True,
                 bn_eps: float = 1e-3) -> list[nn.Module]:
    """cifar.torch ``ConvBNReLU``: 3x3 conv, BN (Torch eps 1e-3), ReLU [, Dropout].

    The conv has no bias: the BN that follows cancels it (its gradient is zero); the official code
    has a (zero-initialised, useless) bias there.
    """
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                               nn.BatchNorm2d(cout, eps=bn_eps), nn.ReLU(inplace=True)]
    if drop > 0:
        layers.append(dropout(drop, use_dropout))
    return layers
