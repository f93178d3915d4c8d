"""What the evaluate stage does for one trained run, from its model file alone: test-split
metrics and their files (lpa.experiments.metrics), and the attention overlays of fixed test images
(lpa.experiments.figures). No DVC, no argv: stages/evaluate.py only says where the files are.
"""
from __future__ import annotations

from pathlib import Path

from lpa.data.arrays import read_split
from lpa.train.device import pick_device
from lpa.train.engine import DeviceData
from lpa.experiments.figures import fixed_image_indices, overlay_titles, save_attention_overlays
from lpa.files import atomic_path, write_json
from lpa.experiments.metrics import (
    attention_map_stats,
    classification_metrics,
    metrics_json,
    write_confusion_csv,
    write_per_class_csv,
)
from lpa.train.modelfile import load_trained

OVERLAY_IMAGES = 16


def evaluate_run(model_file: Path, data_dir: Path, out_dir: Path) -> dict:
    """Everything `evaluate@<trial>` writes, from the saved model alone (its resolved config inside).

    Test-split metrics -> out_dir/metrics.json, per_class.csv, confusion.csv (an attention run's
    metrics.json also holds `attention_stats`: per level, the mean largest weight and entropy of its
    softmax maps over the test images, lpa.experiments.metrics.attention_map_stats); attention overlays
    of the same fixed 16 test images for every run of a dataset, drawn on the original pixels
    (data_dir/extracted) -> out_dir/attention/level<k>.png. Returns the metrics.
    """
    device = pick_device()
    trained = load_trained(model_file, device)
    config, saved, classes = trained.config, trained.saved, trained.saved["classes"]
    processed = Path(data_dir) / "processed" / config["dataset"]
    trained.check_data(processed)
    images, labels = read_split(processed, "test")
    test = DeviceData.from_arrays(images, labels, device)
    # vgg-gap's maps are class activation maps, not softmax weights: statistics for attention runs only
    attention = bool(config.get("attention"))
    if attention:
        logits, test_maps = trained.predict(test.images, with_maps=True)
    else:
        logits = trained.predict(test.images)

    out_dir = Path(out_dir)
    metrics = classification_metrics(logits, labels, saved["num_classes"])
    record = metrics_json(metrics, classes)
    if attention:
        record["attention_stats"] = attention_map_stats(test_maps)
    write_json(out_dir / "metrics.json", record)
    write_per_class_csv(out_dir / "per_class.csv", metrics, classes)
    write_confusion_csv(out_dir / "confusion.csv", labels, metrics["predictions"], classes)

    idx = fixed_image_indices(labels, OVERLAY_IMAGES)
    _, maps = trained.predict(test.images[idx], with_maps=True)
    originals, _ = read_split(Path(data_dir) / "extracted" / config["dataset"], "test")
    titles = overlay_titles(labels[idx], metrics["predictions"][idx], classes)
    with atomic_path(out_dir / "attention", directory=True) as tmp:
        if not save_attention_overlays(originals[idx], maps, tmp, titles=titles):
            (tmp / "NO_ATTENTION_MAPS.txt").write_text(f"{config['model']['name']} has no attention maps\n")
    return metrics

