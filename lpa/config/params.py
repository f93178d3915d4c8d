"""params.yaml as the stages see it: declared-param views, composition from conf/, YAML loading.

A leaf of lpa's import graph (only lpa.errors below it), so every layer may read params:

* `stage_params(stage, item)` gives a stage exactly the params its dvc.yaml entry declares, as a
  read-only mapping that raises `UndeclaredParamError` when code touches anything else. DVC only
  re-runs a stage when a *declared* param changes, so reading an undeclared one would make
  `dvc repro` silently stale; we fail loudly instead.
* `load_params()` is the whole file, for validation (`lpa.config.run.check_params`: checking a value
  cannot change an output, so it needs no declaration) and for tools outside the stages.
* `compose_params_yaml(overrides)` is conf/ composed with Hydra exactly as `dvc exp run` does it.
"""
from __future__ import annotations

import copy
import functools
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
import re

import yaml

from lpa.errors import ConfigError, DamagedFileError, UndeclaredParamError

PARAMS_FILE = "params.yaml"
DVC_FILE = "dvc.yaml"
CONF_DIR = "conf"


class DeclaredParams(Mapping):
    """Read-only nested view of params.yaml restricted to a stage's declared keys."""

    def __init__(self, data: Mapping, declared: tuple[str, ...], where: str, path: str = ""):
        self._data = data
        self._declared = declared
        self._where = where
        self._path = path

    def _visible(self, dotted: str) -> bool:
        return any(
            dotted == d or dotted.startswith(d + ".") or d.startswith(dotted + ".")
            for d in self._declared
        )

    def __getitem__(self, key: str) -> Any:
        dotted = f"{self._path}.{key}" if self._path else str(key)
        if not self._visible(dotted):
            raise UndeclaredParamError(
                f"{self._where} read param '{dotted}', which its dvc.yaml entry does not declare; "
                f"add it to the stage's params (declared: {', '.join(self._declared) or 'none'})"
            )
        if key not in self._data:
            raise KeyError(f"params.yaml has no '{dotted}' (read by {self._where})")
        value = self._data[key]
        if isinstance(value, Mapping):
            return DeclaredParams(value, self._declared, self._where, dotted)
        return copy.deepcopy(value)

    def __iter__(self):
        return (k for k in self._data if self._visible(f"{self._path}.{k}" if self._path else k))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def to_plain(obj: Any) -> Any:
    """A deep, mutable copy of nested mappings/sequences (e.g. a DeclaredParams view) as dicts/lists."""
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return copy.deepcopy(obj)


