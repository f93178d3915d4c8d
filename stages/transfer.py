"""transfer@<trial>-to-<target>: the trial's frozen features on another dataset, a linear classifier.

    python -m stages.transfer PAIR        (PAIR = <trial>-to-<target>, a key of params.yaml transfer_pairs)

Declares suite_name, the transfer settings it reads and its pair. The model, its conversion and
preprocessing come with models/SUITE/TRIAL/model.pt; the target's images from data/extracted/TARGET.
Writes reports/SUITE/runs/TRIAL/transfer/TARGET.json: test accuracy and error, the C chosen by
cross-validation on the target's training split, and the sizes.
"""
from __future__ import annotations

from pathlib import Path

from lpa.layout import model_file, transfer_record
from lpa.config.params import stage_params, to_plain
from lpa.config.stage_runner import run_stage
from lpa.experiments.transfer import transfer_run


def main(pair: str) -> None:
    params = stage_params("transfer", pair)
    suite, item = params["suite_name"], to_plain(params["transfer_pairs"][pair])
    settings = to_plain(params["transfer"])  # exactly the keys dvc.yaml declares for this stage
    record = transfer_run(model_file(suite, item["trial"]), Path("data/extracted") / item["other"], settings,
                          transfer_record(suite, item["trial"], item["other"]))["transfer"]
    print(f"transfer@{pair}: {settings['feature']} features ({record['feature_dim']}-d), C={record['C']:g} "
          f"(cv accuracy {record['cv_accuracy']:.2f}%), test error {record['test']['top1_error']:.2f}% "
          f"on {record['test_images']} images")


if __name__ == "__main__":
    run_stage(main, "python -m stages.transfer")
