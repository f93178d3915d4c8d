"""Damaged files on disk: every file the pipeline reads gives one `error:` line that names the file
and says what to do (which stage to re-run, which file to delete), never a traceback; a damaged
checkpoint is set aside (renamed, not deleted) and training starts fresh with one warning line.

One test per class of damage. Where it is cheap the real stage entry point runs in a subprocess
in a temporary working directory (dvc.yaml, the quick suite's params.yaml, the needed files);
the rest call the library reader and match its message.
"""
from __future__ import annotations

import io
import json
import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from tests.helpers.archives import make_svhn_mat, md5_of, remote

from lpa.train.checkpoint import load_checkpoint
from lpa.config.run import resolve_trial
from lpa.data import arrays, sources
from lpa.errors import DatasetFormatError
from lpa.data.pipeline import extract_dataset
from lpa.data.conversion import ImageConversion
from lpa.data.transforms import load_transform
from lpa.train.engine import train
from lpa.errors import DamagedFileError
from lpa.layout import checkpoint_dir, model_file
from lpa.train.modelfile import FORMAT, load_model, model_preprocessing, read_model_file
from lpa.config.params import compose_params_yaml
from stages import download
from tests.helpers.checks import one_error_line, one_line
from tests.helpers.datasets import prepare_digits
from tests.helpers.models import identity_preprocessing, save_model_file
from tests.helpers.params import shrunk_params
from tests.helpers.run import REPO, run_module, run_stage_in_process
from tests.helpers.toy_data import toy_data

TRIAL = "digits-vgg-seed0"
SUITE = "quick"
DATASET = "digits"
RNG_BYTES = np.random.default_rng(7).bytes(4096)  # "overwritten with something else"


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def params_text() -> str:
    """The quick suite's params.yaml, as `dvc exp run -S suite=quick` writes it."""
    return compose_params_yaml(["suite=quick"], root=REPO)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A tree with good data/extracted/digits and data/processed/digits (16 x 16 images: small)."""
    return prepare_digits(tmp_path_factory.mktemp("pristine"), image_size=16)


@pytest.fixture(scope="module")
def good_model(tmp_path_factory, params_text) -> Path:
    """A valid tiny model file of TRIAL (vgg at width 0.125), as the train stage writes it."""
    config = resolve_trial(shrunk_params(yaml.safe_load(params_text)), TRIAL)
    path = tmp_path_factory.mktemp("model") / "models" / SUITE / TRIAL / "model.pt"
    return save_model_file(path, config, identity_preprocessing("grey", 32, 8))


def workdir(tmp_path: Path, params_text: str, pristine: Path | None = None, *dirs: str) -> Path:
    """A stage's working directory: dvc.yaml, params.yaml and copies of `dirs` from `pristine`."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    (work / "params.yaml").write_text(params_text)
    for d in dirs:
        shutil.copytree(pristine / d, work / d)
    return work


def copy_dir(pristine: Path, rel: str, tmp_path: Path) -> Path:
    """A copy of pristine/<rel> at tmp_path/<rel> (the layout, and so the advice, is kept)."""
    shutil.copytree(pristine / rel, tmp_path / rel)
    return tmp_path / rel


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ----------------------------------------------------------------------------- truncated array

def test_truncated_array_stops_the_stage_in_one_line(tmp_path, params_text, pristine):
    work = workdir(tmp_path, params_text, pristine, "data/extracted/digits")
    truncate(work / "data/extracted/digits/train_images.npy")
    line = one_error_line(run_module(["stages.preprocess", DATASET], work))
    assert "data/extracted/digits/train_images.npy is truncated" in line
    assert "re-run `dvc repro -f download@digits`" in line
    assert not (work / "data/processed").exists()


@pytest.mark.parametrize("rel, stage", [("data/extracted/digits", "download"),
                                        ("data/processed/digits", "preprocess")])
@pytest.mark.parametrize("name, keep", [("test_images.npy", 0.5), ("test_labels.npy", 0.7),
                                        ("test_images.npy", 0.0), ("test_labels.npy", 0.05)])
@pytest.mark.parametrize("mmap", [False, True])
def test_truncated_array_names_the_file_and_the_stage_that_writes_it(tmp_path, pristine, rel, stage, name, keep,
                                                                     mmap):
    directory = copy_dir(pristine, rel, tmp_path)
    truncate(directory / name, keep)
    with pytest.raises(DamagedFileError) as err:
        arrays.read_split(directory, "test", mmap=mmap)
    msg = one_line(err)
    assert f"{directory / name} is truncated" in msg and f"`dvc repro -f {stage}@digits`" in msg


