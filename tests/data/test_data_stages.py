"""The download/preprocess stage entry points and their DVC wiring."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.helpers.archives import UNREACHABLE

from lpa.data import sources
from lpa.config.params import compose_params_yaml
from stages import download
from tests.helpers.run import REPO, repo_snapshot, run_dvc, run_module, run_stage_in_process


def stage_workdir(tmp_path: Path, edit=None) -> Path:
    """A directory with the repository's dvc.yaml and its composed params.yaml (optionally edited)."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")

    params = yaml.safe_load(compose_params_yaml([], root=REPO))
    if edit:
        edit(params)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


def test_stage_reports_an_invalid_param_in_one_line(tmp_path):
    def bad(params):
        params["data"]["digits"]["preprocess"]["transform"] = "whiten"

    work = stage_workdir(tmp_path, bad)
    result = run_module(["stages.preprocess", "digits"], work)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "data.digits.preprocess.transform='whiten'" in lines[0]
    assert "zca, standardize, scale, none" in lines[0]
    assert not (work / "data").exists()


def test_stage_rejects_an_unknown_dataset_in_one_line(tmp_path):
    work = stage_workdir(tmp_path)
    result = run_module(["stages.download", "imagenet"], work)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: unknown dataset 'imagenet'; allowed: cifar10, cifar100, svhn, digits, imagefolder, cub200, pasted_digits, caltech101"
    ]


def test_download_stage_without_network_says_where_to_put_the_archive(tmp_path, monkeypatch, capsys):
    unreachable = sources.RemoteFile("cifar-10-python.tar.gz", f"{UNREACHABLE}/cifar-10-python.tar.gz",
                                     sources.CIFAR10_ARCHIVE.md5)
    monkeypatch.setitem(sources.REMOTE_FILES["cifar10"], "archive", unreachable)
    err = run_stage_in_process(monkeypatch, capsys, download, "cifar10", stage_workdir(tmp_path))
    assert len(err) == 1
    assert "cifar-10-python.tar.gz" in err[0] and unreachable.url in err[0]
    assert "data/raw/cifar-10-python.tar.gz" in err[0]
    assert not Path("data/extracted/cifar10").exists()
    assert list(Path("data/raw").iterdir()) == []


def test_digits_stages_run_directly(tmp_path):
    work = stage_workdir(tmp_path)
    first = run_module(["stages.download", "digits"], work)
    assert first.returncode == 0, first.stderr
    second = run_module(["stages.preprocess", "digits"], work)
    assert second.returncode == 0, second.stderr
    assert "preprocess@digits" in second.stdout
    x, y = np.load(work / "data/processed/digits/train_images.npy"), np.load(work / "data/processed/digits/train_labels.npy")
    assert x.dtype == np.float16 and x.shape == (1437, 3, 32, 32) and y.dtype == np.int64


# ----------------------------------------------------------------------------- DVC


@pytest.mark.slow
def test_dvc_repro_preprocess_digits_in_a_fresh_clone(tmp_path):
    repo = repo_snapshot(tmp_path / "clone")
    assert (repo / ".dvc").is_dir(), "the clone must carry .dvc/ (dvc init)"
    result = run_dvc("repro", "preprocess@digits", cwd=repo, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "download@digits" in result.stdout and "preprocess@digits" in result.stdout

    extracted, processed = repo / "data/extracted/digits", repo / "data/processed/digits"
    for directory, dtype in ((extracted, np.uint8), (processed, np.float16)):
        meta = json.loads((directory / "meta.json").read_text())
        assert meta["num_classes"] == 10 and meta["splits"] == {"train": 1437, "test": 360}
        for split, n in meta["splits"].items():
            x = np.load(directory / f"{split}_images.npy")
            y = np.load(directory / f"{split}_labels.npy")
            assert x.shape == (n, 3, 32, 32) and x.dtype == dtype
            assert y.shape == (n,) and y.dtype == np.int64 and set(y.tolist()) == set(range(10))
    assert (processed / "transform.npz").is_file()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock["download@digits"]["params"]["params.yaml"]) == {"data.raw_dir", "data.digits.download"}
    assert set(lock["preprocess@digits"]["params"]["params.yaml"]) == {"data.digits.preprocess"}

    status = run_dvc("status", "--json", "download@digits", "preprocess@digits", cwd=repo, check=False)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr

    # bytecode caches are not code: a clone with (or without) lpa/data/__pycache__ must not look
    # changed to DVC, or a committed dvc.lock would be stale on every other machine
    subprocess.run([sys.executable, "-m", "compileall", "-q", "lpa/data", "stages"], cwd=repo, check=True)
    status = run_dvc("status", "--json", "download@digits", "preprocess@digits", cwd=repo, check=False)
    assert json.loads(status.stdout) == {}, (
        "__pycache__ changes the lpa/data dependency: add `__pycache__/` and `*.pyc` to .dvcignore; "
        + status.stdout)

    # a preprocessing param re-runs preprocess only, not the extraction
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["digits"]["preprocess"]["transform"] = "scale"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run_dvc("status", "--json", "download@digits", "preprocess@digits", cwd=repo, check=False)
    assert set(json.loads(status.stdout)) == {"preprocess@digits"}, status.stdout
