"""The "Learn To Pay Attention" module (Jetley et al., ICLR 2018), shared by every backbone.

For one attention level with local features L (B, C, H, W) and global feature g (B, D):

* projection when C != D (``project``): ``g_down`` (official): g -> BN -> ReLU -> Dropout(0.5) ->
  Linear(D, C); ``l_up`` (official "upprojecting" variant, most ports): l -> 1x1 conv C -> D (with
  bias) and g -> BN -> ReLU -> Dropout(0.5). Levels whose widths already match use l and g as is.
* compatibility (``compat``): ``pc``  c_i = <u, l_i + g> (a 1x1 conv to one channel; no bias under
  softmax, where a bias cancels and would get a zero gradient); ``dp``  c_i = <l_i, g>.
* normalisation (``normalize``): ``softmax`` over the H*W positions and g_a = sum_i a_i l_i (the
  paper); ``sigmoid``  a_i = sigmoid(c_i) and g_a = mean_i a_i l_i (SaoYan's port without
  --normalize_attn, PAN style).

The attention map a (B, 1, H, W) is returned for every level.

Classification from the attended vectors (``g_mode``): ``concat`` -> per level BN -> ReLU ->
Dropout -> concatenate -> one Linear (official). ``indep`` -> one BN -> ReLU -> Dropout -> Linear per
level, combined by ``indep_combine``:

* ``sum_logits`` (official 3-level pc code, CAddTable of the Linear outputs): returns the sum;
* ``sum_log_softmax`` (official 2-level dp code, CAddTable of LogSoftMax outputs): returns
  log_softmax(sum_k log_softmax(z_k)), the log of the normalised product of the level
  distributions; cross-entropy on it equals Torch's CrossEntropyCriterion on the raw sum;
* ``mean_prob`` (Keras port): returns log(mean_k softmax(z_k)), already log-probabilities.

In the last two cases the "logits" are log-probabilities: F.cross_entropy on them is the right
loss (log_softmax of log-probabilities is the identity) and argmax is the prediction.

Branch gradients (``branch_grad``): autograd sums the gradients a tensor receives from its
consumers; the official code instead averages them where the backbone branches into attention
heads (e.g. ``(df_lfeat_3 + df_feat_3[1]) / 2`` and ``(df_feat_1[2] + df_feat_2[2] + df_feat_3[2]) / 3``
for g). ``mean`` reproduces that with :func:`branch`, an identity whose backward divides the
gradient by the number of consumers.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import dropout


class _GradScale(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``scale`` in backward."""

    @staticmethod
    def forward(ctx, x, scale):  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad * ctx.scale, None


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x in the forward pass; scale * gradient in the backward pass."""
    return _GradScale.apply(x, scale)


def branch(x: torch.Tensor, consumers: int, mode: str) -> torch.Tensor:
    """Tensor to hand to all ``consumers`` of x: under ``mean`` their gradients are averaged."""
    if mode == "mean" and consumers > 1:
        return grad_scale(x, 1.0 / consumers)
    return x


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off on `device_type`; nothing to switch off where it has no autocast (the
    meta device, on which FLOPs are counted)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


class AttentionLevel(nn.Module):
    """Compatibility, normalisation and weighted sum for one level of local features."""

    def __init__(self, local_channels: int, g_channels: int, compat: str = "pc",
                 normalize: str = "softmax", project: str = "g_down", use_dropout: bool = True):
        super().__init__()
        self.compat, self.normalize = compat, normalize
        self.g_proj: nn.Module = nn.Identity()
        self.l_proj: nn.Module | None = None
        if local_channels != g_channels:
            g_pre = [nn.BatchNorm1d(g_channels), nn.ReLU(inplace=True), dropout(0.5, use_dropout)]
            if project == "g_down":
                self.g_proj = nn.Sequential(*g_pre, nn.Linear(g_channels, local_channels))
                self.out_channels = local_channels
            else:  # l_up
                self.g_proj = nn.Sequential(*g_pre)
                self.l_proj = nn.Conv2d(local_channels, g_channels, 1, bias=True)
                self.out_channels = g_channels
        else:
            self.out_channels = local_channels
        # Under softmax a constant added to every position cancels: no bias (it would get no gradient).
        self.u = (nn.Conv2d(self.out_channels, 1, 1, bias=(normalize == "sigmoid"))
                  if compat == "pc" else None)

    def forward(self, l: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.g_proj(g)
        if self.l_proj is not None:
            l = self.l_proj(l)
        b, c, h, w = l.shape
        flat = l.flatten(2)                                              # B, C, HW
        score = self.scores(l, g)                                        # B, HW, float32
        if self.normalize == "softmax":
            a = torch.softmax(score, dim=1)
            attended = torch.bmm(flat, a.to(flat.dtype).unsqueeze(2)).squeeze(2)            # sum_i a_i l_i
        else:
            a = torch.sigmoid(score)
            attended = torch.bmm(flat, a.to(flat.dtype).unsqueeze(2)).squeeze(2) / (h * w)  # mean_i a_i l_i
        return attended, a.view(b, 1, h, w)

    def scores(self, l: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Compatibility scores c (B, HW) of local features l (B, C, H, W) and g (B, C), in float32
        even under autocast: bf16's spacing at the scores' magnitudes (0.25-1) would reorder the
        softmax weights of near-tied positions. Autocast is switched off around them, since it
        casts a conv's or bmm's float32 inputs back to bf16/fp16."""
        with autocast_off(l.device.type):
            l, g = l.float(), g.float()
            if self.u is not None:
                bias = None if self.u.bias is None else self.u.bias.float()
                return F.conv2d(l + g[:, :, None, None], self.u.weight.float(), bias).flatten(1)
            return torch.bmm(g.unsqueeze(1), l.flatten(2)).squeeze(1)


