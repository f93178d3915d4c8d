"""The robustness experiment (lpa/experiments/robustness.py, lpa/experiments/pixel_transform.py): the fitted preprocessing
as torch ops, gradients through it to the pixels, the FGSM step and its clipping, epsilon 0 as the
clean error, the error rising with epsilon on a trained model, the fixed attack subset, the files
robustness@ writes, and the check of the `robustness` params section.

One tiny digits vgg-att2 is trained per module (`trained`, a few seconds); everything else uses
hand-made linear "models" or an untrained network.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from lpa.config.run import resolve_run
from lpa.data.arrays import read_meta, read_split
from lpa.data.transforms import Transform, fit_transform, load_transform
from lpa.train.device import autocast_dtype
from lpa.train.engine import DeviceData, predict, train
from lpa.errors import ConfigError, DamagedFileError
from lpa.config.experiment_options import check_robustness, epsilon_key
from lpa.train.modelfile import preprocessing_record
from lpa.models import build_model
from lpa.experiments.pixel_transform import PixelTransform
from lpa.experiments.robustness import attack_subset, fgsm_direction, fgsm_errors, fgsm_images, robustness_csv, robustness_run
from tests.helpers.models import numbered_classes, save_model_file
from tests.helpers.params import shrunk_params

CPU = torch.device("cpu")
# the trained model: a quick-suite digits vgg-att2 at width 0.125 on a class-balanced subset
# (6 epochs on 640 images: 3-6 % clean error on the attacked images, ~10 s of one core; at 4 epochs
# the clean error was 20-30 % and depended on the thread count)
TRAIN = {"epochs": 6, "batch_size": 32, "lr": 0.05, "max_images": 640, "checkpoint_every": 0,
         "eval_batch_size": 200}
ATTACKED = 200        # test images attacked in the module (of 360)
BATCH = 100           # attack batch; the clean-error comparisons use the same batches
LARGEST_EPS = 32.0


# ----------------------------------------------------------------------------- fixtures

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained(digits_root, quick_params):
    """(model, config, transform): a digits vgg-att2 trained as the quick suite would, shrunk
    (digits_root: tests/conftest.py)."""
    config = resolve_run(shrunk_params(quick_params, train=TRAIN), "digits-vgg-att2")
    images, labels = read_split(digits_root / "data/processed/digits", "train")
    data = DeviceData.from_arrays(images.astype(np.float32), labels, CPU)
    model = train(config, data, 10, progress=False).model.eval()
    return model, config, load_transform(digits_root / "data/processed/digits")


@pytest.fixture(scope="module")
def test_split(digits_root):
    """A fixed subset of the extracted (uint8) test split: pixels as float32, labels as int64."""
    images, labels = read_split(digits_root / "data/extracted/digits", "test")
    idx = attack_subset(labels, ATTACKED, 0)
    return images[idx], torch.from_numpy(images[idx]).float(), torch.from_numpy(labels[idx])


def amp_of(config):
    return autocast_dtype(CPU, config["train"]["precision"]), config["train"]["channels_last"]


def error_percent(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 error as fgsm_errors computes it (100 * wrong / n, from an integer count)."""
    wrong = int((logits.argmax(1) != labels).sum())
    return 100.0 * wrong / max(1, labels.shape[0])


# ----------------------------------------------------------------------------- PixelTransform

def random_images(n=64, shape=(3, 8, 8), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, *shape))
    # some structure across the channels, so ZCA and standardize have something to undo
    base[:, 1] = (base[:, 0] * 3 + base[:, 1]) // 4
    return base.astype(np.uint8)


@pytest.mark.parametrize("method, gcn", [("zca", True), ("zca", False), ("standardize", False),
                                         ("standardize", True), ("scale", False), ("none", False),
                                         ("none", True)])
def test_pixel_transform_equals_the_numpy_transform(method, gcn):
    train_images = random_images()
    t = fit_transform(train_images, method, gcn=gcn, zca_epsilon=0.1)
    new = random_images(n=16, seed=1)
    with torch.no_grad():
        got = PixelTransform(t)(torch.from_numpy(new).float()).numpy()
    want = t.apply(new)
    assert got.dtype == np.float32 and got.shape == want.shape == (16, 3, 8, 8)
    scale = float(np.abs(want).max())
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
    if method == "none" and not gcn:
        assert np.array_equal(got, new.astype(np.float32))


def test_pixel_transform_refuses_images_of_another_shape():
    t = fit_transform(random_images(), "scale")
    with pytest.raises(ValueError, match="fitted on N x 3 x 8 x 8"):
        PixelTransform(t)(torch.zeros(2, 3, 8, 9))