# ----------------------------------------------------------------------------- overwritten array

def test_overwritten_array_stops_the_train_stage_in_one_line(tmp_path, params_text, pristine):
    work = workdir(tmp_path, params_text, pristine, "data/processed/digits")
    (work / "data/processed/digits/train_labels.npy").write_bytes(RNG_BYTES)
    line = one_error_line(run_module(["stages.train", TRIAL], work))
    assert "data/processed/digits/train_labels.npy is not a .npy array" in line
    assert "re-run `dvc repro -f preprocess@digits`" in line
    assert "allow_pickle" not in line  # numpy's hint is no advice for a damaged file
    assert not (work / "models").exists()


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros(3))
    return buf.getvalue()


@pytest.mark.parametrize("name", ["train_images.npy", "test_labels.npy"])
@pytest.mark.parametrize("content, says", [
    (RNG_BYTES, "is not a .npy array"),
    (b"hello, I am not an array\n" * 20, "is not a .npy array"),
    (_npz_bytes(), "is not a .npy array (it is a NpzFile)"),
    (pickle.dumps({"images": [1, 2, 3]}), "is not a .npy array"),
])
def test_overwritten_array_names_the_file(tmp_path, pristine, name, content, says):
    directory = copy_dir(pristine, "data/processed/digits", tmp_path)
    (directory / name).write_bytes(content)
    split = name.split("_")[0]
    with pytest.raises(DamagedFileError) as err:
        arrays.read_split(directory, split)
    msg = one_line(err)
    assert f"{directory / name} {says}" in msg and "`dvc repro -f preprocess@digits`" in msg


# ----------------------------------------------------------------------------- shapes vs meta.json

@pytest.mark.parametrize("damage, culprit", [
    (lambda d: np.save(d / "test_images.npy", np.load(d / "test_images.npy")[:100]), "test_images.npy"),
    (lambda d: np.save(d / "test_images.npy", np.load(d / "test_images.npy").astype(np.float32)), "test_images.npy"),
    (lambda d: np.save(d / "test_images.npy", np.load(d / "test_images.npy")[:, :, :8, :8]), "test_images.npy"),
    (lambda d: np.save(d / "test_labels.npy", np.load(d / "test_labels.npy").astype(np.int32)), "test_labels.npy"),
    (lambda d: np.save(d / "test_labels.npy", np.load(d / "test_labels.npy")[:-1]), "test_images.npy"),
    (lambda d: np.save(d / "test_labels.npy", np.load(d / "test_labels.npy") + 10), "test_labels.npy"),
    (lambda d: np.save(d / "test_images.npy", np.zeros((360, 16, 16), np.float16)), "test_images.npy"),
])
def test_arrays_that_disagree_with_meta_json(tmp_path, pristine, damage, culprit):
    directory = copy_dir(pristine, "data/processed/digits", tmp_path)
    damage(directory)
    with pytest.raises(DamagedFileError) as err:
        arrays.read_split(directory, "test", mmap=True)
    msg = one_line(err)
    assert str(directory / culprit) in msg and "`dvc repro -f preprocess@digits`" in msg


def test_meta_json_whose_counts_disagree_with_the_arrays(tmp_path, pristine):
    directory = copy_dir(pristine, "data/extracted/digits", tmp_path)
    meta = json.loads((directory / "meta.json").read_text())
    meta["splits"]["train"] += 1
    (directory / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DamagedFileError) as err:
        arrays.read_split(directory, "train")
    msg = one_line(err)
    assert f"but {directory / 'meta.json'} says uint8 1438 x 3 x 16 x 16" in msg
    assert "`dvc repro -f download@digits`" in msg


# ----------------------------------------------------------------------------- bad meta.json

def test_meta_json_that_is_not_json_stops_the_stage_in_one_line(tmp_path, params_text, pristine):
    work = workdir(tmp_path, params_text, pristine, "data/extracted/digits")
    truncate(work / "data/extracted/digits/meta.json", 0.6)
    line = one_error_line(run_module(["stages.preprocess", DATASET], work))
    assert "data/extracted/digits/meta.json is not valid JSON" in line
    assert "re-run `dvc repro -f download@digits`" in line


