"""Starting a run from another run's weights (lpa/train/warm_start.py, `runs.<run>.init_from`): which
tensors are class-specific, what is loaded and what keeps this run's seeded initialisation (the
CUB case: 10 classes at 32x32 into 200 classes at 80x80), the one-line error for a parent that
does not fit, the record, the engine starting from the parent's weights, and the checks of
init_from in params.yaml (unknown run, itself, a cycle, a parent without the seed) with the
derived `trial_groups`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lpa.config.run as lpa_config
from lpa.config.run import check_params, expected_trial_groups, expected_trials, resolve_trial
from lpa.train.engine import build_for_training, train
from lpa.errors import ConfigError
from lpa.train.modelfile import read_model_file
from lpa.models import probe
from lpa.train.engine import apply_warm_start
from lpa.train.warm_start import class_specific_keys, plan_warm_start
from tests.helpers.checks import one_line
from tests.helpers.models import identity_preprocessing, numbered_classes, save_model_file
from tests.helpers.toy_data import toy_data

CPU = torch.device("cpu")
CONV = "backbone.block1.0.weight"  # the first conv of the attention VGGs: never class-specific
CLASSIFIER = ["attention.classifier.fc.bias", "attention.classifier.fc.weight"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def derive(params: dict) -> dict:
    """Recompute what params.yaml derives from `runs` and `seeds` (as `make params` would)."""
    params["trials"] = expected_trials(params)
    params["trial_groups"] = expected_trial_groups(params)
    expected_pairs = getattr(lpa_config, "expected_pairs", None)
    for kind in ("transfer", "segmentation"):
        if f"{kind}_pairs" in params and expected_pairs is not None:
            params[f"{kind}_pairs"] = expected_pairs(params, kind)
    return params


def run_config(params, name, model_name, dataset="cifar100", init_from=None, model_options=None,
               **sections) -> dict:
    """The resolved trial config (seed 0) of a run added to `params`."""
    spec = {"dataset": dataset, "model": {"name": model_name, **(model_options or {})}, **sections}
    if init_from:
        spec["init_from"] = init_from
    params["runs"][name] = spec
    params["trials"] = expected_trials(params)
    return resolve_trial(params, f"{name}-seed0")


def perturbed_parent(config, num_classes, input_size, path: Path, seed=123) -> tuple[Path, dict]:
    """A parent model file whose every tensor differs from any fresh initialisation (as trained
    weights do): weights and BN statistics moved by noise, num_batches_tracked 7."""
    torch.manual_seed(seed)
    model = build_for_training(config, num_classes, input_size, CPU)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.dtype == torch.int64:
            state[key] = torch.full_like(value, 7)
        elif key.endswith("running_var"):
            state[key] = value + torch.rand(value.shape, generator=gen)
        else:
            state[key] = value + 0.5 * torch.randn(value.shape, generator=gen)
    model.load_state_dict(state)
    save_model_file(path, config, identity_preprocessing("rgb", input_size), model=model,
                    classes=numbered_classes(num_classes), input_size=input_size)
    return path, read_model_file(path)


def seeded_model(config, num_classes, input_size):
    """The child's own initialisation: what engine.train builds after torch.manual_seed(seed)."""
    torch.manual_seed(config["seed"])
    return build_for_training(config, num_classes, input_size, CPU)


# ----------------------------------------------------------------------------- class-specific tensors

@pytest.mark.parametrize("model, keys", [
    ("vgg", ["classifier.5.bias", "classifier.5.weight"]),
    ("vgg-gap", ["fc.bias", "fc.weight"]),
    ("vgg-att2", CLASSIFIER),
    ("vgg-att3", CLASSIFIER),
])
def test_class_specific_keys_are_the_final_classifier(tiny_params, model, keys):
    config = run_config(tiny_params, "r", model)
    assert sorted(class_specific_keys(config, 10, 32)) == keys
    assert sorted(class_specific_keys(config, 200, 80)) == keys


def test_class_specific_keys_in_the_indep_mode_are_each_levels_classifier(tiny_params):
    config = run_config(tiny_params, "r", "vgg-att2", attention={"g_mode": "indep"})
    keys = sorted(class_specific_keys(config, 10, 32))
    assert keys == ["attention.classifier.heads.0.3.bias", "attention.classifier.heads.0.3.weight",
                    "attention.classifier.heads.1.3.bias", "attention.classifier.heads.1.3.weight"]
    own = build_for_training(config, 10, 32, CPU).state_dict()
    assert all(own[k].shape[0] == 10 for k in keys)


# ----------------------------------------------------------------------------- the CUB case

