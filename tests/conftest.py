"""Shared fixtures: the real configs from conf/, shrunk (as lightning-hydra-template's tests do), the
digits dataset prepared once, and one quick-suite run through DVC for the tests that only read it.
Plain helpers live in tests/helpers/ (run.py: commands and DVC; params.py: shrunk params;
models.py: tiny model files; checks.py: the one-line error checks; datasets.py, toy_data.py,
archives.py, masks.py). filelock comes with torch."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from filelock import FileLock

from lpa.config.params import compose_params_yaml
from lpa.config.run import resolve_run
from tests.helpers.datasets import prepare_digits
from tests.helpers.params import shrunk_params
from tests.helpers.run import REPO, TINY, exp_run, repo_snapshot


@pytest.fixture(scope="session")
def quick_params() -> dict:
    """params.yaml of the quick suite, composed exactly as `dvc exp run -S suite=quick` does.
    Shared by the session: copy it (tests/helpers/params.shrunk_params) before changing anything."""
    return yaml.safe_load(compose_params_yaml(["suite=quick"], root=REPO))


@pytest.fixture
def tiny_params(quick_params) -> dict:
    """The quick suite's params with the model at width 0.125: this test's own copy."""
    return shrunk_params(quick_params)


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
        params = shrunk_params(quick_params, train={"epochs": 2, "batch_size": 16, "checkpoint_every": 1,
                                                    "eval_batch_size": 64, **train_overrides})
        return resolve_run(params, run)

    return make


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    """root/data/extracted/digits (uint8 32 x 32) and root/data/processed/digits (standardize), as
    download@digits and preprocess@digits write them. Read-only: copy a part before damaging it."""
    return prepare_digits(tmp_path_factory.mktemp("digits"))


def shared_tmp(tmp_path_factory) -> Path:
    """The folder every xdist worker of this pytest run sees (each worker's basetemp is a child of
    it); the basetemp itself without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def quick_suite(tmp_path_factory) -> tuple[Path, str]:
    """(repo, output): a snapshot of this tree in which `dvc exp run` ran the quick suite shrunk
    (run.TINY), and what it printed. Run once per pytest run: the first worker to ask runs it under
    a file lock, the others wait and read the same repo. Read it, never change it: a test that runs
    stages on it works in a copy (tests/helpers/run.copy_repo).

    One OpenMP thread per stage: the run is then bit-for-bit the one a test repeats on this machine
    with one thread (test_launch.py compares its records byte for byte), and with two xdist
    workers on two cores no stage oversubscribes the CPU."""
    root = shared_tmp(tmp_path_factory)
    repo, done = root / "quick-suite", root / "quick-suite.out"
    with FileLock(str(root / "quick-suite.lock")):
        if not done.exists():
            shutil.rmtree(repo, ignore_errors=True)
            repo.mkdir()
            repo_snapshot(repo)
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("OMP_NUM_THREADS", "1")
                out = exp_run(repo, *TINY)
            done.write_text(out.stdout + out.stderr)
    return repo, done.read_text()


def pytest_collection_modifyitems(config, items):
    """Longest files first, so that two xdist workers (`make test`: --dist loadfile, which hands out
    whole files in this order with --no-loadscope-reorder) do not end on one long DVC file while the
    other idles: first the file that runs the shared quick suite (the first to use `quick_suite`),
    then the other files with slow tests, then the other readers of the quick suite (by then it has
    run: they do not wait on its lock), then the rest, each group in its usual order."""
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)

    def uses_quick_suite(tests) -> bool:
        return any("quick_suite" in test.fixturenames for test in tests)

    runner = next((name for name, tests in files.items() if uses_quick_suite(tests)), None)

    def group(name: str) -> int:
        tests = files[name]
        if name == runner:
            return 0
        if uses_quick_suite(tests):
            return 2
        return 1 if any(test.get_closest_marker("slow") for test in tests) else 3

    items[:] = [test for name in sorted(files, key=group) for test in files[name]]
