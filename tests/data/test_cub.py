"""download@cub200: the official CUB_200_2011.tgz layout in, contract arrays out, bad input out loud.

The fixture archive (tests/helpers/archives.make_cub_archive) has the official layout with 3 classes
of tiny JPEGs; its URL is unreachable, so a test that reaches the download path fails at once.
"""
from __future__ import annotations

import gzip
import io
import os
import tarfile

import numpy as np
import pytest
from tests.helpers.archives import (
    CUB_COLOUR_ID,
    CUB_INSIDE,
    CUB_OUTSIDE,
    UNREACHABLE,
    cub_expected,
    make_cub_archive,
    md5_of,
    remote,
)

from lpa.data import cub, pipeline, sources
from lpa.data.arrays import read_meta, read_split
from lpa.errors import DataParamError, DatasetFormatError, DownloadError, IntegrityError
from lpa.config.data_options import validate_dataset_params
from lpa.data.pipeline import extract_dataset, preprocess_dataset

ARCHIVE = "CUB_200_2011.tgz"


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def files_for(fx):
    return {"archive": remote(ARCHIVE, fx["md5"])}


def extract(fx, out, params=None, **kwargs):
    return extract_dataset("cub200", params if params is not None else {"image_size": 16}, out,
                           fx["path"].parent, files=files_for(fx), **kwargs)


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("crop", [False, True])
def test_cub_archive_is_read_in_image_id_order_with_official_labels_and_split(tmp_path, crop):
    fx = make_cub_archive(tmp_path / "raw")
    out = tmp_path / "extracted" / "cub200"
    meta = extract(fx, out, {"image_size": 16, "crop": crop})
    expected = cub_expected(fx, 16, crop)
    for split in ("train", "test"):
        x, y = read_split(out, split)
        assert x.dtype == np.uint8 and y.dtype == np.int64 and x.shape[1:] == (3, 16, 16)
        np.testing.assert_array_equal(x, expected[f"{split}_x"])
        np.testing.assert_array_equal(y, expected[f"{split}_y"])
    # ids 1..9, class by class; train_test_split.txt: 1 0 1 1 0 0 0 1 1
    np.testing.assert_array_equal(read_split(out, "train")[1], [0, 0, 1, 2, 2])
    np.testing.assert_array_equal(read_split(out, "test")[1], [0, 1, 1, 2])
    assert meta == read_meta(out)
    assert meta["classes"] == fx["classes"] == ["001.Black_footed_Albatross", "002.Laysan_Albatross",
                                                "003.Sooty_Albatross"]
    assert meta["num_classes"] == 3, "classes.txt decides the class count, not the real dataset's 200"
    assert meta["splits"] == {"train": 5, "test": 4}
    src = meta["source"]
    assert src["files"]["archive"]["md5"] == fx["md5"] and src["files"]["archive"]["file"].endswith(ARCHIVE)
    assert src["crop"] is crop and src["image_size"] == 16 and src["resize"] == "bilinear"
    assert src["counts"] == {"images": 9, "train": 5, "test": 4, "classes": 3, "converted_to_rgb": 3}
    assert fx["path"].exists() and leftovers(tmp_path / "extracted") == ["cub200"]


def test_crop_keeps_what_lies_in_the_bounding_box(tmp_path):
    fx = make_cub_archive(tmp_path / "raw")
    test_ids = [r["id"] for r in sorted(fx["records"], key=lambda r: r["id"]) if not r["train"]]
    row = test_ids.index(CUB_COLOUR_ID)
    extract(fx, tmp_path / "crop", {"image_size": 16, "crop": True})
    extract(fx, tmp_path / "whole", {"image_size": 16, "crop": False})
    cropped = read_split(tmp_path / "crop", "test")[0][row].astype(int)
    whole = read_split(tmp_path / "whole", "test")[0][row].astype(int)
    inside, outside = np.array(CUB_INSIDE)[:, None, None], np.array(CUB_OUTSIDE)[:, None, None]
    # crop on: only the box's colour is left (up to JPEG ringing at its edge)
    assert np.abs(cropped - inside).mean() < 12 and np.abs(cropped[:, 4:12, 4:12] - inside).max() < 20
    # crop off: the whole picture, the background at its corners
    assert np.abs(whole[:, 0, 0] - outside[:, 0, 0]).max() < 20
    assert np.abs(whole[:, 8, 8] - inside[:, 0, 0]).max() < 20


def test_crop_box_is_floor_ceil_and_clamped():
    assert cub.crop_box((16.3, 8.9, 23.1, 22.6), 48, 40) == (16, 8, 40, 32)
    assert cub.crop_box((-3.5, -2.0, 60.0, 50.0), 40, 30) == (0, 0, 40, 30)
    assert cub.crop_box((10.0, 5.0, 2.0, 3.0), 40, 30) == (10, 5, 12, 8)