@pytest.mark.parametrize("edit, says", [
    (lambda m: "{not json", "is not valid JSON"),
    (lambda m: b"\xff\xfe\x00garbage", "cannot be read as JSON text"),
    (lambda m: [m], "holds a JSON list, not an object"),
    (lambda m: {k: v for k, v in m.items() if k not in ("image_shape", "splits")}, "lacks image_shape, splits"),
    (lambda m: {**m, "image_shape": [3, 16]}, "has image_shape [3, 16], expected [C, H, W]"),
    (lambda m: {**m, "splits": {"train": 5}}, "has splits"),
    (lambda m: {**m, "num_classes": 11}, "has num_classes 11 and 10 classes"),
    (lambda m: {**m, "dtype": "pixels"}, "has dtype 'pixels'"),
])
def test_bad_meta_json_names_the_file(tmp_path, pristine, edit, says):
    directory = copy_dir(pristine, "data/processed/digits", tmp_path)
    path = directory / "meta.json"
    new = edit(json.loads(path.read_text()))
    if isinstance(new, bytes):
        path.write_bytes(new)
    else:
        path.write_text(new if isinstance(new, str) else json.dumps(new))
    for read in (lambda: arrays.read_meta(directory), lambda: arrays.read_split(directory, "train")):
        with pytest.raises(DamagedFileError) as err:
            read()
        msg = one_line(err)
        assert f"{path} {says}" in msg and "`dvc repro -f preprocess@digits`" in msg


# ----------------------------------------------------------------------------- damaged transform.npz

def _flip_std_byte(path: Path) -> None:
    """Overwrite one byte inside the stored std array: the zip member's CRC no longer matches."""
    with np.load(path) as z:
        std = z["std"].tobytes()
    data = bytearray(path.read_bytes())
    at = bytes(data).index(std)
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _resave(path: Path, drop: str = "", **replace) -> None:
    with np.load(path) as z:
        saved = {k: z[k] for k in z.files if k != drop}
    saved.update(replace)
    with open(path, "wb") as f:
        np.savez(f, **saved)


@pytest.mark.parametrize("damage, says", [
    (lambda p: truncate(p, 0.5), "is truncated or not a .npz archive"),
    (lambda p: p.write_bytes(RNG_BYTES), "is truncated or not a .npz archive"),
    (lambda p: p.write_bytes(b""), "is truncated or not a .npz archive"),
    (lambda p: p.write_bytes(open(p.parent / "test_labels.npy", "rb").read()), "is not a .npz archive"),
    (lambda p: _flip_std_byte(p), "has a damaged entry \\(BadZipFile: Bad CRC-32"),
    (lambda p: _resave(p, drop="method"), "lacks method"),
    (lambda p: _resave(p, format_version=np.array(99)), "is transform format 99, this code reads 1"),
    (lambda p: _resave(p, method=np.array("whiten")), "has method 'whiten'"),
    (lambda p: _resave(p, mean=np.zeros(5, np.float32)), r"has mean float32 \(5,\)"),
    (lambda p: _resave(p, std=np.full(3, np.nan, np.float32)), "has std"),
])
def test_damaged_transform_names_the_file(tmp_path, pristine, damage, says):
    directory = copy_dir(pristine, "data/processed/digits", tmp_path)
    path = directory / "transform.npz"
    damage(path)
    with pytest.raises(DamagedFileError, match=says) as err:
        load_transform(directory)
    msg = one_line(err)
    assert msg.startswith(f"{path} ") and msg.endswith("re-run `dvc repro -f preprocess@digits`")


def test_good_transform_still_loads(tmp_path, pristine):
    directory = copy_dir(pristine, "data/processed/digits", tmp_path)
    t = load_transform(directory)
    assert t.method == "standardize" and t.image_shape == (3, 16, 16) and t.mean.shape == (3,)


# ----------------------------------------------------------------------------- truncated model file

