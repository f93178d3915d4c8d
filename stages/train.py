"""train@<trial>: train one (run, seed) pair's model on its processed dataset.

    python -m stages.train TRIAL          (TRIAL = <run>-seed<k>, a key of params.yaml `trials`)

Reads the params dvc.yaml declares for it (suite_name, model, attention, train, runs.RUN,
trials.TRIAL), writes models/SUITE/TRIAL/model.pt (the last epoch's weights),
reports/SUITE/runs/TRIAL/config.json (the fully resolved config) and the dvclive log
reports/SUITE/runs/TRIAL/train/. Resumes from checkpoints/SUITE/TRIAL/ after a crash.

With train.distributed.processes > 1 it starts itself that many times under torchrun (one
process per GPU); under a torchrun a user started (several machines) it joins that one. Rank 0
writes every output; lpa/train/distributed.py says how the work is split.
"""
from __future__ import annotations

from pathlib import Path

import torch
from dvclive import Live

from lpa.train.checkpoint import remove_checkpoints
from lpa.config.run import resolve_trial
from lpa.data.arrays import fingerprint, read_meta, read_split
from lpa.train.distributed import launch_here, start, stop, world_from_environment
from lpa.train.engine import DeviceData, pick_device, train
from lpa.errors import ConfigError
from lpa.files import write_json
from lpa.layout import checkpoint_dir, model_file, record_dir
from lpa.train.modelfile import preprocessing_record, save_model
from lpa.config.params import load_params, stage_params
from lpa.config.stage_runner import run_stage
from lpa.train.warm_start import parent_weights

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
    world = world_from_environment()
    processes = config["train"]["distributed"]["processes"]
    if processes > 1 and not world.distributed:  # checked above, once; now the processes that train
        raise SystemExit(launch_here(processes, "stages.train", [trial]))
    images, labels = read_split(processed, "train")

    device = start(world, config["train"]["distributed"]["backend"]) if world.distributed else pick_device()
    try:
        _train_and_save(config, trial, suite, processed, meta, images, labels, preprocessing, init_state,
                        init_record, parent_digest, world, device)
    finally:
        stop()


def _train_and_save(config, trial, suite, processed, meta, images, labels, preprocessing, init_state,
                    init_record, parent_digest, world, device) -> None:
    input_size = meta["image_shape"][-1]
    records = record_dir(suite, trial)
    data = DeviceData.from_arrays(images, labels, device)
    checkpoints, data_fingerprint = checkpoint_dir(suite, trial), fingerprint(processed) + parent_digest
    if not world.is_main:  # the other processes train alongside rank 0 and write nothing
        train(config, data, meta["num_classes"], checkpoint_dir=checkpoints, data_fingerprint=data_fingerprint,
              init_state=init_state, world=world)
        return
    write_json(records / "config.json", {
        **config,
        "environment": {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                        "processes": world.size,
                        "torch": torch.__version__, "num_classes": meta["num_classes"],
                        "input_size": input_size, "train_split_images": int(labels.shape[0]),
                        "data_source": meta.get("source", {}).get("kind", "unknown"),
                        **({"init_from": init_record} if init_record else {})},
    })
    with Live(dir=str(records / "train"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        def log_epoch(record: dict) -> None:
            for key, name in LOGGED.items():
                if key in record:
                    live.log_metric(name, record[key])
            live.next_step()

        result = train(config, data, meta["num_classes"], checkpoint_dir=checkpoints,
                       data_fingerprint=data_fingerprint, on_epoch=log_epoch,
                       init_state=init_state, world=world)
    save_model(model_file(suite, trial), result.model, config, meta["num_classes"], meta["classes"],
               input_size, preprocessing)
    remove_checkpoints(checkpoints)  # only now: the run is safely on disk


if __name__ == "__main__":
    run_stage(main, "python -m stages.train TRIAL")