def test_greyscale_images_become_rgb(tmp_path):
    fx = make_cub_archive(tmp_path / "raw")
    out = tmp_path / "cub"
    extract(fx, out, {"image_size": 16, "crop": False})
    for split, flag in (("train", True), ("test", False)):
        records = [r for r in sorted(fx["records"], key=lambda r: r["id"]) if r["train"] == flag]
        x = read_split(out, split)[0]
        for img, r in zip(x, records, strict=True):
            grey = (img[0] == img[1]).all() and (img[1] == img[2]).all()
            assert grey == (r["mode"] == "L"), r


def test_default_params_are_the_official_80x80_crops(tmp_path):
    fx = make_cub_archive(tmp_path / "raw")
    meta = extract(fx, tmp_path / "cub", {})
    assert meta["image_shape"] == [3, 80, 80] and meta["source"]["crop"] is True
    np.testing.assert_array_equal(read_split(tmp_path / "cub", "train")[0], cub_expected(fx, 80, True)["train_x"])


def test_parallel_decoding_matches_serial(tmp_path, monkeypatch):
    fx = make_cub_archive(tmp_path / "raw")
    extract(fx, tmp_path / "serial", workers=1)
    monkeypatch.setattr(cub, "PARALLEL_MIN", 1)
    monkeypatch.setattr(cub, "CHUNK", 2)
    extract(fx, tmp_path / "parallel", workers=2)
    for split in ("train", "test"):
        for a, b in zip(read_split(tmp_path / "serial", split), read_split(tmp_path / "parallel", split),
                        strict=True):
            np.testing.assert_array_equal(a, b)


def test_lines_are_matched_by_image_id_not_by_position(tmp_path):
    def shuffle(members):
        for name in ("image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt"):
            members[name] = b"".join(reversed(members[name].splitlines(keepends=True)))

    fx = make_cub_archive(tmp_path / "raw", edit=shuffle)
    extract(fx, tmp_path / "cub", {"image_size": 16, "crop": True})
    expected = cub_expected(fx, 16, True)
    np.testing.assert_array_equal(read_split(tmp_path / "cub", "test")[0], expected["test_x"])
    np.testing.assert_array_equal(read_split(tmp_path / "cub", "train")[1], expected["train_y"])


def test_bounding_boxes_are_needed_only_to_crop(tmp_path):
    fx = make_cub_archive(tmp_path / "raw", edit=lambda m: m.pop("bounding_boxes.txt"))
    extract(fx, tmp_path / "whole", {"image_size": 16, "crop": False})
    with pytest.raises(DatasetFormatError, match="CUB_200_2011/bounding_boxes.txt is missing"):
        extract(fx, tmp_path / "crop", {"image_size": 16, "crop": True})
    assert not (tmp_path / "crop").exists()


def test_preprocess_defaults_gcn_then_standardize(tmp_path):
    fx = make_cub_archive(tmp_path / "raw")
    extract(fx, tmp_path / "extracted" / "cub200", {"image_size": 16})
    meta = preprocess_dataset("cub200", {}, tmp_path / "extracted" / "cub200", tmp_path / "processed" / "cub200")
    x, _ = read_split(tmp_path / "processed" / "cub200", "train")
    assert x.dtype == np.float16 and x.shape == (5, 3, 16, 16)
    assert meta["num_classes"] == 3 and meta["source"]["crop"] is True
    assert meta["preprocessing"]["method"] == "standardize" and meta["preprocessing"]["gcn"] is True
    assert meta["preprocessing"]["gcn_scale"] == 55.0


# ----------------------------------------------------------------------------- the archive file


