"""End to end through DVC: the real stages, in a temporary git repository made from this tree.

Tiny settings (digits, width 0.125, 2 epochs): these tests check plumbing and outputs, not accuracy.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, repo_snapshot, run_dvc, sh

pytestmark = pytest.mark.slow
TINY = ["suite=quick", "model.width=0.125", "train.epochs=2", "train.checkpoint_every=1"]


def exp_run(repo: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_dvc("exp", "run", *[a for o in overrides for a in ("-S", o)], cwd=repo)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = repo_snapshot(tmp_path_factory.mktemp("clone"))
    exp_run(repo, *TINY)
    return repo


def test_quick_suite_writes_every_output(repo: Path):
    for split in ("train", "test"):
        assert (repo / f"data/processed/digits/{split}_images.npy").exists()
    for run in ("digits-vgg", "digits-vgg-att2"):
        rec = repo / "reports/runs" / run
        assert (repo / "models" / run / "model.pt").exists()
        config = json.loads((rec / "config.json").read_text())
        assert config["run"] == run and config["model"]["width"] == 0.125 and config["train"]["epochs"] == 2
        logged = json.loads((rec / "train/metrics.json").read_text())
        assert logged["step"] == 1 and "loss" in logged["train"]
        assert len((rec / "train/plots/metrics/train/loss.tsv").read_text().splitlines()) == 3  # header + 2 epochs
        metrics = json.loads((rec / "metrics.json").read_text())
        assert 0 <= metrics["test"]["top1_error"] <= 100 and 0 <= metrics["test"]["top5_error"] <= 100

        def numbers_only(d):
            return all(numbers_only(v) if isinstance(v, dict) else isinstance(v, (int, float)) for v in d.values())
        assert numbers_only(metrics)
        assert (rec / "per_class.csv").read_text().splitlines()[0] == "class,accuracy"
        assert (rec / "confusion.csv").read_text().splitlines()[0] == "actual,predicted"
        assert not (repo / "checkpoints" / run).exists()  # removed once the run completed
    pngs = sorted(p.name for p in (repo / "reports/runs/digits-vgg-att2/attention").glob("*.png"))
    assert pngs == ["level1.png", "level2.png"]
    for png in pngs:
        assert (repo / "reports/runs/digits-vgg-att2/attention" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = (repo / "reports/results.md").read_text()
    assert "digits-vgg-att2" in results and "(VGG-att2)-concat-pc" in results
    summary = json.loads((repo / "reports/summary.json").read_text())
    assert set(summary) >= {"digits-vgg", "digits-vgg-att2"}
    plots = run_dvc("plots", "show", "--json", cwd=repo).stdout
    assert "train/loss" in plots


def test_attention_override_reruns_training_and_is_recorded(repo: Path):
    before = json.loads((repo / "reports/runs/digits-vgg-att2/config.json").read_text())
    out = exp_run(repo, *TINY, "attention.compat=dp")
    assert "Running stage 'train@digits-vgg-att2'" in out.stdout + out.stderr
    after = json.loads((repo / "reports/runs/digits-vgg-att2/config.json").read_text())
    assert before["attention"]["compat"] == "pc" and after["attention"]["compat"] == "dp"
    assert "(VGG-att2)-concat-dp" in (repo / "reports/results.md").read_text()
    names = run_dvc("exp", "list", "--name-only", cwd=repo).stdout.split()
    assert len(names) == 2, names
    shown = run_dvc("exp", "show", "--json", cwd=repo).stdout
    assert all(f'"{name}"' in shown for name in names)
    diff = json.loads(run_dvc("metrics", "diff", names[0], names[1], "--json", cwd=repo).stdout)
    assert "reports/runs/digits-vgg-att2/metrics.json" in diff or "reports/summary.json" in diff


def test_dry_run_on_default_params_lists_the_paper_suite(tmp_path: Path):
    # --force: plain --dry stops at the first dependency directory no earlier stage has made yet
    # (DVC issue #9021); with --force it lists every stage of a fresh clone.
    repo = repo_snapshot(tmp_path)
    out = run_dvc("repro", "--dry", "--force", cwd=repo).stdout
    runs = yaml.safe_load((REPO / "params.yaml").read_text())["runs"]
    for dataset in ("cifar10", "cifar100", "svhn", "digits"):
        assert f"download@{dataset}" in out and f"preprocess@{dataset}" in out
    for run in runs:
        assert f"'train@{run}'" in out and f"'evaluate@{run}'" in out
    assert "'report'" in out


def test_a_killed_training_stage_resumes_from_its_checkpoint(repo: Path):
    """kill -9 the train stage after its first checkpoint; running it again continues from there."""
    import signal
    import time

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"].update(epochs=4, checkpoint_every=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run, ckpt = "digits-vgg-att2", repo / "checkpoints/digits-vgg-att2/last.pt"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, "-m", "stages.train", run], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "the stage finished or failed before its first checkpoint"
    out = sh([sys.executable, "-m", "stages.train", run], repo).stdout
    assert "resuming from the checkpoint after epoch" in out
    resumed_at = int(out.split("resuming from the checkpoint after epoch ")[1].split()[0])
    assert 1 <= resumed_at < 4 and f"epoch {resumed_at}/4" not in out and "epoch 4/4" in out
    log = (repo / "reports/runs" / run / "train/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(log) == 1 + 4  # the epochs before the crash are replayed into the dvclive log
    assert not ckpt.exists()
