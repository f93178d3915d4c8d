"""lpa.thumbnails: the segmentation thumbnails' folder format, written by the segment stage and read
by the report's grid."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lpa.thumbnails import INDEX, SIDE, Thumbnail, load_thumbnails, save_thumbnails


def horse(name: str, h: int, w: int, score: float) -> Thumbnail:
    rng = np.random.default_rng(h * w)
    mask = np.zeros((h, w), bool)
    mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
    return Thumbnail(name, score, rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mask, ~mask,
                     np.zeros((h, w), bool))


def test_a_large_picture_comes_back_shrunk_and_its_masks_stay_masks(tmp_path):
    big = horse("h1", 300, 400, 0.5)
    folder = save_thumbnails([big], tmp_path / "first_images")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [INDEX, "0-image.png", "0-mask.png", "0-binary.png", "0-prior.png"])
    [back] = load_thumbnails(folder)
    assert back.name == "h1" and back.jaccard == 0.5
    assert back.image.shape == (96, SIDE, 3) and back.image.dtype == np.uint8
    for part in ("mask", "binary", "prior"):
        got = getattr(back, part)
        assert got.shape == (96, SIDE) and got.dtype == bool
    assert back.mask.mean() == pytest.approx(big.mask.mean(), abs=0.02)
    assert back.binary.mean() == pytest.approx(1 - big.mask.mean(), abs=0.02)
    assert not back.prior.any()


def test_small_pictures_are_kept_exactly_and_in_order(tmp_path):
    items = [horse("a", 24, 32, 0.25), horse("b", 40, 20, 0.75)]
    back = load_thumbnails(save_thumbnails(items, tmp_path / "t"))
    assert [t.name for t in back] == ["a", "b"] and [t.jaccard for t in back] == [0.25, 0.75]
    for got, want in zip(back, items):
        np.testing.assert_array_equal(got.image, want.image)   # never enlarged: PNG is lossless
        np.testing.assert_array_equal(got.mask, want.mask)
        np.testing.assert_array_equal(got.binary, want.binary)
    assert json.loads((tmp_path / "t" / INDEX).read_text()) == {"names": ["a", "b"], "jaccard": [0.25, 0.75]}
