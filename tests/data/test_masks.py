"""lpa.data.masks: the image + mask datasets segmentation reads (Object Discovery, Weizmann Horse, generic
image/mask folders, an extracted lpa dataset with test_masks.npy), and their one-line DatasetFormatErrors.

Small by design: tmp folders of a few pictures, a pasted_digits extract with a 5% test split (90 images).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lpa.data.arrays import MASKS_FILE
from lpa.data.masks import read_mask_dataset
from lpa.data.pipeline import extract_dataset
from lpa.errors import DatasetFormatError
from tests.helpers.archives import WEIZMANN_PAIRS, make_weizmann, tar_folder, weizmann_mask
from tests.helpers.checks import one_line
from tests.helpers.masks import N_TEST, PASTED, grey_mask, rgb, save_image, save_mask


@pytest.fixture(scope="module")
def pasted_extract(tmp_path_factory) -> Path:
    """An extracted pasted_digits (90 test images with masks)."""
    root = tmp_path_factory.mktemp("pasted")
    ext = root / "data/extracted/pasted_digits"
    extract_dataset("pasted_digits", PASTED, ext, root / "data/raw")
    return ext


def test_object_discovery_layout(tmp_path):
    root = tmp_path / "Data"
    masks = {}
    for folder, stems, (h, w) in (("Airplane100", ["b2", "a1"], (20, 24)), ("Car100", ["c1"], (18, 30))):
        for k, stem in enumerate(stems):
            save_image(root / folder / f"{stem}.jpg", rgb(h, w, k))
            masks[stem] = grey_mask(h, w, k + 10)
            save_mask(root / folder / "GroundTruth" / f"{stem}.png", masks[stem])
    (root / "Airplane100" / "notes.txt").write_text("not an image")
    save_image(root / "Airplane100" / ".hidden.jpg", rgb(20, 24, 9))
    items = read_mask_dataset(root)
    assert [(it.group, it.name) for it in items] == [("airplane", "a1"), ("airplane", "b2"), ("car", "c1")]
    for it in items:
        h, w = masks[it.name].shape
        assert it.image.shape == (h, w, 3) and it.image.dtype == np.uint8
        assert it.mask.dtype == bool
        np.testing.assert_array_equal(it.mask, masks[it.name] >= 128)


def test_generic_layout(tmp_path):
    root = tmp_path / "generic"
    expected = {}
    for group, stems in (("dogs", ["x"]), ("cats", ["p", "q"])):
        for k, stem in enumerate(stems):
            image = rgb(12, 16, k)
            save_image(root / group / "images" / f"{stem}.png", image)
            expected[group, stem] = (image, grey_mask(12, 16, k))
            save_mask(root / group / "masks" / f"{stem}.png", expected[group, stem][1])
    items = read_mask_dataset(root)
    assert [(it.group, it.name) for it in items] == [("cats", "p"), ("cats", "q"), ("dogs", "x")]
    for it in items:
        image, mask = expected[it.group, it.name]
        np.testing.assert_array_equal(it.image, image)     # PNG: lossless
        np.testing.assert_array_equal(it.mask, mask >= 128)


def test_an_extracted_lpa_dataset(pasted_extract):
    ext = pasted_extract
    images, labels, masks = (np.load(ext / f) for f in ("test_images.npy", "test_labels.npy", MASKS_FILE))
    items = read_mask_dataset(ext)
    assert len(items) == N_TEST == images.shape[0]
    order = np.argsort(labels, kind="stable")
    assert [it.group for it in items] == [str(d) for d in labels[order]]
    assert [it.name for it in items] == [f"test{i:05d}" for i in order]
    for it, i in zip(items, order):
        np.testing.assert_array_equal(it.image, images[i].transpose(1, 2, 0))
        np.testing.assert_array_equal(it.mask, masks[i])
        assert it.image.shape == (32, 32, 3) and it.mask.dtype == bool


def test_image_without_a_mask(tmp_path):
    root = tmp_path / "generic"
    for stem in ("a", "b"):
        save_image(root / "cats" / "images" / f"{stem}.png", rgb(8, 8, 0))
    save_mask(root / "cats" / "masks" / "a.png", grey_mask(8, 8, 0))
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(root)
    msg = one_line(err)
    assert f"image {root / 'cats/images/b.png'} has no mask {root / 'cats/masks/b.png'}" in msg


def test_object_discovery_image_without_ground_truth(tmp_path):
    root = tmp_path / "Data"
    save_image(root / "Horse100" / "h1.jpg", rgb(8, 8, 0))
    (root / "Horse100" / "GroundTruth").mkdir()
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(root)
    assert str(root / "Horse100" / "h1.jpg") in one_line(err)


def test_mask_of_another_size(tmp_path):
    root = tmp_path / "generic"
    save_image(root / "cats" / "images" / "a.png", rgb(8, 10, 0))
    save_mask(root / "cats" / "masks" / "a.png", grey_mask(8, 8, 0))
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(root)
    msg = one_line(err)
    assert f"mask {root / 'cats/masks/a.png'} is 8x8 but its image {root / 'cats/images/a.png'} is 10x8" in msg


def test_missing_root(tmp_path):
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(tmp_path / "nowhere")
    msg = one_line(err)
    assert f"segmentation dataset {tmp_path / 'nowhere'} does not exist" in msg and "NAME=ROOT" in msg


def test_root_without_mask_folders(tmp_path):
    (tmp_path / "Data" / "loose").mkdir(parents=True)
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(tmp_path / "Data")
    assert str(tmp_path / "Data") in one_line(err)


def test_lpa_dataset_without_masks(tmp_path):
    ext = tmp_path / "data/extracted/digits"
    extract_dataset("digits", {"image_size": 8}, ext, tmp_path / "data/raw")
    assert not (ext / MASKS_FILE).exists()
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(ext)
    msg = one_line(err)
    assert f"{ext} is an lpa dataset without object masks ({MASKS_FILE})" in msg


def test_lpa_dataset_with_masks_of_the_wrong_shape(tmp_path, pasted_extract):
    ext = tmp_path / "pasted_digits"
    shutil.copytree(pasted_extract, ext)
    np.save(ext / MASKS_FILE, np.zeros((N_TEST, 16, 16), dtype=bool))
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(ext)
    assert str(ext / MASKS_FILE) in one_line(err)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n truncated", b"GIF89a not really"])
def test_unreadable_image(tmp_path, content):
    root = tmp_path / "generic"
    path = root / "cats" / "images" / "a.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    save_mask(root / "cats" / "masks" / "a.png", grey_mask(8, 8, 0))
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(root)
    msg = one_line(err)
    assert msg.startswith(f"cannot read image {path} (")


def test_unreadable_mask(tmp_path):
    root = tmp_path / "generic"
    save_image(root / "cats" / "images" / "a.png", rgb(8, 8, 0))
    path = root / "cats" / "masks" / "a.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(root)
    assert one_line(err).startswith(f"cannot read mask {path} (")


@pytest.mark.parametrize("orientation", [3, 6])
def test_a_jpeg_with_an_exif_orientation_keeps_its_mask_aligned(tmp_path, orientation):
    root = tmp_path / "Data"
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[:8, :8] = 255                               # a bright object in the stored pixels' top-left corner
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[:8, :8] = 255                                # its ground truth, drawn on the same stored pixels
    exif = Image.Exif()
    exif[0x0112] = orientation                        # EXIF Orientation: 3 = turned 180 degrees, 6 = 90
    (root / "Horse100" / "GroundTruth").mkdir(parents=True)
    Image.fromarray(image).save(root / "Horse100" / "h1.jpg", exif=exif.tobytes())
    save_mask(root / "Horse100" / "GroundTruth" / "h1.png", mask)
    (item,) = read_mask_dataset(root)                 # however the reader orients the pair, it must be one pair
    assert item.image.shape[:2] == item.mask.shape
    bright = item.image.mean(axis=2) > 128
    assert (bright & item.mask).sum() / (bright | item.mask).sum() > 0.8   # their Jaccard index


def test_object_discovery_reads_only_the_100_image_subsets_when_the_full_sets_are_there_too(tmp_path):
    root = tmp_path / "Data"
    image = np.zeros((12, 12, 3), dtype=np.uint8)
    for folder in ("Airplane", "Airplane100"):        # Data/ holds both: the paper used the subsets
        (root / folder / "GroundTruth").mkdir(parents=True)
        Image.fromarray(image).save(root / folder / "a1.jpg")
        save_mask(root / folder / "GroundTruth" / "a1.png", np.zeros((12, 12), dtype=np.uint8))
    Image.fromarray(image).save(root / "Airplane" / "a2.jpg")
    save_mask(root / "Airplane" / "GroundTruth" / "a2.png", np.zeros((12, 12), dtype=np.uint8))
    items = read_mask_dataset(root)
    assert [(it.group, it.name) for it in items] == [("airplane", "a1")]


# ----------------------------------------------------------------------------- Weizmann Horse


def weizmann_expected(db: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{stem: (photo resized to its mask's size, mask > 127)} read back from the written files."""
    out = {}
    for stem, _, (mw, mh) in WEIZMANN_PAIRS:
        with Image.open(db / "rgb" / f"{stem}.jpg") as img:
            photo = np.asarray(img.convert("RGB").resize((mw, mh), Image.Resampling.BILINEAR))
        with Image.open(db / "figure_ground" / f"{stem}.jpg") as img:
            grey = np.asarray(img)
        out[stem] = (photo, grey > 127)
    return out


