"""lpa.experiments.segmentation (weakly supervised segmentation: maps -> masks -> Jaccard), the generated
pasted_digits dataset, and the segment stage's one-line error. The mask datasets' reader is
tests/data/test_masks.py's.

Small by design: hand-made arrays for the map arithmetic, a pasted_digits extract with a 5% test
split (90 images), tmp folders of a few pictures and untrained width-0.125 models for the
end-to-end run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from lpa.config.run import resolve_run
from lpa.data.arrays import MASKS_FILE
from lpa.errors import DatasetFormatError
from lpa.data.pasted_digits import load_pasted_digits, paste_digits
from lpa.data.pipeline import extract_dataset, preprocess_dataset
from lpa.errors import ConfigError
from lpa.layout import model_file
from lpa.train.modelfile import preprocessing_record
from lpa.config.params import compose_params_yaml
from lpa.data.masks import read_mask_dataset
from lpa.experiments.segmentation import (binarise, centre_prior, combine_levels, jaccard, otsu_threshold,
                                          rescale_to_unit, segmentation_run)
from lpa.thumbnails import FOLDER, load_thumbnails
from tests.helpers.run import REPO
from tests.helpers.checks import one_line
from tests.helpers.masks import N_TEST, PASTED, rgb, save_image, save_mask
from tests.helpers.models import save_model_file
from tests.helpers.params import shrunk_params

SETTINGS = {"combine": "mean", "threshold": "otsu", "threshold_value": 0.5, "centre_sigma": 0.25,
            "figure_images": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def square(shape, top, left, size) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[top:top + size, left:left + size] = True
    return m


# ----------------------------------------------------------------------------- jaccard

def test_jaccard_of_overlapping_squares():
    # two 2x2 squares sharing one pixel: |P & M| = 1, |P | M| = 4 + 4 - 1 = 7
    assert jaccard(square((6, 6), 0, 0, 2), square((6, 6), 1, 1, 2)) == pytest.approx(1 / 7)
    # two 3x3 squares shifted by one pixel both ways: 2x2 = 4 shared, 9 + 9 - 4 = 14 in the union
    assert jaccard(square((6, 6), 0, 0, 3), square((6, 6), 1, 1, 3)) == pytest.approx(4 / 14)
    # a 2x2 square inside a 4x4 one: 4 / 16
    assert jaccard(square((6, 6), 1, 1, 2), square((6, 6), 0, 0, 4)) == pytest.approx(0.25)


def test_jaccard_edge_cases():
    m = square((5, 7), 1, 2, 3)
    empty = np.zeros((5, 7), dtype=bool)
    assert jaccard(m, m) == 1.0
    assert jaccard(m, square((5, 7), 0, 5, 2) & ~m) == 0.0       # disjoint
    assert jaccard(empty, empty) == 1.0                         # nothing to find, nothing found
    assert jaccard(empty, m) == 0.0                             # found nothing, something was there
    assert jaccard(m, empty) == 0.0                             # found something, nothing was there
    assert isinstance(jaccard(m, m), float)


# ----------------------------------------------------------------------------- thresholds

def test_otsu_splits_a_bimodal_map_between_its_modes():
    rng = np.random.default_rng(0)
    half = np.zeros((20, 20), dtype=bool)
    half[:, :10] = True
    m = np.where(half, 0.8, 0.2) + rng.uniform(-0.01, 0.01, size=half.shape)
    t = otsu_threshold(m)
    assert m[~half].max() < t <= m[half].min()
    assert 0.2 < t < 0.8
    np.testing.assert_array_equal(binarise(m, "otsu", 0.5), half)


def test_otsu_on_an_unbalanced_bimodal_map():
    m = np.full((10, 10), 0.1)
    m[2:4, 3:6] = 0.9    # a small bright object on a large dark ground
    np.testing.assert_array_equal(binarise(m, "otsu", 0.5), m > 0.5)


def test_a_constant_map_binarises_to_nothing():
    # every map is min-max rescaled to [0, 1] before thresholding: a constant one becomes all zeros
    flat = rescale_to_unit(np.full((6, 6), 0.7))
    np.testing.assert_array_equal(flat, np.zeros((6, 6)))
    assert not binarise(flat, "otsu", 0.5).any()
    assert not binarise(flat, "fixed", 0.5).any()
    combined = combine_levels([np.full((2, 2), 3.0), np.full((4, 4), -1.0)], (8, 8), "mean")
    assert not binarise(combined, "otsu", 0.5).any()


def test_fixed_threshold_is_inclusive():
    m = np.array([[0.0, 0.49, 0.5], [0.51, 0.99, 1.0]])
    np.testing.assert_array_equal(binarise(m, "fixed", 0.5), [[False, False, True], [True, True, True]])
    np.testing.assert_array_equal(binarise(m, "fixed", 0.0), np.ones_like(m, dtype=bool))
    np.testing.assert_array_equal(binarise(m, "fixed", 1.0), m == 1.0)


# ----------------------------------------------------------------------------- combining levels

# bilinear upsampling (align_corners=False, edges clamped) by hand:
# 2 -> 8: output i samples source (i + 0.5) / 4 - 0.5, so the weight of source index 1 is
W2 = np.array([0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1])
# 4 -> 8: output i samples source (i + 0.5) / 2 - 0.5, so the weight of source index 0 is
W4_FIRST = np.array([1, 0.75, 0.25, 0, 0, 0, 0, 0])


def hand_levels():
    coarse = 3.0 + 5.0 * np.array([[0.0, 0.0], [0.0, 1.0]])     # hot bottom-right, not in [0, 1]
    fine = np.zeros((4, 4))
    fine[0, :] = 2.0                                             # hot top row
    up_coarse = np.outer(W2, W2)                                 # already spans [0, 1]
    up_fine = np.repeat(W4_FIRST[:, None], 8, axis=1)
    return [coarse, fine], up_coarse, up_fine


def minmax(m):
    return (m - m.min()) / (m.max() - m.min())


def test_combine_levels_by_hand():
    maps, up_coarse, up_fine = hand_levels()
    np.testing.assert_allclose(combine_levels(maps, (8, 8), "level1"), up_coarse, atol=1e-6)
    np.testing.assert_allclose(combine_levels(maps, (8, 8), "level2"), up_fine, atol=1e-6)
    np.testing.assert_allclose(combine_levels(maps, (8, 8), "mean"), minmax((up_coarse + up_fine) / 2), atol=1e-6)
    np.testing.assert_allclose(combine_levels(maps, (8, 8), "max"), minmax(np.maximum(up_coarse, up_fine)),
                               atol=1e-6)
    for how in ("mean", "max", "level1", "level2"):
        out = combine_levels(maps, (8, 8), how)
        assert out.shape == (8, 8) and out.min() == pytest.approx(0) and out.max() == pytest.approx(1)


def test_combine_levels_to_a_non_square_picture():
    maps, _, _ = hand_levels()
    out = combine_levels(maps, (5, 12), "mean")
    assert out.shape == (5, 12) and 0 <= out.min() and out.max() <= 1


def test_a_level_the_model_does_not_have():
    maps, _, _ = hand_levels()
    with pytest.raises(ConfigError, match="segmentation.combine=level3, but the model has 2 attention level"):
        combine_levels(maps, (8, 8), "level3")


# ----------------------------------------------------------------------------- centre prior

def test_centre_prior_peaks_at_the_centre_and_is_symmetric():
    p = centre_prior((11, 31), 0.25)
    assert p.shape == (11, 31) and p.dtype == np.float32
    assert p[5, 15] == pytest.approx(1.0) and p.argmax() == np.ravel_multi_index((5, 15), p.shape)
    np.testing.assert_allclose(p, p[::-1, :])
    np.testing.assert_allclose(p, p[:, ::-1])
    even = centre_prior((8, 12), 0.25)   # the centre falls between pixels: four equal maxima
    np.testing.assert_allclose(even, even[::-1, ::-1])
    assert even[3, 5] == even[4, 6] == even.max() < 1


def test_centre_prior_sigma_is_a_share_of_the_shorter_side():
    for shape in ((11, 31), (31, 11), (11, 11)):
        p = centre_prior(shape, 0.25)
        s = 0.25 * 11
        d = np.arange(6)
        row = p[shape[0] // 2, shape[1] // 2 + d]
        col = p[shape[0] // 2 + d, shape[1] // 2]
        np.testing.assert_allclose(row, np.exp(-d ** 2 / (2 * s * s)), rtol=1e-5)
        np.testing.assert_allclose(col, np.exp(-d ** 2 / (2 * s * s)), rtol=1e-5)
    # the longer side does not matter; a longer shorter side widens the Gaussian
    np.testing.assert_allclose(centre_prior((11, 31), 0.25)[5, 15:], centre_prior((11, 51), 0.25)[5, 25:41])
    wide = centre_prior((21, 31), 0.25)
    assert (wide[10, 16:] > centre_prior((11, 31), 0.25)[5, 16:]).all()
    np.testing.assert_allclose(centre_prior((11, 31), 0.5)[5, 15:], np.exp(-np.arange(16) ** 2 / (2 * 5.5 ** 2)),
                               rtol=1e-5)
    # binarised, it is a blob at the centre
    b = binarise(centre_prior((20, 30), 0.25), "otsu", 0.5)
    assert b[10, 15] and not b[0, 0] and 0 < b.mean() < 0.6


# ----------------------------------------------------------------------------- pasted_digits

@pytest.fixture(scope="module")
def pasted(tmp_path_factory) -> dict:
    """An extracted and a processed pasted_digits (90 test images with masks)."""
    root = tmp_path_factory.mktemp("pasted")
    ext, proc = root / "data/extracted/pasted_digits", root / "data/processed/pasted_digits"
    meta = extract_dataset("pasted_digits", PASTED, ext, root / "data/raw")
    preprocess_dataset("pasted_digits", {"transform": "standardize"}, ext, proc)
    return {"root": root, "extracted": ext, "processed": proc, "meta": meta}


@pytest.fixture(scope="module")
def grey_digits() -> np.ndarray:
    from sklearn.datasets import load_digits
    return load_digits().images[:40]


def test_pasted_digits_are_deterministic_by_seed(grey_digits):
    a_images, a_masks = paste_digits(grey_digits, 24, 12, seed=3)
    b_images, b_masks = paste_digits(grey_digits, 24, 12, seed=3)
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_masks, b_masks)
    c_images, c_masks = paste_digits(grey_digits, 24, 12, seed=4)
    assert not np.array_equal(a_images, c_images) and not np.array_equal(a_masks, c_masks)


def test_pasted_digits_extract_is_reproducible(pasted):
    again = load_pasted_digits(**{k: PASTED[k] for k in ("image_size", "digit_size", "test_fraction",
                                                         "split_seed", "seed")})
    ext = pasted["extracted"]
    np.testing.assert_array_equal(again.test_images, np.load(ext / "test_images.npy"))
    np.testing.assert_array_equal(again.train_images, np.load(ext / "train_images.npy"))
    np.testing.assert_array_equal(again.test_masks, np.load(ext / MASKS_FILE))
    np.testing.assert_array_equal(again.test_labels, np.load(ext / "test_labels.npy"))


def test_pasted_digit_masks(pasted, grey_digits):
    ext, meta = pasted["extracted"], pasted["meta"]
    masks = np.load(ext / MASKS_FILE)
    images = np.load(ext / "test_images.npy")
    assert masks.dtype == bool and masks.shape == (meta["splits"]["test"], 32, 32) == (N_TEST, 32, 32)
    assert meta["source"]["masks"].startswith("test split")
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    for i in range(N_TEST):
        assert masks[i].any()
        r, c = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        assert r[-1] - r[0] < 16 and c[-1] - c[0] < 16       # inside one 16 x 16 pasted square
        grey = images[i].astype(np.float64).mean(axis=0)
        assert grey[masks[i]].mean() > grey[~masks[i]].mean() + 20   # the ink is brighter than the ground
    # the same holds for the masks paste_digits returns directly, at another size
    small_images, small_masks = paste_digits(grey_digits, 20, 8, seed=0)
    assert small_images.shape == (40, 3, 20, 20) and small_masks.shape == (40, 20, 20)
    for m in small_masks:
        r, c = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        assert m.any() and r[-1] - r[0] < 8 and c[-1] - c[0] < 8


def test_paste_digits_rejects_a_digit_larger_than_the_canvas(grey_digits):
    with pytest.raises(ValueError, match="digit_size 40 must be between 4 and the image size 32"):
        paste_digits(grey_digits[:2], 32, 40, seed=0)


# ----------------------------------------------------------------------------- segmentation_run

def tiny_run_config(quick_params, run: str) -> dict:
    params = shrunk_params(quick_params, train={"eval_batch_size": 64})
    return {"trial": f"{run}-seed0", **resolve_run(params, run)}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, quick_params, pasted) -> dict:
    """Untrained width-0.125 model files (vgg-att2, vgg-gap, vgg) with pasted_digits' preprocessing."""
    torch.manual_seed(0)  # once: the three models are three draws of one seeded stream
    root = tmp_path_factory.mktemp("models")
    record = preprocessing_record(pasted["processed"])
    paths = {}
    for run in ("pasted-vgg-att2", "pasted-vgg-gap", "digits-vgg"):
        config = tiny_run_config(quick_params, run)
        paths[config["model"]["name"]] = save_model_file(root / config["trial"] / "model.pt", config, record)
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model_files, pasted) -> dict:
    out = tmp_path_factory.mktemp("segment")
    results = {}
    # figures cost ~0.3 s each (one per class): vgg-gap's run draws none
    for name, figure_images in (("vgg-att2", 1), ("vgg-gap", 0)):
        metrics, figures = out / name / "pasted.json", out / name / "pasted"
        record = segmentation_run(model_files[name], pasted["extracted"], metrics, figures,
                                  {**SETTINGS, "figure_images": figure_images})
        results[name] = {"record": record, "metrics": metrics, "figures": figures}
    return results


