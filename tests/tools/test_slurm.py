"""The SLURM array (docs/cluster/train-array.sbatch) and its submit helper (docs/cluster/submit.sh),
run by bash on the CPU with the variables SLURM would set, and a stub `sbatch`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.run import DIGITS_ONLY, REPO, TINY, compose, repo_snapshot, run_dvc

SCRIPT = REPO / "docs/cluster/train-array.sbatch"
SUBMIT = REPO / "docs/cluster/submit.sh"
VENV_BIN = str(Path(sys.executable).parent)


def without_venv_path() -> str:
    """PATH without this venv: a SLURM task starts with the user's login PATH, not the project's."""
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and Path(p).resolve() not in (Path(VENV_BIN).resolve(), (REPO / ".venv/bin").resolve()))


def array_task(project: Path, task: int, lines: str, **env: str) -> subprocess.Popen:
    """Task `task` of the array over a list of `lines`, as SLURM starts it on a node (not waited for)."""
    (project / "list.txt").write_text(lines)
    environment = {**os.environ, "PATH": without_venv_path(), "SLURM_ARRAY_TASK_ID": str(task),
                   "SLURM_ARRAY_JOB_ID": "7", "SLURM_JOB_ID": str(8 + task), "SLURM_SUBMIT_DIR": str(project),
                   "SLURM_CPUS_PER_TASK": "1", "DVC_NO_ANALYTICS": "1", **env}
    for name in ("OMP_NUM_THREADS", "LPA_TRACEBACK"):
        environment.pop(name, None)
    return subprocess.Popen(["bash", str(SCRIPT), "list.txt"], cwd=project, env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_task_refuses_a_trial_of_more_processes_than_its_gpus(tmp_path):
    task = array_task(tmp_path, 0, "train@digits-vgg-seed0 2\n", CUDA_VISIBLE_DEVICES="3")
    out, err = task.communicate(timeout=60)
    assert task.returncode == 1, out + err
    assert err.strip().splitlines() == [
        "error: train@digits-vgg-seed0 trains on 2 processes (train.distributed.processes), one GPU each, but this "
        "task has 1 GPU(s) (CUDA_VISIBLE_DEVICES=3): submit it with --gres=gpu:2 (docs/cluster/submit.sh does)"]
    task = array_task(tmp_path, 1, "train@digits-vgg-seed0 1\n")
    out, err = task.communicate(timeout=60)
    assert task.returncode == 1 and err.strip() == "error: list.txt has no line 2; size the array to the list"


def test_submit_makes_the_log_folder_and_asks_each_trial_gpus(tmp_path):
    # a stub sbatch: records its arguments, answers as `sbatch --parsable` does (id;cluster)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").write_text('#!/bin/bash\necho "$@" >> "$SBATCH_CALLS"\n'
                                 'echo "$((100 + $(wc -l < "$SBATCH_CALLS")));cluster"\n')
    (bin_ / "sbatch").chmod(0o755)
    (tmp_path / "pending.txt").write_text("train@a-seed0 1\ntrain@b-seed0 2\ntrain@c-seed0 1\nfinetune@d-seed0 1\n")
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}", "SBATCH_CALLS": str(tmp_path / "calls")}
    out = subprocess.run(["bash", str(SUBMIT), "pending.txt", "--partition=gpu"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "logs/slurm").is_dir()  # SLURM opens each task's log there before the task starts
    calls = [line.split() for line in (tmp_path / "calls").read_text().splitlines()]
    assert [call[:-2] for call in calls] == [
        ["--parsable", "--array=0-1", "--gres=gpu:1", "--partition=gpu"],
        ["--parsable", "--array=0-0", "--gres=gpu:2", "--partition=gpu"],
        ["--parsable", "--array=0-0", "--gres=gpu:1", "--dependency=afterany:101:102", "--partition=gpu"]]
    assert all(call[-2] == str(SCRIPT) for call in calls)
    lists = [(tmp_path / call[-1]).read_text() for call in calls]
    assert lists == ["train@a-seed0 1\ntrain@c-seed0 1\n", "train@b-seed0 2\n", "finetune@d-seed0 1\n"]
    assert all(call[-1].startswith("logs/slurm/lists.") for call in calls)
    assert out.stdout.splitlines()[1].startswith("train stages on 2 GPU(s) each: job 102, 1 task(s), list logs/slurm/")


@pytest.mark.slow
def test_array_tasks_train_their_trials(tmp_path):
    # two tasks at once on one checkout, as an array's tasks start: each takes DVC's repository lock in
    # turn (--wait-for-lock) and runs its stage with the project's python, which the script puts on PATH
    project = repo_snapshot(tmp_path / "project")
    (project / ".venv").symlink_to(REPO / ".venv")
    compose(project, *TINY, *DIGITS_ONLY)
    run_dvc("repro", "download@digits", "preprocess@digits", cwd=project)
    trials = ["digits-vgg-seed0", "digits-vgg-att2-seed0"]
    lines = "".join(f"train@{trial} 1\n" for trial in trials)
    tasks = [array_task(project, k, lines, CUDA_VISIBLE_DEVICES="") for k in range(2)]
    for k, (task, trial) in enumerate(zip(tasks, trials)):
        out, err = task.communicate(timeout=600)
        assert task.returncode == 0, out[-3000:] + err[-3000:]
        assert out.startswith(f"task {k}: train@{trial} (1 process(es)) on ")
        assert (project / f"reports/quick/runs/{trial}/train/metrics.json").is_file()
    status = run_dvc("status", *[f"train@{trial}" for trial in trials], cwd=project).stdout
    assert "up to date" in status, status
