"""download@<dataset> as a library call: official formats in, contract arrays out, bad input out loud.

No test touches the network: fixture archives carry the official file names and formats, their
MD5 is supplied by the test, and their URL is unreachable (http://127.0.0.1:9/...), so a test that
does reach the download path gets "connection refused" at once.
"""
from __future__ import annotations

import functools
import http.server
import os
import tarfile
import threading

import numpy as np
import pytest
from tests.helpers.archives import (
    UNREACHABLE,
    make_cifar10_archive,
    make_cifar100_archive,
    make_imagefolder,
    make_svhn_mat,
    remote,
)

from lpa.data import pipeline, sources
from lpa.data.arrays import read_meta, read_split
from lpa.errors import DataParamError, DatasetFormatError, DownloadError, IntegrityError
from lpa.config.data_options import validate_dataset_params
from lpa.data.pipeline import extract_dataset


def leftovers(parent):
    """Temporary or partial entries a failed stage could leave next to its output."""
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


# ----------------------------------------------------------------------------- sources


def test_official_urls_and_md5s_match_torchvision():
    from torchvision.datasets import CIFAR10, CIFAR100, SVHN

    assert (sources.CIFAR10_ARCHIVE.url, sources.CIFAR10_ARCHIVE.filename, sources.CIFAR10_ARCHIVE.md5) == (
        CIFAR10.url, CIFAR10.filename, CIFAR10.tgz_md5)
    assert (sources.CIFAR100_ARCHIVE.url, sources.CIFAR100_ARCHIVE.filename, sources.CIFAR100_ARCHIVE.md5) == (
        CIFAR100.url, CIFAR100.filename, CIFAR100.tgz_md5)
    for split, ours in (("train", sources.SVHN_TRAIN), ("test", sources.SVHN_TEST), ("extra", sources.SVHN_EXTRA)):
        assert [ours.url, ours.filename, ours.md5] == SVHN.split_list[split]


def test_every_dataset_declares_its_official_files():
    import re

    from lpa.config.data_options import DATASETS

    assert set(sources.REMOTE_FILES) == set(DATASETS)
    for name, files in sources.REMOTE_FILES.items():
        for role, ours in files.items():
            assert re.fullmatch(r"[0-9a-f]{32}", ours.md5), (name, role)
            assert ours.url.startswith(("https://", "http://")) and ours.filename in ours.url, (name, role)
            assert ours.size is None or ours.size > 0
    assert set(pipeline.needed_files("cub200", {"crop": True, "image_size": 80})) == {"archive"}


# ----------------------------------------------------------------------------- CIFAR


def test_cifar10_archive_in_raw_dir_is_verified_and_parsed(tmp_path):
    raw = tmp_path / "raw"
    fx = make_cifar10_archive(raw)
    out = tmp_path / "extracted" / "cifar10"
    meta = extract_dataset("cifar10", {}, out, raw, files={"archive": remote(fx["path"].name, fx["md5"])})

    for split in ("train", "test"):
        x, y = read_split(out, split)
        assert x.dtype == np.uint8 and y.dtype == np.int64
        np.testing.assert_array_equal(x, fx[f"{split}_x"])
        np.testing.assert_array_equal(y, fx[f"{split}_y"])
    assert x.shape[1:] == (3, 32, 32)
    assert meta == read_meta(out)
    assert meta["classes"] == fx["classes"] and meta["num_classes"] == 10
    assert meta["splits"] == {"train": 30, "test": 8}
    assert meta["source"]["files"]["archive"]["md5"] == fx["md5"]
    assert fx["path"].exists(), "the raw archive stays where the user put it"
    assert leftovers(tmp_path / "extracted") == ["cifar10"]


def test_cifar10_channel_order_is_rgb_planes():
    # the official layout: 1024 red values, then green, then blue, each row-major 32 x 32
    row = np.concatenate([np.full(1024, 1), np.full(1024, 2), np.arange(1024) % 256]).astype(np.uint8)
    img = row.reshape(3, 32, 32)
    assert (img[0] == 1).all() and (img[1] == 2).all() and img[2, 0, 5] == 5 and img[2, 1, 0] == 32