@pytest.mark.parametrize("name", ["vgg-att2", "vgg-gap"])
def test_segmentation_run_writes_its_record(runs, name):
    run = runs[name]
    record = run["record"]
    assert json.loads(run["metrics"].read_text()) == record
    assert record["images"] == N_TEST
    classes = [str(d) for d in range(10)]
    for who in ("model", "centre_prior"):
        scores = record["jaccard"][who]
        assert list(scores) == classes + ["mean"]
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    figures = sorted(p.name for p in run["figures"].iterdir())
    if name == "vgg-att2":   # figure_images=1: one figure per class, and the first image for the report's grid
        assert figures == sorted([f"{c}.png" for c in classes] + [FOLDER])
        for png in run["figures"].glob("*.png"):
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:                    # figure_images=0: the folder (a DVC output) exists, empty
        assert run["figures"].is_dir() and figures == []


def test_first_images_for_the_reports_grid(runs, pasted):
    # figure_images=1: the dataset's first image (fixed order), its mask and both thresholded maps
    saved = load_thumbnails(runs["vgg-att2"]["figures"] / FOLDER)
    first = read_mask_dataset(pasted["extracted"])[0]
    assert [t.name for t in saved] == [first.name]
    assert saved[0].image.dtype == np.uint8 and saved[0].image.shape == first.image.shape
    np.testing.assert_array_equal(saved[0].mask, first.mask)
    assert saved[0].binary.dtype == bool and saved[0].prior.shape == first.mask.shape
    assert 0.0 <= saved[0].jaccard <= 1.0


