"""Running the project as a user does: commands and stage entry points in a subprocess (or, where a
test must patch one, in this process), DVC in a throwaway git repository made from this tree."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The quick suite shrunk for the DVC end-to-end tests: tiny settings (width 0.125, 2 epochs on a third
# of the training images) that check plumbing and outputs, not accuracy.
TINY = ["suite=quick", "model.width=0.125", "train.epochs=2", "train.checkpoint_every=1", "train.max_images=480",
        # the other experiments' plumbing, not their numbers: one C, two folds, one figure row per class
        "transfer.C_grid=[1.0]", "transfer.cv_folds=2", "segmentation.figure_images=1"]
# the quick suite without its pasted-digits runs and their transfer/segmentation stages: for the tests
# of seeds and baselines, which the other experiments would only slow down
DIGITS_ONLY = ["data.datasets=[digits]", "~runs.pasted-vgg-att2", "~runs.pasted-vgg-gap", "transfer.runs=[]",
               "segmentation.runs=[]", "segmentation.datasets=[]"]


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


def run_module(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m ARGS` in `cwd` with this tree's code, as a user would run it (no traceback switch);
    the exit status is the caller's to check."""
    return sh([sys.executable, "-m", *args], cwd, check=False, timeout=timeout, code_from_repo=True)


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


def compose(project: Path, *overrides: str) -> None:
    """`python -m lpa.config compose OVERRIDES` in `project`: its params.yaml from conf/."""
    sh([sys.executable, "-m", "lpa.config", "compose", *overrides], project)


def run_dvc(*args: str, cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "dvc", *args], cwd, check, timeout)


def exp_run(repo: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`dvc exp run -S O1 -S O2 ...` in `repo`."""
    return run_dvc("exp", "run", *[a for o in overrides for a in ("-S", o)], cwd=repo)


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


def copy_repo(src: Path, dst: Path) -> Path:
    """A copy of the git + DVC repository `src` (work tree, .git, DVC cache) at `dst`, to change
    without touching `src`. DVC's scratch folder (.dvc/tmp: locks, state) is left out: DVC makes a
    new one, and a DVC command reading `src` meanwhile may be changing it."""
    scratch = src / ".dvc"

    def leave_out(folder: str, names: list[str]) -> list[str]:
        return ["tmp"] if Path(folder) == scratch else []

    shutil.copytree(src, dst, ignore=leave_out)
    return dst
