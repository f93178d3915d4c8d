"""Shared fixtures: the real configs from conf/, shrunk (as lightning-hydra-template's tests do)."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lpa.config.run import resolve_run
from lpa.config.params import compose_params_yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def quick_params() -> dict:
    """params.yaml of the quick suite, composed exactly as `dvc exp run -S suite=quick` does."""
    return yaml.safe_load(compose_params_yaml(["suite=quick"], root=REPO))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread while a module of tiny-model tests runs: on a CPU shared with other jobs,
    two spinning OpenMP threads made each forward of these models ~40x slower (measured: 0.8 s vs 0.02 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config(quick_params):
    """A resolved digits-vgg-att2 config shrunk to seconds on a CPU; call with overrides."""

    def make(run: str = "digits-vgg-att2", **train_overrides) -> dict:
        params = copy.deepcopy(quick_params)
        params["model"]["width"] = 0.125
        params["train"].update({"epochs": 2, "batch_size": 16, "checkpoint_every": 1, "eval_batch_size": 64})
        params["train"].update(train_overrides)
        return resolve_run(params, run)

    return make


def sh(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900,
       code_from_repo: bool = False) -> subprocess.CompletedProcess:
    """Run `cmd` with this venv first on PATH (stage commands call `python`), output captured.
    `code_from_repo`: import lpa/stages from this tree while running in another directory."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1"}
    if code_from_repo:
        env["PYTHONPATH"] = str(REPO)
    env.pop("LPA_TRACEBACK", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def run_stage_in_process(monkeypatch, capsys, module, arg: str, cwd: Path) -> list[str]:
    """Run a stage entry point (e.g. `stages.download`) in this process, in `cwd`, where a test
    can patch it; assert it exits 1 and return its stderr lines."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [module.__name__, arg])
    monkeypatch.delenv("LPA_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_:
        module.run_stage(module.main, f"python -m {module.__name__} ARG")
    assert exit_.value.code == 1
    return capsys.readouterr().err.strip().splitlines()


def run_dvc(*args: str, cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "dvc", *args], cwd, check, timeout)


def repo_snapshot(dst: Path) -> Path:
    """A fresh git repo holding this working tree's files (tracked and untracked-not-ignored):
    what a clone of the tree would hold once committed."""
    files = sh(["git", "ls-files", "-co", "--exclude-standard", "-z"], REPO).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    sh(["git", "init", "-q"], dst)
    # dvc exp run commits: give the throwaway repo an identity even where none is configured
    sh(["git", "config", "user.name", "lpa-test"], dst)
    sh(["git", "config", "user.email", "test@lpa"], dst)
    sh(["git", "add", "-A"], dst)
    sh(["git", "commit", "-qm", "snapshot"], dst)
    return dst


# The quick suite shrunk for the DVC end-to-end tests (test_pipeline*.py): tiny settings (digits,
# width 0.125, 2 epochs) that check plumbing and outputs, not accuracy.
TINY = ["suite=quick", "model.width=0.125", "train.epochs=2", "train.checkpoint_every=1",
        # the other experiments' plumbing, not their numbers: one C, two folds, one figure row per class
        "transfer.C_grid=[1.0]", "transfer.cv_folds=2", "segmentation.figure_images=1"]
# the quick suite without its pasted-digits runs and their transfer/segmentation stages: for the tests
# of seeds and baselines, which the other experiments would only slow down
DIGITS_ONLY = ["data.datasets=[digits]", "~runs.pasted-vgg-att2", "~runs.pasted-vgg-gap", "transfer.runs=[]",
               "segmentation.runs=[]", "segmentation.datasets=[]"]


def exp_run(repo: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_dvc("exp", "run", *[a for o in overrides for a in ("-S", o)], cwd=repo)