def test_centre_prior_scores_are_the_models_floor_computed_once(runs, pasted):
    # the prior uses no model: both runs report the same numbers, and they are the plain mean of the
    # per-image Jaccard of the binarised Gaussian (the overall mean is over images, not over classes)
    a, b = (runs[n]["record"]["jaccard"]["centre_prior"] for n in ("vgg-att2", "vgg-gap"))
    assert a == b
    items = read_mask_dataset(pasted["extracted"])
    scores = [jaccard(binarise(centre_prior(it.mask.shape, 0.25), "otsu", 0.5), it.mask) for it in items]
    assert a["mean"] == pytest.approx(np.mean(scores))
    for c in map(str, range(10)):
        assert a[c] == pytest.approx(np.mean([s for s, it in zip(scores, items) if it.group == c]))


def test_model_scores_differ_between_models(runs):
    a, b = (runs[n]["record"]["jaccard"]["model"] for n in ("vgg-att2", "vgg-gap"))
    assert a != b


def test_a_model_without_maps(tmp_path, model_files, pasted):
    with pytest.raises(ConfigError) as err:
        segmentation_run(model_files["vgg"], pasted["extracted"], tmp_path / "m.json", tmp_path / "figs", SETTINGS)
    assert "vgg has no attention maps" in one_line(err)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "figs").exists()


