"""End to end through DVC: the real stages, in a temporary git repository made from this tree.

Tiny settings (digits, width 0.125, 2 epochs): these tests check plumbing and outputs, not accuracy.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lpa.params import compose_params_yaml
from tests.conftest import REPO, repo_snapshot, run_dvc, sh

pytestmark = pytest.mark.slow
TINY = ["suite=quick", "model.width=0.125", "train.epochs=2", "train.checkpoint_every=1",
        # the other experiments' plumbing, not their numbers: one C, two folds, one figure row per class
        "transfer.C_grid=[1.0]", "transfer.cv_folds=2", "segmentation.figure_images=1"]
# the quick suite without its pasted-digits runs and their transfer/segmentation stages: for the tests
# of seeds and baselines, which the other experiments would only slow down
DIGITS_ONLY = ["data.datasets=[digits]", "~runs.pasted-vgg-att2", "~runs.pasted-vgg-gap", "transfer.runs=[]",
               "segmentation.runs=[]", "segmentation.datasets=[]"]


def exp_run(repo: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_dvc("exp", "run", *[a for o in overrides for a in ("-S", o)], cwd=repo)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = repo_snapshot(tmp_path_factory.mktemp("clone"))
    out = exp_run(repo, *TINY)
    # a fresh clone's first run prints its stages, not DVC's complaints about missing outputs
    assert "WARNING" not in out.stdout + out.stderr, out.stderr
    return repo


def record(repo: Path, trial: str) -> Path:
    return repo / "reports/quick/runs" / trial


def test_quick_suite_writes_every_output(repo: Path):
    for split in ("train", "test"):
        assert (repo / f"data/processed/digits/{split}_images.npy").exists()
    for run in ("digits-vgg", "digits-vgg-att2"):
        trial = f"{run}-seed0"
        rec = record(repo, trial)
        assert (repo / "models/quick" / trial / "model.pt").exists()
        config = json.loads((rec / "config.json").read_text())
        assert config["run"] == run and config["trial"] == trial and config["seed"] == 0
        assert config["model"]["width"] == 0.125 and config["train"]["epochs"] == 2
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
        assert not (repo / "checkpoints/quick" / trial).exists()  # removed once the run completed
    attention = record(repo, "digits-vgg-att2-seed0") / "attention"
    pngs = sorted(p.name for p in attention.glob("*.png"))
    assert pngs == ["level1.png", "level2.png"]
    for png in pngs:
        assert (attention / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = (repo / "reports/quick/results.md").read_text()
    assert "digits-vgg-att2-seed0" in results and "(VGG-att2)-concat-pc" in results
    summary = json.loads((repo / "reports/quick/summary.json").read_text())
    assert set(summary["trials"]) == {f"{r}-seed0" for r in ("digits-vgg", "digits-vgg-att2", "pasted-vgg-att2", "pasted-vgg-gap")}
    assert summary["runs"]["digits-vgg"]["n"] == 1 and "ci95_low" not in summary["runs"]["digits-vgg"]["top1_error"]
    assert (repo / "reports/quick/intervals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for run in ("digits-vgg", "digits-vgg-att2"):  # robustness@: FGSM curve per trial, in the report
        fgsm = json.loads((record(repo, f"{run}-seed0") / "robustness.json").read_text())["fgsm"]
        assert list(fgsm["top1_error"]) == ["eps_0", "eps_2", "eps_4", "eps_8", "eps_16"] and fgsm["images"] == 200
        assert summary["robustness"][run]["eps_0"] == fgsm["top1_error"]["eps_0"]
    assert "## Robustness to adversarial noise (FGSM" in results
    for run in ("pasted-vgg-att2", "pasted-vgg-gap"):  # transfer@ and segment@ of the quick suite
        moved = json.loads((record(repo, f"{run}-seed0") / "transfer/digits.json").read_text())["transfer"]
        assert 0 <= moved["test"]["top1_error"] <= 100 and moved["test_images"] == 360
        scored = json.loads((record(repo, f"{run}-seed0") / "segmentation/pasted.json").read_text())["jaccard"]
        assert 0 <= scored["model"]["mean"] <= 1 and 0 <= scored["centre_prior"]["mean"] <= 1
        assert sorted(p.name for p in (record(repo, f"{run}-seed0") / "segmentation/pasted").glob("*.png")) == \
            [f"{d}.png" for d in range(10)]
        assert summary["transfer"][run]["digits"] == moved["test"]["top1_error"]
    assert "## Cross-domain classification" in results and "## Weakly supervised segmentation" in results
    assert summary["segmentation"]["pasted"]["centre prior"]["mean"] >= 0
    assert (repo / "reports/quick/robustness/digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plots = run_dvc("plots", "show", "--json", cwd=repo).stdout
    assert "train/loss" in plots and "robustness.csv" in plots


def test_attention_override_reruns_training_and_is_recorded(repo: Path):
    before = json.loads((record(repo, "digits-vgg-att2-seed0") / "config.json").read_text())
    out = exp_run(repo, *TINY, *DIGITS_ONLY, "attention.compat=dp")
    assert "Running stage 'train@digits-vgg-att2-seed0'" in out.stdout + out.stderr
    after = json.loads((record(repo, "digits-vgg-att2-seed0") / "config.json").read_text())
    assert before["attention"]["compat"] == "pc" and after["attention"]["compat"] == "dp"
    assert "(VGG-att2)-concat-dp" in (repo / "reports/quick/results.md").read_text()
    names = run_dvc("exp", "list", "--name-only", cwd=repo).stdout.split()
    assert len(names) == 2, names
    shown = run_dvc("exp", "show", "--json", cwd=repo).stdout
    assert all(f'"{name}"' in shown for name in names)
    diff = json.loads(run_dvc("metrics", "diff", names[0], names[1], "--json", cwd=repo).stdout)
    assert "reports/quick/runs/digits-vgg-att2-seed0/metrics.json" in diff or "reports/quick/summary.json" in diff


def test_adding_a_seed_runs_only_the_new_seed_and_the_report(tmp_path: Path):
    repo = repo_snapshot(tmp_path)
    small = [*TINY, *DIGITS_ONLY, "train.epochs=1", "~runs.digits-vgg-att2"]
    exp_run(repo, *small)
    out = exp_run(repo, *small, "seeds=[0,1]")
    log = out.stdout + out.stderr
    ran = {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage '")}
    assert ran == {"train@digits-vgg-seed1", "evaluate@digits-vgg-seed1", "robustness@digits-vgg-seed1",
                   "report"}, log
    summary = json.loads((repo / "reports/quick/summary.json").read_text())
    assert set(summary["trials"]) == {"digits-vgg-seed0", "digits-vgg-seed1"}
    stats = summary["runs"]["digits-vgg"]
    assert stats["n"] == 2 and stats["top1_error"]["ci95_low"] <= stats["top1_error"]["mean"] <= stats["top1_error"]["ci95_high"]


def test_committed_baseline_diff_shows_the_change_per_trial(tmp_path: Path):
    """The README's workflow: records committed as the baseline; an ablation; `dvc metrics diff`."""
    repo = repo_snapshot(tmp_path)
    small = [*TINY, *DIGITS_ONLY, "train.epochs=1", "~runs.digits-vgg"]
    exp_run(repo, *small)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "quick baseline"], repo)
    exp_run(repo, *small, "attention.compat=dp")
    diff = json.loads(run_dvc("metrics", "diff", "--json", cwd=repo).stdout)
    changed = diff["reports/quick/summary.json"]
    key = "trials.digits-vgg-att2-seed0.top1_error"
    assert key in changed and changed[key]["old"] != changed[key]["new"], changed


