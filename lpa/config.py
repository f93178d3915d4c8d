"""params.yaml -> validated, fully resolved configs: the one place parameters are read.

Two jobs:

* `stage_params(stage, item)` gives a stage exactly the params its dvc.yaml entry declares, as a
  read-only mapping that raises `UndeclaredParamError` when code touches anything else. DVC only
  re-runs a stage when a *declared* param changes, so reading an undeclared one would make
  `dvc repro` silently stale; we fail loudly instead.
* `resolve_run(params, run)` merges the global `model`, `attention` and `train` sections with a
  run's overrides and validates every value (listing the allowed ones) before anything expensive.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"
DVC_FILE = "dvc.yaml"


class ConfigError(ValueError):
    """A parameter value is invalid; the message says which and what is allowed."""


class UndeclaredParamError(RuntimeError):
    """Code read a param its stage does not declare in dvc.yaml.

    Deliberately not a KeyError, so `Mapping.get` cannot swallow it.
    """


# --------------------------------------------------------------------------- stage params


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


def _load_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"{path} not found; run from the repository root")
    with open(path) as f:
        return yaml.safe_load(f) or {}


def declared_param_keys(stage: str, item: str | None, root: Path = Path(".")) -> tuple[str, ...]:
    """The params dvc.yaml declares for `stage` (with its foreach item substituted)."""
    stages = _load_yaml(root / DVC_FILE).get("stages", {})
    if stage not in stages:
        raise ConfigError(f"dvc.yaml has no stage '{stage}' (stages: {', '.join(stages)})")
    spec = stages[stage]
    body = spec.get("do", spec)
    keys = []
    for entry in body.get("params", []):
        if isinstance(entry, Mapping):  # `- other.yaml: [keys]` form: not used by lpa
            raise ConfigError(f"stage '{stage}': only params.yaml keys are supported, got {entry}")
        keys.append(_substitute(str(entry), item))
    return tuple(keys)


def _substitute(text: str, item: str | None) -> str:
    # foreach over a list gives ${item}; over a dict gives ${key} (and ${item.x}, unused in params)
    if item is not None:
        text = text.replace("${item}", item).replace("${key}", item)
    if "${" in text:
        raise ConfigError(f"cannot resolve '{text}' in dvc.yaml params outside DVC")
    return text


def stage_params(stage: str, item: str | None = None, root: Path = Path(".")) -> DeclaredParams:
    """params.yaml restricted to what `stage` (e.g. 'train', item 'cifar10-vgg') declares."""
    declared = declared_param_keys(stage, item, root)
    where = f"stage {stage}@{item}" if item else f"stage {stage}"
    return DeclaredParams(_load_yaml(root / PARAMS_FILE), declared, where)


def load_params(root: Path = Path(".")) -> dict:
    """The whole params.yaml, for tools outside the DVC stages (bench, tests)."""
    return _load_yaml(root / PARAMS_FILE)


# --------------------------------------------------------------------------- run resolution

# Allowed values of every train setting: (type or tuple of choices, check, what to tell the user).
_POSITIVE_INT = (int, lambda v: v > 0, "a positive integer")
_NONNEG_INT = (int, lambda v: v >= 0, "an integer >= 0")
_NONNEG_NUM = ((int, float), lambda v: v >= 0, "a number >= 0")
_POSITIVE_NUM = ((int, float), lambda v: v > 0, "a number > 0")
_BOOL = (bool, lambda v: True, "true or false")
_FRACTION = ((int, float), lambda v: 0 <= v < 1, "a number in [0, 1)")

TRAIN_SCHEMA: dict[str, Any] = {
    "epochs": _POSITIVE_INT,
    "batch_size": _POSITIVE_INT,
    "drop_last": _BOOL,
    "optimizer": ("sgd",),
    "lr": _POSITIVE_NUM,
    "lr_decay": _NONNEG_NUM,
    "momentum": _NONNEG_NUM,
    "dampening": _FRACTION,
    "nesterov": _BOOL,
    "weight_decay": _NONNEG_NUM,
    "lr_schedule": {
        "kind": ("step", "multistep", "constant"),
        "step_epochs": _POSITIVE_INT,
        "milestones": (list, lambda v: all(isinstance(m, int) and m > 0 for m in v), "a list of epochs"),
        "gamma": _POSITIVE_NUM,
        "warmup_epochs": _NONNEG_INT,
    },
    "augment": {"flip": _BOOL, "crop_padding": _NONNEG_INT},
    "precision": {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "bf16")},
    "channels_last": _BOOL,
    "compile": _BOOL,
    "compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "val_fraction": _FRACTION,
    "eval_every": _NONNEG_INT,
    "eval_batch_size": _POSITIVE_INT,
    "checkpoint_every": _NONNEG_INT,
}

RUN_KEYS = ("dataset", "model", "attention", "train", "seed")
RUN_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _check_section(values: Mapping, schema: Mapping, where: str) -> None:
    unknown = set(values) - set(schema)
    if unknown:
        raise ConfigError(f"unknown {where} setting(s) {sorted(unknown)}; allowed: {', '.join(schema)}")
    missing = set(schema) - set(values)
    if missing:
        raise ConfigError(f"params.yaml lacks {where} setting(s) {sorted(missing)}")
    for key, rule in schema.items():
        value, name = values[key], f"{where}.{key}"
        if isinstance(rule, Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name} must be a mapping with keys {', '.join(rule)}")
            _check_section(value, rule, name)
        elif isinstance(rule, tuple) and all(isinstance(r, str) for r in rule):
            if value not in rule:
                raise ConfigError(f"{name}={value!r} is not allowed; choose one of {', '.join(rule)}")
        else:
            types, check, what = rule
            types = types if isinstance(types, tuple) else (types,)
            # bool is an int in Python: `epochs: true` must not pass as 1
            ok_type = isinstance(value, types) and (bool in types or not isinstance(value, bool))
            if not ok_type or not check(value):
                raise ConfigError(f"{name}={value!r} is invalid; it must be {what}")


def deep_merge(base: Mapping, override: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_run(params: Mapping, run: str) -> dict:
    """Merge globals with `runs.<run>` and validate; returns a plain, JSON-able dict.

    Result: {run, dataset, seed, model: {name, **model options}, attention: {...} | None, train}.
    `model` and `attention` hold exactly the options passed to `lpa.models.build_model`.
    """
    from lpa import models  # models import torch; keep `lpa.config` light for the data stages

    runs = params["runs"]
    if run not in runs:
        raise ConfigError(f"unknown run '{run}'; runs in params.yaml: {', '.join(runs)}")
    spec = to_plain(runs[run])
    if not RUN_NAME.match(run):
        raise ConfigError(f"run name '{run}' must be lower-case letters, digits, '-', '_' or '.'")
    unknown = set(spec) - set(RUN_KEYS)
    if unknown:
        raise ConfigError(f"runs.{run} has unknown key(s) {sorted(unknown)}; allowed: {', '.join(RUN_KEYS)}")
    if "dataset" not in spec:
        raise ConfigError(f"runs.{run} must name its dataset (runs.{run}.dataset)")
    from lpa.data.params import DATASETS

    if spec["dataset"] not in DATASETS:
        raise ConfigError(f"runs.{run}.dataset={spec['dataset']!r} is not a dataset; choose one of {', '.join(DATASETS)}")

    model_section = deep_merge(to_plain(params["model"]), spec.get("model", {}))
    name = model_section.pop("name", None)
    if name not in models.MODEL_NAMES:
        raise ConfigError(f"runs.{run}.model.name={name!r} is not a model; choose one of {', '.join(models.MODEL_NAMES)}")
    accepted = models.accepted_options(name)
    # Run-level overrides must apply to this model; global settings apply where they make sense.
    for section in ("model", "attention"):
        bad = set(spec.get(section, {})) - accepted - ({"name"} if section == "model" else set())
        if bad:
            raise ConfigError(f"runs.{run}.{section} sets {sorted(bad)}, which {name} does not take; "
                              f"it takes: {', '.join(sorted(accepted)) or 'nothing'}")
    attention_section = deep_merge(to_plain(params["attention"]), spec.get("attention", {}))
    # a global key no model takes is a typo (it would otherwise be silently ignored)
    for section, values in (("model", model_section), ("attention", attention_section)):
        typos = set(values) - set(models.OPTION_DEFAULTS)
        if typos:
            raise ConfigError(f"{section} has unknown option(s) {sorted(typos)}; "
                              f"known: {', '.join(sorted(models.OPTION_DEFAULTS))}")
    model_options = {k: v for k, v in model_section.items() if k in accepted}
    attention_options = {k: v for k, v in attention_section.items() if k in accepted}

    train = deep_merge(to_plain(params["train"]), spec.get("train", {}))
    _check_section(train, TRAIN_SCHEMA, "train")
    if train["nesterov"] and (train["dampening"] != 0 or train["momentum"] == 0):
        raise ConfigError(f"run {run}: train.nesterov=true needs train.momentum > 0 and train.dampening=0 "
                          f"(got momentum={train['momentum']}, dampening={train['dampening']})")
    seed = spec.get("seed", params["seed"])
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed={seed!r} must be an integer")

    config = {
        "run": run,
        "dataset": spec["dataset"],
        "seed": seed,
        "model": {"name": name, **model_options},
        "attention": attention_options or None,
        "train": train,
    }
    check_model_options(config, num_classes=10)
    return config


def model_options(config: Mapping) -> dict:
    """The keyword options for build_model recorded in a resolved config."""
    opts = {k: v for k, v in config["model"].items() if k != "name"}
    opts.update(config.get("attention") or {})
    return opts


def check_model_options(config: Mapping, num_classes: int, input_size: int = 32) -> None:
    """Build the model on the meta device: validates every option value without allocating."""
    import torch

    from lpa import models

    try:
        with torch.device("meta"):
            models.build_model(config["model"]["name"], num_classes, input_size=input_size,
                               **model_options(config))
    except ValueError as err:
        raise ConfigError(f"run {config['run']}: {err}") from None


def config_hash(config: Mapping) -> str:
    """Stable short hash of a resolved config: checkpoints resume only under the same hash."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- composition

CONF_DIR = "conf"


def compose_params_yaml(overrides: list[str] | tuple[str, ...] = (), root: Path = Path(".")) -> str:
    """params.yaml text for conf/ composed with Hydra `overrides`, exactly as `dvc exp run` writes it.

    DVC (hydra.enabled) composes conf/config.yaml + its suite and dumps it with OmegaConf.to_yaml;
    `python -m lpa.config` (make params) does the same so the committed params.yaml matches.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str((root / CONF_DIR).resolve()), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return OmegaConf.to_yaml(cfg)


if __name__ == "__main__":
    import sys

    Path(PARAMS_FILE).write_text(compose_params_yaml(sys.argv[1:]), encoding="utf-8")
    print(f"wrote {PARAMS_FILE} from {CONF_DIR}/ {' '.join(sys.argv[1:])}".rstrip())
