"""VGG family: the paper's attention VGG (vgg-att1/2/3) and the baselines vgg, vgg-gap, vgg-pan.

All follow cifar.torch's VGG-16-BN as used in the official code (ltpa.md section 1): 3x3 conv ->
BN (eps 1e-3) -> ReLU, dropout 0.3 after conv1 and 0.4 after conv3, 5, 6, 8, 9, 11, 12; channels
64,64 | 128,128 | 256,256,256 | 512,512,512 | 512,512,512; ceil-mode 2x2 max-pools.

Attention backbone (vgg-att*, vgg-gap, vgg-pan): the first two max-pools are removed, so for a
32x32 input L1 = conv7 (256 x 32 x 32), L2 = conv10 after a pool (512 x 16 x 16), L3 = conv13 after
a second pool (512 x 8 x 8); the global head is pool -> conv14 + Dropout 0.4 -> pool -> conv15 +
Dropout 0.4 -> pool (1x1) -> Dropout 0.5 -> Linear(512, 512) = g (no ReLU).

Larger inputs (``input_size`` > 32, e.g. the CUB-200 variant at 80x80): conv1-7 run at full
resolution and conv7's output is max-pooled to 32x32 (adaptive max-pool; 80 -> 32 is the official
"2.5x" pool) before it becomes L1, so every later shape, the maps (32, 16, 8) and the parameter count
are the same as for CIFAR -- the official CUB model is initialised from the CIFAR-100 one and ends
in Linear(1280, 200).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionHead, branch
from .common import conv_bn_relu, dropout as drop_layer, scaled

# (out channels, dropout after) for conv1..conv13
_CONVS = [(64, 0.3), (64, 0.0), (128, 0.4), (128, 0.0), (256, 0.4), (256, 0.4), (256, 0.0),
          (512, 0.4), (512, 0.4), (512, 0.0), (512, 0.4), (512, 0.4), (512, 0.0)]
L_SIZE = 32  # spatial size of L1 (then 16, 8)


def _convs(first: int, last: int, cin: int, width: float, use_dropout: bool) -> tuple[list[nn.Module], int]:
    """conv<first>..conv<last> (1-based) as a flat layer list; returns (layers, out channels)."""
    layers: list[nn.Module] = []
    for c, p in _CONVS[first - 1:last]:
        cout = scaled(c, width)
        layers += conv_bn_relu(cin, cout, p, use_dropout)
        cin = cout
    return layers, cin


def _pool() -> nn.Module:
    return nn.MaxPool2d(2, 2, ceil_mode=True)


class _ToL1(nn.Module):
    """Identity at 32x32; adaptive max-pool to 32x32 for larger inputs (CUB geometry)."""

    def forward(self, x):
        if x.shape[-1] == L_SIZE and x.shape[-2] == L_SIZE:
            return x
        return F.adaptive_max_pool2d(x, L_SIZE)


class AttentionBackbone(nn.Module):
    """conv1-7 | pool conv8-10 | pool conv11-13 | global head -> (L1, L2, L3, blocks, g)."""

    def __init__(self, width: float = 1.0, use_dropout: bool = True):
        super().__init__()
        b1, c1 = _convs(1, 7, 3, width, use_dropout)
        b2, c2 = _convs(8, 10, c1, width, use_dropout)
        b3, c3 = _convs(11, 13, c2, width, use_dropout)
        self.block1 = nn.Sequential(*b1, _ToL1())
        self.block2 = nn.Sequential(_pool(), *b2)
        self.block3 = nn.Sequential(_pool(), *b3)
        self.channels = (c1, c2, c3)
        cg = scaled(512, width)
        self.g_channels = cg
        self.head = nn.Sequential(
            _pool(), *conv_bn_relu(c3, cg, 0.4, use_dropout),
            _pool(), *conv_bn_relu(cg, cg, 0.4, use_dropout),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),   # official: a third 2x2 max-pool (2x2 -> 1x1)
            drop_layer(0.5, use_dropout), nn.Linear(cg, cg))


class VGGAttention(nn.Module):
    """vgg-att1/2/3: attention at levels ``levels`` (subset of 1, 2, 3) of the attention backbone."""

    def __init__(self, num_classes: int, levels: tuple[int, ...], *, compat="pc", g_mode="concat",
                 indep_combine="sum_logits", normalize="softmax", project="g_down", dropout=True,
                 width=1.0, input_size=32, branch_grad="sum"):
        super().__init__()
        self.levels = levels
        self.branch_grad = branch_grad
        self.backbone = AttentionBackbone(width, dropout)
        self.attention = AttentionHead(
            [self.backbone.channels[k - 1] for k in levels], self.backbone.g_channels, num_classes,
            compat=compat, normalize=normalize, project=project, g_mode=g_mode,
            indep_combine=indep_combine, branch_grad=branch_grad, classifier_dropout=0.5,
            use_dropout=dropout)

    def _tap(self, x, level):
        # an attended local feature feeds both the next block and its attention level
        return branch(x, 2, self.branch_grad) if level in self.levels else x

    def forward(self, x):
        bb = self.backbone
        l1 = self._tap(bb.block1(x), 1)
        l2 = self._tap(bb.block2(l1), 2)
        l3 = self._tap(bb.block3(l2), 3)
        g = bb.head(l3)
        feats = {1: l1, 2: l2, 3: l3}
        return self.attention([feats[k] for k in self.levels], g)


class VGG(nn.Module):
    """vgg: cifar.torch VGG-16-BN with dropout (all five pools; classifier Dropout -> Linear 512 ->
    BN -> ReLU -> Dropout -> Linear). The last pool is a global max-pool (= the official 2x2 pool at
    32x32, its 3x3 pool at 80x80)."""

    def __init__(self, num_classes: int, *, dropout=True, width=1.0, input_size=32):
        super().__init__()
        use = dropout
        layers: list[nn.Module] = []
        cin = 3
        for i, (c, p) in enumerate(_CONVS, start=1):
            cout = scaled(c, width)
            layers += conv_bn_relu(cin, cout, p, use)
            cin = cout
            if i in (2, 4, 7, 10):
                layers.append(_pool())
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        c5 = scaled(512, width)
        self.classifier = nn.Sequential(
            drop_layer(0.5, use), nn.Linear(cin, c5), nn.BatchNorm1d(c5), nn.ReLU(inplace=True),
            drop_layer(0.5, use), nn.Linear(c5, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x)), []



class VGGGAP(nn.Module):
    """vgg-gap: attention backbone to conv13 (8x8 for 32x32 input) -> global average pool ->
    Linear(512, classes), as in the official VGG-GAP model the CAM comparison loads. Its one "map" is
    the class activation map (Zhou et al. 2016) of the predicted class: w_c . l_i at each position
    of conv13 (raw, unnormalised; logit_c = mean_i CAM_i + b_c)."""

    def __init__(self, num_classes: int, *, dropout=True, width=1.0, input_size=32):
        super().__init__()
        bb = AttentionBackbone(width, dropout)
        self.features = nn.Sequential(bb.block1, bb.block2, bb.block3)   # the global head is not used
        self.fc = nn.Linear(bb.channels[2], num_classes)

    def forward(self, x):
        f = self.features(x)
        logits = self.fc(f.mean(dim=(2, 3)))
        cls = logits.detach().argmax(dim=1)
        cam = torch.einsum("bchw,bc->bhw", f, self.fc.weight[cls].to(f.dtype)).unsqueeze(1)
        return logits, [cam]


class VGGPAN(nn.Module):
    """vgg-pan: progressive attention (Seo et al. 2016) on the attention backbone. After conv10 (L2)
    and conv13 (L3) a gate a = sigmoid(3x3 conv(l) + b) (local-context estimator; there is no query
    in plain classification) multiplies the features, and the gated map is what the next layers
    see. The global head turns gated L3 into a 512-d vector -> BN -> ReLU -> Dropout 0.5 ->
    Linear(512, classes) (the official PAN classifier). Maps: the two sigmoid gates."""

    def __init__(self, num_classes: int, *, dropout=True, width=1.0, input_size=32):
        super().__init__()
        self.backbone = bb = AttentionBackbone(width, dropout)
        self.gates = nn.ModuleList(nn.Conv2d(c, 1, 3, padding=1, bias=True) for c in bb.channels[1:])
        cg = bb.g_channels
        self.classifier = nn.Sequential(nn.BatchNorm1d(cg), nn.ReLU(inplace=True),
                                        drop_layer(0.5, dropout), nn.Linear(cg, num_classes))

    def forward(self, x):
        bb = self.backbone
        l2 = bb.block2(bb.block1(x))
        a2 = torch.sigmoid(self.gates[0](l2))
        l3 = bb.block3(l2 * a2)
        a3 = torch.sigmoid(self.gates[1](l3))
        g = bb.head(l3 * a3)
        return self.classifier(g), [a2, a3]
