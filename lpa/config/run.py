"""Resolved run configs and the check of every value in params.yaml before any stage works.

* `check_params(params)` validates the whole file against the settings declared next to the code
  they configure (lpa.config.settings): top level here, `train` in lpa.config.train_options, `model`/`attention`
  in lpa.config.model_options, `data` in lpa.config.data_options. Every stage calls it first (lpa.config.stage_runner), so a bad
  `attention.*` value stops a baseline's stage and the data stages too.
* `resolve_run(params, run, seed)` / `resolve_trial(params, trial)` merge the global `model`,
  `attention` and `train` sections with a run's overrides into the plain, JSON-able config that
  the engine trains and the model file carries.

The command line (`python -m lpa.config settings | compose | check`) is lpa/config/__main__.py.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tabulate import tabulate

from lpa.config import model_options
from lpa.config.data_options import DATASETS, check_data_section, data_settings
from lpa.config.experiment_options import (ROBUSTNESS_SETTINGS, SEGMENTATION_SETTINGS, TRANSFER_SETTINGS, check_robustness,
                                    check_segmentation, check_transfer)
from lpa.config.train_options import TRAIN_SETTINGS, check_train_section
from lpa.errors import DataError
from lpa.errors import ConfigError, DamagedFileError
from lpa.config.params import PARAMS_FILE, compose_params_yaml, deep_merge, load_params, load_resolvers, to_plain
from lpa.config.settings import Setting, check_section, describe_settings

RUN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # no '.': DVC would read runs.<a.b> as nested keys
TRIAL_SEPARATOR = "-seed"                         # conf/plugins/hydra_plugins/lpa_trials.py

SEEDS = Setting("int_list", "one train/evaluate stage per seed (init, order, augmentation, dropout)", low=0)
TOP_SETTINGS: dict[str, Any] = {
    "suite_name": Setting("text", "names reports/<suite_name>/ and models/<suite_name>/ (set by each suite)"),
    "seeds": SEEDS,
}
# what a run may set; `model` and `attention` take the options its model accepts (lpa.config.model_options)
RUN_SETTINGS: dict[str, Any] = {
    "dataset": Setting("choice", "the dataset the run trains and is tested on", choices=DATASETS),
    "seeds": Setting("int_list", "this run's own seeds (default: the global `seeds`)", low=0),
    "init_from": Setting("text", "a run of the suite whose trained weights (same seed) start this run: layers of "
                                 "equal shape are loaded, the class-specific ones re-initialised (finetune@<trial>)"),
}
RUN_KEYS = ("dataset", "model", "attention", "train", "seeds", "init_from")
TOP_KEYS = ("suite_name", "seeds", "trials", "trial_groups", "data", "model", "attention", "train", "robustness",
            "transfer", "transfer_pairs", "segmentation", "segmentation_pairs", "runs")


def _check_seed_list(seeds: Any, where: str) -> list[int]:
    seeds = SEEDS.check(seeds, where)
    if not seeds:
        raise ConfigError(f"{where} is empty; list at least one seed, e.g. [0]")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}={seeds} lists a seed twice")
    return seeds


def trial_name(run: str, seed: int) -> str:
    return f"{run}{TRIAL_SEPARATOR}{seed}"


def resolve_trial(params: Mapping, trial: str) -> dict:
    """The resolved config of one (run, seed) pair, by its `trials` name (e.g. 'cifar10-vgg-seed1').

    Reads the trial's own copy of its run's spec (`trials.<trial>`), not `runs`: the train stage
    declares only its trial, so editing another run, or another seed list, never re-runs it."""
    trials = params["trials"]
    if trial not in trials:
        raise ConfigError(f"unknown trial '{trial}'; params.yaml trials (<run>-seed<k>): {', '.join(trials)}")
    entry = to_plain(trials[trial])
    spec = {k: v for k, v in entry.items() if k not in ("run", "seed")}
    config = {"trial": trial, **resolve_run(params, entry["run"], entry["seed"], spec=spec)}
    if config["init_from"]:
        config["init_trial"] = trial_name(config["init_from"], entry["seed"])
    return config


def resolve_run(params: Mapping, run: str, seed: int | None = None, spec: Mapping | None = None) -> dict:
    """Merge globals with a run's spec (`runs.<run>` unless `spec` is given) and validate; returns
    a plain, JSON-able dict.

    `seed` defaults to the run's first seed (`runs.<run>.seeds`, else `seeds`).
    Result: {run, dataset, seed, model: {name, **model options}, attention: {...} | None, train}.
    `model` and `attention` hold exactly the options passed to `lpa.models.build_model`.
    """
    if not isinstance(run, str) or not RUN_NAME.match(run):
        raise ConfigError(f"run name {run!r} must be lower-case letters, digits, '-' or '_'")
    if spec is None:
        runs = params["runs"]
        if run not in runs:
            raise ConfigError(f"unknown run '{run}'; runs in params.yaml: {', '.join(map(str, runs))}")
        spec = runs[run]
    spec = to_plain(spec)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"runs.{run} must be a mapping with keys {', '.join(RUN_KEYS)}")
    for section in ("model", "attention", "train"):
        if section in spec and not isinstance(spec[section], Mapping):
            raise ConfigError(f"runs.{run}.{section} must be a mapping, not {spec[section]!r}")
    unknown = sorted(set(spec) - set(RUN_KEYS))
    if unknown:
        raise ConfigError(f"runs.{run} has unknown key(s) {unknown}; allowed: {', '.join(RUN_KEYS)}")
    if "dataset" not in spec:
        raise ConfigError(f"runs.{run} must name its dataset (runs.{run}.dataset)")
    RUN_SETTINGS["dataset"].check(spec["dataset"], f"runs.{run}.dataset")
    init_from = RUN_SETTINGS["init_from"].check(spec["init_from"], f"runs.{run}.init_from") \
        if "init_from" in spec else None

    run_model = spec.get("model") or {}
    if not isinstance(params["model"], Mapping):
        raise ConfigError("params.yaml `model` must be a mapping")
    for where, section in ((f"runs.{run}.model", run_model), ("model", params["model"])):
        if isinstance(section, Mapping) and "input_size" in section:
            raise ConfigError(f"{where}.input_size is not a setting: the input size comes from the data "
                              f"(data/processed/{spec['dataset']}/meta.json, image_shape); remove it")
    name = run_model.get("name")
    if name not in model_options.MODEL_NAMES:
        raise ConfigError(f"runs.{run}.model.name={name!r} is not a model; choose one of {', '.join(model_options.MODEL_NAMES)}")
    accepted = model_options.accepted_options(name)
    # a run's own overrides must apply to its model; the global sections apply where they make sense
    for section in ("model", "attention"):
        bad = set(spec.get(section) or {}) - accepted - ({"name"} if section == "model" else set())
        if bad:
            raise ConfigError(f"runs.{run}.{section} sets {sorted(bad)}, which {name} does not take; "
                              f"it takes: {', '.join(sorted(accepted)) or 'nothing'}")
    # the global sections first, so an error names the section the user has to edit
    check_section(params["model"], model_options.MODEL_SETTINGS, "model")
    check_section(params["attention"], model_options.ATTENTION_SETTINGS, "attention")
    check_section(params["train"], TRAIN_SETTINGS, "train")
    model_section = check_section(deep_merge(to_plain(params["model"]), {k: v for k, v in run_model.items()
                                                                          if k != "name"}),
                                  model_options.MODEL_SETTINGS, f"runs.{run}.model")
    attention_section = check_section(deep_merge(to_plain(params["attention"]), spec.get("attention") or {}),
                                      model_options.ATTENTION_SETTINGS, f"runs.{run}.attention")
    model_opts = {k: v for k, v in model_section.items() if k in accepted}
    attention_opts = {k: v for k, v in attention_section.items() if k in accepted}

    train = check_section(deep_merge(to_plain(params["train"]), spec.get("train") or {}), TRAIN_SETTINGS,
                          f"runs.{run}.train")
    check_train_section(train, f"run {run}")

    if "seeds" in spec:
        _check_seed_list(spec["seeds"], f"runs.{run}.seeds")
    if seed is None:  # a trial passes its own seed (the train stage declares no global `seeds`)
        seed = (spec["seeds"] if "seeds" in spec else _check_seed_list(params["seeds"], "seeds"))[0]
    SEEDS.check([seed], f"run {run} seed")

    config = {
        "run": run,
        "dataset": spec["dataset"],
        "seed": seed,
        "model": {"name": name, **model_opts},
        "attention": attention_opts or None,
        "train": train,
        "init_from": init_from,
    }
    try:  # the model's own checks, without building it
        model_options.resolve_options(name, **model_options.options_of(config))
    except ValueError as err:
        raise ConfigError(f"run {run}: {err}") from None
    return config


def expected_trials(params: Mapping) -> dict:
    """`trials` as conf/'s resolver derives it from `runs` and `seeds` (the same function)."""
    return load_resolvers().expand_trials(to_plain(params["runs"]), to_plain(params["seeds"]))


