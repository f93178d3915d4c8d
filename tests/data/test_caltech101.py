"""download@caltech101: the official caltech-101.zip (or a copy) in, the customary per-class split out.

The fixture (tests/helpers/archives.py) has the official layout: caltech-101.zip holding
caltech-101/101_ObjectCategories.tar.gz with 101_ObjectCategories/<class>/image_NNNN.jpg, three
classes of random JPEGs (one greyscale per class) and BACKGROUND_Google (with its `tmp` file). Its
URL is unreachable, so a test that reaches the download path fails at once.
"""
from __future__ import annotations

import inspect
import io
import tarfile

import numpy as np
import pytest
from tests.helpers.archives import (
    CALTECH_COUNTS,
    CALTECH_GREY,
    caltech101_pictures,
    caltech101_tar,
    make_caltech101_tree,
    make_caltech101_zip,
    md5_of,
    remote,
)
from tests.helpers.checks import one_line

from lpa.config.data_options import validate_dataset_params
from lpa.data import caltech101, pipeline, sources
from lpa.data.arrays import read_meta, read_split
from lpa.data.pipeline import extract_dataset
from lpa.errors import DataParamError, DatasetFormatError, DownloadError, IntegrityError

CLASSES = ["Leopards", "accordion", "inline_skate"]   # sorted folder names: upper case first, as torchvision
PARAMS = {"train_per_class": 3, "test_per_class": 3, "split_seed": 0, "image_size": 16}
SIZE = PARAMS["image_size"]


@pytest.fixture(scope="module")
def tree():
    return make_caltech101_tree()


@pytest.fixture(scope="module")
def pictures(tree):
    return caltech101_pictures(tree, SIZE)


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def extract_official(tree, tmp_path, out_name="out", params=None, **kwargs):
    raw = tmp_path / "raw"
    fx = make_caltech101_zip(raw, tree) if not (raw / "caltech-101.zip").exists() else \
        {"path": raw / "caltech-101.zip", "md5": md5_of(raw / "caltech-101.zip")}
    out = tmp_path / out_name
    meta = extract_dataset("caltech101", {**PARAMS, **(params or {})}, out, raw,
                           files={"archive": remote("caltech-101.zip", fx["md5"])}, **kwargs)
    return out, meta, fx


def drawn_files(out, pictures) -> dict[str, dict[str, list[str]]]:
    """{split: {class: [file, ...]}}: which fixture file each extracted image is (the pictures are
    random noise, so each one matches exactly one file), in the order they were written."""
    meta = read_meta(out)
    found: dict[str, dict[str, list[str]]] = {}
    for split in ("train", "test"):
        images, labels = read_split(out, split)
        found[split] = {c: [] for c in meta["classes"]}
        for image, label in zip(images, labels):
            c = meta["classes"][label]
            (name,) = [n for (k, n), p in pictures.items() if k == c and np.array_equal(p, image)]
            found[split][c].append(name)
    return found


# ----------------------------------------------------------------------------- the official archive


def test_official_url_and_md5_are_torchvisions():
    from torchvision.datasets import Caltech101

    code = inspect.getsource(Caltech101.download)
    ours = sources.CALTECH101_ARCHIVE
    assert ours.url in code and f'"{ours.md5}"' in code and f'"{ours.filename}"' in code
    assert set(pipeline.needed_files("caltech101", validate_dataset_params("caltech101", None)["download"])) == {
        "archive"}
    copy = validate_dataset_params("caltech101", {"download": {"source": "copy"}})["download"]
    assert pipeline.needed_files("caltech101", copy) == {}, "a copy needs no official file"


def test_official_zip_is_verified_read_and_split_per_class(tmp_path, tree, pictures):
    out, meta, fx = extract_official(tree, tmp_path)
    assert meta == read_meta(out)
    assert meta["classes"] == CLASSES and meta["num_classes"] == 3, "BACKGROUND_Google is not a class"
    assert meta["image_shape"] == [3, SIZE, SIZE]
    # 3 train per class; test: up to 3 of the rest, inline_skate (4 images) keeps its 1
    assert meta["splits"] == {"train": 9, "test": 7}
    assert meta["class_counts"] == {"train": [3, 3, 3], "test": [3, 3, 1]}
    src = meta["source"]
    assert src["files"]["archive"]["md5"] == fx["md5"] and src["files"]["archive"]["file"].endswith("caltech-101.zip")
    assert src["left_out"] == ["BACKGROUND_Google"] and src["image_size"] == SIZE
    assert src["split"]["train_per_class"] == 3 and src["split"]["test_per_class"] == 3
    assert src["counts"]["classes"] == 3 and src["counts"]["train"] == 9 and src["counts"]["test"] == 7
    assert fx["path"].exists() and leftovers(tmp_path) == ["out", "raw"]

    found = drawn_files(out, pictures)
    for c in CLASSES:
        train, test = found["train"][c], found["test"][c]
        assert train == sorted(train) and test == sorted(test), "file name order within a class"
        assert not set(train) & set(test)
        assert set(train) | set(test) <= set(tree[c])
    assert sorted(found["train"]["inline_skate"] + found["test"]["inline_skate"]) == sorted(tree["inline_skate"])
    labels = read_split(out, "train")[1]
    assert (np.diff(labels) >= 0).all(), "label order"


