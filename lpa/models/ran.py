"""Residual Attention Network (Wang et al., CVPR 2017) for 32x32 inputs: ran56 and ran92.

Built from the pre-activation bottleneck unit of resnet.py. Layout (ResNet-164 widths, which
put Attention-92 at the paper's CIFAR budget of about 1.9M parameters):

    3x3 conv 3 -> 16
    stage 1 (32x32): unit 16 -> 64,        m1 attention modules (mask: 3 max-pools, 2 skips)
    stage 2 (16x16): unit 64 -> 128, /2,   m2 attention modules (2 max-pools, 1 skip)
    stage 3 (8x8):   unit 128 -> 256, /2,  m3 attention modules (1 max-pool, no skip)
    stage 4 (8x8):   3 units 256 -> 256
    BN -> ReLU -> global average pool -> Linear(256, classes)

Attention-56 has (m1, m2, m3) = (1, 1, 1). Attention-92 has (2, 2, 2) by default
(``module_layout=uniform``: m modules per stage, depth 36m + 20), which gives 1.96M parameters, the
paper's CIFAR budget (1.9M); ``increasing`` gives the paper's ImageNet layout (1, 2, 3) and 2.45M
parameters at these widths. Counting three layers per unit on the trunk gives 56 and 92 layers
either way.

Attention module with the paper's p=1, t=2, r=1: one unit, then a trunk branch T (2 units) and a
soft-mask branch: bottom-up (3x3/2 max-pool + r units, with a skip unit at each resolution but the
lowest, 2r units at the bottom), top-down (bilinear upsampling, added to the skip unit output, then
r units), back to the input size, then BN-ReLU-1x1 conv-BN-ReLU-1x1 conv-sigmoid: M. Output
(1 + M) * T (``attention_learning=arl``, attention residual learning) or M * T (``nal``, naive
attention learning), then one unit.

Maps: one per attention module, the channel mean of its soft mask M (B, 1, H, W), values in (0, 1):
the spatial summary of that module's mixed (channel x space) attention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import scaled
from .resnet import PreActBottleneck


def modules_per_stage(depth: int, layout: str) -> tuple[int, int, int]:
    """Attention modules in stages 1-3 for Attention-<depth>.

    ``increasing``: the paper's ImageNet table (Attention-56: 1, 1, 1; Attention-92: 1, 2, 3).
    ``uniform``: m modules in every stage, depth = 36 m + 20 (Attention-56: m = 1, Attention-92:
    m = 2): Attention-92 then has 1.96M parameters (10 classes), the paper's CIFAR figure (1.9M);
    ``increasing`` gives 2.45M with these widths. Both give the same trunk depth.
    """
    if layout == "increasing":
        return {56: (1, 1, 1), 92: (1, 2, 3)}[depth]
    m = (depth - 20) // 36
    return (m, m, m)


def _units(c: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[PreActBottleneck(c, c) for _ in range(n)])


class AttentionModule(nn.Module):
    def __init__(self, c: int, skips: int, learning: str = "arl", p: int = 1, t: int = 2, r: int = 1):
        super().__init__()
        self.learning, self.skips = learning, skips
        self.first = _units(c, p)
        self.trunk = _units(c, t)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        # down[i] follows the (i+1)-th pool; the last one is the bottom (2r units)
        self.down = nn.ModuleList(_units(c, r) for _ in range(skips))
        self.bottom = _units(c, 2 * r)
        self.skip = nn.ModuleList(_units(c, 1) for _ in range(skips))
        self.up = nn.ModuleList(_units(c, r) for _ in range(skips))
        self.mask_out = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c, 1, bias=True), nn.Sigmoid())
        self.last = _units(c, p)

    def forward(self, x):
        x = self.first(x)
        trunk = self.trunk(x)
        m = x
        skips = []
        for down, skip in zip(self.down, self.skip):
            m = down(self.pool(m))
            skips.append(skip(m))
        m = self.bottom(self.pool(m))
        for up, s in zip(reversed(self.up), reversed(skips)):
            m = up(F.interpolate(m, size=s.shape[-2:], mode="bilinear", align_corners=False) + s)
        m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = self.mask_out(m)
        out = (1 + mask) * trunk if self.learning == "arl" else mask * trunk
        return self.last(out), mask.mean(dim=1, keepdim=True)


class ResidualAttentionNet(nn.Module):
    def __init__(self, num_classes: int, depth: int, *, attention_learning="arl",
                 module_layout="uniform", width=1.0, input_size=32):
        super().__init__()
        c0 = scaled(16, width)
        c1, c2, c3 = (scaled(c, width) for c in (64, 128, 256))
        m1, m2, m3 = modules_per_stage(depth, module_layout)
        self.stem = nn.Conv2d(3, c0, 3, padding=1, bias=False)
        blocks: list[nn.Module] = [PreActBottleneck(c0, c1)]
        blocks += [AttentionModule(c1, 2, attention_learning) for _ in range(m1)]
        blocks += [PreActBottleneck(c1, c2, 2)]
        blocks += [AttentionModule(c2, 1, attention_learning) for _ in range(m2)]
        blocks += [PreActBottleneck(c2, c3, 2)]
        blocks += [AttentionModule(c3, 0, attention_learning) for _ in range(m3)]
        blocks += [PreActBottleneck(c3, c3) for _ in range(3)]
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.BatchNorm2d(c3), nn.ReLU(inplace=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c3, num_classes))

    def forward(self, x: torch.Tensor):
        x = self.stem(x)
        maps = []
        for block in self.blocks:
            if isinstance(block, AttentionModule):
                x, m = block(x)
                maps.append(m)
            else:
                x = block(x)
        return self.head(x), maps