@pytest.fixture
def cub_case(tiny_params, tmp_path):
    """cifar-att3 (10 classes, 32x32) -> cub-att3 (200 classes, 80x80), as the paper suite's CUB runs."""
    parent_config = run_config(tiny_params, "cifar-att3", "vgg-att3")
    path, parent = perturbed_parent(parent_config, 10, 32, tmp_path / "models/s/cifar-att3-seed0/model.pt")
    config = run_config(tiny_params, "cub-att3", "vgg-att3", dataset="cub200", init_from="cifar-att3")
    return config, path, parent


def test_warm_start_loads_everything_but_the_classifier(cub_case):
    config, path, parent = cub_case
    assert config["init_trial"] == "cifar-att3-seed0"
    load, record = plan_warm_start(config, 200, 80, parent, str(path))
    child = seeded_model(config, 200, 80)
    fresh = {k: v.clone() for k, v in child.state_dict().items()}
    assert sorted(set(fresh) - set(load)) == CLASSIFIER
    assert set(load) <= set(fresh)
    apply_warm_start(child, load)
    after = child.state_dict()
    for key, value in after.items():
        if key in CLASSIFIER:
            assert torch.equal(value, fresh[key]), key                       # the child's own init
            assert value.shape[0] == 200 and parent["state_dict"][key].shape[0] == 10
        else:
            assert torch.equal(value, parent["state_dict"][key]), key        # the parent's, bit for bit
            if value.is_floating_point() or key.endswith("num_batches_tracked"):
                assert not torch.equal(value, fresh[key]), key                # so the check means something
    assert after[CONV].data_ptr() != parent["state_dict"][CONV].data_ptr()    # copied, not shared

    # the geometry: at 80x80, conv7's output is pooled to 32x32, so the maps are the parent's
    _, child_maps = probe(child, 80)
    parent_model = build_for_training(parent["config"], 10, 32, CPU)
    _, parent_maps = probe(parent_model, 32)
    assert child_maps == parent_maps == [(32, 32), (16, 16), (8, 8)]
    logits, maps = child.eval()(torch.zeros(2, 3, 80, 80))
    assert logits.shape == (2, 200) and [tuple(m.shape) for m in maps] == [(2, 1, 32, 32), (2, 1, 16, 16),
                                                                            (2, 1, 8, 8)]


def test_the_record_says_what_was_loaded(cub_case):
    config, path, parent = cub_case
    load, record = plan_warm_start(config, 200, 80, parent, str(path))
    own = seeded_model(config, 200, 80).state_dict()
    assert record["trial"] == "cifar-att3-seed0" and record["model_file"] == str(path)
    assert record["loaded_tensors"] == len(load) == len(own) - 2
    assert record["loaded_values"] == sum(t.numel() for t in load.values())
    assert record["reinitialised"] == CLASSIFIER
    assert record["reinitialised_values"] == sum(own[k].numel() for k in CLASSIFIER)
    assert record["reinitialised_values"] == 200 * own[CLASSIFIER[1]].shape[1] + 200
    assert (record["parent_classes"], record["classes"]) == (10, 200)
    assert (record["parent_input_size"], record["input_size"]) == (32, 80)
    assert json.loads(json.dumps(record)) == record  # JSON-able (config.json's environment.init_from)


def test_same_number_of_classes_still_reinitialises_the_classifier(tiny_params, tmp_path):
    parent_config = run_config(tiny_params, "a", "vgg-att2", dataset="digits")
    path, parent = perturbed_parent(parent_config, 10, 32, tmp_path / "a.pt")
    config = run_config(tiny_params, "b", "vgg-att2", dataset="cifar10", init_from="a")
    load, record = plan_warm_start(config, 10, 32, parent, str(path))
    assert record["reinitialised"] == CLASSIFIER and not set(CLASSIFIER) & set(load)
    child = seeded_model(config, 10, 32)
    fresh = {k: v.clone() for k, v in child.state_dict().items()}
    apply_warm_start(child, load)
    for key in CLASSIFIER:
        assert child.state_dict()[key].shape == parent["state_dict"][key].shape
        assert torch.equal(child.state_dict()[key], fresh[key])
        assert not torch.allclose(child.state_dict()[key], parent["state_dict"][key])
    assert torch.equal(child.state_dict()[CONV], parent["state_dict"][CONV])


