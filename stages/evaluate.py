"""evaluate@<run>: test-split metrics, per-class accuracy, confusion matrix and attention overlays.

    python -m stages.evaluate RUN

Declares no params: everything it needs (the resolved config included) comes with
models/RUN/model.pt, so it cannot drift from what was trained. Writes reports/runs/RUN/
metrics.json, per_class.csv, confusion.csv and attention/level<k>.png (the same fixed 16 test
images for every run of a dataset, drawn on the original pixels from data/extracted).
"""
from __future__ import annotations

from pathlib import Path

import torch

from lpa.cli import run_stage
from lpa.data.arrays import read_split
from lpa.engine import DeviceData, autocast_dtype, build_for_training, pick_device, predict
from lpa.evaluate import classification_metrics, metrics_json, write_confusion_csv, write_per_class_csv
from lpa.figures import fixed_image_indices, overlay_titles, save_attention_overlays
from lpa.files import atomic_path, write_json

OVERLAY_IMAGES = 16


def main(run: str) -> None:
    model_file = Path("models") / run / "model.pt"
    if not model_file.exists():
        raise FileNotFoundError(f"{model_file} not found; run `dvc repro train@{run}` first")
    saved = torch.load(model_file, map_location="cpu", weights_only=False)
    config, classes, num_classes = saved["config"], saved["classes"], saved["num_classes"]
    images, labels = read_split(Path("data/processed") / config["dataset"], "test")

    device = pick_device()
    model = build_for_training(config, num_classes, saved["input_size"], device)
    model.load_state_dict(saved["state_dict"])
    amp_dtype = autocast_dtype(device, config["train"]["precision"])
    channels_last = config["train"]["channels_last"]
    test = DeviceData.from_arrays(images, labels, device)
    logits = predict(model, test.images, config["train"]["eval_batch_size"], amp_dtype, channels_last)

    out = Path("reports/runs") / run
    metrics = classification_metrics(logits, labels, num_classes)
    write_json(out / "metrics.json", metrics_json(metrics, classes))
    write_per_class_csv(out / "per_class.csv", metrics, classes)
    write_confusion_csv(out / "confusion.csv", labels, metrics["predictions"], classes)

    idx = fixed_image_indices(labels, OVERLAY_IMAGES)
    _, maps = predict(model, test.images[idx], OVERLAY_IMAGES, amp_dtype, channels_last, with_maps=True)
    originals, _ = read_split(Path("data/extracted") / config["dataset"], "test")
    titles = overlay_titles(labels[idx], metrics["predictions"][idx], classes)
    with atomic_path(out / "attention", directory=True) as tmp:
        if not save_attention_overlays(originals[idx], maps, tmp, titles=titles):
            (tmp / "NO_ATTENTION_MAPS.txt").write_text(f"{config['model']['name']} has no attention maps\n")


if __name__ == "__main__":
    run_stage(main, "python -m stages.evaluate RUN")
