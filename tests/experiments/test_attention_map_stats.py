"""lpa.experiments.metrics.attention_map_stats: the largest weight and entropy of softmax maps."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lpa.config.run import resolve_run
from lpa.data.pipeline import extract_dataset, preprocess_dataset
from lpa.experiments.evaluate import evaluate_run
from lpa.experiments.metrics import attention_map_stats
from lpa.train.modelfile import preprocessing_record
from tests.helpers.masks import PASTED
from tests.helpers.models import save_model_file
from tests.helpers.params import shrunk_params


def test_uniform_maps_have_the_largest_entropy():
    maps = [np.full((5, 1, 8, 8), 1 / 64), np.full((5, 1, 4, 2), 1 / 8)]
    stats = attention_map_stats(maps)
    assert list(stats) == ["level1", "level2"]
    assert stats["level1"]["max_weight"] == pytest.approx(1 / 64)
    assert stats["level1"]["entropy"] == pytest.approx(math.log(64), abs=1e-6)
    assert stats["level1"]["max_entropy"] == pytest.approx(math.log(64), abs=1e-6)
    assert (stats["level2"]["height"], stats["level2"]["width"]) == (4, 2)
    assert stats["level2"]["entropy"] == pytest.approx(math.log(8), abs=1e-6)


def test_one_hot_maps_have_weight_one_and_no_entropy():
    maps = np.zeros((3, 1, 4, 4))
    for i in range(3):
        maps[i, 0, i, i] = 1.0
    stats = attention_map_stats([maps])["level1"]
    assert stats["max_weight"] == 1.0 and stats["entropy"] == 0.0


def test_the_mean_over_images():
    # one uniform and one one-hot map: the means of the two
    maps = np.stack([np.full((1, 2, 2), 0.25), np.array([[[1.0, 0.0], [0.0, 0.0]]])])
    stats = attention_map_stats([maps])["level1"]
    assert stats["max_weight"] == pytest.approx((0.25 + 1.0) / 2)
    assert stats["entropy"] == pytest.approx(math.log(4) / 2, abs=1e-6)


def test_softmax_maps_of_a_model_as_torch_tensors():
    torch.manual_seed(0)
    scores = torch.randn(6, 49) * 3
    maps = torch.softmax(scores, dim=1).view(6, 1, 7, 7).to(torch.bfloat16)   # as a bf16 autocast model returns
    stats = attention_map_stats([maps])["level1"]
    p = maps.float().view(6, 49)
    p = p / p.sum(1, keepdim=True)
    expected = torch.distributions.Categorical(probs=p).entropy().mean().item()
    assert stats["entropy"] == pytest.approx(expected, abs=1e-4)
    assert stats["max_weight"] == pytest.approx(p.max(1).values.mean().item(), abs=1e-5)
    assert 0 < stats["entropy"] < stats["max_entropy"]


def test_numbers_only_for_dvc_metrics():
    stats = attention_map_stats([np.full((2, 1, 2, 2), 0.25)])
    json.dumps(stats, allow_nan=False)
    assert all(type(v) in (int, float) for level in stats.values() for v in level.values())


@pytest.mark.parametrize("maps", [np.zeros((2, 2, 4, 4)), np.zeros((0, 1, 4, 4)), np.full((1, 1, 2, 2), -0.1),
                                  np.full((1, 1, 2, 2), np.nan)])
def test_bad_maps_raise(maps):
    with pytest.raises(ValueError):
        attention_map_stats([maps])


# ----------------------------------------------------------------------------- evaluate writes them

@pytest.fixture(scope="module")
def pasted_data(tmp_path_factory) -> Path:
    """data/ with an extracted and a processed pasted_digits (its 90 test images)."""
    root = tmp_path_factory.mktemp("pasted") / "data"
    extract_dataset("pasted_digits", PASTED, root / "extracted/pasted_digits", root / "raw")
    preprocess_dataset("pasted_digits", {"transform": "standardize"}, root / "extracted/pasted_digits",
                       root / "processed/pasted_digits")
    return root


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("run", ["pasted-vgg-att2", "pasted-vgg-gap"])
def test_evaluate_records_map_statistics_of_attention_runs(tmp_path, quick_params, pasted_data, run):
    params = shrunk_params(quick_params, train={"eval_batch_size": 64})
    config = {"trial": f"{run}-seed0", **resolve_run(params, run)}
    path = save_model_file(tmp_path / "model.pt", config,
                           preprocessing_record(pasted_data / "processed/pasted_digits"), seed=0)
    evaluate_run(path, pasted_data, tmp_path / "record")
    saved = json.loads((tmp_path / "record" / "metrics.json").read_text())
    if run == "pasted-vgg-gap":   # a class activation map is no softmax distribution: no statistics
        assert "attention_stats" not in saved
        return
    stats = saved["attention_stats"]
    assert list(stats) == ["level1", "level2"]
    for s in stats.values():
        assert s["max_entropy"] == pytest.approx(math.log(s["height"] * s["width"]), abs=1e-6)
        assert 1 / (s["height"] * s["width"]) - 1e-6 <= s["max_weight"] <= 1.0
        assert 0.0 <= s["entropy"] <= s["max_entropy"] + 1e-6