def test_greyscale_images_become_rgb(tmp_path, tree, pictures):
    out, _, _ = extract_official(tree, tmp_path, params={"test_per_class": 0})
    found = drawn_files(out, pictures)
    for split in ("train", "test"):
        images = read_split(out, split)[0]
        names = [n for c in CLASSES for n in found[split][c]]
        for image, name in zip(images, names, strict=True):
            assert ((image[0] == image[1]).all() and (image[1] == image[2]).all()) == (name == CALTECH_GREY)


def test_test_per_class_zero_takes_all_the_rest(tmp_path, tree):
    _, meta, _ = extract_official(tree, tmp_path, params={"test_per_class": 0})
    expected = [CALTECH_COUNTS[c] - 3 for c in CLASSES]
    assert meta["class_counts"]["test"] == expected == [4, 5, 1]


def test_the_split_is_determined_by_the_seed(tmp_path, tree, pictures):
    first = drawn_files(extract_official(tree, tmp_path, "a")[0], pictures)
    again = drawn_files(extract_official(tree, tmp_path, "b")[0], pictures)
    other = drawn_files(extract_official(tree, tmp_path, "c", params={"split_seed": 1})[0], pictures)
    assert first == again
    assert first != other
    np.testing.assert_array_equal(read_split(tmp_path / "a", "test")[0], read_split(tmp_path / "b", "test")[0])


def test_draw_split_of_one_class_ignores_the_others():
    files = [f"image_{i:04d}.jpg" for i in range(1, 41)]
    train, test = caltech101.draw_split(files, "metronome", 30, 50, 0)
    assert len(train) == 30 and len(test) == 10 and sorted(train + test) == files
    assert caltech101.draw_split(list(reversed(files)), "metronome", 30, 50, 0) == (train, test)
    assert caltech101.draw_split(files, "metronome", 30, 5, 0)[0] == train
    assert len(caltech101.draw_split(files, "metronome", 30, 5, 0)[1]) == 5
    assert caltech101.draw_split(files, "ketch", 30, 50, 0) != (train, test), "each class draws its own"


def test_a_class_without_a_test_image_is_refused_in_one_line(tmp_path, tree):
    with pytest.raises(DataParamError) as err:
        extract_official(tree, tmp_path, params={"train_per_class": 4})
    msg = one_line(err)
    assert "train_per_class=4 leaves no test image for 1 class(es)" in msg
    assert "inline_skate (4 images); set it to at most 3" in msg and "set it to at most 3" in msg
    assert not (tmp_path / "out").exists()


def test_parallel_decoding_matches_serial(tmp_path, tree, monkeypatch):
    extract_official(tree, tmp_path, "serial", workers=1)
    monkeypatch.setattr(caltech101, "PARALLEL_MIN", 1)
    monkeypatch.setattr(caltech101, "CHUNK", 2)
    extract_official(tree, tmp_path, "parallel", workers=2)
    for split in ("train", "test"):
        for a, b in zip(read_split(tmp_path / "serial", split), read_split(tmp_path / "parallel", split)):
            np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- damaged or missing


def test_missing_archive_without_network_names_file_url_and_raw_dir(tmp_path):
    raw = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        extract_dataset("caltech101", PARAMS, tmp_path / "out", raw,
                        files={"archive": remote("caltech-101.zip", "0" * 32)})
    msg = one_line(err)
    assert "caltech-101.zip" in msg and str(raw / "caltech-101.zip") in msg
    assert not (tmp_path / "out").exists() and leftovers(raw) == []


def test_archive_with_a_wrong_md5_is_moved_aside(tmp_path, tree):
    fx = make_caltech101_zip(tmp_path / "raw", tree)
    with pytest.raises(IntegrityError) as err:
        extract_dataset("caltech101", PARAMS, tmp_path / "out", tmp_path / "raw",
                        files={"archive": remote("caltech-101.zip", "f" * 32)})
    msg = one_line(err)
    assert "caltech-101.zip" in msg and fx["md5"] in msg and ".corrupt" in msg
    assert leftovers(tmp_path / "raw") == ["caltech-101.zip.corrupt"] and not (tmp_path / "out").exists()


