"""Counter-based dropout masks (lpa.train.dropout): nn.Dropout's semantics, reproducible from the seed.

Statistical tolerances come from the binomial variance: over n independent elements the kept
fraction has standard deviation sqrt(q (1 - q) / n); every check allows 5 of them (a false
alarm about once in 3.5 million runs per check)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lpa.train.dropout import (LOWBIAS_M1, LOWBIAS_M2, RESOLUTION, CounterDropout, DropoutClock, int32_word, masked_scale,
                         use_counter_dropout)
from lpa.train.engine import DeviceData, counter_dropout, train
from lpa.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def masks(p: float, shape, step: int = 0, layer: int = 0, seed: int = 0, first_image: int = 0) -> torch.Tensor:
    clock = DropoutClock(seed, step, first_image)
    return CounterDropout(p, layer, clock).train()(torch.ones(shape)) != 0


def within(observed: float, expected: float, n: int, q: float) -> bool:
    return abs(observed - expected) <= 5 * math.sqrt(q * (1 - q) / n)


@pytest.mark.parametrize("p", [0.3, 0.4, 0.5])
def test_keep_rate_and_scale(p):
    n = 64 * 32 * 16 * 16
    x = torch.randn(64, 32, 16, 16)
    layer = CounterDropout(p, 0, DropoutClock(seed=3, step=7)).train()
    y = layer(x)
    keep = y != 0
    q = 1 - p
    assert within(keep.float().mean().item(), q, n, q)
    torch.testing.assert_close(y[keep], (x * RESOLUTION / (RESOLUTION - round(p * RESOLUTION)))[keep])
    assert torch.equal(layer.eval()(x), x)  # eval: identity


def test_neighbours_steps_and_layers_are_independent():
    """P(both kept) = q^2 for neighbouring elements (along the memory order and across channels),
    for the same element at consecutive steps, in two layers, and in two images."""
    q, shape = 0.5, (64, 32, 16, 16)
    a = masks(0.5, shape, step=10).float()
    pairs = {
        "next element": (a[..., :-1], a[..., 1:]),
        "next channel": (a[:, :-1], a[:, 1:]),
        "next image": (a[:-1], a[1:]),
        "next step": (a, masks(0.5, shape, step=11).float()),
        "other layer": (a, masks(0.5, shape, step=10, layer=1).float()),
        "other seed": (a, masks(0.5, shape, step=10, seed=1).float()),
    }
    for what, (u, v) in pairs.items():
        n = u.numel()
        assert within((u * v).mean().item(), q * q, n, q * q), what
        # and the agreement rate of two independent fair masks is 1/2
        assert within((u == v).float().mean().item(), 0.5, n, 0.5), what


def test_same_keys_same_mask_and_the_backward_uses_it():
    x = torch.randn(8, 4, 5, 5, requires_grad=True)
    layer = CounterDropout(0.4, 2, DropoutClock(seed=1, step=5)).train()
    y = layer(x)
    y.backward(torch.ones_like(y))
    assert torch.equal(layer(x), y)  # a pure function of (seed, step, layer, element)
    torch.testing.assert_close(x.grad, (y != 0).float() * layer.scale)


def test_channels_last_keeps_its_layout_and_images_get_global_counters():
    x = torch.randn(6, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    y = CounterDropout(0.5, 0, DropoutClock(0, 1)).train()(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    # images 3..5 of a batch, given first_image=3, get the masks they get in the whole batch
    whole = masks(0.5, (6, 3, 4, 4), step=1)
    part = masks(0.5, (3, 3, 4, 4), step=1, first_image=3)
    assert torch.equal(whole[3:], part)


def lowbias32(h: np.ndarray) -> np.ndarray:
    """The hash's definition on unsigned 32-bit words (numpy uint32 arithmetic wraps mod 2^32)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(LOWBIAS_M1)
    h = h ^ (h >> np.uint32(15))
    h = h * np.uint32(LOWBIAS_M2)
    return h ^ (h >> np.uint32(16))


@pytest.mark.parametrize("base", [11, 2**32 - 40])  # the second wraps around 2^32 inside the tensor
def test_compiled_and_eager_kernels_compute_the_unsigned_hash(base):
    x = torch.randn(5, 7, 3)  # 105 elements: not a multiple of the vector width (the scalar tail runs)
    k1, k2 = 0x9ABCDEF0, 987654321
    keys = [torch.tensor(int32_word(v), dtype=torch.int32) for v in (k1, k2, base)]
    eager = masked_scale(x, *keys, 19661, 1.5)
    compiled = torch.compile(masked_scale, dynamic=True)
    assert torch.equal(compiled(x, *keys, 19661, 1.5), eager)
    with np.errstate(over="ignore"):
        idx = ((np.arange(x.numel(), dtype=np.uint64) + base) & 0xFFFFFFFF).astype(np.uint32)
        h = lowbias32(lowbias32(idx ^ np.uint32(k1)) ^ np.uint32(k2))
    keep = torch.from_numpy((h & 0xFFFF) >= 19661).view(x.shape)
    assert torch.equal(eager, torch.where(keep, x * 1.5, torch.zeros(())))


def test_models_get_counter_dropout_on_the_cpu_only():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.3)))
    keys = model.state_dict().keys()
    assert counter_dropout(model, "auto", torch.device("cuda"), 0) is None  # (never moved to CUDA here)
    assert counter_dropout(model, "torch", torch.device("cpu"), 0) is None
    clock = counter_dropout(model, "auto", torch.device("cpu"), 0)
    assert clock is not None and [m.layer for m in model.modules() if isinstance(m, CounterDropout)] == [0, 1]
    assert model.state_dict().keys() == keys
    assert use_counter_dropout(nn.Sequential(nn.Linear(2, 2)), clock) == 0
    # under torch.compile, auto keeps PyTorch's masks and counter is refused with one message
    plain = nn.Sequential(nn.Dropout(0.5))
    assert counter_dropout(plain, "auto", torch.device("cpu"), 0, compiled=True) is None
    with pytest.raises(ConfigError, match="cannot be combined with train.compile"):
        counter_dropout(plain, "counter", torch.device("cpu"), 0, compiled=True)


def test_training_with_counter_masks_is_seeded_and_resumes_bit_exactly(tiny_config, tmp_path):
    config = tiny_config(epochs=3, dropout_masks="counter")
    config["model"]["dropout"] = True
    torch.manual_seed(0)
    data = DeviceData(torch.randn(64, 3, 32, 32), torch.arange(64) % 10)
    whole = train(config, data, 10, progress=False)
    again = train(config, data, 10, progress=False)
    assert [r["train_loss"] for r in whole.history] == [r["train_loss"] for r in again.history]
    # a run that crashes in its second epoch resumes from the checkpoint after the first and ends
    # where the uninterrupted one does: the masks depend on (seed, step, layer) only

    def crash_in_epoch_2(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, data, 10, checkpoint_dir=tmp_path, progress=False, on_epoch=crash_in_epoch_2)
    assert (tmp_path / "last.pt").exists()
    resumed = train(config, data, 10, checkpoint_dir=tmp_path, progress=False)
    assert resumed.resumed_from_epoch >= 1
    # bit-exact on purpose: the same computation in the same process (same BLAS, threads, batches)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