def test_a_level_the_run_does_not_have(tmp_path, model_files, pasted):
    settings = {**SETTINGS, "combine": "level3"}
    with pytest.raises(ConfigError, match="level3, but the model has 1 attention level"):
        segmentation_run(model_files["vgg-gap"], pasted["extracted"], tmp_path / "m.json", tmp_path / "f", settings)
    assert not (tmp_path / "m.json").exists()


def test_segmentation_run_with_a_missing_dataset(tmp_path, model_files):
    with pytest.raises(DatasetFormatError, match=f"segmentation dataset {tmp_path / 'nowhere'} does not exist"):
        segmentation_run(model_files["vgg-att2"], tmp_path / "nowhere", tmp_path / "m.json", tmp_path / "f",
                         SETTINGS)
    assert not (tmp_path / "m.json").exists()


def test_segmentation_run_on_pictures_of_other_sizes(tmp_path, model_files):
    # Object Discovery's pictures are of every size and not square: each is converted to the model's
    # 32 x 32 for its maps, and the maps are upsampled back to the picture's own size for its mask
    root = tmp_path / "Data"
    sizes = {"Car100": [(40, 24), (24, 40)], "Horse100": [(33, 50), (32, 32), (17, 60)]}
    for folder, shapes in sizes.items():
        for k, (h, w) in enumerate(shapes):
            save_image(root / folder / f"{k}.jpg", rgb(h, w, k))
            save_mask(root / folder / "GroundTruth" / f"{k}.png", square((h, w), h // 4, w // 4, min(h, w) // 2) * 255)
    settings = {**SETTINGS, "combine": "max", "threshold": "fixed", "figure_images": 2}
    record = segmentation_run(model_files["vgg-att2"], root, tmp_path / "od.json", tmp_path / "od", settings)
    assert record["images"] == 5
    assert list(record["jaccard"]["model"]) == ["car", "horse", "mean"]
    assert all(0 <= v <= 1 for who in ("model", "centre_prior") for v in record["jaccard"][who].values())
    # the centre prior finds most of a centred square
    assert record["jaccard"]["centre_prior"]["mean"] > 0.3
    assert sorted(p.name for p in (tmp_path / "od").iterdir()) == ["car.png", FOLDER, "horse.png"]
    saved = load_thumbnails(tmp_path / "od" / FOLDER)   # the first 2 images whatever their class and size
    assert [t.image.shape[:2] for t in saved] == [(40, 24), (24, 40)]


# ----------------------------------------------------------------------------- the stage

def test_segment_stage_with_a_missing_dataset_root_prints_one_line(tmp_path, model_files):
    params_text = compose_params_yaml(["suite=quick"], root=REPO)
    params = yaml.safe_load(params_text)
    pair = "pasted-vgg-att2-seed0-on-pasted"
    item = params["segmentation_pairs"][pair]
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    (work / "params.yaml").write_text(params_text)
    target = work / model_file("quick", item["trial"])
    target.parent.mkdir(parents=True)
    shutil.copy(model_files["vgg-att2"], target)
    assert not (work / item["root"]).exists()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("LPA_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-m", "stages.segment", pair], cwd=work, env=env, capture_output=True,
                          text=True, timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert f"error: segmentation dataset {item['root']} does not exist" in lines[0]
    assert not (work / "reports").exists()