def _damaged_inner(tree) -> bytes:
    good = caltech101_tar(tree)
    return good[: len(good) // 2]


@pytest.mark.parametrize("damage", ["truncated zip", "truncated inner tar.gz", "no 101_ObjectCategories"])
def test_a_damaged_archive_that_matches_its_md5_fails_in_one_line(tmp_path, tree, damage):
    raw = tmp_path / "raw"
    if damage == "truncated zip":
        fx = make_caltech101_zip(raw, tree)
        data = fx["path"].read_bytes()
        fx["path"].write_bytes(data[: len(data) // 2])
    elif damage == "truncated inner tar.gz":
        make_caltech101_zip(raw, tree, inner=_damaged_inner(tree))
    else:
        make_caltech101_zip(raw, tree, inner=caltech101_tar({"accordion": {}}))
    path = raw / "caltech-101.zip"
    with pytest.raises(DatasetFormatError) as err:
        extract_dataset("caltech101", PARAMS, tmp_path / "out", raw,
                        files={"archive": remote("caltech-101.zip", md5_of(path))})
    msg = one_line(err)
    assert str(path) in msg and "download@caltech101" in msg
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == ["raw"]


def test_an_unreadable_jpeg_is_named(tmp_path, tree):
    broken = {**tree, "accordion": {**tree["accordion"], "image_0001.jpg": b"\xff\xd8 not a jpeg"}}
    raw = tmp_path / "raw"
    make_caltech101_zip(raw, broken)
    with pytest.raises(DatasetFormatError) as err:
        extract_dataset("caltech101", {**PARAMS, "test_per_class": 0}, tmp_path / "out", raw,
                        files={"archive": remote("caltech-101.zip", md5_of(raw / "caltech-101.zip"))})
    assert one_line(err).startswith("cannot read image 101_ObjectCategories/accordion/image_0001.jpg in ")


# ----------------------------------------------------------------------------- a copy


@pytest.mark.parametrize("form", ["tar.gz", "tar.gz in a folder", "folder", "101_ObjectCategories folder", "zip"])
def test_a_copy_gives_the_same_dataset(tmp_path, tree, form):
    official, _, _ = extract_official(tree, tmp_path, "official")
    if form in ("tar.gz", "tar.gz in a folder"):
        root = tmp_path / "caltech101.tar.gz"
        root.write_bytes(caltech101_tar(tree, top="caltech101" if form == "tar.gz in a folder" else ""))
    elif form == "zip":
        root = tmp_path / "raw" / "caltech-101.zip"   # the official zip, read without its MD5
    else:
        (tmp_path / "tree").mkdir()
        with tarfile.open(fileobj=io.BytesIO(caltech101_tar(tree))) as tar:
            tar.extractall(tmp_path / "tree", filter="data")
        root = tmp_path / "tree" if form == "folder" else tmp_path / "tree" / "101_ObjectCategories"
    meta = extract_dataset("caltech101", {**PARAMS, "source": "copy", "root": str(root)}, tmp_path / "copy",
                           tmp_path / "no-raw")
    assert meta["source"]["kind"].startswith("caltech101 from a copy") and meta["source"]["root"] == str(root)
    assert meta["classes"] == CLASSES
    for split in ("train", "test"):
        for a, b in zip(read_split(official, split), read_split(tmp_path / "copy", split)):
            np.testing.assert_array_equal(a, b)
    assert not (tmp_path / "no-raw").exists(), "a copy needs nothing in the raw directory"


def test_a_copy_that_is_missing_or_damaged_fails_in_one_line(tmp_path, tree):
    def fails(root, says):
        with pytest.raises(DatasetFormatError) as err:
            extract_dataset("caltech101", {**PARAMS, "source": "copy", "root": str(root)}, tmp_path / "out")
        msg = one_line(err)
        assert says in msg and str(root) in msg
        assert not (tmp_path / "out").exists()

    fails(tmp_path / "nowhere.tar.gz", "does not exist")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "holds no 101_ObjectCategories/ folder")
    good = caltech101_tar(tree)
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    fails(tmp_path / "cut.tar.gz", "data.caltech101.download.root")
    (tmp_path / "other.tar.gz").write_bytes(caltech101_tar({"accordion": {}}, top="x"))
    fails(tmp_path / "other.tar.gz", "holds no 101_ObjectCategories/<class>/ folders")


def test_params_defaults_are_the_customary_protocol():
    download = validate_dataset_params("caltech101", None)["download"]
    assert download == {"source": "official", "root": "data/raw/caltech101.tar.gz", "train_per_class": 30,
                        "test_per_class": 50, "split_seed": 0, "image_size": 32}
    with pytest.raises(DataParamError, match="one of official, copy"):
        validate_dataset_params("caltech101", {"download": {"source": "imagefolder"}})
    with pytest.raises(DataParamError, match="train_per_class=0 is not allowed"):
        validate_dataset_params("caltech101", {"download": {"train_per_class": 0}})

