"""End to end through DVC: the quick suite (tiny settings) run once per pytest run in a temporary git
repository made from this tree (the `quick_suite` fixture, tests/conftest.py), and what follows on a
copy of it: an ablation, a killed stage. The README's other workflows: test_pipeline_workflows.py.
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

from tests.helpers.run import DIGITS_ONLY, TINY, copy_repo, exp_run, run_dvc, sh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(quick_suite, tmp_path_factory) -> Path:
    """This module's copy of the shared quick-suite run, for the tests that run stages on it (in
    file order: the ablation, then the killed stage)."""
    return copy_repo(quick_suite[0], tmp_path_factory.mktemp("clone") / "repo")


def record(repo: Path, trial: str) -> Path:
    return repo / "reports/quick/runs" / trial


def test_quick_suite_writes_every_output(quick_suite):
    repo, output = quick_suite
    # a fresh clone's first run prints its stages, not DVC's complaints about missing outputs
    assert "WARNING" not in output, output
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
    # the README's baseline workflow: `dvc metrics diff` against the committed records shows the
    # ablation's change per trial
    changed = json.loads(run_dvc("metrics", "diff", "--json", cwd=repo).stdout)["reports/quick/summary.json"]
    key = "trials.digits-vgg-att2-seed0.top1_error"
    assert key in changed and changed[key]["old"] != changed[key]["new"], changed


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