class LevelClassifier(nn.Module):
    """Class scores from the attended vectors of all levels (``g_mode`` / ``indep_combine``)."""

    def __init__(self, dims: Sequence[int], num_classes: int, g_mode: str = "concat",
                 indep_combine: str = "sum_logits", drop: float = 0.5, use_dropout: bool = True):
        super().__init__()
        self.g_mode, self.combine = g_mode, indep_combine

        def pre(d):
            return [nn.BatchNorm1d(d), nn.ReLU(inplace=True), dropout(drop, use_dropout)]

        if g_mode == "concat":
            self.pre = nn.ModuleList(nn.Sequential(*pre(d)) for d in dims)
            self.fc = nn.Linear(sum(dims), num_classes)
        else:
            self.heads = nn.ModuleList(nn.Sequential(*pre(d), nn.Linear(d, num_classes)) for d in dims)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.g_mode == "concat":
            return self.fc(torch.cat([p(f) for p, f in zip(self.pre, feats)], dim=1))
        z = [h(f) for h, f in zip(self.heads, feats)]
        if len(z) == 1 or self.combine == "sum_logits":
            return z[0] if len(z) == 1 else torch.stack(z).sum(0)
        logp = torch.stack([F.log_softmax(zk.float(), dim=1) for zk in z])  # K, B, classes
        if self.combine == "sum_log_softmax":
            return F.log_softmax(logp.sum(0), dim=1)
        # log K as a Python float: a tensor made from it would be a host->device copy (a sync) every step
        return torch.logsumexp(logp, dim=0) - math.log(len(z))


class AttentionHead(nn.Module):
    """All attention levels plus the classifier: (local features, g) -> (logits, maps)."""

    def __init__(self, local_channels: Sequence[int], g_channels: int, num_classes: int, *,
                 compat: str = "pc", normalize: str = "softmax", project: str = "g_down",
                 g_mode: str = "concat", indep_combine: str = "sum_logits",
                 branch_grad: str = "sum", classifier_dropout: float = 0.5, use_dropout: bool = True):
        super().__init__()
        self.branch_grad = branch_grad
        self.levels = nn.ModuleList(
            AttentionLevel(c, g_channels, compat, normalize, project, use_dropout) for c in local_channels)
        self.classifier = LevelClassifier([lv.out_channels for lv in self.levels], num_classes, g_mode,
                                          indep_combine, classifier_dropout, use_dropout)

    def forward(self, locals_: Sequence[torch.Tensor], g: torch.Tensor):
        g = branch(g, len(self.levels), self.branch_grad)   # official: g's gradient / number of levels
        attended, maps = [], []
        for level, l in zip(self.levels, locals_):
            v, a = level(l, g)
            attended.append(v)
            maps.append(a)
        return self.classifier(attended), maps
