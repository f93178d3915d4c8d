"""train@<run>: train one run's model on its processed dataset.

    python -m stages.train RUN

Reads the params dvc.yaml declares for it (seed, model, attention, train, runs.RUN), writes
models/RUN/model.pt (the last epoch's weights), reports/runs/RUN/config.json (the fully resolved
config) and the dvclive log reports/runs/RUN/train/. Resumes from checkpoints/RUN/ after a crash.
"""
from __future__ import annotations

from pathlib import Path

import torch
from dvclive import Live

from lpa.checkpoint import remove_checkpoints, save_model
from lpa.cli import run_stage
from lpa.config import check_model_options, resolve_run, stage_params
from lpa.data.arrays import fingerprint, read_meta, read_split
from lpa.engine import DeviceData, pick_device, train
from lpa.files import write_json

# dvclive metric names for the per-epoch record the engine produces
LOGGED = {"train_loss": "train/loss", "train_top1_error": "train/top1_error", "lr": "lr",
          "images_per_s": "images_per_s", "val_top1_error": "val/top1_error"}


def main(run: str) -> None:
    config = resolve_run(stage_params("train", run), run)
    processed = Path("data/processed") / config["dataset"]
    meta = read_meta(processed)
    input_size = meta["image_shape"][-1]
    check_model_options(config, meta["num_classes"], input_size)
    images, labels = read_split(processed, "train")

    device = pick_device()
    record_dir = Path("reports/runs") / run
    write_json(record_dir / "config.json", {
        **config,
        "environment": {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                        "torch": torch.__version__, "num_classes": meta["num_classes"],
                        "input_size": input_size, "train_images": int(labels.shape[0])},
    })
    data = DeviceData.from_arrays(images, labels, device)
    with Live(dir=str(record_dir / "train"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        def log_epoch(record: dict) -> None:
            for key, name in LOGGED.items():
                if key in record:
                    live.log_metric(name, record[key])
            live.next_step()

        checkpoints = Path("checkpoints") / run
        result = train(config, data, meta["num_classes"], checkpoint_dir=checkpoints,
                       data_fingerprint=fingerprint(processed), on_epoch=log_epoch)
    save_model(Path("models") / run / "model.pt", result.model, config, meta["num_classes"], meta["classes"],
               input_size)
    remove_checkpoints(checkpoints)  # only now: the run is safely on disk


if __name__ == "__main__":
    run_stage(main, "python -m stages.train RUN")