def test_pixel_transform_holds_its_statistics_as_float32_buffers():
    t = fit_transform(random_images(), "zca", gcn=True)
    prep = PixelTransform(t)
    assert {name for name, _ in prep.named_buffers()} == {"mean", "matrix"}
    assert prep.matrix.dtype == torch.float32 and prep.matrix.shape == (192, 192)
    assert list(prep.parameters()) == []  # nothing the optimiser could train


# ----------------------------------------------------------------------------- gradients reach the pixels

class LinearModel(nn.Module):
    """A "model" that is linear in its input: logits = x.flatten(1) @ A (no maps)."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x):
        return x.flatten(1) @ self.a, []


def pixel_gradient(prep: PixelTransform, model: nn.Module, pixels: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    x = pixels.clone().requires_grad_(True)
    logits, _ = model(prep(x))
    (grad,) = torch.autograd.grad((logits * c).sum(), x)
    return grad


def test_gradient_through_zca_is_the_analytic_one():
    rng = np.random.default_rng(3)
    shape, d, k = (3, 4, 4), 48, 5
    w = rng.normal(size=(d, d)).astype(np.float32)
    m = rng.normal(100, 20, size=d).astype(np.float32)
    prep = PixelTransform(Transform("zca", shape, mean=m, matrix=w, zca_epsilon=0.1))
    a = torch.from_numpy(rng.normal(size=(d, k)).astype(np.float32))
    c = torch.from_numpy(rng.normal(size=(6, k)).astype(np.float32))
    pixels = torch.from_numpy(rng.uniform(0, 255, size=(6, *shape)).astype(np.float32))
    grad = pixel_gradient(prep, LinearModel(a), pixels, c)
    # d/dp sum_j c_j ((p - m) W A)_j = W A c, per image
    want = (torch.from_numpy(w).double() @ a.double() @ c.double().T).T.reshape(6, *shape)
    torch.testing.assert_close(grad.double(), want, rtol=1e-4, atol=1e-3)
    # the mean does not enter the gradient, W does: transposing W changes it
    wrong = (torch.from_numpy(w.T).double() @ a.double() @ c.double().T).T.reshape(6, *shape)
    assert not torch.allclose(grad.double(), wrong, rtol=1e-2, atol=1e-2)


def test_gradient_through_standardize_is_scaled_by_one_over_std_per_channel():
    rng = np.random.default_rng(4)
    shape, d, k = (3, 4, 4), 48, 4
    mean = np.array([10.0, 120.0, 250.0], np.float32)
    std = np.array([2.0, 50.0, 0.25], np.float32)
    prep = PixelTransform(Transform("standardize", shape, mean=mean, std=std))
    a = torch.from_numpy(rng.normal(size=(d, k)).astype(np.float32))
    c = torch.from_numpy(rng.normal(size=(3, k)).astype(np.float32))
    pixels = torch.from_numpy(rng.uniform(0, 255, size=(3, *shape)).astype(np.float32))
    grad = pixel_gradient(prep, LinearModel(a), pixels, c)
    want = (a.double() @ c.double().T).T.reshape(3, *shape) / torch.from_numpy(std).double()[None, :, None, None]
    torch.testing.assert_close(grad.double(), want, rtol=1e-5, atol=1e-6)


def test_gradient_through_scale_is_one_over_255():
    rng = np.random.default_rng(5)
    a = torch.from_numpy(rng.normal(size=(48, 3)).astype(np.float32))
    c = torch.ones(2, 3)
    grad = pixel_gradient(PixelTransform(Transform("scale", (3, 4, 4))), LinearModel(a),
                          torch.full((2, 3, 4, 4), 7.0), c)
    torch.testing.assert_close(grad, (a.sum(1) / 255.0).reshape(1, 3, 4, 4).expand(2, 3, 4, 4))


def test_fgsm_direction_is_the_sign_of_the_loss_gradient_through_the_transform():
    """Cross-entropy on a linear model: d loss / d p = W A (softmax - onehot) / n, per image."""
    rng = np.random.default_rng(6)
    shape, d, k, n = (3, 4, 4), 48, 5, 8
    w = rng.normal(size=(d, d)).astype(np.float32)
    m = rng.normal(100, 20, size=d).astype(np.float32) * 0.01
    t = Transform("zca", shape, mean=m, matrix=w * 0.01, zca_epsilon=0.1)
    a = torch.from_numpy(rng.normal(size=(d, k)).astype(np.float32) * 0.01)  # logits ~1: no saturation
    pixels = torch.from_numpy(rng.uniform(0, 255, size=(n, *shape)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, k, n))
    direction = fgsm_direction(LinearModel(a), PixelTransform(t), pixels, labels)
    inputs = ((pixels.double().reshape(n, -1) - torch.from_numpy(m).double()) @ torch.from_numpy(w * 0.01).double())
    probs = torch.softmax(inputs @ a.double(), 1)
    g = (probs - torch.nn.functional.one_hot(labels, k).double()) @ a.double().T @ torch.from_numpy(w * 0.01).double().T
    want = g.sign().reshape(n, *shape)
    # float32 cannot decide a sign near 0: compare where |g| is not tiny next to its image's largest
    clear = (g.abs() > 1e-5 * g.abs().amax(1, keepdim=True)).reshape(n, *shape)
    assert direction.dtype == torch.float32 and set(direction.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.equal(direction[clear], want[clear].float()) and clear.float().mean() > 0.99


# ----------------------------------------------------------------------------- the FGSM step

def test_fgsm_perturbation_has_max_norm_epsilon_in_pixels(trained, test_split):
    model, config, transform = trained
    _, pixels, labels = test_split
    rng = np.random.default_rng(7)
    mid = torch.from_numpy(rng.integers(100, 151, size=tuple(pixels[:16].shape)).astype(np.float32))
    direction = fgsm_direction(model, PixelTransform(transform), mid, labels[:16], *amp_of(config))
    moved = direction != 0
    assert moved.float().mean() > 0.5  # a real model: most pixels have a gradient
    for eps in (0.5, 1.0, 4.0, 8.0, LARGEST_EPS):
        attacked = fgsm_images(mid, direction, eps)
        delta = attacked - mid
        assert float(delta.abs().max()) == eps
        assert torch.equal(delta[moved].abs(), torch.full_like(delta[moved], eps))
        assert torch.equal(delta[~moved], torch.zeros_like(delta[~moved]))
        assert torch.equal(delta.sign(), direction)


def test_fgsm_clips_to_the_pixel_range():
    pixels = torch.tensor([0.0, 0.0, 255.0, 255.0, 3.0, 250.0]).reshape(1, 1, 2, 3)
    direction = torch.tensor([-1.0, 1.0, 1.0, -1.0, -1.0, 1.0]).reshape(1, 1, 2, 3)
    attacked = fgsm_images(pixels, direction, 16.0)
    assert attacked.tolist() == [[[[0.0, 16.0, 255.0], [239.0, 0.0, 255.0]]]]
    assert attacked.dtype == torch.float32


def test_fgsm_at_the_range_edges_stays_in_range_on_a_real_model(trained, test_split):
    model, config, transform = trained
    _, pixels, labels = test_split
    # digits are light strokes on a black ground: plenty of 0s; push some pixels to 255 too
    edge = pixels[:16].clone()
    edge[:, :, :4] = 255.0
    assert bool((edge == 0).any()) and bool((edge == 255).any())
    direction = fgsm_direction(model, PixelTransform(transform), edge, labels[:16], *amp_of(config))
    attacked = fgsm_images(edge, direction, LARGEST_EPS)
    assert float(attacked.min()) >= 0.0 and float(attacked.max()) <= 255.0
    # clipping only ever shortens the step, toward the direction's sign
    delta = attacked - edge
    assert float(delta.abs().max()) <= LARGEST_EPS
    assert bool(((delta * direction) >= 0).all())
    # pushed out of range and clipped: those pixels do not move at all
    assert torch.equal(delta[(edge == 0) & (direction < 0)], torch.zeros_like(delta[(edge == 0) & (direction < 0)]))
    assert torch.equal(delta[(edge == 255) & (direction > 0)],
                       torch.zeros_like(delta[(edge == 255) & (direction > 0)]))


# ----------------------------------------------------------------------------- epsilon 0 is the clean error

def test_epsilon_zero_is_exactly_the_clean_error(trained, test_split):
    model, config, transform = trained
    uint8_images, pixels, labels = test_split
    amp, channels_last = amp_of(config)
    prep = PixelTransform(transform)
    errors = fgsm_errors(model, prep, pixels, labels, [0.0, 4.0], BATCH, amp, channels_last)
    assert list(errors) == [0.0, 4.0]

    with torch.no_grad():
        torch_inputs = prep(pixels)
    clean = error_percent(predict(model, torch_inputs, BATCH, amp, channels_last), labels)
    assert errors[0.0] == clean

    # the numpy path (what the processed arrays and lpa.experiments.predict use): for standardize, (x - m) / s
    # is one IEEE subtraction and one division per value in both, so the inputs are bit-identical
    # and the error is exactly the same
    numpy_inputs = torch.from_numpy(transform.apply(uint8_images))
    assert torch.equal(numpy_inputs, torch_inputs)
    assert error_percent(predict(model, numpy_inputs, BATCH, amp, channels_last), labels) == errors[0.0]


def test_the_error_does_not_depend_on_the_attack_batch(trained, test_split):
    model, config, transform = trained
    _, pixels, labels = test_split
    amp, channels_last = amp_of(config)
    prep = PixelTransform(transform)
    one = fgsm_errors(model, prep, pixels, labels, [0.0, 8.0], BATCH, amp, channels_last)
    other = fgsm_errors(model, prep, pixels, labels, [0.0, 8.0], 64, amp, channels_last)
    assert one[0.0] == pytest.approx(other[0.0], abs=100.0 / labels.shape[0] + 1e-9)  # one image at most
    assert one[8.0] == pytest.approx(other[8.0], abs=2 * 100.0 / labels.shape[0] + 1e-9)


def test_a_trained_model_is_less_accurate_under_attack(trained, test_split):
    model, config, transform = trained
    _, pixels, labels = test_split
    amp, channels_last = amp_of(config)
    errors = fgsm_errors(model, PixelTransform(transform), pixels, labels, [0.0, 4.0, 16.0, LARGEST_EPS],
                         BATCH, amp, channels_last)
    assert all(0.0 <= e <= 100.0 for e in errors.values())
    assert errors[0.0] < 25.0, errors            # the model learned the digits
    assert errors[LARGEST_EPS] > errors[0.0] + 10.0, errors
    assert errors[16.0] > errors[0.0], errors


def test_an_attack_along_the_opposite_direction_does_not_hurt_as_much(trained, test_split):
    """The sign matters: the ascent direction hurts more than the descent direction."""
    model, config, transform = trained
    _, pixels, labels = test_split
    amp, channels_last = amp_of(config)
    prep = PixelTransform(transform)
    direction = fgsm_direction(model, prep, pixels, labels, amp, channels_last)
    with torch.no_grad():
        up = predict(model, prep(fgsm_images(pixels, direction, 8.0)), BATCH, amp, channels_last)
        down = predict(model, prep(fgsm_images(pixels, -direction, 8.0)), BATCH, amp, channels_last)
    assert error_percent(up, labels) > error_percent(down, labels)


# ----------------------------------------------------------------------------- subset and names

def test_attack_subset_is_fixed_sorted_and_of_the_asked_size():
    labels = np.arange(1000) % 10
    a = attack_subset(labels, 100, 0)
    assert a.shape == (100,) and np.array_equal(a, np.sort(a)) and len(set(a.tolist())) == 100
    assert a.min() >= 0 and a.max() < 1000
    assert np.array_equal(a, attack_subset(labels, 100, 0))          # fixed for a seed
    assert not np.array_equal(a, attack_subset(labels, 100, 1))      # another seed, other images
    assert np.array_equal(attack_subset(labels[::-1].copy(), 100, 0), a)  # depends on the size only
    assert np.array_equal(attack_subset(labels, 0, 0), np.arange(1000))
    assert np.array_equal(attack_subset(labels, 1000, 3), np.arange(1000))
    assert np.array_equal(attack_subset(labels, 5000, 3), np.arange(1000))
    assert attack_subset(labels, 999, 0).shape == (999,)


@pytest.mark.parametrize("eps, key", [(0.5, "eps_0p5"), (4, "eps_4"), (4.0, "eps_4"), (0, "eps_0"),
                                      (0.25, "eps_0p25"), (16.0, "eps_16"), (255, "eps_255"), (1.5, "eps_1p5")])
def test_epsilon_key(eps, key):
    assert epsilon_key(eps) == key
    assert "." not in epsilon_key(eps)


def test_robustness_csv_is_one_row_per_epsilon():
    text = robustness_csv({0.0: 12.5, 0.5: 20.0, 8.0: 100.0 / 3}).decode()
    assert text == "epsilon,top1_error\n0,12.5000\n0.5,20.0000\n8,33.3333\n"


# ----------------------------------------------------------------------------- the stage's files

def leaves(tree, path=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, (*path, key))
    else:
        yield path, tree


@pytest.fixture(scope="module")
def robustness_files(trained, digits_root, tmp_path_factory):
    """robustness_run on the trained model saved as train@ saves it (with its preprocessing)."""
    model, config, _ = trained
    out = tmp_path_factory.mktemp("rob")
    model_path = out / "models/quick/digits-vgg-att2-seed0/model.pt"
    processed = digits_root / "data/processed/digits"
    save_model_file(model_path, config, preprocessing_record(processed), model=model,
                    classes=read_meta(processed)["classes"])
    settings = {"epsilons": [0.0, 2.0, 8.0, LARGEST_EPS], "images": 120, "subset_seed": 5, "batch_size": 50}
    record = robustness_run(model_path, digits_root / "data", out / "record", settings)
    return out / "record", record, settings


def test_robustness_run_writes_json_and_csv(robustness_files, trained, test_split, digits_root):
    out, record, settings = robustness_files
    saved = json.loads((out / "robustness.json").read_text())
    assert saved == record
    errors = saved["fgsm"]["top1_error"]
    assert list(errors) == ["eps_0", "eps_2", "eps_8", "eps_32"]
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100 for v in errors.values())
    assert saved["fgsm"]["images"] == 120 and saved["fgsm"]["subset_seed"] == 5
    assert errors["eps_32"] > errors["eps_0"]

    rows = list(csv.reader(io.StringIO((out / "robustness.csv").read_text())))
    assert rows[0] == ["epsilon", "top1_error"]
    assert [r[0] for r in rows[1:]] == ["0", "2", "8", "32"]
    assert [round(float(r[1]), 4) for r in rows[1:]] == list(errors.values())

    # eps_0 is the clean error of the model on exactly that subset of the test split
    model, config, transform = trained
    images, labels = read_split(digits_root / "data/extracted/digits", "test")
    idx = attack_subset(labels, 120, 5)
    inputs = torch.from_numpy(transform.apply(images[idx]))
    amp, channels_last = amp_of(config)
    clean = error_percent(predict(model, inputs, 50, amp, channels_last), torch.from_numpy(labels[idx]))
    assert errors["eps_0"] == round(clean, 4)
    # 120 images: every error is a multiple of 100/120
    for v in errors.values():
        assert abs(v * 120 / 100 - round(v * 120 / 100)) < 1e-3


def test_robustness_json_is_nested_numbers_only(robustness_files):
    out, _, _ = robustness_files
    saved = json.loads((out / "robustness.json").read_text())
    bad = [".".join(path) for path, value in leaves(saved)
           if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))]
    assert bad == []


def test_robustness_run_refuses_a_model_of_other_data(trained, digits_root, tmp_path):
    """The model file's classes or image shape disagree with data/extracted/<dataset>: one line."""
    model, config, _ = trained
    processed = digits_root / "data/processed/digits"
    path = tmp_path / "models/quick/x-seed0/model.pt"
    save_model_file(path, config, preprocessing_record(processed), model=model, classes=numbered_classes(10))
    with pytest.raises(DamagedFileError) as err:
        robustness_run(path, digits_root / "data", tmp_path / "out",
                       {"epsilons": [0.0], "images": 10, "subset_seed": 0, "batch_size": 10})
    assert "\n" not in str(err.value) and "holds other data now" in str(err.value)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the params section

