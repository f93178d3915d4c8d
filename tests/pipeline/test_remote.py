"""Sharing the trained models through a DVC remote (docs/baselines.md, "Sharing the trained models"):
a run's weights and data pushed to a remote come back with `dvc pull` into a clone that has neither,
byte for byte, and DVC then finds the pipeline up to date: nothing to retrain. The remote is a local
directory; S3, SSH and the other remote types differ only in `dvc remote add`'s URL."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.run import DIGITS_ONLY, TINY, exp_run, repo_snapshot, run_dvc

pytestmark = pytest.mark.slow

# the quick suite's digits part cut to its least: one run, one epoch on 200 images, a 20-image
# attack. What travels to the remote is the same kind of files as a full run's, only smaller.
ONE_SMALL_RUN = ["~runs.digits-vgg-att2", "train.epochs=1", "train.max_images=200", "robustness.images=20",
                 "robustness.epsilons=[0,2]"]
# what `dvc pull` must bring back: every cached output of that run
PULLED = ("models", "data/extracted", "data/processed")


def file_bytes(repo: Path, folder: str) -> dict[str, bytes]:
    """Every file under repo/folder, by its path relative to the repo."""
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted((repo / folder).rglob("*")) if p.is_file()}


def test_pushed_models_and_data_come_back_with_dvc_pull(tmp_path):
    (tmp_path / "clone").mkdir()
    repo = repo_snapshot(tmp_path / "clone")
    exp_run(repo, *TINY, *DIGITS_ONLY, *ONE_SMALL_RUN)
    trained = {folder: file_bytes(repo, folder) for folder in PULLED}
    assert any(name.endswith("model.pt") for name in trained["models"]), trained["models"].keys()

    storage = tmp_path / "storage"
    run_dvc("remote", "add", "-d", "local", str(storage), cwd=repo)
    run_dvc("push", cwd=repo)
    assert "in sync" in run_dvc("status", "--cloud", cwd=repo).stdout

    # a machine that never trained: no DVC cache, no weights, no data
    shutil.rmtree(repo / ".dvc/cache")
    for folder in PULLED:
        shutil.rmtree(repo / folder)
    assert "deleted" in run_dvc("status", cwd=repo).stdout

    run_dvc("pull", cwd=repo)
    assert {folder: file_bytes(repo, folder) for folder in PULLED} == trained
    assert "Data and pipelines are up to date." in run_dvc("status", cwd=repo).stdout
