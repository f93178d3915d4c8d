"""The composed quick-suite params, shrunk for tests (torch-free: the config and report tests use it)."""
from __future__ import annotations

import copy
from collections.abc import Mapping

WIDTH = 0.125  # the narrowest the quick suite's models build at: a forward pass in milliseconds


def shrunk_params(quick_params: Mapping, **sections: Mapping) -> dict:
    """A deep copy of `quick_params` with the model at WIDTH; `sections` update params[section]
    (e.g. `attention={"g_mode": "indep"}`, `train={"epochs": 2}`)."""
    params = copy.deepcopy(dict(quick_params))
    params["model"]["width"] = WIDTH
    for section, values in sections.items():
        params[section].update(values)
    return params