def test_cifar100_uses_fine_labels_and_names(tmp_path):
    raw = tmp_path / "raw"
    fx = make_cifar100_archive(raw)
    out = tmp_path / "cifar100"
    meta = extract_dataset("cifar100", {}, out, raw, files={"archive": remote(fx["path"].name, fx["md5"])})
    assert meta["num_classes"] == 100 and meta["classes"] == fx["classes"]
    for split in ("train", "test"):
        x, y = read_split(out, split)
        np.testing.assert_array_equal(x, fx[f"{split}_x"])
        np.testing.assert_array_equal(y, fx[f"{split}_y"])


def test_missing_archive_without_network_names_file_url_and_raw_dir(tmp_path):
    raw = tmp_path / "raw"
    out = tmp_path / "extracted" / "cifar10"
    url = f"{UNREACHABLE}/cifar-10-python.tar.gz"
    files = {"archive": sources.RemoteFile("cifar-10-python.tar.gz", url, "0" * 32)}
    with pytest.raises(DownloadError) as err:
        extract_dataset("cifar10", {}, out, raw, files=files)
    msg = str(err.value)
    assert "\n" not in msg
    assert "cifar-10-python.tar.gz" in msg and url in msg and str(raw / "cifar-10-python.tar.gz") in msg
    assert not out.exists() and leftovers(raw) == [], "no partial download, no output"