def test_cifar_cpu_suite_plans_exactly_its_stages(tmp_path: Path):
    repo = repo_snapshot(tmp_path)
    (repo / "params.yaml").write_text(compose_params_yaml(["suite=cifar-cpu"], root=REPO))
    out = run_dvc("repro", "--dry", "--force", cwd=repo).stdout
    planned = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    runs = ["cifar10-cpu-vgg", "cifar10-cpu-vgg-gap", "cifar10-cpu-vgg-att2", "cifar10-cpu-vgg-att2-dp",
            "cifar10-cpu-vgg-att3", "cifar10-cpu-vgg-att2-indep", "digits-cpu-vgg-att2",
            "cifar10-cpu-vgg-att2-from-digits"]
    assert list(params["runs"]) == runs and params["seeds"] == [0, 1, 2]
    one_seed = {"cifar10-cpu-vgg-att3", "cifar10-cpu-vgg-att2-indep", "digits-cpu-vgg-att2",
                "cifar10-cpu-vgg-att2-from-digits"}  # their own seeds: [0]
    trials = [f"{r}-seed{s}" for r in runs for s in ((0,) if r in one_seed else (0, 1, 2))]
    finetuned = {"cifar10-cpu-vgg-att2-from-digits-seed0"}
    transfer = [f"{r}-seed0-to-digits" for r in ("cifar10-cpu-vgg", "cifar10-cpu-vgg-gap", "cifar10-cpu-vgg-att2",
                                                 "cifar10-cpu-vgg-att3")]
    segment = [f"{r}-seed0-on-pasted" for r in ("cifar10-cpu-vgg-gap", "cifar10-cpu-vgg-att2", "cifar10-cpu-vgg-att3")]
    assert planned == {*(f"{stage}@{ds}" for stage in ("download", "preprocess")
                         for ds in ("cifar10", "digits", "pasted_digits")), "report",
                       *(f"train@{t}" for t in trials if t not in finetuned), *(f"finetune@{t}" for t in finetuned),
                       *(f"evaluate@{t}" for t in trials), *(f"robustness@{t}" for t in trials),
                       *(f"transfer@{p}" for p in transfer), *(f"segment@{p}" for p in segment)}


