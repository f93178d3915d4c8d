"""lpa.experiments.transfer and lpa.experiments.features (the cross-domain experiment: frozen features, a linear probe), the
transfer@/segment@ pair expansion and the checks of the `transfer` and `segmentation` sections.

Untrained width-0.125 models on a few random images for the features; one end-to-end transfer_run
on an extracted digits dataset, subsampled to 100 + 50 images.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lpa.config.run import check_params, expected_pairs, resolve_run
from lpa.data.arrays import write_extracted
from lpa.data.conversion import ImageConversion
from lpa.data.pasted_digits import paste_digits
from lpa.data.pipeline import extract_dataset
from lpa.data.transforms import fit_transform
from lpa.data.types import RawDataset
from lpa.train.engine import build_for_training
from lpa.errors import ConfigError
from lpa.experiments.features import extract_features
from lpa.config.params import compose_params_yaml, load_resolvers
from lpa.experiments.transfer import balanced_subset, convert_images, fit_linear_probe, transfer_run
from tests.helpers.models import preprocessing, save_model_file
from tests.helpers.params import shrunk_params
from tests.helpers.run import REPO

CPU = torch.device("cpu")
C_GRID = [0.01, 0.1, 1.0]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# ----------------------------------------------------------------------------- convert_images

def uint8_images(n, size, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)


def test_rgb_conversion_at_the_same_size_is_the_identity():
    images = uint8_images(4, 16)
    out = convert_images(images, ImageConversion("rgb", 16))
    np.testing.assert_array_equal(out, images)
    assert out.dtype == np.uint8


def test_rgb_conversion_to_another_size_resizes():
    images = uint8_images(3, 16)
    out = convert_images(images, ImageConversion("rgb", 24))
    assert out.shape == (3, 3, 24, 24) and out.dtype == np.uint8
    for img, got in zip(images, out):
        want = Image.fromarray(img.transpose(1, 2, 0)).resize((24, 24), Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(got, np.asarray(want).transpose(2, 0, 1))
    # a non-square grid of pixels is not a concern here: targets are N x 3 x S x S; smaller works too
    assert convert_images(images, ImageConversion("rgb", 8)).shape == (3, 3, 8, 8)


def test_digits_conversion_of_pasted_digits_gives_grey_images():
    from sklearn.datasets import load_digits
    images, _ = paste_digits(load_digits().images[:6], 32, 16, seed=0)
    out = convert_images(images, ImageConversion("grey", 32, 8))
    assert out.shape == (6, 3, 32, 32) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    np.testing.assert_array_equal(out[:, 0], out[:, 2])
    assert not np.array_equal(out, images)   # the colours are gone


# ----------------------------------------------------------------------------- balanced_subset

def test_balanced_subset_of_equal_classes():
    labels = np.repeat(np.arange(4), 10)
    np.random.default_rng(0).shuffle(labels)
    for size in (1, 4, 9, 22, 39):
        idx = balanced_subset(labels, size, seed=0)
        assert idx.shape == (size,) and len(set(idx.tolist())) == size
        assert np.all(np.diff(idx) > 0)                       # sorted, no repeats
        counts = np.bincount(labels[idx], minlength=4)
        assert counts.max() - counts.min() <= 1


def test_balanced_subset_of_unequal_classes():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2)
    idx = balanced_subset(labels, 9, seed=1)
    assert np.bincount(labels[idx], minlength=3).tolist() == [4, 3, 2]   # class 2 runs out, 0 and 1 share
    idx = balanced_subset(labels, 6, seed=1)
    assert np.bincount(labels[idx], minlength=3).tolist() == [2, 2, 2]


def test_balanced_subset_is_deterministic_by_seed():
    labels = np.repeat(np.arange(3), 20)
    a, b = balanced_subset(labels, 12, seed=5), balanced_subset(labels, 12, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, balanced_subset(labels, 12, seed=6))


def test_balanced_subset_zero_or_too_large_takes_everything():
    labels = np.array([2, 0, 1, 1, 0])
    for size in (0, 5, 50):
        np.testing.assert_array_equal(balanced_subset(labels, size, seed=0), np.arange(5))


# ----------------------------------------------------------------------------- extract_features

def tiny_config(quick_params, run: str, **attention) -> dict:
    return resolve_run(shrunk_params(quick_params, attention=attention), run)


@pytest.fixture(scope="module")
def models(quick_params) -> dict:
    torch.manual_seed(0)
    out = {}
    for key, run, attention in (("vgg", "digits-vgg", {}), ("vgg-gap", "pasted-vgg-gap", {}),
                                ("vgg-att2", "pasted-vgg-att2", {}),
                                ("vgg-att2-indep", "pasted-vgg-att2", {"g_mode": "indep"})):
        config = tiny_config(quick_params, run, **attention)
        out[key] = (build_for_training(config, 10, 32, CPU), config)
    return out


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(1).normal(size=(7, 3, 32, 32)).astype(np.float32))


@pytest.mark.parametrize("key, feature, dim", [
    ("vgg", "classifier_input", 64),           # the penultimate vector: 512 x 0.125
    ("vgg-gap", "classifier_input", 64),       # the pooled conv13: 512 x 0.125
    ("vgg-att2", "classifier_input", 128),     # g_a of levels 2 and 3, concatenated: 64 + 64
    ("vgg-att2-indep", "classifier_input", 128),
    ("vgg-att2", "g", 64),                     # the global vector
])
def test_feature_shapes(models, images, key, feature, dim):
    model, config = models[key]
    x = extract_features(model, config, 10, images, feature)
    assert x.shape == (7, dim) and x.dtype == np.float32 and np.isfinite(x).all()


def test_vgg_features_are_the_penultimate_vector(models, images):
    model, config = models["vgg"]
    model.train()   # extract_features puts it in eval mode itself
    x = extract_features(model, config, 10, images)
    assert not model.training
    with torch.no_grad():
        want = model.classifier[:-1](model.features(images)).numpy()
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)


def test_vgg_gap_features_are_the_pooled_vector(models, images):
    model, config = models["vgg-gap"]
    x = extract_features(model, config, 10, images)
    with torch.no_grad():
        model.eval()
        want = model.features(images).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key", ["vgg-att2", "vgg-att2-indep"])
def test_attention_features_are_the_attended_vectors_and_g(models, images, key):
    model, config = models[key]
    concat = extract_features(model, config, 10, images, "classifier_input")
    g_feature = extract_features(model, config, 10, images, "g")
    with torch.no_grad():
        model.eval()
        bb = model.backbone
        l2 = bb.block2(bb.block1(images))
        l3 = bb.block3(l2)
        g = bb.head(l3)
        attended = [level(l, g)[0] for level, l in zip(model.attention.levels, (l2, l3))]
    np.testing.assert_allclose(g_feature, g.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(concat, torch.cat(attended, dim=1).numpy(), rtol=1e-5, atol=1e-6)


def test_features_do_not_depend_on_the_batch_size_and_leave_no_hooks(models, images):
    model, config = models["vgg-att2"]
    whole = extract_features(model, config, 10, images, batch_size=500)
    batched = extract_features(model, config, 10, images, batch_size=3)
    np.testing.assert_allclose(whole, batched, rtol=1e-5, atol=1e-6)
    assert not model.attention.classifier._forward_pre_hooks and not model.attention._forward_pre_hooks
    assert extract_features(model, config, 10, images[:0]).shape == (0, 0)


def test_feature_g_needs_an_attention_model(models, images):
    model, config = models["vgg"]
    with pytest.raises(ConfigError, match="feature g needs an attention model; vgg has no global attention vector"):
        extract_features(model, config, 10, images, "g")
    with pytest.raises(ConfigError, match="unknown feature 'logits'"):
        extract_features(model, config, 10, images, "logits")


# ----------------------------------------------------------------------------- the linear probe

def blobs(per_class: list[int], dim=6, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)]).astype(np.int64)
    centres = np.eye(len(per_class), dim) * 10.0
    return (centres[labels] + rng.normal(size=(labels.shape[0], dim))).astype(np.float32), labels


def test_linear_probe_separates_separable_features():
    x, y = blobs([15, 15, 15])
    search = fit_linear_probe(x, y, C_GRID, folds=3, seed=0)
    assert search.best_params_["logisticregression__C"] in C_GRID
    assert search.best_score_ == pytest.approx(1.0)
    tx, ty = blobs([5, 5, 5], seed=1)
    assert (search.predict(tx) == ty).all()


def test_linear_probe_uses_fewer_folds_for_a_small_class():
    x, y = blobs([10, 10, 2])   # 5 folds asked, the smallest class has 2: 2 folds
    search = fit_linear_probe(x, y, [1.0], folds=5, seed=0)
    assert search.n_splits_ == 2


def test_linear_probe_needs_two_images_per_class():
    x, y = blobs([6, 6, 1])
    with pytest.raises(ConfigError, match="smallest class has 1 training image.*cross-validation needs at least 2 "
                                          "per class"):
        fit_linear_probe(x, y, C_GRID, folds=3, seed=0)


# ----------------------------------------------------------------------------- transfer_run

@pytest.fixture(scope="module")
def source_model(tmp_path_factory, quick_params) -> Path:
    """An untrained tiny pasted-vgg-att2 model file (RGB 32 x 32 conversion, a fitted transform)."""
    torch.manual_seed(0)
    config = {"trial": "pasted-vgg-att2-seed0", **tiny_config(quick_params, "pasted-vgg-att2")}
    transform = fit_transform(uint8_images(20, 32, seed=3), "standardize")
    return save_model_file(tmp_path_factory.mktemp("models") / config["trial"] / "model.pt", config,
                           preprocessing(ImageConversion("rgb", 32), transform))


@pytest.fixture(scope="module")
def digits_target(tmp_path_factory) -> Path:
    """data/extracted/digits at 16 x 16: resized to the source's 32 x 32 by the transfer."""
    root = tmp_path_factory.mktemp("target")
    extract_dataset("digits", {"image_size": 16}, root / "digits", root / "raw")
    return root / "digits"


