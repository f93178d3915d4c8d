"""train@<trial>: train one (run, seed) pair's model on its processed dataset.

    python -m stages.train TRIAL          (TRIAL = <run>-seed<k>, a key of params.yaml `trials`)

Reads the params dvc.yaml declares for it (suite_name, model, attention, train, runs.RUN,
trials.TRIAL), writes models/SUITE/TRIAL/model.pt (the last epoch's weights),
reports/SUITE/runs/TRIAL/config.json (the fully resolved config) and the dvclive log
reports/SUITE/runs/TRIAL/train/ (lpa/train/job.py). Resumes from checkpoints/SUITE/TRIAL/ after a crash.

With train.distributed.processes > 1 it starts itself that many times under torchrun (one
process per GPU); under a torchrun a user started (several machines) it joins that one. Rank 0
writes every output; lpa/train/distributed.py says how the work is split.
"""
from __future__ import annotations

from functools import partial

from lpa.config.params import load_params, stage_params
from lpa.config.run import resolve_trial
from lpa.config.stage_runner import run_stage
from lpa.train.distributed import run_on_every_rank
from lpa.train.job import prepare_training, train_and_save


def main(trial: str) -> None:
    # the same command serves both stage groups; each declares the params it reads
    params = stage_params("finetune" if trial in load_params()["trial_groups"]["finetune"] else "train", trial)
    config = resolve_trial(params, trial)
    # read and checked before hours of training (and before a launcher starts the processes that train)
    job = prepare_training(config, trial, params["suite_name"])
    distributed = config["train"]["distributed"]
    run_on_every_rank(partial(train_and_save, job), distributed["processes"], distributed["backend"],
                      "stages.train", [trial])


if __name__ == "__main__":
    run_stage(main, "python -m stages.train")
