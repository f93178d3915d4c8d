"""The `lpa_trials` resolver: params.yaml's `trials` = every (run, seed) pair of the suite.

DVC's `foreach` cannot nest and its `matrix` cannot look a run's dataset up, so the one-stage-
per-seed expansion is done where params.yaml is composed: `trials: ${lpa_trials:${runs},${seeds}}`
in conf/config.yaml. Hydra imports every module under `hydra_plugins/` on its plugin path before
composing, and DVC points Hydra at this folder (`hydra.plugins_path` in .dvc/config), so
`dvc exp run -S 'seeds=[0,1,2]'` recomposes the expansion too; `make params`
(`python -m lpa.config compose`, through lpa.params.load_resolvers) does the same.

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


def _resolve(runs, seeds):
    plain_runs = OmegaConf.to_container(runs, resolve=True) if OmegaConf.is_config(runs) else runs
    plain_seeds = OmegaConf.to_container(seeds, resolve=True) if OmegaConf.is_config(seeds) else seeds
    # a Container, not a dict: OmegaConf.resolve (run by DVC before dumping) only splices those in
    return OmegaConf.create(expand_trials(plain_runs, plain_seeds))


if not OmegaConf.has_resolver("lpa_trials"):
    OmegaConf.register_new_resolver("lpa_trials", _resolve)
