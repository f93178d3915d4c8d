"""The train stage's job: one trial's model trained on its processed dataset and saved with its records.

`prepare_training` reads and checks, before any training, what the run needs besides the arrays
(the dataset's meta and preprocessing, a finetune's parent weights) into one `TrainJob`;
`train_and_save(job, world, device)` is what each process of the run does with it (rank 0 alone
writes; lpa.train.distributed.run_on_every_rank starts the processes).

Writes models/SUITE/TRIAL/model.pt (the last epoch's weights), reports/SUITE/runs/TRIAL/config.json
(the resolved config and its environment) and the dvclive log reports/SUITE/runs/TRIAL/train/;
resumes from checkpoints/SUITE/TRIAL/, removed once the model is saved.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from dvclive import Live

from lpa.data.arrays import fingerprint, read_meta, read_split
from lpa.errors import ConfigError
from lpa.files import write_json
from lpa.layout import checkpoint_dir, model_file, record_dir
from lpa.train.checkpoint import remove_checkpoints
from lpa.train.distributed import World
from lpa.train.engine import DeviceData, train
from lpa.train.machine import machine_description
from lpa.train.modelfile import preprocessing_record, save_model
from lpa.train.warm_start import parent_weights

# dvclive metric names for the per-epoch record the engine produces
LOGGED = {"train_loss": "train/loss", "train_top1_error": "train/top1_error", "lr": "lr",
          "images_per_s": "images_per_s", "val_top1_error": "val/top1_error"}


@dataclass(frozen=True)
class WarmStart:
    """A finetune's parent run (lpa.train.warm_start.parent_weights): the tensors to load, the record
    for config.json and the parent model file's SHA-256 (part of the resume key); empty for a run
    trained from scratch."""
    state: Mapping[str, torch.Tensor] | None = None
    record: dict | None = None
    digest: str = ""


@dataclass(frozen=True)
class TrainJob:
    """What training one trial needs besides its arrays, read and checked once.

    `processed`: data/processed/<dataset>; `meta`: its meta.json; `input_size`: the side of its
    (square) images, which the models are built for; `preprocessing`: what the model file carries
    to preprocess a new picture (lpa.train.modelfile.preprocessing_record); `data_fingerprint`: what
    the checkpoints are keyed on besides the config (the processed data and the parent's file)."""
    config: Mapping
    trial: str
    suite: str
    processed: Path
    meta: Mapping
    input_size: int
    preprocessing: dict
    parent: WarmStart
    data_fingerprint: str


def prepare_training(config: Mapping, trial: str, suite: str) -> TrainJob:
    """The TrainJob of `trial` (its resolved `config`) in `suite`. Raises ConfigError for non-square
    images, and the data and warm-start errors of a missing or damaged input, before hours of training."""
    # spelled here, not imported from lpa.data.pipeline: that would put every loader in this stage's deps
    processed = Path("data/processed") / config["dataset"]
    meta = read_meta(processed)
    input_size = meta["image_shape"][-1]  # the input size comes from the data, never from a param
    if meta["image_shape"][-2] != input_size:
        raise ConfigError(f"{processed}: images are {meta['image_shape'][-2]}x{input_size}; the models need square images")
    preprocessing = preprocessing_record(processed, meta)
    parent = WarmStart(*parent_weights(config, suite, meta["num_classes"], input_size))
    return TrainJob(config, trial, suite, processed, meta, input_size, preprocessing, parent,
                    fingerprint(processed) + parent.digest)


def train_and_save(job: TrainJob, world: World, device: torch.device) -> None:
    """Train `job` as this process's rank of `world` on `device`. Rank 0 writes config.json, logs every
    epoch to dvclive, saves the model file and only then removes the checkpoints; the other ranks
    train alongside it and write nothing."""
    images, labels = read_split(job.processed, "train")
    data = DeviceData.from_arrays(images, labels, device)
    if not world.is_main:
        train_model(job, data, world)
        return
    records = record_dir(job.suite, job.trial)
    write_json(records / "config.json", {**job.config, "environment": environment(job, world, device, len(labels))})
    with Live(dir=str(records / "train"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        model = train_model(job, data, world, on_epoch=lambda record: log_epoch(live, record))
    save_model(model_file(job.suite, job.trial), model, job.config, job.meta["num_classes"], job.meta["classes"],
               job.input_size, job.preprocessing)
    remove_checkpoints(checkpoint_dir(job.suite, job.trial))  # only now: the run is safely on disk


def train_model(job: TrainJob, data: DeviceData, world: World,
                on_epoch: Callable[[dict], None] | None = None) -> torch.nn.Module:
    """The engine's last-epoch model for `job` on `data` (its train split, on the device), resumed from
    the trial's checkpoints when they were made under the same config, data and parent."""
    return train(job.config, data, job.meta["num_classes"], checkpoint_dir=checkpoint_dir(job.suite, job.trial),
                 data_fingerprint=job.data_fingerprint, on_epoch=on_epoch,
                 init_state=job.parent.state, world=world).model


def environment(job: TrainJob, world: World, device: torch.device, train_images: int) -> dict:
    """config.json's `environment`: where and on what the run trained (the machine: CPU model and
    instruction set, or GPU and compute capability, torch, CUDA, threads; see lpa.train.machine),
    the data it saw (and its parent, for a finetune)."""
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "processes": world.size, **machine_description(device),
            "num_classes": job.meta["num_classes"],
            "input_size": job.input_size, "train_split_images": train_images,
            "data_source": job.meta.get("source", {}).get("kind", "unknown"),
            **({"init_from": job.parent.record} if job.parent.record else {})}


def log_epoch(live: Live, record: Mapping) -> None:
    """One epoch's record as one dvclive step (the metrics named in LOGGED)."""
    for key, name in LOGGED.items():
        if key in record:
            live.log_metric(name, record[key])
    live.next_step()
