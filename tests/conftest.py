"""Shared fixtures: the real configs from conf/, shrunk (as lightning-hydra-template's tests do)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lpa.config import compose_params_yaml, resolve_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def quick_params() -> dict:
    """params.yaml of the quick suite, composed exactly as `dvc exp run -S suite=quick` does."""
    return yaml.safe_load(compose_params_yaml(["suite=quick"], root=REPO))


@pytest.fixture
def tiny_config(quick_params):
    """A resolved digits-vgg-att2 config shrunk to seconds on a CPU; call with overrides."""

    def make(run: str = "digits-vgg-att2", **train_overrides) -> dict:
        params = copy.deepcopy(quick_params)
        params["model"]["width"] = 0.125
        params["train"].update({"epochs": 2, "batch_size": 16, "checkpoint_every": 1, "eval_batch_size": 64})
        params["train"].update(train_overrides)
        return resolve_run(params, run)

    return make
