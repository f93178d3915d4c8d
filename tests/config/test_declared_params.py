"""lpa.config.params resolves a stage's declared params itself (not through DVC, which is slower
and needs a DVC repository: see declared_param_keys); here they are checked against DVC's own
resolution of the same dvc.yaml and params.yaml, for every stage."""
from __future__ import annotations

import shutil
from pathlib import Path

from dvc.repo import Repo

from lpa.config.params import declared_param_keys
from tests.helpers.run import REPO


def test_declared_params_are_those_dvc_resolves(tmp_path: Path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    with Repo(str(tmp_path)) as repo:
        dvcs = {stage.name: tuple(key for dep in stage.params for key in dep.params) for stage in repo.index.stages}
    assert len(dvcs) > 10
    for name, keys in dvcs.items():
        stage, _, item = name.partition("@")
        assert declared_param_keys(stage, item or None, root=tmp_path) == keys, name
