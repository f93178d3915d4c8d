"""`python -m lpa.predict MODEL IMAGE_OR_FOLDER...` (lpa/experiments/predict.py): pictures of any size and mode
converted as the model's dataset was, one `error:` line per bad input and a summary, figures in
--out, the table and --json output, and a model file of an older format.

The model is an untrained digits vgg-att2 (width 0.125) saved as the train stage saves it, with the
preprocessing of a real data/processed/digits: what is tested is the plumbing, not the accuracy.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpa import predict as predict_cli
from lpa.config.run import resolve_trial
from lpa.data.arrays import read_meta, read_split
from lpa.data.conversion import ImageConversion
from lpa.data.digits import GREY_LEVELS, resize_grey
from lpa.data.transforms import fit_transform
from lpa.train.device import autocast_dtype
from lpa.train.engine import build_for_training, predict
from lpa.train.modelfile import load_model, model_preprocessing, preprocessing_record
from lpa.experiments.predict import read_picture
from tests.helpers.models import numbered_classes, preprocessing, save_model_file
from tests.helpers.params import shrunk_params

CPU = torch.device("cpu")
TRIAL = "digits-vgg-att2-seed0"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model_file(digits_root, quick_params, tmp_path_factory) -> Path:
    """An untrained digits vgg-att2 (seeded) as train@ writes it: models/quick/<trial>/model.pt,
    with the preprocessing of digits_root (tests/conftest.py)."""
    processed = digits_root / "data/processed/digits"
    path = tmp_path_factory.mktemp("predict-model") / "models/quick" / TRIAL / "model.pt"
    return save_model_file(path, resolve_trial(shrunk_params(quick_params), TRIAL), preprocessing_record(processed),
                           classes=read_meta(processed)["classes"], seed=0)


def save_picture(path: Path, array: np.ndarray, mode: str | None = None, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    img.save(path, **kwargs)
    return path


def rng_pixels(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict:
    """Good pictures of several sizes and modes, and the bad inputs, in one folder tree."""
    root = tmp_path_factory.mktemp("pictures")
    good = {
        "rgba": save_picture(root / "rgba.png", rng_pixels((70, 50, 4), 1)),           # 50 wide, 70 high
        "palette": save_picture(root / "palette.png", rng_pixels((40, 40, 3), 2), "P"),
        "grey_jpeg": save_picture(root / "grey.jpg", rng_pixels((24, 36), 3), "L", quality=90),
        "folder_a": save_picture(root / "folder/a.png", rng_pixels((32, 32, 3), 4)),
        "folder_b": save_picture(root / "folder/b.jpeg", rng_pixels((64, 48, 3), 5)),
        "other_a": save_picture(root / "other/a.png", rng_pixels((16, 16, 3), 6)),
    }
    (root / "folder/notes.txt").write_text("not a picture, and not a picture suffix: skipped silently\n")
    save_picture(root / "folder/.hidden.png", rng_pixels((8, 8, 3), 7))  # hidden: skipped
    (root / "x.jpg").write_text("I am text, whatever my name says\n")
    (root / "empty").mkdir()
    (root / "only-text").mkdir()
    (root / "only-text/readme.md").write_text("no pictures here\n")
    return {"root": root, "good": good}


def run(argv, capsys) -> tuple[int, str, list[str]]:
    code = predict_cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err.strip().splitlines()


# ----------------------------------------------------------------------------- good and bad inputs together

def test_mixed_inputs_one_error_line_each_and_a_summary(model_file, pictures, tmp_path, capsys):
    root, good = pictures["root"], pictures["good"]
    out_dir = tmp_path / "figures"
    argv = [model_file, good["rgba"], good["palette"], good["grey_jpeg"], root / "folder", root / "x.jpg",
            root / "empty", root / "missing.png", root / "other", "--out", out_dir, "--top-k", "3"]
    code, out, err = run(argv, capsys)
    assert code == 1
    assert all(line.startswith("error: ") for line in err), err
    assert len(err) == 4, err  # one line per bad input (in any order), then the summary
    for says in (f"{root / 'empty'} holds no pictures", f"{root / 'missing.png'} does not exist",
                 f"cannot read {root / 'x.jpg'} as an image"):
        assert sum(says in line for line in err[:3]) == 1, (says, err)
    assert err[3].startswith("error: 3 of 9 inputs failed") and "6 processed" in err[3]

    # one figure per good picture; the second a.png (other/) is a-2.png
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["rgba.png", "palette.png", "grey.png", "a.png", "b.png", "a-2.png"])
    for figure in out_dir.iterdir():
        data = figure.read_bytes()
        assert data[:8] == PNG_MAGIC
        with Image.open(io.BytesIO(data)) as img:
            img.verify()

    # the table: one row per good picture, with --top-k class/probability columns
    lines = out.splitlines()
    header = lines[0].split()
    assert header == ["image", "top-1", "top-2", "top-3"]
    for name in ("rgba", "palette", "grey_jpeg", "folder_a", "folder_b", "other_a"):
        row = [line for line in lines if line.startswith(str(good[name]))]
        assert len(row) == 1, (name, out)
        cells = row[0][len(str(good[name])):].split()
        assert len(cells) == 6  # "class probability" x 3
        probs = [float(p) for p in cells[1::2]]
        assert all(0 <= p <= 1 for p in probs) and probs == sorted(probs, reverse=True)
        assert all(c in [str(d) for d in range(10)] for c in cells[0::2])
    assert str(root / "x.jpg") not in out and f"figures: {out_dir}/" in out


def test_all_good_inputs_exit_0_with_nothing_on_stderr(model_file, pictures, tmp_path, capsys):
    good = pictures["good"]
    code, out, err = run([model_file, good["rgba"], good["folder_b"], "--out", tmp_path / "o"], capsys)
    assert code == 0 and err == []
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["b.png", "rgba.png"]
    assert out.splitlines()[0].split() == ["image"] + [f"top-{k}" for k in range(1, 6)]  # --top-k 5 by default


def test_a_folder_with_no_pictures_alone_fails(model_file, pictures, tmp_path, capsys):
    code, out, err = run([model_file, pictures["root"] / "only-text", "--out", tmp_path / "o"], capsys)
    assert code == 1 and out == ""
    assert len(err) == 2 and "holds no pictures" in err[0]
    assert err[1].startswith("error: 1 of 1 inputs failed") and "0 processed" in err[1]
    assert not (tmp_path / "o").exists()


def test_json_output(model_file, pictures, tmp_path, capsys):
    root, good = pictures["root"], pictures["good"]
    code, out, err = run([model_file, good["palette"], root / "folder", root / "x.jpg", "--json", "--top-k", "4",
                          "--out", tmp_path / "o"], capsys)
    assert code == 1 and len(err) == 2
    doc = json.loads(out)  # stdout is only the JSON document
    assert doc["model"] == str(model_file)
    assert [p["image"] for p in doc["predictions"]] == [str(good["palette"]), str(good["folder_a"]),
                                                         str(good["folder_b"])]
    assert len(doc["failed"]) == 1 and str(root / "x.jpg") in doc["failed"][0]
    for p in doc["predictions"]:
        assert Path(p["figure"]).parent == tmp_path / "o" and Path(p["figure"]).read_bytes()[:8] == PNG_MAGIC
        probs = [t["probability"] for t in p["top_k"]]
        assert len(probs) == 4 and probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1 and all(0 <= q <= 1 for q in probs)
        assert len({t["class"] for t in p["top_k"]}) == 4


def test_top_k_of_every_class_sums_to_one(model_file, pictures, tmp_path, capsys):
    code, out, _ = run([model_file, pictures["good"]["rgba"], "--json", "--top-k", "10", "--out", tmp_path], capsys)
    assert code == 0
    (p,) = json.loads(out)["predictions"]
    assert sorted(t["class"] for t in p["top_k"]) == [str(d) for d in range(10)]
    assert sum(t["probability"] for t in p["top_k"]) == pytest.approx(1.0, abs=1e-5)


def test_a_missing_model_file_is_one_error_line(pictures, tmp_path, capsys):
    code, out, err = run([tmp_path / "nope/model.pt", pictures["good"]["rgba"], "--out", tmp_path / "o"], capsys)
    assert code == 1 and out == "" and len(err) == 1
    assert err[0].startswith("error: ") and "nope/model.pt not found" in err[0]
    assert not (tmp_path / "o").exists()


def test_a_model_file_of_an_older_format_is_one_error_line(model_file, pictures, tmp_path, capsys):
    record = torch.load(model_file, map_location="cpu", weights_only=False)
    old = tmp_path / "models/quick" / TRIAL / "model.pt"
    old.parent.mkdir(parents=True)
    torch.save({**record, "format": "lpa.model/1"}, old)
    code, out, err = run([old, pictures["good"]["rgba"], pictures["root"] / "x.jpg", "--out", tmp_path / "o"],
                         capsys)
    assert code == 1 and out == ""
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "older lpa format" in err[0] and "lpa.model/1" in err[0] and str(old) in err[0]
    assert f"`dvc repro train@{TRIAL}`" in err[0]
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- the conversion is the dataset's

def test_an_rgb_datasets_image_saved_as_png_converts_back_exactly(tmp_path):
    image = rng_pixels((3, 32, 32), 11)  # a CIFAR-like dataset image, C x H x W
    path = save_picture(tmp_path / "img.png", image.transpose(1, 2, 0))
    picture = read_picture(path, ImageConversion("rgb", 32))
    assert picture.converted.dtype == np.uint8 and np.array_equal(picture.converted, image)
    assert np.array_equal(picture.shown, image.transpose(1, 2, 0))


def test_rgb_conversion_of_another_size_is_a_bilinear_resize(tmp_path):
    array = rng_pixels((48, 64, 3), 12)
    picture = read_picture(save_picture(tmp_path / "img.png", array), ImageConversion("rgb", 32))
    want = np.asarray(Image.fromarray(array).resize((32, 32), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert picture.converted.shape == (3, 32, 32) and np.array_equal(picture.converted, want)


def test_a_digit_rendered_at_8x8_converts_to_the_datasets_image(digits_root, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    extracted = [read_split(digits_root / "data/extracted/digits", s)[0] for s in ("train", "test")]
    conversion = ImageConversion("grey", 32, 8)
    for k in (0, 7, 1000):
        grey = np.clip(np.rint(digits.images[k] * (255.0 / (GREY_LEVELS - 1))), 0, 255).astype(np.uint8)
        path = save_picture(tmp_path / f"digit{k}.png", grey)
        converted = read_picture(path, conversion).converted
        assert np.array_equal(converted, resize_grey(grey[None], 32)[0])
        # and that is the very image download@digits wrote for it
        assert any((split == converted).all(axis=(1, 2, 3)).any() for split in extracted)


def test_probabilities_are_the_softmax_of_the_models_logits(model_file, pictures, tmp_path, capsys):
    picture = pictures["good"]["rgba"]
    code, out, _ = run([model_file, picture, "--json", "--top-k", "10", "--out", tmp_path], capsys)
    assert code == 0
    printed = {t["class"]: t["probability"] for t in json.loads(out)["predictions"][0]["top_k"]}

    model, saved = load_model(model_file, CPU)
    conversion, transform = model_preprocessing(saved, model_file)
    assert conversion == ImageConversion("grey", 32, 8) and transform.method == "standardize"
    with Image.open(picture) as img:
        converted = conversion.convert(img)
    train_cfg = saved["config"]["train"]
    logits = predict(model, torch.from_numpy(transform.apply(converted[None])), 8,
                     autocast_dtype(CPU, train_cfg["precision"]), train_cfg["channels_last"])
    want = torch.softmax(logits.float(), 1)[0]
    for c, name in enumerate(saved["classes"]):
        assert printed[name] == pytest.approx(float(want[c]), abs=1e-6)
    assert max(printed.values()) - min(printed.values()) > 1e-4  # the check is not between equal numbers


def test_an_rgb_model_sees_the_dataset_image_it_was_given(tmp_path, quick_params, capsys):
    """End to end for an RGB dataset: a 32x32 PNG of a dataset image is that image for the model."""
    config = resolve_trial(shrunk_params(quick_params), TRIAL)
    torch.manual_seed(1)
    model = build_for_training(config, 10, 32, CPU)
    transform = fit_transform(rng_pixels((40, 3, 32, 32), 20), "standardize")
    path = save_model_file(tmp_path / "models/quick" / TRIAL / "model.pt", config,
                           preprocessing(ImageConversion("rgb", 32), transform), model=model,
                           classes=numbered_classes(10))
    image = rng_pixels((3, 32, 32), 21)
    png = save_picture(tmp_path / "dataset-image.png", image.transpose(1, 2, 0))
    code, out, _ = run([path, png, "--json", "--top-k", "10", "--out", tmp_path / "o"], capsys)
    assert code == 0
    printed = {t["class"]: t["probability"] for t in json.loads(out)["predictions"][0]["top_k"]}
    train_cfg = config["train"]
    logits = predict(model, torch.from_numpy(transform.apply(image[None])), 8,
                     autocast_dtype(CPU, train_cfg["precision"]), train_cfg["channels_last"])
    want = torch.softmax(logits.float(), 1)[0]
    assert all(printed[f"c{c}"] == pytest.approx(float(want[c]), abs=1e-6) for c in range(10))


# ----------------------------------------------------------------------------- EXIF orientation

def sideways_jpeg(path: Path, orientation: int) -> Path:
    """Stored 40 wide x 20 high: left half red, right half blue; EXIF says how to turn it."""
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20, 0] = 255
    array[:, 20:, 2] = 255
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, quality=95, exif=exif)
    return path


def test_exif_orientation_turns_the_picture_upright(tmp_path):
    path = sideways_jpeg(tmp_path / "phone.jpg", 6)  # 6: turn 90 degrees clockwise to show
    with Image.open(path) as img:
        assert img.size == (40, 20) and img.getexif().get(0x0112) == 6
    picture = read_picture(path, ImageConversion("rgb", 32))
    assert picture.shown.shape == (40, 20, 3)  # upright: 20 wide, 40 high
    # turned clockwise, the stored left (red) half is on top, the right (blue) half below
    top, bottom = picture.converted[:, :12], picture.converted[:, -12:]
    assert top[0].mean() > 200 and top[2].mean() < 50
    assert bottom[2].mean() > 200 and bottom[0].mean() < 50


def test_without_exif_turn_the_picture_is_kept(tmp_path):
    picture = read_picture(sideways_jpeg(tmp_path / "flat.jpg", 1), ImageConversion("rgb", 32))
    assert picture.shown.shape == (20, 40, 3)
    left, right = picture.converted[:, :, :12], picture.converted[:, :, -12:]
    assert left[0].mean() > 200 and right[2].mean() > 200


def test_the_figure_of_a_turned_picture_is_drawn_upright(model_file, tmp_path, capsys):
    turned, flat = sideways_jpeg(tmp_path / "phone.jpg", 6), sideways_jpeg(tmp_path / "flat.jpg", 1)
    code, _, err = run([model_file, turned, flat, "--out", tmp_path / "o"], capsys)
    assert code == 0 and err == []
    with Image.open(tmp_path / "o/phone.png") as a, Image.open(tmp_path / "o/flat.png") as b:
        (turned_w, turned_h), (flat_w, flat_h) = a.size, b.size
    # the panels are as wide for both; the height follows the picture's aspect: the upright
    # (portrait) picture's figure is the taller one
    assert turned_w == flat_w and turned_h > flat_h + 200


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_error_line(model_file, pictures, tmp_path, capsys):
    code, out, err = run([model_file, pictures["good"]["rgba"], "--device", "cuda", "--out", tmp_path / "o"], capsys)
    assert code == 1 and out == "" and len(err) == 1
    assert err[0].startswith("error: this run was given GPUs (device cuda) but CUDA cannot start")
    assert not (tmp_path / "o").exists()


def test_an_out_path_that_is_a_file_is_one_error_line(model_file, pictures, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder\n")
    code, out, err = run([model_file, pictures["good"]["rgba"], "--out", taken], capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith("error: ") and str(taken) in err[0]
    assert taken.read_text() == "a file, not a folder\n"