@pytest.fixture
def robustness_section(quick_params):
    return copy.deepcopy(quick_params["robustness"])


def test_the_quick_suites_robustness_section_is_valid(robustness_section):
    checked = check_robustness(robustness_section)
    assert checked["epsilons"][0] == 0 and checked["epsilons"] == sorted(set(checked["epsilons"]))


@pytest.mark.parametrize("epsilons", [[0, 4, 2], [0, 2, 2], [], [-1, 0, 2], [0, 2, 256], [8, 0], [0, 1, 1000],
                                      [0, float("nan")], [0, "2"], [0, True], "0, 2"])
def test_bad_epsilons_are_a_config_error_naming_the_setting(robustness_section, epsilons):
    robustness_section["epsilons"] = epsilons
    with pytest.raises(ConfigError) as err:
        check_robustness(robustness_section)
    assert "robustness.epsilons" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("epsilons", [[0], [0, 255], [0.5, 1, 1.5], [0, 1, 2, 4, 8]])
def test_good_epsilons_pass(robustness_section, epsilons):
    robustness_section["epsilons"] = epsilons
    assert check_robustness(robustness_section)["epsilons"] == [float(e) for e in epsilons]


def test_an_untrained_model_is_attacked_without_error():
    """fgsm_errors on any model: errors are percentages of whole images, one per epsilon."""
    torch.manual_seed(0)
    model = build_model("vgg", 10, width=0.125, dropout=False).eval()
    t = Transform("scale", (3, 32, 32))
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32)).astype(np.float32))
    labels = torch.arange(8) % 10
    errors = fgsm_errors(model, PixelTransform(t), pixels, labels, [0.0, 1.0, 2.0], 3)
    assert list(errors) == [0.0, 1.0, 2.0]
    assert all(v * 8 / 100 == round(v * 8 / 100) for v in errors.values())
