"""train@<trial>: train one (run, seed) pair's model on its processed dataset.

    python -m stages.train TRIAL          (TRIAL = <run>-seed<k>, a key of params.yaml `trials`)

Reads the params dvc.yaml declares for it (suite_name, model, attention, train, runs.RUN,
trials.TRIAL), writes models/SUITE/TRIAL/model.pt (the last epoch's weights),
reports/SUITE/runs/TRIAL/config.json (the fully resolved config) and the dvclive log
reports/SUITE/runs/TRIAL/train/. Resumes from checkpoints/SUITE/TRIAL/ after a crash.
"""
from __future__ import annotations

from pathlib import Path

import torch
from dvclive import Live

from lpa.checkpoint import remove_checkpoints
from lpa.config import resolve_trial
from lpa.data.arrays import fingerprint, read_meta, read_split
from lpa.engine import DeviceData, pick_device, train
from lpa.errors import ConfigError
from lpa.files import write_json
from lpa.layout import checkpoint_dir, model_file, record_dir
from lpa.modelfile import preprocessing_record, save_model
from lpa.params import load_params, stage_params
from lpa.stage_runner import run_stage
from lpa.warm_start import parent_weights

# dvclive metric names for the per-epoch record the engine produces
LOGGED = {"train_loss": "train/loss", "train_top1_error": "train/top1_error", "lr": "lr",
          "images_per_s": "images_per_s", "val_top1_error": "val/top1_error"}


def main(trial: str) -> None:
    # the same command serves both stage groups; each declares the params it reads
    params = stage_params("finetune" if trial in load_params()["trial_groups"]["finetune"] else "train", trial)
    suite = params["suite_name"]
    config = resolve_trial(params, trial)
    processed = Path("data/processed") / config["dataset"]
    meta = read_meta(processed)
    input_size = meta["image_shape"][-1]  # the input size comes from the data, never from a param
    if meta["image_shape"][-2] != input_size:
        raise ConfigError(f"{processed}: images are {meta['image_shape'][-2]}x{input_size}; the models need square images")
    # read and checked before hours of training: the preprocessing, and a finetune@ trial's parent
    preprocessing = preprocessing_record(processed, meta)
    init_state, init_record, parent_digest = parent_weights(config, suite, meta["num_classes"], input_size)
    images, labels = read_split(processed, "train")

    device = pick_device()
    records = record_dir(suite, trial)
    write_json(records / "config.json", {
        **config,
        "environment": {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                        "torch": torch.__version__, "num_classes": meta["num_classes"],
                        "input_size": input_size, "train_split_images": int(labels.shape[0]),
                        "data_source": meta.get("source", {}).get("kind", "unknown"),
                        **({"init_from": init_record} if init_record else {})},
    })
    data = DeviceData.from_arrays(images, labels, device)
    with Live(dir=str(records / "train"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        def log_epoch(record: dict) -> None:
            for key, name in LOGGED.items():
                if key in record:
                    live.log_metric(name, record[key])
            live.next_step()

        checkpoints = checkpoint_dir(suite, trial)
        result = train(config, data, meta["num_classes"], checkpoint_dir=checkpoints,
                       data_fingerprint=fingerprint(processed) + parent_digest, on_epoch=log_epoch,
                       init_state=init_state)
    save_model(model_file(suite, trial), result.model, config, meta["num_classes"], meta["classes"],
               input_size, preprocessing)
    remove_checkpoints(checkpoints)  # only now: the run is safely on disk


if __name__ == "__main__":
    run_stage(main, "python -m stages.train TRIAL")