def test_dry_run_on_default_params_lists_the_paper_suite(tmp_path: Path):
    # --force: plain --dry stops at the first dependency directory no earlier stage has made yet
    # (DVC issue #9021); with --force it lists every stage of a fresh clone.
    repo = repo_snapshot(tmp_path)
    out = run_dvc("repro", "--dry", "--force", cwd=repo).stdout
    runs = yaml.safe_load((REPO / "params.yaml").read_text())["runs"]
    order = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")]
    for dataset in ("cifar10", "cifar100", "svhn", "digits", "cub200"):
        assert f"download@{dataset}" in order and f"preprocess@{dataset}" in order
    for run, spec in runs.items():
        group = "finetune" if spec.get("init_from") else "train"
        assert f"{group}@{run}-seed0" in order and f"evaluate@{run}-seed0" in order
        assert f"robustness@{run}-seed0" in order
    # the CUB runs start from the CIFAR-100 models: planned after them
    for child, parent in (("cub200-vgg", "cifar100-vgg"), ("cub200-vgg-att2", "cifar100-vgg-att2"),
                          ("cub200-vgg-att3", "cifar100-vgg-att3")):
        assert runs[child]["init_from"] == parent
        assert order.index(f"train@{parent}-seed0") < order.index(f"finetune@{child}-seed0")
    assert order[-1] == "report"


def test_a_killed_training_stage_resumes_from_its_checkpoint(repo: Path):
    """kill -9 the train stage after its first checkpoint; running it again continues from there."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"].update(epochs=4, checkpoint_every=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run, ckpt = "digits-vgg-att2-seed0", repo / "checkpoints/quick/digits-vgg-att2-seed0/last.pt"
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
    log = (record(repo, run) / "train/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(log) == 1 + 4  # the epochs before the crash are replayed into the dvclive log
    assert not ckpt.exists()