@pytest.fixture
def local_http(tmp_path, monkeypatch):
    """A web server on 127.0.0.1 serving tmp_path/www (loopback only: no real network)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_missing_archive_is_downloaded_into_raw_dir_and_verified(tmp_path, local_http):
    www, base = local_http
    fx = make_cifar10_archive(www)
    raw = tmp_path / "raw"
    (raw).mkdir()
    (raw / ".cifar-10-python.tar.gz.999999999.part").write_bytes(b"left by a killed run")
    files = {"archive": sources.RemoteFile("cifar-10-python.tar.gz", f"{base}/cifar-10-python.tar.gz", fx["md5"])}
    out = tmp_path / "extracted" / "cifar10"
    extract_dataset("cifar10", {}, out, raw, files=files)
    assert leftovers(raw) == ["cifar-10-python.tar.gz"], "downloaded under its official name, no .part left"
    assert (raw / "cifar-10-python.tar.gz").read_bytes() == fx["path"].read_bytes()
    np.testing.assert_array_equal(read_split(out, "train")[0], fx["train_x"])
    (www / "cifar-10-python.tar.gz").unlink()  # the second run must not need the network
    extract_dataset("cifar10", {}, tmp_path / "again", raw, files=files)


def test_download_with_wrong_md5_is_kept_aside(tmp_path, local_http):
    www, base = local_http
    fx = make_cifar10_archive(www)
    raw = tmp_path / "raw"
    files = {"archive": sources.RemoteFile("cifar-10-python.tar.gz", f"{base}/cifar-10-python.tar.gz", "f" * 32)}
    with pytest.raises(IntegrityError, match=f"its MD5 is {fx['md5']}"):
        extract_dataset("cifar10", {}, tmp_path / "out", raw, files=files)
    assert leftovers(raw) == ["cifar-10-python.tar.gz.corrupt"] and not (tmp_path / "out").exists()


def test_download_of_a_missing_url_fails_in_one_line(tmp_path, local_http):
    _, base = local_http
    files = {"archive": sources.RemoteFile("cifar-10-python.tar.gz", f"{base}/nothing-here.tar.gz", "0" * 32)}
    with pytest.raises(DownloadError, match="404") as err:
        extract_dataset("cifar10", {}, tmp_path / "out", tmp_path / "raw", files=files)
    assert "\n" not in str(err.value) and "place it at" in str(err.value)
    assert leftovers(tmp_path / "raw") == []


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_archive_is_moved_aside(tmp_path, damage):
    raw = tmp_path / "raw"
    fx = make_cifar10_archive(raw)
    good = fx["path"].read_bytes()
    fx["path"].write_bytes(b"not a tarball" if damage == "garbage" else good[: len(good) // 2])
    out = tmp_path / "extracted" / "cifar10"
    with pytest.raises(IntegrityError) as err:
        extract_dataset("cifar10", {}, out, raw, files={"archive": remote(fx["path"].name, fx["md5"])})
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and fx["md5"] in msg and ".corrupt" in msg
    assert leftovers(raw) == ["cifar-10-python.tar.gz.corrupt"]
    assert not out.exists() and leftovers(out.parent) == []


def test_archive_that_matches_its_md5_but_cannot_be_extracted(tmp_path):
    # e.g. a mirror whose MD5 we were told: the failure is a format error and nothing is written
    raw = tmp_path / "raw"
    fx = make_cifar10_archive(raw)
    good = fx["path"].read_bytes()
    fx["path"].write_bytes(good[: len(good) - 200])
    from tests.helpers.archives import md5_of

    out = tmp_path / "extracted" / "cifar10"
    with pytest.raises(DatasetFormatError, match="cifar-10-python.tar.gz"):
        extract_dataset("cifar10", {}, out, raw, files={"archive": remote(fx["path"].name, md5_of(fx["path"]))})
    assert not out.exists() and leftovers(out.parent) == []


def test_failed_run_keeps_the_previous_output(tmp_path):
    raw = tmp_path / "raw"
    fx = make_cifar10_archive(raw)
    out = tmp_path / "extracted" / "cifar10"
    files = {"archive": remote(fx["path"].name, fx["md5"])}
    extract_dataset("cifar10", {}, out, raw, files=files)
    before = sorted(os.listdir(out))
    fx["path"].write_bytes(b"broken")
    with pytest.raises(IntegrityError):
        extract_dataset("cifar10", {}, out, raw, files=files)
    assert sorted(os.listdir(out)) == before and leftovers(out.parent) == ["cifar10"]


def test_archive_without_official_top_directory(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    path = raw / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(__file__, arcname="something-else/file.py")
    from tests.helpers.archives import md5_of

    with pytest.raises(DatasetFormatError, match="cifar-10-batches-py"):
        extract_dataset("cifar10", {}, tmp_path / "out", raw, files={"archive": remote(path.name, md5_of(path))})


# ----------------------------------------------------------------------------- SVHN


def test_svhn_mat_files_label_10_is_digit_0_and_extra_is_not_fetched(tmp_path):
    raw = tmp_path / "raw"
    tr = make_svhn_mat(raw / "train_32x32.mat", 20, seed=1)
    te = make_svhn_mat(raw / "test_32x32.mat", 7, seed=2)
    files = {"train": remote("train_32x32.mat", tr["md5"]), "test": remote("test_32x32.mat", te["md5"]),
             "extra": remote("extra_32x32.mat", "0" * 32)}  # absent + unreachable: must not be needed
    out = tmp_path / "svhn"
    meta = extract_dataset("svhn", {"use_extra": False}, out, raw, files=files)
    assert meta["classes"] == [str(d) for d in range(10)]
    for split, fx in (("train", tr), ("test", te)):
        x, y = read_split(out, split)
        assert x.shape == (fx["labels"].shape[0], 3, 32, 32) and x.dtype == np.uint8
        np.testing.assert_array_equal(x, fx["images"])
        np.testing.assert_array_equal(y, fx["labels"])
    assert 0 in set(read_split(out, "train")[1].tolist())
    assert not (raw / "extra_32x32.mat").exists()


def test_svhn_use_extra_appends_extra_to_train(tmp_path):
    raw = tmp_path / "raw"
    tr = make_svhn_mat(raw / "train_32x32.mat", 10, seed=1)
    te = make_svhn_mat(raw / "test_32x32.mat", 4, seed=2)
    ex = make_svhn_mat(raw / "extra_32x32.mat", 6, seed=3)
    files = {r: remote(f"{r}_32x32.mat", fx["md5"]) for r, fx in (("train", tr), ("test", te), ("extra", ex))}
    out = tmp_path / "svhn"
    extract_dataset("svhn", {"use_extra": True}, out, raw, files=files)
    x, y = read_split(out, "train")
    np.testing.assert_array_equal(x, np.concatenate([tr["images"], ex["images"]]))
    np.testing.assert_array_equal(y, np.concatenate([tr["labels"], ex["labels"]]))


def test_svhn_missing_extra_fails_before_parsing_anything(tmp_path):
    raw = tmp_path / "raw"
    tr = make_svhn_mat(raw / "train_32x32.mat", 5)
    te = make_svhn_mat(raw / "test_32x32.mat", 5)
    files = {"train": remote("train_32x32.mat", tr["md5"]), "test": remote("test_32x32.mat", te["md5"]),
             "extra": remote("extra_32x32.mat", "0" * 32)}
    with pytest.raises(DownloadError, match="extra_32x32.mat"):
        extract_dataset("svhn", {"use_extra": True}, tmp_path / "svhn", raw, files=files)
    assert not (tmp_path / "svhn").exists()


def test_truncated_svhn_mat_is_moved_aside(tmp_path):
    raw = tmp_path / "raw"
    tr = make_svhn_mat(raw / "train_32x32.mat", 8)
    te = make_svhn_mat(raw / "test_32x32.mat", 4)
    data = tr["path"].read_bytes()
    tr["path"].write_bytes(data[: len(data) // 3])
    files = {"train": remote("train_32x32.mat", tr["md5"]), "test": remote("test_32x32.mat", te["md5"])}
    with pytest.raises(IntegrityError, match="train_32x32.mat"):
        extract_dataset("svhn", {}, tmp_path / "svhn", raw, files=files)
    assert (raw / "train_32x32.mat.corrupt").exists() and not (tmp_path / "svhn").exists()


# ----------------------------------------------------------------------------- digits


def test_digits_embedded_split_is_stratified_seeded_and_rgb(tmp_path):
    out = tmp_path / "digits"
    meta = extract_dataset("digits", {"image_size": 32, "test_fraction": 0.2, "split_seed": 0}, out)
    xtr, ytr = read_split(out, "train")
    xte, yte = read_split(out, "test")
    assert xtr.shape == (1437, 3, 32, 32) and xte.shape == (360, 3, 32, 32) and xtr.dtype == np.uint8
    assert (xtr[:, 0] == xtr[:, 1]).all() and (xtr[:, 0] == xtr[:, 2]).all()
    assert xtr.max() > 200 and xtr.min() == 0
    counts_tr, counts_te = np.bincount(ytr), np.bincount(yte)
    assert (np.abs(counts_te / counts_tr - 0.25) < 0.05).all(), "stratified: each class split ~80/20"
    assert meta["classes"] == [str(d) for d in range(10)]
    again = extract_dataset("digits", {"split_seed": 0}, tmp_path / "again")
    other = extract_dataset("digits", {"split_seed": 1}, tmp_path / "other")
    assert again["splits"] == meta["splits"]
    np.testing.assert_array_equal(read_split(tmp_path / "again", "test")[1], yte)
    assert not np.array_equal(read_split(tmp_path / "other", "test")[0], xte)
    assert other["splits"] == meta["splits"]


def test_digits_image_size(tmp_path):
    extract_dataset("digits", {"image_size": 16}, tmp_path / "d16")
    assert read_split(tmp_path / "d16", "train")[0].shape[1:] == (3, 16, 16)


# ----------------------------------------------------------------------------- image folders


def test_imagefolder_reads_png_jpeg_any_mode_and_size(tmp_path):
    root = make_imagefolder(tmp_path / "tree")
    out = tmp_path / "if"
    meta = extract_dataset("imagefolder", {"root": str(root), "image_size": 24}, out)
    x, y = read_split(out, "train")
    assert x.shape == (9, 3, 24, 24) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert meta["classes"] == ["cat", "dog", "eel"] and meta["splits"] == {"train": 9, "test": 9}
    assert meta["source"]["files"] == 18
    gray = x[1]  # 001.JPG was saved in mode L: the three channels are equal
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()


def test_imagefolder_exact_pixels_when_no_resize(tmp_path):
    from PIL import Image

    arr = np.random.default_rng(0).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    for split in ("train", "test"):
        (tmp_path / "r" / split / "a").mkdir(parents=True)
        Image.fromarray(arr).save(tmp_path / "r" / split / "a" / "x.png")
    extract_dataset("imagefolder", {"root": str(tmp_path / "r"), "image_size": 8}, tmp_path / "o")
    np.testing.assert_array_equal(read_split(tmp_path / "o", "test")[0][0], arr.transpose(2, 0, 1))


def test_imagefolder_root_may_be_an_archive(tmp_path):
    root = make_imagefolder(tmp_path / "tree")
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="mytree")
    a = extract_dataset("imagefolder", {"root": str(archive)}, tmp_path / "a")
    b = extract_dataset("imagefolder", {"root": str(root)}, tmp_path / "b")
    np.testing.assert_array_equal(read_split(tmp_path / "a", "train")[0], read_split(tmp_path / "b", "train")[0])
    assert a["classes"] == b["classes"]


def test_imagefolder_errors_are_one_clear_line(tmp_path):
    def fails(root, match):
        with pytest.raises(DatasetFormatError, match=match) as err:
            extract_dataset("imagefolder", {"root": str(root)}, tmp_path / "never")
        assert "\n" not in str(err.value)
        assert not (tmp_path / "never").exists()

    fails(tmp_path / "nowhere", "does not exist")
    empty = tmp_path / "empty"
    for split in ("train", "test"):
        (empty / split / "cat").mkdir(parents=True)
    fails(empty, r"no images .* in class folder .*train/cat")

    root = make_imagefolder(tmp_path / "mismatch")
    (root / "train" / "fox").mkdir()
    (root / "test" / "owl").mkdir()
    fails(root, "only in train: fox; only in test: owl")

    bad = make_imagefolder(tmp_path / "bad")
    (bad / "test" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    fails(bad, r"cannot read image .*test/dog/broken\.jpg")


def test_imagefolder_parallel_reader_matches_serial(tmp_path, monkeypatch):
    from lpa.data import imagefolder

    root = make_imagefolder(tmp_path / "tree", per_class=6)
    extract_dataset("imagefolder", {"root": str(root)}, tmp_path / "serial", workers=1)
    monkeypatch.setattr(imagefolder, "PARALLEL_MIN", 1)
    monkeypatch.setattr(imagefolder, "CHUNK", 4)
    extract_dataset("imagefolder", {"root": str(root)}, tmp_path / "parallel", workers=2)
    for split in ("train", "test"):
        for a, b in zip(read_split(tmp_path / "serial", split), read_split(tmp_path / "parallel", split)):
            np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- params


def test_bad_params_fail_before_any_download(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr("lpa.data.fetch.ensure_file", no_download)
    cases = [
        ("mnist", {}, "unknown dataset 'mnist'; allowed: cifar10, cifar100, svhn, digits, imagefolder, cub200"),
        ("svhn", {"use_extra": "yes"}, "use_extra='yes' is not allowed; it must be true or false"),
        ("cifar10", {"image_size": 32}, "unknown setting(s) image_size; allowed: source, imagefolder_root"),
        ("digits", {"test_fraction": 1.5}, "a number >= 0.05 and <= 0.95"),
        ("digits", {"image_size": 3}, "an integer >= 8 and <= 1024"),
        ("imagefolder", {"root": ""}, "a non-empty path"),
        ("cub200", {"crop": 1}, "crop=1 is not allowed; it must be true or false"),
    ]
    for name, params, message in cases:
        with pytest.raises(DataParamError) as err:
            extract_dataset(name, params, tmp_path / name, tmp_path / "raw", files=None)
        assert message in str(err.value)
        assert isinstance(err.value, ValueError)
    assert not any(tmp_path.iterdir())


def test_validate_dataset_params_fills_defaults_and_lists_allowed_values():
    full = validate_dataset_params("cifar10", {"download": {}, "preprocess": {"transform": "zca"}})
    assert full["preprocess"] == {"transform": "zca", "gcn": True, "gcn_scale": 55.0, "zca_epsilon": 0.1}
    assert validate_dataset_params("svhn", None)["download"] == {"use_extra": False}
    with pytest.raises(DataParamError, match="one of zca, standardize, scale, none"):
        validate_dataset_params("digits", {"preprocess": {"transform": "whiten"}})
    with pytest.raises(DataParamError, match="allowed: download, preprocess"):
        validate_dataset_params("digits", {"downlaod": {}})
    with pytest.raises(DataParamError, match="zca_epsilon=0 is not allowed"):
        validate_dataset_params("cifar10", {"preprocess": {"zca_epsilon": 0}})
    with pytest.raises(DataParamError, match="transform=standardize"):
        validate_dataset_params("imagefolder", {"download": {"image_size": 224}, "preprocess": {"transform": "zca"}})
    with pytest.raises(DataParamError, match="true or false"):
        validate_dataset_params("cifar100", {"preprocess": {"gcn": 1}})


def test_needed_files_only_lists_extra_when_used():
    assert set(pipeline.needed_files("svhn", {"use_extra": False})) == {"train", "test"}
    assert set(pipeline.needed_files("svhn", {"use_extra": True})) == {"train", "test", "extra"}
