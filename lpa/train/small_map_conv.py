"""3x3 convolutions on small maps whose weight gradient is one im2col GEMM (bf16, on the CPU).

The narrow networks' profile after the dropout masks (lpa.train.dropout) is led by
`convolution_backward`, and in it by oneDNN's bf16 weight gradient on the small maps of the deep
layers: measured here (batch 128, channels_last, bf16, ms, oneDNN vs this module's GEMM):

    channels x map     128 x 8x8   128 x 4x4   128 x 2x2   256 x 4x4   256 x 2x2   512 x 4x4   512 x 2x2
    oneDNN             16.0        8.6         4.9         45.2        27.4        135         81
    im2col + GEMM      15.5        4.0         1.1         12.1        3.3         29.6        7.0

(64 channels: 2.7 -> 1.5 at 4x4, 1.7 -> 0.8 at 2x2; at 32 channels and at 16x16 and larger maps
oneDNN wins, at 16x16 by 3x; in fp32 neither wins clearly.) So: maps of at most SMALL_MAP
positions with at least MIN_CHANNELS input channels. The weight gradient of a stride-1, pad-1 3x3
convolution is grad_out^T (positions x out) @ im2col(x) (positions x 9 in); channels_last tensors
give both operands without a transpose, and the (out, kh, kw, in) result is the weight's
channels_last layout. The input gradient and the forward stay PyTorch's. Results differ from
oneDNN's only by bf16 rounding of the summed products (measured max relative difference 3e-3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lpa.train.module_swap import replace_modules

SMALL_MAP = 16      # positions (4x4 and smaller)
MIN_CHANNELS = 64   # input channels
_CONV = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)  # stride, padding, dilation, transposed, output_padding, groups


def weight_grad_im2col(grad_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d loss / d weight of a 3x3, stride-1, pad-1 convolution of `x` (B, Ci, H, W), given `grad_out`
    (B, Co, H, W): one GEMM over the B*H*W positions; returns (Co, Ci, 3, 3) in channels_last layout."""
    b, ci, h, w = x.shape
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # B, H+2, W+2, Ci
    columns = torch.stack([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], dim=3)
    rows = grad_out.permute(0, 2, 3, 1).reshape(b * h * w, grad_out.shape[1])
    return (rows.t() @ columns.reshape(b * h * w, 9 * ci)).view(-1, 3, 3, ci).permute(0, 3, 1, 2)


class _SmallMapConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.ops.aten.convolution(x, weight, bias, *_CONV)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.ops.aten.convolution_backward(grad, x, weight, None, *_CONV, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_weight = weight_grad_im2col(grad, x)
        if ctx.needs_input_grad[2]:  # (False when there is no bias)
            grad_bias = grad.sum(dim=(0, 2, 3))
        return grad_input, grad_weight, grad_bias


class SmallMapConv2d(nn.Conv2d):
    """nn.Conv2d whose weight gradient on small maps is weight_grad_im2col (same parameters, same
    state_dict, same forward); larger maps and few channels take nn.Conv2d's own path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-1] * x.shape[-2] > SMALL_MAP:
            return super().forward(x)
        device = x.device.type
        if not torch.is_autocast_enabled(device) or x.dtype == torch.float64:
            return _SmallMapConv.apply(x, self.weight, self.bias)  # no casts: mismatched dtypes fail as in conv2d
        dtype = torch.get_autocast_dtype(device)
        bias = None if self.bias is None else self.bias.to(dtype)
        # autocast's own casts for conv2d, done here: inside, the Function's ops run on the cast tensors
        with torch.autocast(device, enabled=False):
            return _SmallMapConv.apply(x.to(dtype), self.weight.to(dtype), bias)


def qualifies(conv: nn.Module) -> bool:
    """A 3x3, stride-1, pad-1, ungrouped, undilated, zero-padded nn.Conv2d with enough input channels."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and conv.in_channels >= MIN_CHANNELS)


def use_small_map_convs(model: nn.Module) -> int:
    """Replace each qualifying nn.Conv2d of `model` by a SmallMapConv2d holding the same Parameter
    objects (so an optimizer, a state_dict and a checkpoint see no difference); returns how many.
    Whether a map is small is decided per call, from the input's size."""
    return replace_modules(model, lambda child: _small_map_twin(child) if qualifies(child) else None)


def _small_map_twin(conv: nn.Conv2d) -> SmallMapConv2d:
    twin = SmallMapConv2d(conv.in_channels, conv.out_channels, 3, padding=1, bias=conv.bias is not None,
                          device="meta")
    twin.weight = conv.weight
    if conv.bias is not None:
        twin.bias = conv.bias
    return twin.train(conv.training)
