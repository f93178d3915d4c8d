"""Dropout masks from a counter-based hash: on the CPU, at about the cost of an elementwise op.

PyTorch's CPU dropout draws each mask element from a sequential generator (`bernoulli_`):
measured ~17 ns per element here, as much as the narrow networks' convolutions. Here element i
of a dropout layer's input at training step s is kept iff 16 bits of
`mix(mix(i ^ k1) ^ k2)` are >= round(p * 65536), with (k1, k2) derived from (seed, step, layer)
and `mix` Wellons' lowbias32 integer hash, a bijection of 32-bit words; kept elements are scaled by
65536 / (65536 - round(p * 65536)), so the expectation is the input's. Semantics as nn.Dropout:
independent Bernoulli per element (p quantised to 1/65536), a new mask each step and layer,
identity in eval mode. The mask is a pure function of (seed, step, layer, element), so a resumed
run needs no generator state, and the backward pass recomputes it instead of storing it.

The op is one torch.compile'd kernel (inductor fuses the hash into one vectorised loop, ~0.6 ns
per bf16 element); where compiling fails (no C++ compiler) the same integer ops run eagerly,
bit-identical and slower. The CUDA path keeps PyTorch's dropout (lpa.train.engine decides).
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass

import torch
from torch import nn

from lpa.train.module_swap import replace_modules

LOWBIAS_M1, LOWBIAS_M2 = 0x7FEB352D, 0x846CA68B  # C. Wellons, "Prospecting for hash functions" (2018)
MASK32 = 0xFFFFFFFF
RESOLUTION = 65536  # p is quantised to 1/65536


def int32_word(v: int) -> int:
    """The 32-bit word v mod 2^32 as the signed int32 holding the same bits."""
    v &= MASK32
    return v - (1 << 32) if v >= 1 << 31 else v


def _mix(h: torch.Tensor) -> torch.Tensor:
    """lowbias32 on int32 tensors: products wrap mod 2^32 as the unsigned hash's do, and the right
    shifts are made logical by masking off the copied sign bits. int32, not int64 holding 32-bit
    words: the compiled loop does twice the lanes per vector (measured 0.62 vs 1.24 ns per element)."""
    h = h ^ ((h >> 16) & 0xFFFF)
    h = h * int32_word(LOWBIAS_M1)
    h = h ^ ((h >> 15) & 0x1FFFF)
    h = h * int32_word(LOWBIAS_M2)
    return h ^ ((h >> 16) & 0xFFFF)


def masked_scale(x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, base: torch.Tensor,
                 threshold: int, scale: float) -> torch.Tensor:
    """x * keep * scale with keep[i] = 16 bits of the hash of element (base + i) mod 2^32 >= threshold.
    k1, k2, base: int32 scalar tensors (int32_word of the 32-bit values); x.numel() < 2^31."""
    idx = torch.arange(x.numel(), device=x.device, dtype=torch.int32).view(x.shape) + base
    h = _mix(_mix(idx ^ k1) ^ k2)
    keep = (h & (RESOLUTION - 1)) >= threshold
    return torch.where(keep, x * scale, torch.zeros((), dtype=x.dtype, device=x.device))


_compiled = None


def _kernel():
    """masked_scale compiled once (dynamic shapes: every layer's), or the eager one if that fails."""
    global _compiled
    if _compiled is None:
        try:
            fn = torch.compile(masked_scale, dynamic=True)
            # a check that can fail: odd size (the scalar tail runs), nonzero keys, a real threshold
            probe = torch.arange(1.0, 106.0).view(5, 7, 3)
            keys = [torch.tensor(int32_word(v), dtype=torch.int32) for v in (0x9ABCDEF0, 987654321, 2**32 - 40)]
            if not torch.equal(fn(probe, *keys, 19661, 1.5), masked_scale(probe, *keys, 19661, 1.5)):
                raise RuntimeError("compiled dropout kernel disagrees with the eager one")
            _compiled = fn
        except Exception as err:  # noqa: BLE001 (any compiler failure: fall back, say so once)
            print(f"warning: dropout kernel not compiled ({type(err).__name__}); using the eager "
                  "integer ops (same masks, slower)", file=sys.stderr)
            _compiled = masked_scale
    return _compiled


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


@dataclass
class DropoutClock:
    """What the masks depend on besides the element: the run's seed, the global step (the engine
    sets it before each step) and, under several processes, the first image of this process's
    part of the global batch (so every image gets the mask it would get in one process)."""
    seed: int
    step: int = 0
    first_image: int = 0

    def keys(self, layer: int) -> tuple[int, int]:
        k = splitmix64(splitmix64(splitmix64(self.seed) ^ self.step) ^ layer)
        return k & MASK32, k >> 32


class _CounterDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k1, k2, base, threshold, scale):
        ctx.keys, ctx.threshold, ctx.scale = (k1, k2, base), threshold, scale
        return _kernel()(x, k1, k2, base, threshold, scale)

    @staticmethod
    def backward(ctx, grad):
        # d(x * keep * scale)/dx = keep * scale: the same op on the gradient, mask recomputed
        return _kernel()(grad.contiguous(), *ctx.keys, ctx.threshold, ctx.scale), None, None, None, None, None


def key_tensors(values: tuple[int, ...], device: torch.device) -> list[torch.Tensor]:
    """`values` (32-bit words) as int32 scalar tensors on `device`: tensors, not ints, so the compiled
    kernel is not re-traced every step. On a GPU they travel as one copy from pinned memory that does
    not wait for the GPU (torch.tensor(v, device=cuda) would be a synchronising copy per key)."""
    if device.type != "cuda":
        return [torch.tensor(int32_word(v), dtype=torch.int32, device=device) for v in values]
    host = torch.tensor([int32_word(v) for v in values], dtype=torch.int32).pin_memory()
    return list(host.to(device, non_blocking=True).unbind())


class CounterDropout(nn.Module):
    """nn.Dropout(p) with counter-based masks (see the module's docstring)."""

    def __init__(self, p: float, layer: int, clock: DropoutClock):
        super().__init__()
        self.p, self.layer, self.clock = p, layer, clock
        self.threshold = int(round(p * RESOLUTION))
        self.scale = RESOLUTION / (RESOLUTION - self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        k1, k2 = self.clock.keys(self.layer)
        per_image = x.numel() // x.shape[0]
        # counters follow memory order (image-major either way): a channels_last input is worked on
        # as its NHWC view, never copied to NCHW
        nhwc = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        flat = x.permute(0, 2, 3, 1) if nhwc else x.contiguous()
        if x.numel() >= 1 << 31:
            raise ValueError(f"counter dropout: {x.numel()} elements in one tensor (the counters are 32-bit)")
        keys = key_tensors((k1, k2, self.clock.first_image * per_image), x.device)
        y = _CounterDropout.apply(flat, *keys, self.threshold, self.scale)
        return y.permute(0, 3, 1, 2) if nhwc else y

    def extra_repr(self) -> str:
        return f"p={self.p}, layer={self.layer}"


def use_counter_dropout(model: nn.Module, clock: DropoutClock) -> int:
    """Replace every nn.Dropout of `model` (in module order, which numbers the layers) by a
    CounterDropout on `clock`; returns how many. No parameters change: state_dicts are unaffected."""
    layers = itertools.count()
    return replace_modules(model, lambda child: CounterDropout(child.p, next(layers), clock)
                           if type(child) is nn.Dropout else None)