@pytest.mark.parametrize("form", ["root above weizmann_horse_db", "weizmann_horse_db", "tar.gz", "tar.gz, no top"])
def test_weizmann_horse_layout(tmp_path, form):
    db = make_weizmann(tmp_path / "src")
    expected = weizmann_expected(db)
    root = {"root above weizmann_horse_db": tmp_path / "src", "weizmann_horse_db": db}.get(form)
    if form == "tar.gz":
        root = tar_folder(db, tmp_path / "weizmann-horse.tar.gz", "weizmann_horse_db")
    elif form == "tar.gz, no top":
        root = tar_folder(db, tmp_path / "horses.tgz", ".")
    items = read_mask_dataset(root)
    assert [(it.group, it.name) for it in items] == [("horse", stem) for stem, _, _ in WEIZMANN_PAIRS]
    for it, (stem, _, (mw, mh)) in zip(items, WEIZMANN_PAIRS):
        photo, mask = expected[stem]
        assert it.image.shape == (mh, mw, 3) and it.image.dtype == np.uint8, "the photo is brought to its mask's size"
        assert it.mask.shape == (mh, mw) and it.mask.dtype == bool
        np.testing.assert_array_equal(it.image, photo)
        np.testing.assert_array_equal(it.mask, mask)


def test_weizmann_masks_are_jpeg_grey_and_binarised_above_127(tmp_path):
    db = make_weizmann(tmp_path)
    with Image.open(db / "figure_ground" / "horse001.jpg") as img:
        grey = np.asarray(img)
    assert img.mode == "L" and ((grey > 0) & (grey < 255)).any(), "the fixture has the real set's edge values"
    (item, *_) = read_mask_dataset(db)
    np.testing.assert_array_equal(item.mask, grey > 127)
    ideal = weizmann_mask(50, 40) > 127
    assert (item.mask != ideal).mean() < 0.02, "JPEG noise moves only a few edge pixels"
    assert 0.1 < item.mask.mean() < 0.6


