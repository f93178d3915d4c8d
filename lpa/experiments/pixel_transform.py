"""A fitted preprocessing transform as torch ops on pixel values, so gradients reach the pixels.

lpa.data.transforms applies the fitted transform with numpy when the data stages write the
processed arrays. The robustness stage needs the same map inside autograd: FGSM perturbs pixels
(0..255) and takes the loss gradient through the preprocessing to them. Every step is
differentiable: GCN (per-image centring and L2 scaling), ZCA ((x - mean) W, linear), per-channel
standardisation and x / 255 (affine). `PixelTransform(t)(x)` equals `t.apply(x)` up to float32
rounding (tests/experiments/test_robustness.py).
"""
from __future__ import annotations

import torch
from torch import nn

from lpa.data.transforms import GCN_MIN_DIVISOR, Transform


class PixelTransform(nn.Module):
    """float pixels N x C x H x W in 0..255 -> the model's input, differentiably."""

    def __init__(self, transform: Transform):
        super().__init__()
        self.method = transform.method
        self.image_shape = tuple(transform.image_shape)
        self.gcn = transform.gcn
        self.gcn_scale = float(transform.gcn_scale)
        for key in ("mean", "std", "matrix"):
            value = getattr(transform, key)
            # buffers: they follow .to(device) and are never trained
            self.register_buffer(key, None if value is None else torch.as_tensor(value, dtype=torch.float32))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if tuple(pixels.shape[1:]) != self.image_shape:
            raise ValueError(f"the transform was fitted on N x {' x '.join(map(str, self.image_shape))} images, "
                             f"got {' x '.join(map(str, pixels.shape))}")
        n = pixels.shape[0]
        x = pixels.float().reshape(n, -1)
        if self.gcn:
            x = x - x.mean(dim=1, keepdim=True)
            norms = x.square().sum(dim=1, keepdim=True).sqrt() / self.gcn_scale
            # as global_contrast_normalize: a flat image is left unscaled
            x = x / torch.where(norms < GCN_MIN_DIVISOR, torch.ones_like(norms), norms)
        if self.method == "zca":
            x = (x - self.mean) @ self.matrix
        elif self.method == "standardize":
            x = x.reshape(n, self.image_shape[0], -1)
            x = (x - self.mean[None, :, None]) / self.std[None, :, None]
        elif self.method == "scale":
            x = x * (1.0 / 255.0)
        return x.reshape(n, *self.image_shape)
