"""End to end through DVC, the README's workflows: a new seed (on a copy of the shared quick-suite
run, tests/conftest.py), and what `dvc repro` plans for the CPU-scale and the paper suites. The
committed-baseline `dvc metrics diff` is checked with the ablation in test_pipeline.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lpa.config.params import compose_params_yaml
from tests.helpers.run import DIGITS_ONLY, REPO, TINY, copy_repo, exp_run, repo_snapshot, run_dvc

pytestmark = pytest.mark.slow


def test_adding_a_seed_runs_only_the_new_seed_and_the_report(quick_suite, tmp_path: Path):
    # from the shared quick-suite run (tests/conftest.py): seed 0 of every run is already there
    repo = copy_repo(quick_suite[0], tmp_path / "repo")
    out = exp_run(repo, *TINY, *DIGITS_ONLY, "~runs.digits-vgg-att2", "seeds=[0,1]")
    log = out.stdout + out.stderr
    ran = {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage '")}
    assert ran == {"train@digits-vgg-seed1", "evaluate@digits-vgg-seed1", "robustness@digits-vgg-seed1",
                   "report"}, log
    summary = json.loads((repo / "reports/quick/summary.json").read_text())
    assert set(summary["trials"]) == {"digits-vgg-seed0", "digits-vgg-seed1"}
    stats = summary["runs"]["digits-vgg"]
    assert stats["n"] == 2 and stats["top1_error"]["ci95_low"] <= stats["top1_error"]["mean"] <= stats["top1_error"]["ci95_high"]


def test_cifar_cpu_suite_plans_exactly_its_stages(tmp_path: Path):
    repo = repo_snapshot(tmp_path)
    (repo / "params.yaml").write_text(compose_params_yaml(["suite=cifar-cpu"], root=REPO))
    out = run_dvc("repro", "--dry", "--force", cwd=repo).stdout
    planned = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    runs = ["cifar10-cpu-vgg", "cifar10-cpu-vgg-gap", "cifar10-cpu-vgg-att2", "cifar10-cpu-vgg-att2-dp",
            "cifar10-cpu-vgg-att3", "cifar10-cpu-vgg-att2-indep"]
    assert list(params["runs"]) == runs and params["seeds"] == [0, 1, 2]
    trials = [f"{r}-seed{s}" for r in runs for s in (0, 1, 2)]  # three seeds for every run
    # transfer: every CIFAR-10 trial to Caltech-101; segmentation: every map-producing run on the horses
    transfer = [f"{t}-to-caltech101" for t in trials]
    segment = [f"{t}-on-weizmann_horse" for t in trials if not t.startswith("cifar10-cpu-vgg-seed")]
    assert planned == {*(f"{stage}@{ds}" for stage in ("download", "preprocess") for ds in ("cifar10", "caltech101")),
                       "report", *(f"train@{t}" for t in trials), *(f"evaluate@{t}" for t in trials),
                       *(f"robustness@{t}" for t in trials),
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
