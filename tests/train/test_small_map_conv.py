"""Small-map 3x3 convolutions (lpa.train.small_map_conv): the im2col GEMM weight gradient is the
convolution's, the swap changes no parameter, and the engine uses it where it is measured faster."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lpa.train.engine import DeviceData, small_map_convs, train
from lpa.errors import ConfigError
from lpa.train.small_map_conv import SmallMapConv2d, use_small_map_convs, weight_grad_im2col

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CONV = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", [(5, 3, 4, 4), (2, 6, 2, 3), (3, 4, 1, 1), (2, 3, 7, 5)])
def test_im2col_weight_grad_is_the_convolutions(shape, layout):
    b, ci, h, w = shape
    co = 7
    x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=layout)
    weight = torch.randn(co, ci, 3, 3, dtype=torch.float64)
    grad = torch.randn(b, co, h, w, dtype=torch.float64).contiguous(memory_format=layout)
    expected = torch.ops.aten.convolution_backward(grad, x, weight, None, *CONV, [False, True, False])[1]
    got = weight_grad_im2col(grad, x)
    assert got.shape == (co, ci, 3, 3)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def conv_pair(cin=64, cout=8, bias=True):
    torch.manual_seed(0)
    plain = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    model = nn.Sequential(plain)
    assert use_small_map_convs(model) == 1
    return plain, model[0]


@pytest.mark.parametrize("size", [2, 4])
def test_swapped_conv_matches_nn_conv2d_in_fp32(size):
    plain, small = conv_pair()
    assert small.weight is plain.weight and small.bias is plain.bias
    x = torch.randn(6, 64, size, size, requires_grad=True)
    y = small(x)
    assert type(y.grad_fn).__name__ == "_SmallMapConvBackward"
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, small.weight, small.bias), g)
    y0 = nn.functional.conv2d(x, plain.weight, plain.bias, padding=1)
    expected = torch.autograd.grad(y0, (x, plain.weight, plain.bias), g)
    torch.testing.assert_close(y, y0)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_large_maps_take_the_library_path():
    _, small = conv_pair()
    y = small(torch.randn(2, 64, 8, 8, requires_grad=True))  # 64 positions > 16
    assert type(y.grad_fn).__name__ != "_SmallMapConvBackward"


def test_bf16_autocast_casts_like_autocast_and_grads_reach_the_fp32_weight():
    plain, small = conv_pair(cin=64, cout=16, bias=False)
    x = torch.randn(8, 64, 4, 4).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = small(x)
        y0 = nn.functional.conv2d(x, plain.weight, None, padding=1)
    assert y.dtype == y0.dtype == torch.bfloat16
    torch.testing.assert_close(y, y0)
    (w_grad,) = torch.autograd.grad(y.float().square().sum(), small.weight)
    (w_grad0,) = torch.autograd.grad(y0.float().square().sum(), plain.weight)
    assert w_grad.dtype == torch.float32
    torch.testing.assert_close(w_grad, w_grad0, rtol=2e-2, atol=2e-2 * w_grad0.abs().max().item())


def test_without_autocast_nothing_is_cast():
    plain, small = conv_pair()
    with pytest.raises(RuntimeError):  # bf16 input, fp32 weight: an error, as in nn.Conv2d
        small(torch.randn(2, 64, 4, 4, dtype=torch.bfloat16))
    with pytest.raises(RuntimeError):
        plain(torch.randn(2, 64, 4, 4, dtype=torch.bfloat16))


def test_only_qualifying_convs_are_swapped_and_the_state_dict_is_unchanged():
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1),  # too few channels
                          nn.Conv2d(64, 64, 1), nn.Conv2d(64, 64, 3, padding=1, stride=2),
                          nn.Sequential(nn.Conv2d(128, 8, 3, padding=1, bias=False)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    assert use_small_map_convs(model) == 2
    assert [type(m) is SmallMapConv2d for m in (model[0], model[1], model[2], model[3], model[4][0])] == \
        [True, False, False, False, True]
    assert list(model.parameters()) == params  # the same Parameter objects, in the same order
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_engine_uses_them_on_the_cpu_under_bf16_only():
    cpu = torch.device("cpu")
    def fresh():
        return nn.Sequential(nn.Conv2d(64, 64, 3, padding=1))
    assert small_map_convs(fresh(), "auto", cpu, torch.bfloat16) == 1
    assert small_map_convs(fresh(), "auto", cpu, None) == 0                       # fp32: not faster
    assert small_map_convs(fresh(), "auto", torch.device("cuda"), torch.bfloat16) == 0  # (never moved to CUDA)
    assert small_map_convs(fresh(), "library", cpu, torch.bfloat16) == 0
    assert small_map_convs(fresh(), "gemm", cpu, None) == 1
    assert small_map_convs(fresh(), "auto", cpu, torch.bfloat16, compiled=True) == 0
    with pytest.raises(ConfigError, match="cannot be combined with train.compile"):
        small_map_convs(fresh(), "gemm", cpu, torch.bfloat16, compiled=True)


def test_training_with_the_gemm_weight_grad_matches_the_library_in_fp32(tiny_config):
    # width 0.125: conv14 (4x4) and conv15 (2x2) of vgg-att2 have 64 channels, so they are swapped
    torch.manual_seed(0)
    data = DeviceData(torch.randn(64, 3, 32, 32), torch.arange(64) % 10)
    library = train(tiny_config(epochs=2, small_map_weight_grad="library"), data, 10, progress=False)
    gemm = train(tiny_config(epochs=2, small_map_weight_grad="gemm"), data, 10, progress=False)
    assert any(isinstance(m, SmallMapConv2d) for m in gemm.model.modules())
    for a, b in zip(library.history, gemm.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
