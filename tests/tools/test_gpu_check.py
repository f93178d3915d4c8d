"""`make gpu-check CPU=1`: every step of the GPU check at tiny size on the CPU, in a copy of the tree."""
from __future__ import annotations

import json
import sys

import pytest

from tests.helpers.run import repo_snapshot, sh


@pytest.mark.slow
def test_the_gpu_check_runs_every_step_at_tiny_size_on_the_cpu(tmp_path):
    repo = repo_snapshot(tmp_path / "repo")
    proc = sh([sys.executable, "-m", "lpa.tools.gpu_check", "--cpu", "--work", str(tmp_path / "work")], repo,
              check=False, timeout=300)
    report = json.loads((repo / "reports/gpu-check/report.json").read_text())
    failed = [s for s in report["steps"] if s["ok"] is False]
    assert proc.returncode == 0 and not failed, (failed, proc.stdout[-2000:], proc.stderr[-2000:])
    steps = {s["step"].split(" (")[0]: s for s in report["steps"]}
    assert report["environment"]["device"] == "cpu" and report["environment"]["precision"] == "bf16"
    assert steps["bench eager"]["images_per_s"] > 0 and steps["train"]["train_loss"] > 0
    assert steps["checkpoint and resume on the device"]["device_type"] == "cpu"
    assert steps["checkpoint and resume on the device"]["stored_image_dtype"] == "torch.float16"
    assert "| evaluate | yes |" in (repo / "reports/gpu-check/report.md").read_text()
