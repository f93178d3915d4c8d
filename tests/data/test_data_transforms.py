"""preprocess@<dataset> as a library call: ZCA / GCN / standardisation fitted on train only."""
from __future__ import annotations

import numpy as np
import pytest

from lpa.data.arrays import read_meta, read_split, write_extracted
from lpa.errors import DataParamError
from lpa.data.pipeline import preprocess_dataset
from lpa.data.transforms import Transform, apply_saved_transform, fit_transform, global_contrast_normalize, load_transform
from lpa.data.types import RawDataset

SHAPE = (3, 4, 4)  # d = 48: small enough for n >> d, so the sample covariance is full rank
D = int(np.prod(SHAPE))


def correlated_images(n: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """uint8 images whose pixels are strongly correlated; covariance eigenvalues about 6..400.

    Centred at 128 with at most ~6 sigma of spread, so nothing is clipped and the uint8 rounding
    adds only 1/12 to each variance.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(np.random.default_rng(123).normal(size=(D, D)))  # fixed basis for all splits
    sd = np.sqrt(np.linspace(6.0, 400.0, D))
    z = rng.normal(size=(n, D)) * sd * scale
    x = 128.0 + shift + z @ q.T
    assert x.min() > 0 and x.max() < 255
    return np.rint(x).astype(np.uint8).reshape(n, *SHAPE)


def make_extracted(tmp_path, name="cifar10", n_train=4000, n_test=1000, test_shift=20.0, test_scale=0.5):
    train = correlated_images(n_train, seed=1)
    test = correlated_images(n_test, seed=2, shift=test_shift, scale=test_scale)  # another distribution
    rng = np.random.default_rng(0)
    data = RawDataset(train, rng.integers(0, 10, n_train), test, rng.integers(0, 10, n_test),
                      [f"c{i}" for i in range(10)], source={"kind": "fixture"})
    data.train_labels = data.train_labels.astype(np.int64)
    data.test_labels = data.test_labels.astype(np.int64)
    out = tmp_path / "extracted" / name
    write_extracted(out, name, data)
    return out, train, test


def numpy_zca(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: eigh of the (n-1) covariance, W = U diag(1/sqrt(S+eps)) U^T."""
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False)
    s, u = np.linalg.eigh(cov)
    return mean, (u / np.sqrt(np.clip(s, 0, None) + eps)) @ u.T


def test_zca_whitened_train_covariance_is_identity(tmp_path):
    src, train, _ = make_extracted(tmp_path)
    out = tmp_path / "processed" / "cifar10"
    eps = 1e-3  # tiny next to the smallest eigenvalue (~6): S / (S + eps) >= 0.9998
    meta = preprocess_dataset("cifar10", {"transform": "zca", "gcn": False, "zca_epsilon": eps}, src, out)
    x, _ = read_split(out, "train")
    assert x.dtype == np.float16 and x.shape == train.shape
    flat = x.reshape(len(x), -1).astype(np.float64)
    cov = np.cov(flat, rowvar=False)
    # Tolerance: 0.01 absolute on every covariance entry. The exact value is S/(S+eps) on the
    # diagonal (>= 0.9998) and 0 elsewhere; float16 storage (relative rounding 2^-11 on values of
    # order 1..4) perturbs the entries by ~1e-3.
    assert np.abs(cov - np.eye(D)).max() < 1e-2
    assert np.abs(flat.mean(axis=0)).max() < 1e-2
    assert meta["preprocessing"]["method"] == "zca" and meta["preprocessing"]["zca_epsilon"] == eps
    assert meta["preprocessing"]["eigenvalue_min"] > 1000 * eps


def test_zca_matches_the_numpy_reference_and_test_uses_train_statistics(tmp_path):
    src, train, test = make_extracted(tmp_path)
    out = tmp_path / "processed" / "cifar10"
    eps = 0.1
    preprocess_dataset("cifar10", {"transform": "zca", "gcn": False, "zca_epsilon": eps}, src, out)
    t = load_transform(out)
    mean, w = numpy_zca(train.reshape(len(train), -1).astype(np.float64), eps)
    np.testing.assert_allclose(t.mean, mean, rtol=0, atol=1e-4)
    np.testing.assert_allclose(t.matrix, w, rtol=0, atol=1e-5 * np.abs(w).max())

    xt, _ = read_split(out, "test")
    expected = (test.reshape(len(test), -1) - mean) @ w
    np.testing.assert_allclose(xt.reshape(len(xt), -1), expected, rtol=2e-3, atol=2e-3)
    # whitened with its own statistics the test split would be centred with identity covariance;
    # with the train statistics its mean is W @ shift (the shift of 20 grey levels) and its
    # covariance about 0.25 I (its spread is half the train spread)
    flat = xt.reshape(len(xt), -1).astype(np.float64)
    np.testing.assert_allclose(flat.mean(axis=0), (np.full(D, 20.0) @ w), atol=0.1)
    assert np.abs(flat.mean(axis=0)).max() > 0.5
    cov = np.cov(flat, rowvar=False)
    assert abs(np.diag(cov).mean() - 0.25) < 0.03


