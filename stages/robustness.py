"""robustness@<trial>: top-1 error under FGSM at the epsilons of params.yaml `robustness`.

    python -m stages.robustness TRIAL     (TRIAL = <run>-seed<k>)

Declares suite_name and robustness; the model, its preprocessing and its dataset come with
models/SUITE/TRIAL/model.pt. Attacks a fixed subset of the test split (the original pixels from
data/extracted) and writes reports/SUITE/runs/TRIAL/robustness.json (metrics) and robustness.csv
(the curve: epsilon, top1_error).
"""
from __future__ import annotations

from pathlib import Path

from lpa.config.experiment_options import key_epsilon
from lpa.layout import model_file, record_dir
from lpa.config.params import stage_params, to_plain
from lpa.experiments.robustness import robustness_run
from lpa.config.stage_runner import run_stage


def main(trial: str) -> None:
    params = stage_params("robustness", trial)
    suite = params["suite_name"]
    record = robustness_run(model_file(suite, trial), Path("data"), record_dir(suite, trial),
                            to_plain(params["robustness"]))
    curve = ", ".join(f"{key_epsilon(k):g}: {v:.2f}" for k, v in record["fgsm"]["top1_error"].items())
    print(f"robustness@{trial}: top-1 error (%) by epsilon over {record['fgsm']['images']} test images: {curve}")


if __name__ == "__main__":
    run_stage(main, "python -m stages.robustness")