def test_missing_archive_without_network_names_file_url_and_raw_dir(tmp_path):
    raw = tmp_path / "raw"
    out = tmp_path / "extracted" / "cub200"
    url = f"{UNREACHABLE}/{ARCHIVE}"
    files = {"archive": sources.RemoteFile(ARCHIVE, url, "0" * 32)}
    with pytest.raises(DownloadError) as err:
        extract_dataset("cub200", {}, out, raw, files=files)
    msg = str(err.value)
    assert "\n" not in msg
    assert ARCHIVE in msg and url in msg and str(raw / ARCHIVE) in msg
    assert not out.exists() and leftovers(raw) == [], "no partial download, no output"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_archive_is_moved_aside(tmp_path, damage):
    raw = tmp_path / "raw"
    fx = make_cub_archive(raw)
    good = fx["path"].read_bytes()
    fx["path"].write_bytes(b"not a tarball" if damage == "garbage" else good[: len(good) // 2])
    out = tmp_path / "extracted" / "cub200"
    with pytest.raises(IntegrityError) as err:
        extract_dataset("cub200", {}, out, raw, files=files_for(fx))
    msg = str(err.value)
    assert ARCHIVE in msg and fx["md5"] in msg and ".corrupt" in msg
    assert leftovers(raw) == [f"{ARCHIVE}.corrupt"]
    assert not out.exists() and leftovers(out.parent) == []


@pytest.mark.parametrize("damage", ["garbage", "truncated", "plain gzip"])
def test_archive_that_matches_its_md5_but_is_not_a_readable_tar(tmp_path, damage):
    # e.g. a mirror whose MD5 we were told: the failure is a format error and nothing is written
    raw = tmp_path / "raw"
    fx = make_cub_archive(raw)
    good = fx["path"].read_bytes()
    bad = {"garbage": b"<html>not found</html>" * 10, "truncated": good[: len(good) - 200],
           "plain gzip": gzip.compress(b"just some text, not a tar file" * 30)}[damage]
    fx["path"].write_bytes(bad)
    out = tmp_path / "extracted" / "cub200"
    with pytest.raises(DatasetFormatError) as err:
        extract_dataset("cub200", {}, out, raw, files={"archive": remote(ARCHIVE, md5_of(fx["path"]))})
    msg = str(err.value)
    assert "\n" not in msg and ARCHIVE in msg and "download@cub200" in msg
    assert not out.exists() and leftovers(out.parent) == []


def test_archive_without_official_top_directory(tmp_path):
    fx = make_cub_archive(tmp_path / "raw", top="birds")
    with pytest.raises(DatasetFormatError, match="no top-level directory CUB_200_2011/ .found: attributes.txt, birds"):
        extract(fx, tmp_path / "out")


def test_a_tar_that_is_not_gzipped_is_read_too(tmp_path):
    fx = make_cub_archive(tmp_path / "raw")
    with tarfile.open(fx["path"]) as src:
        members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
    plain = tmp_path / "plain" / ARCHIVE
    plain.parent.mkdir()
    with tarfile.open(plain, "w") as dst:
        for m, payload in members:
            dst.addfile(m, None if payload is None else io.BytesIO(payload))
    extract_dataset("cub200", {"image_size": 16}, tmp_path / "a", plain.parent,
                    files={"archive": remote(ARCHIVE, md5_of(plain))})
    extract(fx, tmp_path / "b")
    np.testing.assert_array_equal(read_split(tmp_path / "a", "train")[0], read_split(tmp_path / "b", "train")[0])


# ----------------------------------------------------------------------------- malformed contents


def _replace_line(name, number, text):
    def edit(members):
        lines = members[name].decode().splitlines()
        lines[number - 1] = text
        members[name] = ("\n".join(lines) + "\n").encode()
    return edit


def _drop(name):
    return lambda members: members.pop(name)


FIRST_IMAGE = "images/001.Black_footed_Albatross/Black_footed_Albatross_0000_100.jpg"

MALFORMED = {
    "missing images.txt": (_drop("images.txt"), "CUB_200_2011/images.txt is missing from the archive"),
    "missing labels": (_drop("image_class_labels.txt"), "image_class_labels.txt is missing from the archive"),
    "missing split": (_drop("train_test_split.txt"), "train_test_split.txt is missing from the archive"),
    "missing classes": (_drop("classes.txt"), "classes.txt is missing from the archive"),
    "missing image": (_drop(FIRST_IMAGE), (r"images/001.Black_footed_Albatross/\S+\.jpg \(image 1 of images.txt\) "
                                           "is missing from the archive")),
    "unreadable image": (lambda m: m.update({FIRST_IMAGE: b"\xff\xd8 not a jpeg"}),
                         (r"cannot read image CUB_200_2011/images/001\.Black_footed_Albatross/\S+\.jpg \(image 1\) "
                          r"in \S+CUB_200_2011.tgz \(UnidentifiedImageError: not an image Pillow can identify\)")),
    "one field": (_replace_line("images.txt", 3, "3"), r"images.txt line 3 \('3'\) does not have 2 fields"),
    "id not an integer": (_replace_line("image_class_labels.txt", 2, "two 1"),
                          "image_class_labels.txt line 2: id 'two' is not an integer"),
    "id listed twice": (_replace_line("images.txt", 2, "1 001.Black_footed_Albatross/x.jpg"),
                        "images.txt line 2: id 1 is listed twice"),
    "ids differ": (_replace_line("train_test_split.txt", 9, "10 1"),
                   r"ids of CUB_200_2011/train_test_split.txt differ .*missing: \[9\]; unknown: \[10\]"),
    "label above the classes": (_replace_line("image_class_labels.txt", 4, "4 4"),
                                r"gives image 4 the class '4', not one of 1\.\.3"),
    "label 0": (_replace_line("image_class_labels.txt", 1, "1 0"), r"gives image 1 the class '0', not one of 1\.\.3"),
    "label not a number": (_replace_line("image_class_labels.txt", 1, "1 x"), "the class 'x'"),
    "split flag": (_replace_line("train_test_split.txt", 2, "2 2"), r"the value '2', not 1 \(train\) or 0 \(test\)"),
    "no test image": (lambda m: m.update({"train_test_split.txt": b"".join(
        f"{i} 1\n".encode() for i in range(1, 10))}), "puts no image in the test split"),
    "box not numbers": (_replace_line("bounding_boxes.txt", 2, "2 a b c d"), "gives image 2 the box 'a b c d'"),
    "box too short": (_replace_line("bounding_boxes.txt", 2, "2 1.0 2.0 3.0"),
                      r"bounding_boxes.txt line 2 \('2 1.0 2.0 3.0'\) does not have 5 fields"),
    "box of no size": (_replace_line("bounding_boxes.txt", 2, "2 1.0 2.0 0.0 5.0"), "with a positive size"),
    "box outside the image": (_replace_line("bounding_boxes.txt", 1, "1 500.0 500.0 10.0 10.0"),
                              ("bounding_boxes.txt gives image 1 the box 500 500 10 10, which lies outside its "
                               "40 x 30 image")),
    "classes not numbered 1..K": (_replace_line("classes.txt", 3, "4 004.Black_Tern"),
                                  r"classes.txt must number its classes 1\.\.3"),
    "empty classes": (lambda m: m.update({"classes.txt": b"\n"}), "classes.txt is empty"),
    "not utf-8": (lambda m: m.update({"images.txt": b"1 \xff\xfe.jpg\n"}), "images.txt is not a text file"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_contents_fail_in_one_line(tmp_path, case):
    edit, message = MALFORMED[case]
    fx = make_cub_archive(tmp_path / "raw", edit=edit)
    out = tmp_path / "extracted" / "cub200"
    with pytest.raises(DatasetFormatError, match=message) as err:
        extract(fx, out, {"image_size": 16, "crop": True})
    msg = str(err.value)
    assert "\n" not in msg and ARCHIVE in msg and "download@cub200" in msg
    assert not out.exists() and leftovers(out.parent) == []


# ----------------------------------------------------------------------------- params and sources


def test_params_defaults_and_zca_is_refused_at_80x80(tmp_path):
    full = validate_dataset_params("cub200", None)
    assert full == {"download": {"crop": True, "image_size": 80},
                    "preprocess": {"transform": "standardize", "gcn": True, "gcn_scale": 55.0, "zca_epsilon": 0.1}}
    with pytest.raises(DataParamError, match=r"transform=zca on 3x80x80 images needs a 19200x19200 matrix "
                                             r"\(1\.5 GB\); use transform=standardize"):
        validate_dataset_params("cub200", {"preprocess": {"transform": "zca"}})
    small = validate_dataset_params("cub200", {"download": {"image_size": 32}, "preprocess": {"transform": "zca"}})
    assert small["preprocess"]["transform"] == "zca"
    for params, message in (({"crop": "yes"}, "crop='yes' is not allowed; it must be true or false"),
                            ({"image_size": 4}, "an integer >= 8 and <= 1024"),
                            ({"size": 80}, "unknown setting(s) size; allowed: crop, image_size")):
        with pytest.raises(DataParamError) as err:
            extract_dataset("cub200", params, tmp_path / "out", tmp_path / "raw")
        assert message in str(err.value)
    assert not any(tmp_path.iterdir()), "params are checked before any download"


def test_preprocess_refuses_zca_on_extracted_80x80_images(tmp_path):
    fx = make_cub_archive(tmp_path / "raw")
    extract(fx, tmp_path / "extracted" / "cub200", {})
    with pytest.raises(DataParamError, match="19200x19200"):
        preprocess_dataset("cub200", {"transform": "zca"}, tmp_path / "extracted" / "cub200", tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_official_archive_source():
    archive = sources.REMOTE_FILES["cub200"]["archive"]
    assert archive is sources.CUB200_ARCHIVE
    assert archive.filename == ARCHIVE and archive.md5 == "97eceeb196236b17998738112f37df78"
    assert archive.url.startswith("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz")
    assert set(pipeline.needed_files("cub200", {"crop": False, "image_size": 80})) == {"archive"}


def test_module_has_no_leftover_temporary_files(tmp_path):
    # read from the tar in memory: nothing is extracted next to the archive or in the output's parent
    fx = make_cub_archive(tmp_path / "raw")
    before = set(os.listdir(tmp_path / "raw"))
    extract(fx, tmp_path / "out" / "cub200")
    assert set(os.listdir(tmp_path / "raw")) == before and leftovers(tmp_path / "out") == ["cub200"]
