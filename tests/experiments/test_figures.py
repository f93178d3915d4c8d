"""lpa.experiments.figures: fixed image choice and attention-overlay PNGs."""
import numpy as np
import pytest
import torch

from lpa.experiments.figures import fixed_image_indices, overlay_titles, save_attention_overlays

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_fixed_indices_round_robin_over_classes():
    labels = np.array([2, 0, 1, 0, 2, 1, 0])
    # round 0: first image of class 0, 1, 2 -> 1, 2, 0; round 1: second of 0, 1 -> 3, 5
    np.testing.assert_array_equal(fixed_image_indices(labels, n=5), [1, 2, 0, 3, 5])
    np.testing.assert_array_equal(fixed_image_indices(torch.tensor(labels), n=5), [1, 2, 0, 3, 5])
    # fewer images than asked: all of them, each once
    assert sorted(fixed_image_indices(labels, n=16).tolist()) == list(range(7))


def test_fixed_indices_depend_only_on_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=1000)
    a, b = fixed_image_indices(labels), fixed_image_indices(labels.copy())
    np.testing.assert_array_equal(a, b)
    assert len(a) == 16 and len(set(a.tolist())) == 16
    assert len(set(labels[a[:10]].tolist())) == 10  # every class before any repeats


def test_overlay_titles():
    assert overlay_titles([0, 1], [0, 0], ["cat", "dog"]) == ["true cat, pred cat", "true dog, pred cat (wrong)"]


def _fake(n=16, size=32):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    maps = [
        torch.softmax(torch.randn(n, 1 * size * size), dim=1).reshape(n, 1, size, size),
        np.random.default_rng(1).random((n, 1, size // 2, size // 2), dtype=np.float32),
        torch.randn(n, 1, size // 4, size // 4).to(torch.bfloat16),
    ]
    return images, maps


def test_overlays_write_one_valid_png_per_level(tmp_path):
    from PIL import Image

    images, maps = _fake()
    titles = [f"class {i}" for i in range(16)]
    paths = save_attention_overlays(images, maps, tmp_path / "attention", titles)
    assert [p.name for p in paths] == ["level1.png", "level2.png", "level3.png"]
    assert sorted(p.name for p in (tmp_path / "attention").iterdir()) == [p.name for p in paths]
    for p in paths:
        assert p.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300


def test_overlays_fewer_images_and_constant_map(tmp_path):
    images, _ = _fake(n=5)
    maps = [np.ones((5, 1, 4, 4), dtype=np.float32)]  # constant: must not divide by zero
    paths = save_attention_overlays(images, maps, tmp_path)
    assert [p.name for p in paths] == ["level1.png"]


def test_no_maps_writes_nothing(tmp_path):
    images, _ = _fake(n=4)
    assert save_attention_overlays(images, [], tmp_path / "a") == []
    assert save_attention_overlays(images, None, tmp_path / "a") == []
    assert not (tmp_path / "a").exists()


def test_overlay_input_checks(tmp_path):
    images, maps = _fake(n=4)
    with pytest.raises(ValueError):
        save_attention_overlays(images.astype(np.float32), maps, tmp_path)  # not uint8
    with pytest.raises(ValueError):
        save_attention_overlays(images, [np.zeros((3, 1, 8, 8))], tmp_path)  # wrong N
    with pytest.raises(ValueError):
        save_attention_overlays(images, maps, tmp_path, titles=["a"])  # wrong number of titles
