"""The sections of params.yaml for the paper's experiments beyond the classification table,
declared once (lpa.config.settings): what their stages read. No torch here, so checking params (every
stage does it first) never imports a model or an attack.

    robustness     robustness@<trial>: FGSM on a fixed subset of the test split (lpa.experiments.robustness)
    transfer       transfer@<trial>-to-<target>: frozen features + a linear classifier (lpa.experiments.transfer)
    segmentation   segment@<trial>-on-<name>: attention maps as object masks (lpa.experiments.segmentation)
"""
from __future__ import annotations

from collections.abc import Mapping

from lpa.errors import ConfigError
from lpa.config.settings import Setting, check_section

ROBUSTNESS_SETTINGS: dict = {
    "epsilons": Setting("number_list", "FGSM max-norm of the perturbation in pixel units (0..255), applied before "
                                       "preprocessing; 0 gives the clean error", low=0, high=255),
    "images": Setting("int", "test images attacked: a fixed subset of this size, the same for every run of a "
                             "dataset (0: the whole test split)", low=0),
    "subset_seed": Setting("int", "seed of that subset", low=0),
    "batch_size": Setting("int", "images per attack batch (one backward and one forward per epsilon)", low=1),
}


FEATURES = ("classifier_input", "g")
TRANSFER_SETTINGS: dict = {
    "runs": Setting("text_list", "source runs whose trials are transferred ([]: none)"),
    "seeds": Setting("int_list", "only the trials of these seeds ([]: every seed of those runs)", low=0),
    "targets": Setting("text_list", "target datasets (each in data.datasets), converted and preprocessed as the "
                                    "source run's own data"),
    "feature": Setting("choice", "classifier_input: the final classifier's input (attention: the g_a concatenated; "
                                 "VGG: penultimate; VGG-GAP/ResNet: pooled) | g: the global vector", choices=FEATURES),
    "C_grid": Setting("number_list", "logistic regression's inverse regularisation: the candidates, chosen by "
                                     "cross-validation on the target's training features only", low=0, low_open=True),
    "cv_folds": Setting("int", "stratified folds of that cross-validation", low=2),
    "max_train_images": Setting("int", ">0: a fixed class-balanced subset of the target's train split (cost)", low=0),
    "max_test_images": Setting("int", ">0: a fixed class-balanced subset of the target's test split", low=0),
    "subset_seed": Setting("int", "seed of those subsets and of the folds", low=0),
}
COMBINES = ("mean", "max", "level1", "level2", "level3")
THRESHOLDS = ("otsu", "fixed")
SEGMENTATION_SETTINGS: dict = {
    "runs": Setting("text_list", "runs whose maps are scored (attention models; vgg-gap: its class activation map)"),
    "seeds": Setting("int_list", "only the trials of these seeds ([]: every seed of those runs)", low=0),
    "datasets": Setting("text_list", "image+mask folders, each NAME=ROOT: Object Discovery layout (<Class>100/*.jpg "
                                     "with GroundTruth/*.png) or ROOT/<class>/images + ROOT/<class>/masks"),
    "combine": Setting("choice", "levels -> one map, after upsampling each to the image: mean | max of the "
                                 "normalised maps, or one level", choices=COMBINES),
    "threshold": Setting("choice", "otsu: per image (Otsu 1979) | fixed: threshold_value", choices=THRESHOLDS),
    "threshold_value": Setting("number", "threshold=fixed: on the map min-max normalised to [0, 1]", low=0, high=1),
    "centre_sigma": Setting("number", "the centre-prior baseline: a Gaussian at the centre, sigma = this x the "
                                      "image's shorter side", low=0, low_open=True),
    "figure_images": Setting("int", "images per class in the overlay figure (the first, by file name)", low=0),
}


def epsilon_key(eps: float) -> str:
    """The metric name of an epsilon in robustness.json and summary.json: eps_4, eps_0p5 ('.' would
    split the name in `dvc metrics`)."""
    return "eps_" + f"{eps:g}".replace(".", "p")


def key_epsilon(key: str) -> float:
    """The epsilon of an `epsilon_key` name."""
    return float(key[len("eps_"):].replace("p", "."))


def check_robustness(section: Mapping) -> dict:
    """The checked `robustness` section: epsilons non-empty, increasing, each once."""
    section = check_section(section, ROBUSTNESS_SETTINGS, "robustness")
    eps = section["epsilons"]
    if not eps or any(b <= a for a, b in zip(eps, eps[1:])):
        raise ConfigError(f"robustness.epsilons={eps} must list at least one epsilon, in increasing order, each once")
    return section


def _unique(values: list, where: str) -> None:
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}={values} lists an entry twice")


def _check_names(values: list, known: list, where: str, what: str) -> None:
    _unique(values, where)
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ConfigError(f"{where} names {unknown}, not in {what} ({', '.join(map(str, known))})")


def _check_runs_and_seeds(section: Mapping, name: str, run_seeds: Mapping[str, list]) -> None:
    """<name>.runs: runs of the suite, each once; <name>.seeds: each once, each a seed of a listed run."""
    _check_names(section["runs"], list(run_seeds), f"{name}.runs", "runs")
    seeds = section["seeds"]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{name}.seeds={seeds} lists a seed twice")
    have = {s for run in section["runs"] for s in run_seeds[run]}
    missing = [s for s in seeds if s not in have]
    if section["runs"] and missing:
        raise ConfigError(f"{name}.seeds lists {missing}, a seed of none of {name}.runs "
                          f"({', '.join(section['runs'])}): their seeds are {sorted(have)}")


def check_transfer(section: Mapping, run_seeds: Mapping[str, list], datasets: list) -> dict:
    """The checked `transfer` section: known runs (each run's seeds in `run_seeds`) and seeds,
    known target datasets, each once, a C grid."""
    section = check_section(section, TRANSFER_SETTINGS, "transfer")
    _check_runs_and_seeds(section, "transfer", run_seeds)
    _check_names(section["targets"], list(datasets), "transfer.targets", "data.datasets")
    if not section["C_grid"]:
        raise ConfigError("transfer.C_grid is empty; list at least one C, e.g. [0.01, 0.1, 1, 10]")
    return section


def segmentation_roots(section: Mapping) -> dict[str, str]:
    """segmentation.datasets as {name: root} (entries NAME=ROOT)."""
    roots = {}
    for entry in section["datasets"]:
        name, sep, root = str(entry).partition("=")
        if not sep or not name or not root or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigError(f"segmentation.datasets entry {entry!r} must be NAME=ROOT (NAME of letters, digits, "
                              f"'-' or '_'), e.g. objectdiscovery=data/raw/ObjectDiscovery-data/Data")
        if name in roots:
            raise ConfigError(f"segmentation.datasets names {name} twice")
        roots[name] = root
    return roots


def check_segmentation(section: Mapping, run_seeds: Mapping[str, list]) -> dict:
    """The checked `segmentation` section: known runs and seeds, each once; datasets NAME=ROOT."""
    section = check_section(section, SEGMENTATION_SETTINGS, "segmentation")
    _check_runs_and_seeds(section, "segmentation", run_seeds)
    segmentation_roots(section)
    return section