def load_yaml(path: Path) -> dict:
    """A YAML mapping from `path`; a missing, unreadable or non-mapping file is one clear error."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found; run from the repository root")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        where = getattr(err, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        fix = "recompose it with `make params` (or `python -m lpa.config compose`)" if path.name == PARAMS_FILE \
            else "restore it with `git checkout -- " + str(path) + "`"
        raise DamagedFileError(f"{path} is not valid YAML{at}: {type(err).__name__}; {fix}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        fix = "recompose it with `make params`" if path.name == PARAMS_FILE else f"restore it with `git checkout -- {path}`"
        raise DamagedFileError(f"{path} must hold a mapping at the top level, not {type(data).__name__}; {fix}")
    return data


# Why not DVC's own resolution, `dvc.api.params_show(stages="train@<trial>")` (DVC 3.67, measured on
# this 2-core machine): it does substitute foreach items, but (1) it costs 2.2-4.8 s a call (+0.4 s
# to import dvc.api), against 0.14-0.22 s here, in every stage and every torchrun rank, because it
# parses dvc.yaml and dvc.lock (all 92 stages) with ruamel each time; (2) it gives the values, not
# the declared keys, so the guard could no longer tell an undeclared read from a key missing from
# params.yaml (the keys are only in DVC's internal Repo.stage.collect, 1.4 s); (3) it needs a DVC
# repository: in a plain directory holding dvc.yaml and params.yaml (the tests' work directories)
# it fails with CloneError. tests/config checks that these keys equal DVC's for every stage.
def declared_param_keys(stage: str, item: str | None, root: Path = Path(".")) -> tuple[str, ...]:
    """The params dvc.yaml declares for `stage` (with its foreach key and item substituted)."""
    stages = load_yaml(root / DVC_FILE).get("stages", {})
    if stage not in stages:
        raise ConfigError(f"dvc.yaml has no stage '{stage}' (stages: {', '.join(stages)})")
    spec = stages[stage]
    body = spec.get("do", spec)
    value = _foreach_value(spec, item, root)
    keys = []
    for entry in body.get("params", []):
        if isinstance(entry, Mapping):  # `- other.yaml: [keys]` form: not used by lpa
            raise ConfigError(f"stage '{stage}': only params.yaml keys are supported, got {entry}")
        keys.append(_substitute(str(entry), item, value))
    return tuple(keys)


def _foreach_value(spec: Mapping, key: str | None, root: Path) -> Any:
    """The foreach item behind `key` when the stage iterates over a params dict (e.g. ${trials})."""
    source = spec.get("foreach")
    match = re.fullmatch(r"\$\{([\w.]+)\}", source) if isinstance(source, str) else None
    if key is None or match is None:
        return key
    node: Any = load_yaml(root / PARAMS_FILE)
    for part in match.group(1).split("."):
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    if isinstance(node, Mapping):
        if key not in node:
            raise ConfigError(f"'{key}' is not in params.yaml {match.group(1)} "
                              f"(it has: {', '.join(map(str, node)) or 'nothing'})")
        return node[key]
    return key


def _substitute(text: str, key: str | None, value: Any = None) -> str:
    # foreach over a list gives ${item}; over a dict gives ${key} and ${item.<field>}
    if key is not None:
        if isinstance(value, Mapping):
            text = re.sub(r"\$\{item\.(\w+)\}", lambda m: str(value.get(m.group(1), m.group(0))), text)
        text = text.replace("${item}", key).replace("${key}", key)
    if "${" in text:
        raise ConfigError(f"cannot resolve '{text}' in dvc.yaml params outside DVC")
    return text


def stage_params(stage: str, item: str | None = None, root: Path = Path(".")) -> DeclaredParams:
    """params.yaml restricted to what `stage` (e.g. 'train', item 'cifar10-vgg') declares."""
    declared = declared_param_keys(stage, item, root)
    where = f"stage {stage}@{item}" if item else f"stage {stage}"
    return DeclaredParams(load_yaml(root / PARAMS_FILE), declared, where)


def load_params(root: Path = Path(".")) -> dict:
    """The whole params.yaml: for validation before a stage's work, and for tools and tests."""
    return load_yaml(root / PARAMS_FILE)


def deep_merge(base: Mapping, override: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


RESOLVERS_FILE = "conf/plugins/hydra_plugins/lpa_trials.py"


REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout lpa/config/ lives in (holds conf/)


@functools.lru_cache(maxsize=None)
def load_resolvers(root: Path | None = None) -> ModuleType:
    """Register conf/'s OmegaConf resolvers (`lpa_trials`, `lpa_trial_groups`) in this process, as
    DVC's Hydra plugin discovery does in its own (.dvc/config hydra.plugins_path); returns the
    module, whose expand_* functions lpa.config checks params.yaml against (one implementation).
    `root`: a checkout holding conf/ (default: the one this lpa is in, whatever the cwd)."""
    path = ((root or REPO_ROOT) / RESOLVERS_FILE).resolve()
    spec = importlib.util.spec_from_file_location("lpa_conf_resolvers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_params_yaml(overrides: list[str] | tuple[str, ...] = (), root: Path = Path(".")) -> str:
    """params.yaml text for conf/ composed with Hydra `overrides`, exactly as `dvc exp run` writes it.

    DVC (hydra.enabled) composes conf/config.yaml + its suite and dumps it with OmegaConf.to_yaml;
    `python -m lpa.config compose` (make params) does the same so the committed params.yaml matches.
    """
    # local: hydra + omegaconf cost ~0.2 s to import (measured) and only `make params`, DVC
    # itself and the tests compose; every stage imports this module
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    load_resolvers(root)
    try:
        with initialize_config_dir(config_dir=str((root / CONF_DIR).resolve()), version_base=None):
            cfg = compose(config_name="config", overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot compose conf/ with {' '.join(overrides) or 'no overrides'}: {first}") from None
    return OmegaConf.to_yaml(cfg)