SETTINGS = {"feature": "classifier_input", "C_grid": C_GRID, "cv_folds": 3, "max_train_images": 100,
            "max_test_images": 50, "subset_seed": 0}


def test_transfer_run_end_to_end(tmp_path, source_model, digits_target):
    metrics = tmp_path / "runs" / "t" / "transfer" / "digits.json"
    record = transfer_run(source_model, digits_target, SETTINGS, metrics)
    assert json.loads(metrics.read_text()) == record
    t = record["transfer"]
    assert t["test"]["top1_error"] + t["test"]["accuracy"] == pytest.approx(100.0)
    assert 0 <= t["test"]["accuracy"] <= 100 and 0 <= t["cv_accuracy"] <= 100
    assert t["test"]["accuracy"] > 30     # chance is 10%: even random conv features separate digits
    assert t["C"] in C_GRID
    assert t["feature_dim"] == 128
    assert (t["train_images"], t["test_images"], t["target_classes"]) == (100, 50, 10)


def test_transfer_run_with_a_feature_the_source_does_not_have(tmp_path, quick_params, digits_target):
    config = {"trial": "pasted-vgg-gap-seed0", **tiny_config(quick_params, "pasted-vgg-gap")}
    transform = fit_transform(uint8_images(4, 32), "scale")
    path = save_model_file(tmp_path / "model.pt", config, preprocessing(ImageConversion("rgb", 32), transform))
    with pytest.raises(ConfigError, match="feature g needs an attention model; vgg-gap"):
        transfer_run(path, digits_target, {**SETTINGS, "feature": "g", "max_train_images": 20,
                                           "max_test_images": 10}, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def write_target(path: Path, train_labels, test_labels, classes) -> Path:
    train_labels, test_labels = (np.asarray(v, dtype=np.int64) for v in (train_labels, test_labels))
    data = RawDataset(uint8_images(len(train_labels), 16), train_labels, uint8_images(len(test_labels), 16, seed=1),
                      test_labels, classes)
    write_extracted(path, "digits", data)
    return path


@pytest.mark.parametrize("train, test, classes, says", [
    ([0] * 6, [0, 1, 1], ["a", "b"], "has one class: a classifier needs at least two"),
    ([0] * 6, [0, 0], ["a"], "has one class: a classifier needs at least two"),
    ([0, 1] * 3, [], ["a", "b"], "has no test images: nothing to report"),
])
def test_transfer_target_that_cannot_be_classified(tmp_path, source_model, train, test, classes, says):
    target = write_target(tmp_path / "data/extracted/odd", train, test, classes)
    with pytest.raises(ConfigError) as err:
        transfer_run(source_model, target, SETTINGS, tmp_path / "m.json")
    msg = str(err.value)
    assert "\n" not in msg and f"target {target} {says}" in msg
    assert not (tmp_path / "m.json").exists()


def test_transfer_target_with_a_class_of_one_training_image(tmp_path, source_model):
    target = write_target(tmp_path / "data/extracted/odd", [0, 0, 0, 1], [0, 1], ["a", "b"])
    with pytest.raises(ConfigError, match="cross-validation needs at least 2 per class"):
        transfer_run(source_model, target, SETTINGS, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


# ----------------------------------------------------------------------------- pairs

def test_quick_suite_pairs(quick_params):
    transfer, segmentation = quick_params["transfer_pairs"], quick_params["segmentation_pairs"]
    assert transfer == {
        "pasted-vgg-att2-seed0-to-digits": {"trial": "pasted-vgg-att2-seed0", "dataset": "pasted_digits",
                                            "other": "digits"},
        "pasted-vgg-gap-seed0-to-digits": {"trial": "pasted-vgg-gap-seed0", "dataset": "pasted_digits",
                                           "other": "digits"},
    }
    assert segmentation == {
        "pasted-vgg-att2-seed0-on-pasted": {"trial": "pasted-vgg-att2-seed0", "dataset": "pasted_digits",
                                            "other": "pasted", "root": "data/extracted/pasted_digits"},
        "pasted-vgg-gap-seed0-on-pasted": {"trial": "pasted-vgg-gap-seed0", "dataset": "pasted_digits",
                                           "other": "pasted", "root": "data/extracted/pasted_digits"},
    }
    assert expected_pairs(quick_params, "transfer") == transfer
    assert expected_pairs(quick_params, "segmentation") == segmentation


def test_paper_suite_pairs():
    params = yaml.safe_load(compose_params_yaml(["suite=paper"], root=REPO))
    assert params["transfer"]["runs"] == [] and params["segmentation"]["runs"] == []
    assert params["transfer_pairs"] == {} == expected_pairs(params, "transfer")
    assert params["segmentation_pairs"] == {} == expected_pairs(params, "segmentation")
    check_params(params)


def pairs_of(section: str, trials: dict, **values) -> dict:
    """The pairs conf/'s resolver derives for a `section` of `values` (through lpa.config.run.expected_pairs)."""
    return expected_pairs({section: values, "trials": trials}, section)


def test_pairs_expand_every_seed_and_target_in_order():
    trials = load_resolvers().expand_trials({"a": {"dataset": "cifar10"}, "b": {"dataset": "svhn", "seeds": [7]},
                                             "c": {"dataset": "cifar100"}}, [0, 1])
    pairs = pairs_of("transfer", trials, runs=["a", "b"], targets=["stl10", "caltech"], seeds=[])
    assert list(pairs) == ["a-seed0-to-stl10", "a-seed0-to-caltech", "a-seed1-to-stl10", "a-seed1-to-caltech",
                           "b-seed7-to-stl10", "b-seed7-to-caltech"]
    assert pairs["b-seed7-to-caltech"] == {"trial": "b-seed7", "dataset": "svhn", "other": "caltech"}
    seg = pairs_of("segmentation", trials, runs=["c"], datasets=["od=data/raw/OD/Data", "odd=x=y"], seeds=[])
    assert seg == {"c-seed0-on-od": {"trial": "c-seed0", "dataset": "cifar100", "other": "od",
                                     "root": "data/raw/OD/Data"},
                   "c-seed0-on-odd": {"trial": "c-seed0", "dataset": "cifar100", "other": "odd", "root": "x=y"},
                   "c-seed1-on-od": {"trial": "c-seed1", "dataset": "cifar100", "other": "od",
                                     "root": "data/raw/OD/Data"},
                   "c-seed1-on-odd": {"trial": "c-seed1", "dataset": "cifar100", "other": "odd", "root": "x=y"}}
    assert pairs_of("transfer", trials, runs=[], targets=["stl10"], seeds=[]) == {}
    assert pairs_of("segmentation", trials, runs=["a"], datasets=[], seeds=[]) == {}


def test_pairs_of_some_seeds_only():
    trials = load_resolvers().expand_trials({"a": {"dataset": "cifar10"}, "b": {"dataset": "svhn", "seeds": [7]}},
                                            [0, 1])
    assert list(pairs_of("transfer", trials, runs=["a", "b"], targets=["stl10"], seeds=[1])) == ["a-seed1-to-stl10"]
    assert list(pairs_of("segmentation", trials, runs=["a", "b"], datasets=["od=x"], seeds=[7, 0])) == [
        "a-seed0-on-od", "b-seed7-on-od"]


# ----------------------------------------------------------------------------- checks of the sections

def edited(quick_params, section: str, **values) -> dict:
    """quick params with `section` edited and the derived pairs recomputed (only the edit can fail)."""
    params = copy.deepcopy(quick_params)
    params[section].update(values)
    params["transfer_pairs"] = expected_pairs(params, "transfer")
    params["segmentation_pairs"] = expected_pairs(params, "segmentation")
    return params


def test_quick_params_pass(quick_params):
    check_params(quick_params)
    more = edited(quick_params, "transfer", targets=["digits", "pasted_digits"])
    check_params(more)
    assert len(more["transfer_pairs"]) == 4


@pytest.mark.parametrize("section, values, says", [
    ("transfer", {"runs": ["nope"]}, r"transfer.runs names \['nope'\], not in runs"),
    ("transfer", {"targets": ["svhn"]}, r"transfer.targets names \['svhn'\], not in data.datasets "
                                        r"\(digits, pasted_digits\)"),
    ("transfer", {"runs": ["pasted-vgg-att2", "pasted-vgg-att2"]}, "transfer.runs=.* lists an entry twice"),
    ("transfer", {"targets": ["digits", "digits"]}, "transfer.targets=.* lists an entry twice"),
    ("transfer", {"C_grid": []}, "transfer.C_grid is empty"),
    ("transfer", {"C_grid": [0.0, 1.0]}, "transfer.C_grid"),
    ("transfer", {"cv_folds": 1}, "transfer.cv_folds"),
    ("transfer", {"feature": "logits"}, "transfer.feature"),
    ("segmentation", {"runs": ["nope"]}, r"segmentation.runs names \['nope'\], not in runs"),
    ("segmentation", {"runs": ["pasted-vgg-gap", "pasted-vgg-gap"]}, "segmentation.runs=.* lists an entry twice"),
    ("segmentation", {"datasets": ["data/extracted/pasted_digits"]}, "must be NAME=ROOT"),
    ("segmentation", {"datasets": ["=data/x"]}, "must be NAME=ROOT"),
    ("segmentation", {"datasets": ["od="]}, "must be NAME=ROOT"),
    ("segmentation", {"datasets": ["object discovery=data/x"]}, "must be NAME=ROOT"),
    ("segmentation", {"datasets": ["od=a", "od=b"]}, "segmentation.datasets names od twice"),
    ("segmentation", {"combine": "level4"}, "segmentation.combine"),
    ("segmentation", {"threshold_value": 1.5}, "segmentation.threshold_value"),
])
def test_check_params_rejects(quick_params, section, values, says):
    params = edited(quick_params, section, **values)
    with pytest.raises(ConfigError, match=says) as err:
        check_params(params)
    assert "\n" not in str(err.value)


def test_pairs_that_do_not_match_their_section(quick_params):
    params = copy.deepcopy(quick_params)
    params["transfer"]["targets"] = ["digits", "pasted_digits"]     # pairs not recomposed
    with pytest.raises(ConfigError, match="`transfer_pairs` or `segmentation_pairs` does not match"):
        check_params(params)
    params = copy.deepcopy(quick_params)
    params["segmentation_pairs"]["pasted-vgg-gap-seed0-on-pasted"]["root"] = "elsewhere"
    with pytest.raises(ConfigError, match="does not match its section"):
        check_params(params)
