"""The committed run records are what dvc.lock says they are. In a snapshot of this tree (no DVC
cache, no data, no archives), with each suite whose records are committed composed, `dvc status`
lists no git-tracked output as changed: a record edited by hand, or made by a run whose lock entry
was not committed with it, fails here. Missing cached outputs (data, weights) and deps are not
checked: a change to the code after the records were made shows as a changed dep, which is what
`dvc status` is for, not a broken record."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers.run import compose, repo_snapshot, run_dvc, sh

# the suites whose records (reports/<suite>/) and lock entries are committed
SUITES = ("quick", "cifar-cpu")
MISSING = ("deleted", "not in cache")   # a cached output a snapshot does not have


def tracked_changes(status: dict, tracked: set[str], skip: set[str]) -> list[str]:
    """'stage: path: what' for every output of `status` (dvc status --json) that git tracks and
    that is not as the lock says, in the stages not in `skip`."""
    found = []
    for stage, changes in status.items():
        if stage in skip:
            continue
        for change in changes:
            outs = change.get("changed outs", {}) if isinstance(change, dict) else {}
            for path, what in outs.items():
                in_git = any(t == path or t.startswith(path.rstrip("/") + "/") for t in tracked)
                if in_git and what not in MISSING:
                    found.append(f"{stage}: {path}: {what}")
    return found


@pytest.mark.parametrize("suite", SUITES)
def test_committed_records_are_what_the_lock_says(tmp_path, suite):
    repo = repo_snapshot(tmp_path / "repo")
    compose(repo, f"suite={suite}")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    # one `report` stage serves every suite: the lock holds the report of the suite reported last
    reported = lock.get("report", {}).get("params", {}).get("params.yaml", {}).get("suite_name")
    skip = set() if reported == suite else {"report"}
    status = json.loads(run_dvc("status", "--json", cwd=repo).stdout)
    tracked = set(sh(["git", "ls-files"], repo).stdout.split())
    assert any(stage.startswith("train@") for stage in lock), "dvc.lock has no train stage"
    assert tracked_changes(status, tracked, skip) == []


def test_a_record_edited_by_hand_is_found(tmp_path):
    repo = repo_snapshot(tmp_path / "repo")
    compose(repo, "suite=quick")
    record = next((repo / "reports" / "quick" / "runs").glob("*/metrics.json"))
    record.write_text(record.read_text().replace("top1_error", "top1_error ", 1))
    status = json.loads(run_dvc("status", "--json", cwd=repo).stdout)
    tracked = set(sh(["git", "ls-files"], repo).stdout.split())
    rel = record.relative_to(repo).as_posix()
    assert [c for c in tracked_changes(status, tracked, set()) if rel in c] == [
        f"evaluate@{record.parent.name}: {rel}: modified"]