def test_truncated_model_file_stops_evaluate_in_one_line(tmp_path, params_text, good_model):
    work = workdir(tmp_path, params_text)
    target = work / model_file(SUITE, TRIAL)
    target.parent.mkdir(parents=True)
    target.write_bytes(good_model.read_bytes()[: good_model.stat().st_size // 2])
    line = one_error_line(run_module(["stages.evaluate", TRIAL], work))
    assert f"{model_file(SUITE, TRIAL)} is not a readable model file (truncated" in line
    assert f"delete it and re-run its train stage (`dvc repro train@{TRIAL}`)" in line


@pytest.mark.parametrize("keep", [0.0, 0.01, 0.5, 0.99])
def test_truncated_model_file_names_the_file(tmp_path, good_model, keep):
    path = tmp_path / TRIAL / "model.pt"
    path.parent.mkdir()
    path.write_bytes(good_model.read_bytes()[: int(good_model.stat().st_size * keep)])
    with pytest.raises(DamagedFileError) as err:
        read_model_file(path)
    msg = one_line(err)
    assert f"{path} is not a readable model file" in msg and f"`dvc repro train@{TRIAL}`" in msg


# ----------------------------------------------------------------------------- model file of another format

def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _record(good_model: Path) -> dict:
    return torch.load(good_model, map_location="cpu", weights_only=False)


def _misfit(record: dict) -> dict:
    state = dict(record["state_dict"])
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(1, 1, 1, 1)
    return {**record, "state_dict": state}


@pytest.mark.parametrize("content, says", [
    (lambda r: RNG_BYTES, "is not a readable model file"),
    (lambda r: b"just some text\n" * 10, "is not a readable model file"),
    (lambda r: pickle.dumps({"state_dict": 1}), "is not a readable model file"),
    (lambda r: _torch_bytes([1, 2, 3]), "is not an lpa model file (it holds a list)"),
    (lambda r: _torch_bytes({"epoch": 3, "model": r["state_dict"]}), "is not an lpa model file (it holds a dict"),
    (lambda r: _torch_bytes({k: v for k, v in r.items() if k != "format"}),
     f"is a model file of an older lpa format (unversioned, this lpa reads {FORMAT})"),
    (lambda r: _torch_bytes({**r, "format": "lpa.model/0"}), "older lpa format (lpa.model/0"),
    (lambda r: _torch_bytes({k: v for k, v in r.items() if k != "classes"}), "lacks classes"),
    (lambda r: _torch_bytes({**r, "config": ["not", "a", "config"]}), "has a config without"),
    (lambda r: _torch_bytes({**r, "classes": ["a"]}), "has 1 class names for 10 classes"),
    (lambda r: _torch_bytes({**r, "config": {**r["config"], "model": {**r["config"]["model"], "name": "vgg99"}}}),
     "its config does not build a model"),
    (lambda r: _torch_bytes(_misfit(r)), "its weights do not fit its own config"),
    (lambda r: _torch_bytes({**r, "format": "lpa.model/1"}), "older lpa format (lpa.model/1"),
    (lambda r: _torch_bytes({**r, "preprocessing": None}), "has no preprocessing record"),
    (lambda r: _torch_bytes({**r, "preprocessing": {**r["preprocessing"], "conversion": {"kind": "cmyk", "size": 32}}}),
     "has a damaged preprocessing record (unknown image conversion 'cmyk'"),
    (lambda r: _torch_bytes({**r, "preprocessing": {**r["preprocessing"], "conversion": {"kind": "rgb", "size": 80}}}),
     "converts pictures to 80 pixels for a model of input size 32"),
])
def test_model_file_of_another_format_names_the_file(tmp_path, good_model, content, says):
    path = tmp_path / "models" / SUITE / TRIAL / "model.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(content(_record(good_model)))
    with pytest.raises(DamagedFileError) as err:
        load_model(path, torch.device("cpu"))
    msg = one_line(err)
    assert says in msg and str(path) in msg and f"`dvc repro train@{TRIAL}`" in msg


def test_good_model_file_still_loads(good_model):
    model, saved = load_model(good_model, torch.device("cpu"))
    assert saved["num_classes"] == 10 and saved["config"]["trial"] == TRIAL
    conversion, transform = model_preprocessing(saved, good_model)
    assert conversion == ImageConversion("grey", 32, 8) and transform.method == "standardize"


def test_damaged_transform_inside_a_model_file_names_the_model(tmp_path, good_model):
    record = _record(good_model)
    record["preprocessing"] = {**record["preprocessing"], "transform": b"PK\x03\x04 not really a zip"}
    path = tmp_path / "models" / SUITE / TRIAL / "model.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(_torch_bytes(record))
    _, saved = load_model(path, torch.device("cpu"))
    with pytest.raises(DamagedFileError) as err:
        model_preprocessing(saved, path)
    msg = one_line(err)
    assert f"{path} (its preprocessing transform) is truncated or not a .npz archive" in msg
    assert f"`dvc repro train@{TRIAL}`" in msg


# ----------------------------------------------------------------------------- damaged checkpoint

def _damaged_checkpoints() -> dict:
    good = _torch_bytes({"config_hash": "x", "epoch": 1, "history": [], "model": {}, "optimizer": {},
                         "generator": torch.Generator().get_state(), "torch_rng": torch.get_rng_state()})
    return {
        "truncated": good[: len(good) // 2],
        "random": RNG_BYTES,
        "empty": b"",
        "foreign": _torch_bytes({"state_dict": {}}),
        "wrong types": _torch_bytes({"config_hash": "x", "epoch": "1", "history": [], "model": [], "optimizer": {},
                                     "generator": 0, "torch_rng": torch.get_rng_state()}),
    }


@pytest.mark.parametrize("kind", list(_damaged_checkpoints()))
def test_damaged_checkpoint_is_moved_aside_with_one_warning(tmp_path, capsys, kind):
    content = _damaged_checkpoints()[kind]
    ckpt = tmp_path / "checkpoints" / SUITE / TRIAL
    ckpt.mkdir(parents=True)
    (ckpt / "last.pt").write_bytes(content)
    assert load_checkpoint(ckpt, "x") is None
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: checkpoint {ckpt / 'last.pt'} is damaged")
    assert lines[0].endswith("training starts fresh")
    assert not (ckpt / "last.pt").exists()
    aside = list(ckpt.iterdir())
    assert len(aside) == 1 and aside[0].name == "last.pt.damaged" and aside[0].name in lines[0]
    assert aside[0].read_bytes() == content  # renamed, not deleted


def test_a_second_damaged_checkpoint_keeps_the_first(tmp_path, capsys):
    ckpt = tmp_path / "checkpoints" / SUITE / TRIAL
    ckpt.mkdir(parents=True)
    for content in (b"first", b"second"):
        (ckpt / "last.pt").write_bytes(content)
        assert load_checkpoint(ckpt, "x") is None
    assert "moved it to last.pt.damaged.1 " in capsys.readouterr().err.splitlines()[-1]
    assert (ckpt / "last.pt.damaged").read_bytes() == b"first"
    assert (ckpt / "last.pt.damaged.1").read_bytes() == b"second"


def test_damaged_checkpoint_training_starts_fresh(tmp_path, capsys, tiny_config):
    config = tiny_config("digits-vgg", epochs=1, batch_size=16)
    data = toy_data(n=32)
    ckpt = tmp_path / checkpoint_dir(SUITE, TRIAL)
    ckpt.mkdir(parents=True)
    (ckpt / "last.pt").write_bytes(RNG_BYTES)
    result = train(config, data, 10, checkpoint_dir=ckpt, progress=False)
    out, err = capsys.readouterr()
    assert result.resumed_from_epoch == 0 and [r["epoch"] for r in result.history] == [1]
    warnings = [line for line in (out + err).splitlines() if "last.pt" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: checkpoint {ckpt / 'last.pt'} is damaged")
    assert "resuming" not in out
    kept = [p.name for p in ckpt.iterdir()]
    assert kept == ["last.pt.damaged"]
    assert (ckpt / kept[0]).read_bytes() == RNG_BYTES


def test_good_checkpoint_still_resumes(tmp_path, capsys, tiny_config):
    config = tiny_config("digits-vgg", epochs=2, batch_size=16, checkpoint_every=1)
    ckpt = tmp_path / checkpoint_dir(SUITE, TRIAL)

    def crash_in_epoch_2(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt  # dies before the end: the checkpoint of epoch 1 stays

    with pytest.raises(KeyboardInterrupt):
        train(config, toy_data(n=32), 10, checkpoint_dir=ckpt, on_epoch=crash_in_epoch_2, progress=False)
    assert (ckpt / "last.pt").exists()
    result = train(config, toy_data(n=32), 10, checkpoint_dir=ckpt, progress=False)
    assert result.resumed_from_epoch == 1 and "warning" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- params.yaml not YAML

@pytest.mark.parametrize("text", ["suite_name: quick\ndata: {raw_dir: [unclosed\n", "\tkey: value\n- : :\n"])
def test_params_yaml_that_is_not_yaml_stops_the_stage_in_one_line(tmp_path, text):
    work = workdir(tmp_path, text)
    line = one_error_line(run_module(["stages.preprocess", DATASET], work))
    assert line.startswith("error: params.yaml is not valid YAML")
    assert "make params" in line


# ----------------------------------------------------------------------------- archive right by MD5, not an archive

def _tar_gz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cifar-10-batches-py/data_batch_1", b"zip, not tar.gz")


CIFAR = "cifar-10-python.tar.gz"


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_text("<html>404 Not Found</html>\n"), "cannot extract"),
    (lambda p: p.write_bytes(RNG_BYTES), "cannot extract"),
    (_zip, "cannot extract"),
    (lambda p: _tar_gz(p, {"other/readme.txt": b"hello"}), "has no top-level directory cifar-10-batches-py/"),
    (lambda p: _tar_gz(p, {"cifar-10-batches-py/batches.meta": b"not a pickle"}), "cannot read CIFAR batch batches.meta"),
    (lambda p: _tar_gz(p, {"cifar-10-batches-py/batches.meta": pickle.dumps({"label_names": ["a"]})}),
     "should list 10 class names"),
])
def test_cifar_archive_right_by_md5_but_not_an_archive(tmp_path, make, says):
    raw = tmp_path / "data/raw"
    raw.mkdir(parents=True)
    make(raw / CIFAR)
    out = tmp_path / "data/extracted/cifar10"
    with pytest.raises(DatasetFormatError) as err:
        extract_dataset("cifar10", {}, out, raw, files={"archive": remote(CIFAR, md5_of(raw / CIFAR))})
    msg = one_line(err)
    assert str(raw / CIFAR) in msg and says in msg
    assert "not the official cifar10 python-version archive" in msg
    assert f"delete {raw / CIFAR} and re-run `dvc repro -f download@cifar10`" in msg
    assert not out.exists() and (raw / CIFAR).exists()  # right by MD5: not moved aside


def _savemat(path: Path, **arrays) -> None:
    scipy.io.savemat(str(path), arrays)


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_text("<html>404 Not Found</html>\n" * 10), "as a MATLAB file"),
    (lambda p: p.write_bytes(b"MATLAB 5.0 MAT-file" + RNG_BYTES), "as a MATLAB file"),
    (lambda p: _savemat(p, images=np.zeros((2, 2))), "has no 'X' and 'y'"),
    (lambda p: _savemat(p, X=np.zeros((4, 4, 3, 2), np.uint8), y=np.ones(2)), "expected 32 x 32 x 3 x N"),
])
def test_svhn_mat_right_by_md5_but_not_svhn(tmp_path, make, says):
    raw = tmp_path / "raw"
    te = make_svhn_mat(raw / "test_32x32.mat", 3)
    make(raw / "train_32x32.mat")
    files = {"train": remote("train_32x32.mat", md5_of(raw / "train_32x32.mat")),
             "test": remote("test_32x32.mat", te["md5"])}
    with pytest.raises(DatasetFormatError) as err:
        extract_dataset("svhn", {}, tmp_path / "svhn", raw, files=files)
    msg = one_line(err)
    assert str(raw / "train_32x32.mat") in msg and says in msg
    assert "delete it and re-run `dvc repro -f download@svhn`" in msg
    assert not (tmp_path / "svhn").exists()


def test_download_stage_with_an_archive_right_by_md5_prints_one_line(tmp_path, params_text, monkeypatch, capsys):
    work = workdir(tmp_path, params_text)
    raw = work / "data/raw"
    raw.mkdir(parents=True)
    (raw / CIFAR).write_text("<html>a captive portal, not the archive</html>\n")
    monkeypatch.setitem(sources.REMOTE_FILES["cifar10"], "archive", remote(CIFAR, md5_of(raw / CIFAR)))
    err = run_stage_in_process(monkeypatch, capsys, download, "cifar10", work)
    assert len(err) == 1 and err[0].startswith(f"error: cannot extract data/raw/{CIFAR} (ReadError")
    assert f"delete data/raw/{CIFAR} and re-run `dvc repro -f download@cifar10`" in err[0]
    assert not (work / "data/extracted").exists()
