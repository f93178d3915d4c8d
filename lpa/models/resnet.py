"""Pre-activation bottleneck ResNet-164 (He et al. 2016) and its attention variants (RN-att).

Backbone as in the official code (RESNET/models/Resnet-att2/1.x_resnet_local.lua, after
fb.resnet.torch / Xiang Ming's ResNet-1001): 3x3 conv 3->16, then three stages of 18 bottleneck
units (outputs 64, 128, 256; bottleneck width out/4; strides 1, 2, 2). A unit is BN-ReLU-conv1x1,
BN-ReLU-conv3x3, BN-ReLU-conv1x1 plus the identity; the first unit of a stage shares the first
BN-ReLU between both paths and uses a 1x1 projection shortcut. Convolutions have no bias
(``utils.DisableBias``).

resnet164: BN -> ReLU -> global average pool -> Linear(256, classes).

resnet164-att1/2/3: local features are the raw (pre-activation) outputs of stage 1 (64 x 32 x 32),
stage 2 (128 x 16 x 16) and stage 3 (256 x 8 x 8); att1 uses stage 3, att2 stages 2-3, att3 all three.
g (256-d) comes from ``g_head``:

* ``conv`` (default; official Resnet-att2/2.3_resnet_global.lua): BN -> ReLU -> max-pool 2 ->
  3x3 conv 256 + BN(eps 1e-3) + ReLU + Dropout 0.4 -> max-pool (4x4 -> 1) -> Dropout 0.5 ->
  Linear(256, 256). Adds about 0.66M parameters to the backbone.
* ``gap``: g = global average pool of BN -> ReLU(stage 3), no extra weights (the official
  "averaged_global" variant; its 1-level model totals 1.70M parameters in RESNET/weight_analysis).

Levels of width < 256 get g projected down (BN -> ReLU -> Dropout 0.5 -> Linear) by default; the
classifier is the official RN match (BN -> ReLU -> Dropout 0.3 per level; Linear(384, classes) for
att2 with concat).
"""
from __future__ import annotations

from torch import nn

from .attention import AttentionHead, branch
from .common import dropout as drop_layer
from .common import scaled

DEPTH = 164
STAGES = (64, 128, 256)


class PreActBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        mid = max(1, cout // 4)
        self.shared = cin != cout or stride != 1     # "increasing dimensions" unit
        self.pre = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.convs = nn.Sequential(
            nn.Conv2d(cin, mid, 1, stride, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, 1, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1, bias=False))
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if self.shared else None

    def forward(self, x):
        y = self.pre(x)
        if self.shared:
            return self.convs(y) + self.shortcut(y)
        return self.convs(y) + x


def stage(cin: int, cout: int, units: int, stride: int) -> nn.Sequential:
    return nn.Sequential(PreActBottleneck(cin, cout, stride),
                         *[PreActBottleneck(cout, cout) for _ in range(units - 1)])


class ResNetBackbone(nn.Module):
    def __init__(self, width: float = 1.0, depth: int = DEPTH):
        super().__init__()
        assert (depth - 2) % 9 == 0
        n = (depth - 2) // 9
        c0 = scaled(16, width)
        c1, c2, c3 = (scaled(c, width) for c in STAGES)
        self.stem = nn.Conv2d(3, c0, 3, padding=1, bias=False)
        self.stage1 = stage(c0, c1, n, 1)
        self.stage2 = stage(c1, c2, n, 2)
        self.stage3 = stage(c2, c3, n, 2)
        self.channels = (c1, c2, c3)


class ResNet164(nn.Module):
    def __init__(self, num_classes: int, *, width=1.0, input_size=32):
        super().__init__()
        self.backbone = bb = ResNetBackbone(width)
        c3 = bb.channels[2]
        self.head = nn.Sequential(nn.BatchNorm2d(c3), nn.ReLU(inplace=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c3, num_classes))

    def forward(self, x):
        bb = self.backbone
        return self.head(bb.stage3(bb.stage2(bb.stage1(bb.stem(x))))), []


class ResNetAttention(nn.Module):
    def __init__(self, num_classes: int, levels: tuple[int, ...], *, compat="pc", g_mode="concat",
                 indep_combine="sum_logits", normalize="softmax", project="g_down", dropout=True,
                 width=1.0, input_size=32, branch_grad="sum", g_head="conv"):
        super().__init__()
        self.levels, self.branch_grad = levels, branch_grad
        self.backbone = bb = ResNetBackbone(width)
        c3 = bb.channels[2]
        if g_head == "conv":
            self.g_head = nn.Sequential(
                nn.BatchNorm2d(c3), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2, ceil_mode=True),
                nn.Conv2d(c3, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3, eps=1e-3),
                nn.ReLU(inplace=True), drop_layer(0.4, dropout),
                nn.AdaptiveMaxPool2d(1), nn.Flatten(),    # official: 4x4 max-pool (4x4 -> 1x1)
                drop_layer(0.5, dropout), nn.Linear(c3, c3))
        else:
            self.g_head = nn.Sequential(nn.BatchNorm2d(c3), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.attention = AttentionHead(
            [bb.channels[k - 1] for k in levels], c3, num_classes, compat=compat, normalize=normalize,
            project=project, g_mode=g_mode, indep_combine=indep_combine, branch_grad=branch_grad,
            classifier_dropout=0.3, use_dropout=dropout)

    def _tap(self, x, level):
        return branch(x, 2, self.branch_grad) if level in self.levels else x

    def forward(self, x):
        bb = self.backbone
        l1 = self._tap(bb.stage1(bb.stem(x)), 1)
        l2 = self._tap(bb.stage2(l1), 2)
        l3 = self._tap(bb.stage3(l2), 3)
        g = self.g_head(l3)
        feats = {1: l1, 2: l2, 3: l3}
        return self.attention([feats[k] for k in self.levels], g)
