"""The `lpa_trials` and `lpa_trial_groups` resolvers: params.yaml's `trials` = every (run, seed)
pair of the suite; `trial_groups` = which of them train from scratch (`train@<trial>`) and which
start from another run's weights (`finetune@<trial>`, a run with `init_from`).

DVC's `foreach` cannot nest and its `matrix` cannot look a run's dataset up, so the one-stage-
per-seed expansion is done where params.yaml is composed: `trials: ${lpa_trials:${runs},${seeds}}`
in conf/config.yaml. Hydra imports every module under `hydra_plugins/` on its plugin path before
composing, and DVC points Hydra at this folder (`hydra.plugins_path` in .dvc/config), so
`dvc exp run -S 'seeds=[0,1,2]'` recomposes the expansion too; `make params`
(`python -m lpa.config compose`, through lpa.config.params.load_resolvers) does the same.

Kept free of lpa imports: DVC runs it in its own process, where lpa is not importable.
Validation (types, unknown keys) happens later, in lpa.config, with one-line errors.
"""
from omegaconf import OmegaConf

SEPARATOR = "-seed"  # trial name: <run>-seed<k>; DVC stage names cannot contain a second '@'


def trial_name(run: str, seed: int) -> str:
    return f"{run}{SEPARATOR}{seed}"


def expand_trials(runs, seeds) -> dict:
    """{<run>-seed<k>: {run, seed, **the run's spec without its seeds}} per run and seed, in order.

    A run may list its own `seeds` (e.g. an expensive model with fewer); else the global list.
    The spec is copied into each trial so that a train stage can declare its trial alone: adding
    a seed to one run's list then leaves that run's other trials (and their stages) unchanged.
    """
    trials = {}
    for run, spec in (runs or {}).items():
        spec = spec if isinstance(spec, dict) else {}  # not a mapping: lpa.config reports it in one line
        run_seeds = spec.get("seeds", seeds)
        if not isinstance(run_seeds, (list, tuple)):
            run_seeds = [run_seeds]
        rest = {k: v for k, v in spec.items() if k != "seeds"}
        for seed in run_seeds:
            trials[trial_name(str(run), seed)] = {"run": str(run), "seed": seed, **rest}
    return trials


def expand_trial_groups(runs, seeds) -> dict:
    """{"train": {trial: {dataset}}, "finetune": {trial: {dataset, init_trial}}}: the two DVC stage
    groups. A fine-tuned trial starts from its parent run's trial of the same seed (`init_trial`),
    whose model file dvc.yaml makes a dependency of `finetune@<trial>`; DVC's `deps` cannot be
    interpolated as a list, so the trials with a parent need a group of their own."""
    groups = {"train": {}, "finetune": {}}
    for trial, entry in expand_trials(runs, seeds).items():
        parent = entry.get("init_from")
        if parent:
            groups["finetune"][trial] = {"dataset": entry.get("dataset"),
                                         "init_trial": trial_name(str(parent), entry["seed"])}
        else:
            groups["train"][trial] = {"dataset": entry.get("dataset")}
    return groups


def expand_pairs(runs, others, trials, joiner: str, seeds=None) -> dict:
    """{<trial><joiner><other>: {trial, dataset, other[, root]}} for every trial of the listed runs
    and every other (a target dataset, or a segmentation dataset NAME=ROOT: its NAME, and ROOT), in
    order; only the trials of `seeds` when it is a non-empty list."""
    pairs = {}
    for trial, entry in (trials or {}).items():
        if not isinstance(entry, dict) or entry.get("run") not in (runs or []):
            continue
        if seeds and entry.get("seed") not in seeds:
            continue
        for other in others or []:
            name, _, root = str(other).partition("=")
            pairs[f"{trial}{joiner}{name}"] = {"trial": trial, "dataset": entry.get("dataset"), "other": name,
                                               **({"root": root} if root else {})}
    return pairs


def _get(section, key):
    return section.get(key) if isinstance(section, dict) else None


def expand_transfer_pairs(section, trials) -> dict:
    """transfer@<trial>-to-<target>: one stage per trial of transfer.runs (of transfer.seeds) and target."""
    return expand_pairs(_get(section, "runs"), _get(section, "targets"), trials, "-to-", _get(section, "seeds"))


def expand_segmentation_pairs(section, trials) -> dict:
    """segment@<trial>-on-<name>: one stage per trial of segmentation.runs (of its seeds) and dataset."""
    return expand_pairs(_get(section, "runs"), _get(section, "datasets"), trials, "-on-", _get(section, "seeds"))


def _plain(node):
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _resolve(runs, seeds):
    # a Container, not a dict: OmegaConf.resolve (run by DVC before dumping) only splices those in
    return OmegaConf.create(expand_trials(_plain(runs), _plain(seeds)))


def _resolve_groups(runs, seeds):
    return OmegaConf.create(expand_trial_groups(_plain(runs), _plain(seeds)))


def _resolve_transfer(section, trials):
    return OmegaConf.create(expand_transfer_pairs(_plain(section), _plain(trials)))


def _resolve_segmentation(section, trials):
    return OmegaConf.create(expand_segmentation_pairs(_plain(section), _plain(trials)))


if not OmegaConf.has_resolver("lpa_transfer_pairs"):
    OmegaConf.register_new_resolver("lpa_transfer_pairs", _resolve_transfer)
if not OmegaConf.has_resolver("lpa_segmentation_pairs"):
    OmegaConf.register_new_resolver("lpa_segmentation_pairs", _resolve_segmentation)
if not OmegaConf.has_resolver("lpa_trials"):
    OmegaConf.register_new_resolver("lpa_trials", _resolve)
if not OmegaConf.has_resolver("lpa_trial_groups"):
    OmegaConf.register_new_resolver("lpa_trial_groups", _resolve_groups)