@pytest.mark.parametrize("fault", ["mask of another name", "image without a mask", "mask without an image"])
def test_weizmann_pair_that_does_not_match(tmp_path, fault):
    db = make_weizmann(tmp_path)
    masks = db / "figure_ground"
    if fault == "mask of another name":
        (masks / "horse002.jpg").rename(masks / "horse02.jpg")
        says = f"image {db / 'rgb' / 'horse002.jpg'} has no mask {db / 'figure_ground' / 'horse002'}.*"
    elif fault == "image without a mask":
        (masks / "horse003.jpg").unlink()
        says = f"image {db / 'rgb' / 'horse003.jpg'} has no mask"
    else:
        (db / "rgb" / "horse001.jpg").unlink()
        says = f"mask {masks / 'horse001.jpg'} has no image {db / 'rgb' / 'horse001'}.*"
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(tmp_path)
    assert says in one_line(err)


def test_weizmann_pair_that_does_not_match_in_an_archive(tmp_path):
    db = make_weizmann(tmp_path / "src")
    (db / "figure_ground" / "horse002.jpg").unlink()
    archive = tar_folder(db, tmp_path / "weizmann-horse.tar.gz", "weizmann_horse_db")
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(archive)
    assert f"image {archive}:weizmann_horse_db/rgb/horse002.jpg has no mask" in one_line(err)


def test_weizmann_mask_of_another_aspect_ratio(tmp_path):
    db = make_weizmann(tmp_path, pairs=[("horse001", (100, 81), (50, 30))])
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(db)
    msg = one_line(err)
    assert f"mask {db / 'figure_ground' / 'horse001.jpg'} is 50x30 but its image {db / 'rgb' / 'horse001.jpg'} " \
           f"is 100x81: not a resize of it" in msg


@pytest.mark.parametrize("content", [b"not a tar at all", None])
def test_weizmann_archive_damaged_or_of_another_layout(tmp_path, content):
    archive = tmp_path / "weizmann-horse.tar.gz"
    if content is None:                                  # a good archive, but of a generic layout
        save_image(tmp_path / "generic" / "cats" / "images" / "a.png", rgb(8, 8, 0))
        tar_folder(tmp_path / "generic", archive, "generic")
        says = "holds no rgb/ and figure_ground/ folders"
    else:
        archive.write_bytes(content)
        says = f"cannot read {archive} ("
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(archive)
    assert says in one_line(err)


def test_weizmann_unreadable_mask_in_an_archive(tmp_path):
    db = make_weizmann(tmp_path / "src")
    (db / "figure_ground" / "horse003.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    archive = tar_folder(db, tmp_path / "w.tar.gz", "weizmann_horse_db")
    with pytest.raises(DatasetFormatError) as err:
        read_mask_dataset(archive)
    assert one_line(err).startswith(f"cannot read mask {archive}:weizmann_horse_db/figure_ground/horse003.jpg (")
