"""Batched data augmentation on the device (no per-image Python).

Every image in a batch draws its own flip and crop offset from one `torch.Generator`, so a run is
reproducible from its seed and the work is a few tensor ops per batch, wherever the data lives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` and take a random HxW crop per image (torchvision's RandomCrop(pad))."""
    if padding == 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=gen)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=gen)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # n,1,h,1
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # n,1,1,w
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def augment_batch(x: torch.Tensor, gen: torch.Generator, flip: bool, crop_padding: int) -> torch.Tensor:
    if crop_padding:
        x = random_crop(x, crop_padding, gen)
    if flip:
        x = random_flip(x, gen)
    return x