def test_indep_mode_reinitialises_every_levels_classifier(tiny_params, tmp_path):
    parent_config = run_config(tiny_params, "a", "vgg-att2", attention={"g_mode": "indep"})
    path, parent = perturbed_parent(parent_config, 10, 32, tmp_path / "a.pt")
    config = run_config(tiny_params, "b", "vgg-att2", dataset="cub200", init_from="a", attention={"g_mode": "indep"})
    load, record = plan_warm_start(config, 200, 80, parent, str(path))
    assert record["reinitialised"] == sorted(class_specific_keys(config, 200, 80))
    assert len(record["reinitialised"]) == 4 and not set(record["reinitialised"]) & set(load)
    # the per-level BN before each head is not class-specific: it is loaded
    assert "attention.classifier.heads.0.0.weight" in load


# ----------------------------------------------------------------------------- parents that do not fit

def test_another_width_is_one_error_naming_the_tensors(tiny_params, tmp_path):
    parent_config = run_config(tiny_params, "a", "vgg-att2")
    path, parent = perturbed_parent(parent_config, 10, 32, tmp_path / "a.pt")
    config = run_config(tiny_params, "b", "vgg-att2", init_from="a", model_options={"width": 0.25})
    with pytest.raises(ConfigError) as err:
        plan_warm_start(config, 10, 32, parent, str(path))
    msg = one_line(err)
    assert f"run b: init_from=a ({path}, vgg-att2 width 0.125) does not fit vgg-att2 width 0.25" in msg
    assert "differ in shape" in msg and f"{CONV} (8x3x3x3 there, 16x3x3x3 here)" in msg
    assert "and " in msg and "more" in msg  # more than the six named
    assert "init_from needs the same model and options" in msg


def test_another_model_is_one_error_naming_the_tensors(tiny_params, tmp_path):
    parent_config = run_config(tiny_params, "a", "vgg-att3")
    path, parent = perturbed_parent(parent_config, 10, 32, tmp_path / "a.pt")
    config = run_config(tiny_params, "b", "vgg-att2", init_from="a")
    with pytest.raises(ConfigError) as err:
        plan_warm_start(config, 10, 32, parent, str(path))
    msg = one_line(err)
    assert "vgg-att3 width 0.125) does not fit vgg-att2 width 0.125" in msg
    # att3's levels are L1, L2, L3 and att2's L2, L3: by index, att3's first level (L1, 32 channels
    # at this width, with a projection of g) meets att2's first (L2, 64 channels, no projection)
    assert "differ in shape: attention.levels.0.u.weight (1x32x1x1 there, 1x64x1x1 here)" in msg
    assert "have no place here: attention.levels.0.g_proj." in msg
    assert "init_from needs the same model" in msg


def test_another_compatibility_function_names_the_missing_tensors(tiny_params, tmp_path):
    parent_config = run_config(tiny_params, "a", "vgg-att2", attention={"compat": "dp"})
    path, parent = perturbed_parent(parent_config, 10, 32, tmp_path / "a.pt")
    config = run_config(tiny_params, "b", "vgg-att2", init_from="a")  # compat pc: a learned u per level
    with pytest.raises(ConfigError) as err:
        plan_warm_start(config, 10, 32, parent, str(path))
    msg = one_line(err)
    assert "2 are missing there: attention.levels.0.u.weight, attention.levels.1.u.weight" in msg
    assert "differ in shape" not in msg and "no place here" not in msg
    # and the other way round: the parent's u has no place in a dp child
    path2, parent2 = perturbed_parent(run_config(tiny_params, "c", "vgg-att2"), 10, 32, tmp_path / "c.pt")
    config2 = run_config(tiny_params, "d", "vgg-att2", init_from="c", attention={"compat": "dp"})
    with pytest.raises(ConfigError) as err:
        plan_warm_start(config2, 10, 32, parent2, str(path2))
    assert "2 have no place here: attention.levels.0.u.weight, attention.levels.1.u.weight" in one_line(err)


# ----------------------------------------------------------------------------- the engine starts from the parent

def test_training_starts_from_the_parents_weights(tiny_params, tmp_path):
    parent_config = run_config(tiny_params, "a", "vgg-att2")
    path, parent = perturbed_parent(parent_config, 10, 32, tmp_path / "a.pt")
    # an lr so small that one epoch leaves every weight where it started
    tiny_params["train"].update({"epochs": 1, "batch_size": 16, "lr": 1e-12, "momentum": 0.0, "weight_decay": 0.0,
                            "checkpoint_every": 0, "eval_batch_size": 64})
    config = run_config(tiny_params, "b", "vgg-att2", init_from="a")
    load, _ = plan_warm_start(config, 10, 32, parent, str(path))
    result = train(config, toy_data(n=32), 10, progress=False, init_state=load)
    trained = result.model.state_dict()
    fresh = seeded_model(config, 10, 32).state_dict()
    for key in (CONV, "backbone.head.6.weight", "attention.levels.0.u.weight"):
        assert torch.allclose(trained[key], parent["state_dict"][key], atol=1e-6), key
        assert not torch.allclose(trained[key], fresh[key], atol=1e-2), key
    for key in CLASSIFIER:  # re-initialised: the run's own seeded init, not the parent's
        assert torch.allclose(trained[key], fresh[key], atol=1e-6), key
        assert not torch.allclose(trained[key], parent["state_dict"][key], atol=1e-2), key
    # and without init_state the same run starts from its seeded init
    plain = train(config, toy_data(n=32), 10, progress=False).model.state_dict()
    assert torch.allclose(plain[CONV], fresh[CONV], atol=1e-6)


