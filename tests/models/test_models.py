"""lpa.models: every name builds, runs forward and backward, and keeps its documented shapes.

Narrow networks (width 0.125-0.25) and batch 2 keep this under a minute or two on 2 CPU cores;
parameter and FLOP anchors are measured on the meta device (no compute).
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lpa.models import (MODEL_NAMES, OPTION_DEFAULTS, accepted_options, build_model, count_flops,
                        count_params, probe)
from lpa.models.attention import AttentionLevel, LevelClassifier, branch, grad_scale

EXPECTED_NAMES = ("vgg", "vgg-gap", "vgg-pan", "vgg-att1", "vgg-att2", "vgg-att3", "resnet164",
                  "resnet164-att1", "resnet164-att2", "resnet164-att3", "ran56", "ran92")

# map sizes for a 32x32 input, default options
MAP_SIZES = {
    "vgg": [], "vgg-gap": [(8, 8)], "vgg-pan": [(16, 16), (8, 8)],
    "vgg-att1": [(8, 8)], "vgg-att2": [(16, 16), (8, 8)], "vgg-att3": [(32, 32), (16, 16), (8, 8)],
    "resnet164": [], "resnet164-att1": [(8, 8)], "resnet164-att2": [(16, 16), (8, 8)],
    "resnet164-att3": [(32, 32), (16, 16), (8, 8)],
    "ran56": [(32, 32), (16, 16), (8, 8)],
    "ran92": [(32, 32), (32, 32), (16, 16), (16, 16), (8, 8), (8, 8)],
}
SOFTMAX_MODELS = {n for n in EXPECTED_NAMES if "-att" in n}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The networks here are tiny: one thread beats two, especially on a shared 2-core machine
    # where oversubscribed OpenMP threads spin. Restored for the other test modules.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def meta(name, num_classes=10, **options):
    with torch.device("meta"):
        return build_model(name, num_classes, **options)


def run_step(model, num_classes=10, size=32, seed=0):
    """Forward + backward on a (2, 3, size, size) batch in train mode; returns (logits, maps)."""
    torch.manual_seed(seed)
    model.train()
    x = torch.randn(2, 3, size, size)
    logits, maps = model(x)
    loss = F.cross_entropy(logits, torch.tensor([0, num_classes - 1]))
    loss.backward()
    return logits, maps


def assert_all_params_get_grad(model):
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all()
                                       or p.grad.abs().sum() == 0)]
    assert not missing, f"parameters without a (finite, nonzero) gradient: {missing}"


def assert_maps(maps, sizes, normalize=None):
    assert [tuple(m.shape) for m in maps] == [(2, 1, h, w) for h, w in sizes]
    for m in maps:
        assert torch.isfinite(m).all()
        if normalize == "softmax":
            torch.testing.assert_close(m.sum(dim=(1, 2, 3)), torch.ones(2), atol=1e-5, rtol=0)
            assert (m >= 0).all()
        elif normalize == "sigmoid":
            assert ((m >= 0) & (m <= 1)).all()


# ----------------------------------------------------------------------------- registry

def test_names_and_accepted_options():
    assert MODEL_NAMES == EXPECTED_NAMES
    for name in MODEL_NAMES:
        opts = accepted_options(name)
        assert isinstance(opts, set) and {"width", "input_size"} <= opts
        assert opts <= set(OPTION_DEFAULTS)
    assert {"compat", "g_mode", "indep_combine", "normalize", "project", "branch_grad",
            "dropout"} <= accepted_options("vgg-att2")
    assert "g_head" in accepted_options("resnet164-att2")
    assert {"attention_learning", "module_layout"} <= accepted_options("ran56")
    assert "compat" not in accepted_options("vgg") and "dropout" not in accepted_options("ran92")


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError) as err:
        build_model("vgg-att4", 10)
    assert all(n in str(err.value) for n in MODEL_NAMES)
    with pytest.raises(ValueError):
        accepted_options("resnet50")


def test_unaccepted_option_lists_accepted_ones():
    with pytest.raises(ValueError) as err:
        build_model("vgg", 10, compat="pc")
    msg = str(err.value)
    assert "compat" in msg and all(o in msg for o in accepted_options("vgg"))
    with pytest.raises(ValueError, match="attention_learning"):
        build_model("ran56", 10, compat="dp")


@pytest.mark.parametrize("option,value,allowed", [
    ("compat", "cosine", ["pc", "dp"]),
    ("g_mode", "stack", ["concat", "indep"]),
    ("indep_combine", "max", ["sum_log_softmax", "sum_logits", "mean_prob"]),
    ("normalize", "tanh", ["softmax", "sigmoid"]),
    ("project", "none", ["g_down", "l_up"]),
    ("branch_grad", "max", ["sum", "mean"]),
    ("bn_init", "zero", ["one", "uniform"]),
    ("dropout", "yes", ["true", "false"]),
    ("width", 0, []), ("width", True, []), ("width", "half", []),
    ("input_size", 16, ["32"]), ("input_size", 32.0, []),
])
def test_bad_values_list_allowed_ones(option, value, allowed):
    with pytest.raises(ValueError) as err:
        meta("vgg-att3", **{option: value})
    assert option in str(err.value) and all(a in str(err.value) for a in allowed)


def test_bad_values_other_families():
    with pytest.raises(ValueError, match="arl, nal"):
        meta("ran92", attention_learning="none")
    with pytest.raises(ValueError, match="increasing, uniform"):
        meta("ran92", module_layout="random")
    with pytest.raises(ValueError, match="conv, gap"):
        meta("resnet164-att2", g_head="fc")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_classes"):
            meta("vgg", bad)


def test_every_model_builds_on_meta_with_config_style_options():
    # lpa.config validates runs by building on the meta device with input_size and the options
    for name in MODEL_NAMES:
        m = meta(name, 100, **{k: OPTION_DEFAULTS[k] for k in accepted_options(name)})
        assert m.lpa_name == name and set(m.lpa_options) == accepted_options(name)


# ----------------------------------------------------------------------------- forward/backward

@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_forward_backward_every_name(name):
    width = 0.125 if name.startswith("vgg") else 0.25
    model = build_model(name, 10, width=width)
    logits, maps = run_step(model)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert_all_params_get_grad(model)
    assert_maps(maps, MAP_SIZES[name], "softmax" if name in SOFTMAX_MODELS else None)


HEADS = [("concat", "sum_logits"), ("indep", "sum_log_softmax"), ("indep", "sum_logits"),
         ("indep", "mean_prob")]
VGG_GRID = ([("vgg-att3", c, n, p, h) for c, n, p, h in
             itertools.product(("pc", "dp"), ("softmax", "sigmoid"), ("g_down", "l_up"), HEADS)]
            + [("vgg-att2", c, n, "g_down", h) for c, n, h in
               itertools.product(("pc", "dp"), ("softmax", "sigmoid"), HEADS)])


@pytest.mark.parametrize("name,compat,normalize,project,head", VGG_GRID,
                         ids=lambda v: v if isinstance(v, str) else "-".join(v))
def test_ltpa_option_grid(name, compat, normalize, project, head):
    g_mode, combine = head
    model = build_model(name, 7, width=0.125, compat=compat, normalize=normalize, project=project,
                        g_mode=g_mode, indep_combine=combine)
    logits, maps = run_step(model, num_classes=7)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    assert_all_params_get_grad(model)
    assert_maps(maps, MAP_SIZES[name], normalize)
    if g_mode == "indep" and combine != "sum_logits":     # documented: log-probabilities
        torch.testing.assert_close(logits.exp().sum(1), torch.ones(2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("options", [
    dict(compat="dp", normalize="sigmoid", project="l_up", g_mode="indep", indep_combine="mean_prob"),
    dict(compat="pc", normalize="softmax", project="l_up", g_head="gap"),
    dict(compat="dp", normalize="softmax", g_mode="indep", indep_combine="sum_log_softmax",
         branch_grad="mean", dropout=False),
], ids=["dp-sigmoid-lup-indep", "pc-lup-gap", "dp-indep-mean-nodrop"])
def test_resnet_attention_options(options):
    model = build_model("resnet164-att3", 10, width=0.25, **options)
    logits, maps = run_step(model)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert_all_params_get_grad(model)
    assert_maps(maps, MAP_SIZES["resnet164-att3"], options["normalize"])


def test_ran_attention_learning_and_layouts():
    torch.manual_seed(0)
    arl = build_model("ran56", 10, width=0.25, attention_learning="arl")
    nal = build_model("ran56", 10, width=0.25, attention_learning="nal")
    nal.load_state_dict(arl.state_dict())
    for model in (arl, nal):
        logits, maps = run_step(model)
        assert torch.isfinite(logits).all()
        assert_all_params_get_grad(model)
        assert_maps(maps, MAP_SIZES["ran56"], "sigmoid")
    arl.eval(), nal.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(arl(x)[0], nal(x)[0])
    # ran92: (2, 2, 2) modules by default, (1, 2, 3) with module_layout=increasing
    _, sizes = probe(meta("ran92", module_layout="increasing"))
    assert sizes == [(32, 32), (16, 16), (16, 16), (8, 8), (8, 8), (8, 8)]
    _, sizes = probe(meta("ran92"))
    assert sizes == MAP_SIZES["ran92"]


# ----------------------------------------------------------------------------- geometry, cost

@pytest.mark.parametrize("name", ["vgg", "vgg-att3", "resnet164-att2", "ran92"])
def test_width_quarter_is_same_shape_sixteenth_flops(name):
    full, quarter = meta(name), meta(name, width=0.25)
    kinds = lambda m: [type(x).__name__ for x in m.modules()]  # noqa: E731
    assert kinds(full) == kinds(quarter)
    (f1, s1), (f4, s4) = probe(full), probe(quarter)
    assert s1 == s4
    assert 1 / 20 < f4 / f1 < 1 / 12, f4 / f1


def test_flop_anchors():
    # ltpa.md section 5: attention VGG ~7.6 GFLOP forward, plain CIFAR VGG-16-BN ~0.63
    assert count_flops(meta("vgg-att3")) / 1e9 == pytest.approx(7.6, abs=0.1)
    assert count_flops(meta("vgg")) / 1e9 == pytest.approx(0.63, abs=0.02)
    assert count_flops(meta("vgg-att2")) < count_flops(meta("vgg-att3"))


def test_parameter_anchors():
    # ResNet-164, 10 classes: the official RESNET/weight_analysis "with the classifier - 1703258"
    assert count_params(meta("resnet164")) == 1_703_258
    # RN-att2, 100 classes: ~1.70M with g = averaged stage 3 (g_head=gap); the official
    # Resnet-att2 conv head (default) adds ~0.66M
    assert count_params(meta("resnet164-att2", 100, g_head="gap")) == pytest.approx(1.70e6, rel=0.05)
    assert count_params(meta("resnet164-att2", 100)) == pytest.approx(2.43e6, rel=0.01)
    # Attention-92, CIFAR: ~1.9M (Wang et al. 2017)
    assert count_params(meta("ran92")) == pytest.approx(1.9e6, rel=0.05)
    assert count_params(meta("vgg")) == pytest.approx(15.0e6, rel=0.01)
    # concat widths: 1280 (att3, g projected down), 1536 (l projected up), 1024 (att2)
    assert meta("vgg-att3").attention.classifier.fc.in_features == 1280
    assert meta("vgg-att3", project="l_up").attention.classifier.fc.in_features == 1536
    assert meta("vgg-att2").attention.classifier.fc.in_features == 1024
    assert meta("resnet164-att2").attention.classifier.fc.in_features == 384


def test_input_size_80_cub_geometry():
    model = build_model("vgg-att3", 200, width=0.125, input_size=80)
    logits, maps = run_step(model, num_classes=200, size=80)
    assert logits.shape == (2, 200)
    assert_maps(maps, [(32, 32), (16, 16), (8, 8)], "softmax")
    assert_all_params_get_grad(model)
    # same weights as the 32x32 model (the CUB model starts from the CIFAR-100 one)
    assert count_params(meta("vgg-att3", 200, input_size=80)) == count_params(meta("vgg-att3", 200))
    for name in ("vgg", "vgg-gap", "vgg-pan", "vgg-att2", "resnet164-att2", "ran56"):
        _, sizes = probe(meta(name, input_size=80), 80)
        if name.startswith("vgg"):
            assert sizes == MAP_SIZES[name]


def test_count_flops_on_a_real_model_restores_mode():
    model = build_model("vgg-att2", 10, width=0.125)
    model.train()
    flops = count_flops(model, 32)
    assert isinstance(flops, int) and flops > 0 and model.training
    assert flops == count_flops(meta("vgg-att2", width=0.125), 32)


# ----------------------------------------------------------------------------- attention parts

def test_attention_level_math():
    torch.manual_seed(0)
    l, g = torch.randn(2, 8, 4, 4), torch.randn(2, 8)
    lvl = AttentionLevel(8, 8, "pc", "softmax")
    assert lvl.u.bias is None and not any(True for _ in lvl.g_proj.parameters())
    v, a = lvl(l, g)
    torch.testing.assert_close(v, (a * l).sum(dim=(2, 3)))
    c = (lvl.u.weight.view(1, 8, 1, 1) * (l + g[:, :, None, None])).sum(1)
    torch.testing.assert_close(a.view(2, -1), torch.softmax(c.view(2, -1), 1))
    dp = AttentionLevel(8, 8, "dp", "softmax")
    assert count_params(dp) == 0
    v, a = dp(l, g)
    torch.testing.assert_close(a.view(2, -1), torch.softmax((l * g[:, :, None, None]).sum(1).view(2, -1), 1))
    sig = AttentionLevel(8, 8, "pc", "sigmoid")
    assert sig.u.bias is not None
    v, a = sig(l, g)
    torch.testing.assert_close(v, (a * l).mean(dim=(2, 3)))
    assert AttentionLevel(4, 8, project="g_down").out_channels == 4
    assert AttentionLevel(4, 8, project="l_up").out_channels == 8


@pytest.mark.parametrize("compat", ["pc", "dp"])
def test_scores_and_maps_stay_float32_under_autocast(compat):
    # bf16 features as the backbone gives them under autocast; scores ~30-90 that differ by ~1 between
    # positions, where bf16's spacing is 0.125-0.5 (bf16 scores moved these weights by 0.008-0.04):
    # the scores must be the float32 ones of those features
    torch.manual_seed(0)
    l, g = (10 + 0.3 * torch.randn(2, 8, 4, 4)).bfloat16(), (1 + 0.1 * torch.randn(2, 8)).bfloat16()
    lvl = AttentionLevel(8, 8, compat, "softmax")
    if compat == "pc":
        nn.init.normal_(lvl.u.weight, 0.0, 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        score = lvl.scores(l, g)
        v, a = lvl(l, g)
    assert score.dtype == torch.float32 and a.dtype == torch.float32 and v.dtype == torch.bfloat16
    l32, g32 = l.float(), g.float()
    weight = lvl.u.weight.view(1, 8, 1, 1) if compat == "pc" else g32[:, :, None, None]
    expected = (weight * (l32 + g32[:, :, None, None] if compat == "pc" else l32)).sum(1).view(2, -1)
    assert expected.abs().max() > 20
    torch.testing.assert_close(score, expected, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(a.view(2, -1), torch.softmax(expected, 1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("compat,g_mode,combine,logits_dtype", [
    ("pc", "concat", "sum_logits", torch.bfloat16), ("dp", "indep", "sum_log_softmax", torch.float32)])
def test_attention_model_under_autocast(compat, g_mode, combine, logits_dtype):
    # the float32 scores change nothing downstream: the logits keep autocast's dtype (the Linear's
    # bf16, or float32 from the log_softmax combines), the maps are float32, every parameter learns
    model = build_model("vgg-att2", 10, width=0.125, compat=compat, g_mode=g_mode, indep_combine=combine)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, maps = run_step(model)
    assert logits.dtype == logits_dtype and all(m.dtype == torch.float32 for m in maps)
    assert_maps(maps, MAP_SIZES["vgg-att2"], "softmax")
    assert_all_params_get_grad(model)


def test_indep_combines():
    torch.manual_seed(0)
    feats = [torch.randn(4, 6), torch.randn(4, 5)]
    out = {}
    for combine in ("sum_logits", "sum_log_softmax", "mean_prob"):
        torch.manual_seed(1)
        clf = LevelClassifier([6, 5], 3, "indep", combine).eval()
        out[combine] = clf(feats)
    z = [h(f) for h, f in zip(clf.heads, feats)]     # same weights (same seed)
    torch.testing.assert_close(out["sum_logits"], z[0] + z[1])
    torch.testing.assert_close(out["sum_log_softmax"],
                               F.log_softmax(F.log_softmax(z[0], 1) + F.log_softmax(z[1], 1), 1))
    torch.testing.assert_close(out["mean_prob"], torch.log((z[0].softmax(1) + z[1].softmax(1)) / 2))


def test_grad_scale_and_branch():
    x = torch.ones(3, requires_grad=True)
    (grad_scale(x, 0.25) * 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 0.5))
    x.grad = None
    y = branch(x, 3, "mean")
    (y * 2 + y * 4 + y).sum().backward()          # three consumers: (2 + 4 + 1) / 3
    torch.testing.assert_close(x.grad, torch.full((3,), 7 / 3))
    assert branch(x, 3, "sum") is x


def test_branch_grad_mean_halves_backbone_gradient():
    # vgg-att1: L3 feeds the global head and its attention level, g feeds one level, so with
    # branch_grad=mean (official) every backbone gradient is exactly half the autograd sum.
    torch.manual_seed(0)
    models = {m: build_model("vgg-att1", 10, width=0.125, branch_grad=m) for m in ("sum", "mean")}
    models["mean"].load_state_dict(models["sum"].state_dict())
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    grads = {}
    for mode, model in models.items():
        model.eval()                               # deterministic: no dropout, BN running stats
        F.cross_entropy(model(x)[0], y).backward()
        grads[mode] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for n in grads["sum"]:
        expect = grads["sum"][n] * (0.5 if n.startswith("backbone.block") else 1.0)
        torch.testing.assert_close(grads["mean"][n], expect, rtol=1e-4, atol=1e-7)


def test_vgg_gap_map_is_the_class_activation_map():
    model = build_model("vgg-gap", 10, width=0.125).eval()
    with torch.no_grad():
        logits, (cam,) = model(torch.randn(2, 3, 32, 32))
    top = logits.argmax(1)
    torch.testing.assert_close(cam.mean(dim=(1, 2, 3)) + model.fc.bias[top], logits[torch.arange(2), top])


def test_initialisation():
    torch.manual_seed(0)
    model = build_model("vgg-att3", 10)
    conv = model.backbone.block2[1]                 # conv8: 3x3, 256 -> 512
    assert isinstance(conv, nn.Conv2d) and conv.bias is None
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.02)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert (m.weight == 1).all() and (m.bias == 0).all()
        if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
            assert (m.bias == 0).all()
    uni = build_model("resnet164", 10, width=0.25, bn_init="uniform")
    ws = torch.cat([m.weight for m in uni.modules() if isinstance(m, nn.BatchNorm2d)])
    assert 0 <= ws.min() and ws.max() <= 1 and ws.std() > 0.1


def test_dropout_switch():
    has = lambda m: any(isinstance(x, nn.Dropout) for x in m.modules())  # noqa: E731
    assert has(meta("vgg")) and has(meta("vgg-att2")) and has(meta("resnet164-att2"))
    for name in ("vgg", "vgg-gap", "vgg-pan", "vgg-att3", "resnet164-att2"):
        assert not has(meta(name, dropout=False))
    assert not has(meta("resnet164")) and not has(meta("ran92"))


def test_table_prints_every_model(capsys):
    from lpa.models.__main__ import main

    main(["--width", "0.25"])
    out = capsys.readouterr().out
    assert all(f"| {name} " in out for name in MODEL_NAMES)


def test_compat_init_fan_in_softens_the_initial_maps():
    """official: u ~ N(0, 2) gives near one-hot maps at init; fan_in: u ~ N(0, 1/C) soft ones."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    peaks = {}
    for init in ("official", "fan_in"):
        torch.manual_seed(1)
        model = build_model("vgg-att2", 10, width=0.25, compat_init=init).eval()
        level = next(m for m in model.modules() if isinstance(m, AttentionLevel))
        std = level.u.weight.std().item()
        expected = math.sqrt(2.0) if init == "official" else 1 / math.sqrt(level.u.in_channels)
        assert std == pytest.approx(expected, rel=0.35)
        _, maps = model(x)
        peaks[init] = max(m.flatten(1).max(1).values.mean().item() for m in maps)
    assert peaks["fan_in"] < peaks["official"]