def expected_trial_groups(params: Mapping) -> dict:
    """`trial_groups` as conf/'s resolver derives it: train@ (from scratch) and finetune@ trials."""
    return load_resolvers().expand_trial_groups(to_plain(params["runs"]), to_plain(params["seeds"]))


def expected_pairs(params: Mapping, section: str) -> dict:
    """`transfer_pairs` / `segmentation_pairs` as conf/'s resolvers derive them."""
    plugin = load_resolvers()
    expand = plugin.expand_transfer_pairs if section == "transfer" else plugin.expand_segmentation_pairs
    return expand(to_plain(params[section]), to_plain(params["trials"]))


def check_init_from(runs: Mapping, run: str, seeds: list) -> None:
    """runs.<run>.init_from names another run of the suite that has each of this run's seeds,
    without a cycle (a -> b -> a)."""
    seen = [run]
    parent = runs[run].get("init_from")
    while parent is not None:
        if parent not in runs:
            raise ConfigError(f"runs.{seen[-1]}.init_from={parent!r} is not a run of this suite; "
                              f"runs: {', '.join(map(str, runs))}")
        if parent in seen:
            raise ConfigError(f"runs.{run}: init_from makes a cycle ({' -> '.join(seen + [parent])})")
        seen.append(parent)
        parent = runs[parent].get("init_from")
    parent = runs[run].get("init_from")
    if parent is not None:
        child_seeds, parent_seeds = (runs[r].get("seeds", seeds) for r in (run, parent))
        missing = sorted(set(child_seeds) - set(parent_seeds))
        if missing:
            raise ConfigError(f"runs.{run} starts each seed from the same seed of runs.{parent}, which has no "
                              f"seed(s) {missing}; give {parent} those seeds or {run} fewer")