# ----------------------------------------------------------------------------- init_from in params.yaml

def with_runs(params, **runs) -> dict:
    params["runs"].update(runs)
    return derive(params)


def spec(init_from=None, seeds=None, model="vgg-att2") -> dict:
    s = {"dataset": "digits", "model": {"name": model}}
    if init_from is not None:
        s["init_from"] = init_from
    if seeds is not None:
        s["seeds"] = seeds
    return s


def test_a_valid_init_from_passes_and_is_a_finetune_trial(tiny_params):
    p = with_runs(tiny_params, **{"digits-ft": spec("digits-vgg-att2")})
    check_params(p)
    groups = expected_trial_groups(p)
    assert groups["finetune"] == {"digits-ft-seed0": {"dataset": "digits", "init_trial": "digits-vgg-att2-seed0"}}
    assert set(groups["train"]) == {t for t in p["trials"] if t != "digits-ft-seed0"}
    assert "digits-vgg-att2-seed0" in groups["train"]
    assert resolve_trial(p, "digits-ft-seed0")["init_trial"] == "digits-vgg-att2-seed0"
    assert resolve_trial(p, "digits-vgg-seed0")["init_from"] is None


def test_finetune_trials_start_from_the_parents_trial_of_the_same_seed(tiny_params):
    tiny_params["seeds"] = [0, 1]
    p = with_runs(tiny_params, **{"digits-ft": spec("digits-vgg-att2", seeds=[1])})
    check_params(p)
    groups = expected_trial_groups(p)
    assert groups["finetune"] == {"digits-ft-seed1": {"dataset": "digits", "init_trial": "digits-vgg-att2-seed1"}}
    assert set(groups["train"]) == {t for t in p["trials"] if t != "digits-ft-seed1"}
    assert {"digits-vgg-att2-seed0", "digits-vgg-att2-seed1"} <= set(groups["train"])
    assert "digits-ft-seed0" not in p["trials"] and "digits-ft-seed1" in p["trials"]


@pytest.mark.parametrize("runs, says", [
    ({"digits-ft": spec("nobody")}, "runs.digits-ft.init_from='nobody' is not a run of this suite"),
    ({"digits-ft": spec("digits-ft")}, "runs.digits-ft: init_from makes a cycle (digits-ft -> digits-ft)"),
    ({"digits-a": spec("digits-b"), "digits-b": spec("digits-a")},
     "runs.digits-a: init_from makes a cycle (digits-a -> digits-b -> digits-a)"),
    ({"digits-a": spec("digits-b"), "digits-b": spec("digits-c"), "digits-c": spec("digits-a")},
     "init_from makes a cycle (digits-a -> digits-b -> digits-c -> digits-a)"),
    ({"digits-a": spec("digits-b"), "digits-b": spec("ghost")}, "runs.digits-b.init_from='ghost' is not a run"),
    ({"digits-ft": spec("digits-vgg-att2", seeds=[0, 1])},
     "runs.digits-ft starts each seed from the same seed of runs.digits-vgg-att2, which has no seed(s) [1]"),
])
def test_bad_init_from_is_a_config_error(tiny_params, runs, says):
    p = with_runs(tiny_params, **runs)
    with pytest.raises(ConfigError) as err:
        check_params(p)
    assert says in one_line(err)


def test_init_from_is_checked_before_the_derived_trials(tiny_params):
    """A stale `trials` is not what the error is about when init_from is wrong."""
    tiny_params["runs"]["digits-ft"] = spec("nobody")  # trials / trial_groups left as composed
    with pytest.raises(ConfigError, match=r"runs\.digits-ft\.init_from='nobody'"):
        check_params(tiny_params)


def test_a_parent_with_the_seed_passes(tiny_params):
    tiny_params["seeds"] = [0, 1, 2]
    check_params(with_runs(tiny_params, **{"digits-ft": spec("digits-vgg-att2", seeds=[0, 2])}))