def test_zca_on_cifar_shaped_fixture_with_fewer_images_than_pixels(tmp_path):
    # n < d: the PCA keeps n components; W is the ZCA restricted to the span of the train data
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(60, 3, 32, 32), dtype=np.uint8)
    t = fit_transform(train, "zca", gcn=True, gcn_scale=55.0, zca_epsilon=0.1)
    assert t.matrix.shape == (3072, 3072) and t.matrix.dtype == np.float32
    np.testing.assert_allclose(t.matrix, t.matrix.T, atol=1e-5)
    y = t.apply(train)
    assert y.shape == train.shape and np.isfinite(y).all()


def test_gcn_is_pylearn2_global_contrast_normalize():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 48)).astype(np.float64)
    x[0] = 7.0  # a constant image: norm 0 -> left unscaled (pylearn2 min_divisor rule)
    ref = x - x.mean(axis=1, keepdims=True)
    norms = np.sqrt((ref ** 2).sum(axis=1)) / 55.0
    norms[norms < 1e-8] = 1.0
    ref /= norms[:, None]
    got = global_contrast_normalize(x.copy(), 55.0)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(got[1:], axis=1), 55.0)
    assert (got[0] == 0).all()


def test_gcn_then_zca_pipeline_and_saved_settings(tmp_path):
    src, train, test = make_extracted(tmp_path)
    out = tmp_path / "processed" / "cifar10"
    meta = preprocess_dataset("cifar10", {}, src, out)  # defaults: gcn (scale 55) + zca (eps 0.1)
    p = meta["preprocessing"]
    assert (p["method"], p["gcn"], p["gcn_scale"], p["zca_epsilon"]) == ("zca", True, 55.0, 0.1)
    with np.load(out / "transform.npz") as z:
        assert str(z["method"]) == "zca" and bool(z["gcn"]) and float(z["gcn_scale"]) == 55.0
        assert float(z["zca_epsilon"]) == 0.1 and z["matrix"].shape == (D, D) and z["mean"].shape == (D,)
    g = global_contrast_normalize(train.reshape(len(train), -1).astype(np.float64), 55.0)
    mean, w = numpy_zca(g, 0.1)
    gt = global_contrast_normalize(test.reshape(len(test), -1).astype(np.float64), 55.0)
    xt, _ = read_split(out, "test")
    np.testing.assert_allclose(xt.reshape(len(xt), -1), (gt - mean) @ w, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("method", ["zca", "standardize", "scale", "none"])
def test_apply_saved_transform_reproduces_processed_arrays(tmp_path, method):
    src, _, test = make_extracted(tmp_path, name="imagefolder")
    out = tmp_path / "processed" / "imagefolder"
    meta = preprocess_dataset("imagefolder", {"transform": method, "zca_epsilon": 0.01}, src, out)
    stored, labels = read_split(out, "test")
    again = apply_saved_transform(out, test)
    assert again.dtype == np.float32 and again.shape == test.shape
    # Tolerances, not bit-equality: ZCA is a float32 matrix product, and a BLAS may round its sums
    # differently for another batch shape, memory alignment or thread count (one image against the
    # batch differed by 7e-7 on one CI machine). A few float32 ulps of the largest value allow for
    # that; the stored float16 arrays add at most half a float16 ulp (2**-11 relative).
    scale = float(np.abs(again).max())
    np.testing.assert_allclose(again, stored.astype(np.float32), rtol=2.0 ** -10, atol=1e-5 * scale)
    one = apply_saved_transform(out, test[3])
    np.testing.assert_allclose(one, again[3], rtol=1e-5, atol=1e-5 * scale)
    assert labels.dtype == np.int64
    assert meta["dtype"] == "float16" and meta["image_shape"] == list(SHAPE)
    assert read_meta(out)["preprocessing"]["method"] == method
    with pytest.raises(ValueError, match="uint8"):
        apply_saved_transform(out, test.astype(np.float32))
    with pytest.raises(ValueError, match="fitted on N x 3 x 4 x 4"):
        apply_saved_transform(out, np.zeros((2, 3, 8, 8), np.uint8))


def test_standardize_uses_train_statistics(tmp_path):
    src, train, test = make_extracted(tmp_path, name="digits")
    out = tmp_path / "processed" / "digits"
    preprocess_dataset("digits", {}, src, out)
    x, _ = read_split(out, "train")
    xf = x.astype(np.float64)
    np.testing.assert_allclose(xf.mean(axis=(0, 2, 3)), 0, atol=1e-3)
    np.testing.assert_allclose(xf.std(axis=(0, 2, 3)), 1, atol=1e-3)
    t = load_transform(out)
    tr = train.astype(np.float64)
    np.testing.assert_allclose(t.mean, tr.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(t.std, tr.std(axis=(0, 2, 3)), rtol=1e-6)
    xt, _ = read_split(out, "test")
    expected = (test - tr.mean(axis=(0, 2, 3))[None, :, None, None]) / tr.std(axis=(0, 2, 3))[None, :, None, None]
    np.testing.assert_allclose(xt.astype(np.float64), expected, atol=5e-3)


def test_svhn_default_is_scaling_to_unit_interval(tmp_path):
    src, train, _ = make_extracted(tmp_path, name="svhn")
    out = tmp_path / "processed" / "svhn"
    meta = preprocess_dataset("svhn", {}, src, out)
    x, _ = read_split(out, "train")
    assert meta["preprocessing"]["method"] == "scale"
    np.testing.assert_array_equal(x, (train.astype(np.float32) / np.float32(255)).astype(np.float16))


def test_invalid_preprocess_params_fail_before_reading_anything(tmp_path):
    out = tmp_path / "processed"
    with pytest.raises(DataParamError, match="allowed: transform, gcn, gcn_scale, zca_epsilon"):
        preprocess_dataset("digits", {"normalise": "zca"}, tmp_path / "missing", out)
    with pytest.raises(DataParamError, match="one of zca, standardize, scale, none"):
        preprocess_dataset("digits", {"transform": "pca"}, tmp_path / "missing", out)
    with pytest.raises(DataParamError, match="unknown dataset"):
        preprocess_dataset("imagenet", {}, tmp_path / "missing", out)
    assert not out.exists()


def test_zca_rejected_for_large_images_before_fitting(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, size=(2, 3, 72, 72), dtype=np.uint8)
    data = RawDataset(big, np.zeros(2, np.int64), big, np.zeros(2, np.int64), ["a"])
    write_extracted(tmp_path / "imagefolder", "imagefolder", data)
    with pytest.raises(DataParamError, match="3x72x72 .* use transform=standardize"):
        preprocess_dataset("imagefolder", {"transform": "zca"}, tmp_path / "imagefolder", tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_failure_while_writing_leaves_no_partial_output(tmp_path, monkeypatch):
    src, _, _ = make_extracted(tmp_path, name="digits")
    out = tmp_path / "processed" / "digits"
    preprocess_dataset("digits", {}, src, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    calls = {"n": 0}
    original = Transform.apply

    def apply_then_fail(self, images, out=None, chunk_size=2048):
        calls["n"] += 1
        if calls["n"] == 2:  # train written, test half-way: simulate a crash
            raise OSError("disk full (simulated)")
        return original(self, images, out=out, chunk_size=chunk_size)

    monkeypatch.setattr(Transform, "apply", apply_then_fail)
    with pytest.raises(OSError, match="simulated"):
        preprocess_dataset("digits", {"transform": "scale"}, src, out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["digits"]
    assert read_meta(out)["preprocessing"]["method"] == "standardize"


def test_float16_overflow_is_reported(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(10, 3, 2, 2), dtype=np.uint8)
    t = Transform("zca", (3, 2, 2), mean=np.zeros(12, np.float32), matrix=np.eye(12, dtype=np.float32) * 1e3)
    with pytest.raises(Exception, match="beyond float16"):
        t.apply(x, out=np.empty(x.shape, np.float16))