def check_params(params: Mapping) -> None:
    """Validate every value of a whole params.yaml, whether or not the stage at hand uses it."""
    unknown = sorted(set(params) - set(TOP_KEYS))
    missing = [k for k in TOP_KEYS if k not in params]
    if unknown:
        raise ConfigError(f"params.yaml has unknown top-level key(s) {unknown}; allowed: {', '.join(TOP_KEYS)}")
    if missing:
        raise ConfigError(f"params.yaml lacks {', '.join(missing)}; recompose it with `make params`")
    TOP_SETTINGS["suite_name"].check(params["suite_name"], "suite_name")
    if not RUN_NAME.match(str(params["suite_name"])):
        raise ConfigError(f"suite_name={params['suite_name']!r} must be lower-case letters, digits, '-' or '_'")
    _check_seed_list(params["seeds"], "seeds")
    check_data_section(params["data"])
    check_section(params["model"], model_options.MODEL_SETTINGS, "model")
    check_section(params["attention"], model_options.ATTENTION_SETTINGS, "attention")
    check_section(params["train"], TRAIN_SETTINGS, "train")
    runs = params["runs"]
    if not isinstance(runs, Mapping) or not runs:
        raise ConfigError("params.yaml `runs` must map each run name to {dataset, model: {name}, ...}")
    for run in runs:
        config = resolve_run(params, run)
        if "seeds" in runs[run]:
            _check_seed_list(runs[run]["seeds"], f"runs.{run}.seeds")
        if config["dataset"] not in params["data"]["datasets"]:
            raise ConfigError(f"runs.{run}.dataset={config['dataset']} is not in data.datasets "
                              f"({', '.join(params['data']['datasets'])}); add it there")
        check_init_from(to_plain(runs), run, to_plain(params["seeds"]))
    check_robustness(params["robustness"])
    run_seeds = {run: to_plain(spec).get("seeds", to_plain(params["seeds"])) for run, spec in runs.items()}
    check_transfer(params["transfer"], run_seeds, list(params["data"]["datasets"]))
    check_segmentation(params["segmentation"], run_seeds)
    if to_plain(params["trials"]) != expected_trials(params) \
            or to_plain(params["trial_groups"]) != expected_trial_groups(params):
        raise ConfigError("params.yaml `trials` or `trial_groups` does not match `runs` x `seeds` (they are derived, "
                          "not edited): recompose params.yaml with `make params` or `dvc exp run`")
    if to_plain(params["transfer_pairs"]) != expected_pairs(params, "transfer") \
            or to_plain(params["segmentation_pairs"]) != expected_pairs(params, "segmentation"):
        raise ConfigError("params.yaml `transfer_pairs` or `segmentation_pairs` does not match its section (derived, "
                          "not edited): recompose params.yaml with `make params` or `dvc exp run`")


def all_settings() -> list[tuple[str, str, str, str]]:
    """(name, allowed, library default, help) of every setting in params.yaml."""
    rows = describe_settings(TOP_SETTINGS, "")
    rows.append(("trials", "derived", "", "one entry per (run, seed), <run>-seed<k>; composed, never edited"))
    rows.append(("trial_groups", "derived", "", "train: trials from scratch; finetune: trials with init_from"))
    rows.append(("data.datasets", "a list drawn from " + ", ".join(DATASETS), "",
                 "the datasets whose download@/preprocess@ stages exist"))
    rows.append(("data.raw_dir", "a non-empty path", "", "where official archives are found or downloaded"))
    for name in DATASETS:
        rows.extend(describe_settings(data_settings(name), f"data.{name}"))
    rows.extend(describe_settings(model_options.MODEL_SETTINGS, "model"))
    rows.extend(describe_settings(model_options.ATTENTION_SETTINGS, "attention"))
    rows.extend(describe_settings(TRAIN_SETTINGS, "train"))
    rows.extend(describe_settings(ROBUSTNESS_SETTINGS, "robustness"))
    rows.extend(describe_settings(TRANSFER_SETTINGS, "transfer"))
    rows.append(("transfer_pairs", "derived", "", "one transfer@<trial>-to-<target> per trial of transfer.runs"))
    rows.extend(describe_settings(SEGMENTATION_SETTINGS, "segmentation"))
    rows.append(("segmentation_pairs", "derived", "", "one segment@<trial>-on-<name> per trial of segmentation.runs"))
    rows.append(("runs.<run>.model.name", "one of " + ", ".join(model_options.MODEL_NAMES), "", "the network"))
    rows.extend(describe_settings(RUN_SETTINGS, "runs.<run>"))
    rows.append(("runs.<run>.{model,attention,train}", "as the global sections", "",
                 "this run's overrides, merged over the global sections"))
    return rows

