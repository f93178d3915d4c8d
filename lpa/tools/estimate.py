"""How long the current suite's training takes on G GPUs, from counted FLOPs (no GPU needed).

    python -m lpa.tools.estimate [--gpus 8] [--peak-tflops 989] [--utilisation 0.1 0.3]

For every trial of params.yaml: forward FLOPs per image (lpa.models.count_flops, on the meta
device, at the dataset's input size and class count), x3 for forward + backward, x training
images x epochs. Each trial is one GPU's job (the launcher's unit, lpa.tools.launch); the wall time
on G GPUs is the longest-first list schedule of those jobs, at a sustained throughput of
utilisation x peak. The utilisation is the unknown: no GPU was lent to this project, so the
table spans a range (narrow 32x32 networks at batch 128 are far from a GPU's peak).
"""
from __future__ import annotations

import argparse
import heapq
from collections.abc import Mapping, Sequence

import torch
from tabulate import tabulate

from lpa.config.run import resolve_trial
from lpa.models import build_model, count_flops, options_of
from lpa.config.params import load_params

# Training images and classes of each dataset's official train split (what the preprocess stage
# keeps); digits and pasted_digits are lpa's own embedded data.
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "svhn+extra": 73_257 + 531_131,
                "cub200": 5_994, "digits": 1_437, "pasted_digits": 1_437}
CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "cub200": 200, "digits": 10, "pasted_digits": 10}
H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM data sheet, dense bf16


def dataset_key(params: Mapping, dataset: str) -> str:
    if dataset == "svhn" and params["data"]["svhn"]["download"].get("use_extra"):
        return "svhn+extra"
    return dataset


def input_size(params: Mapping, dataset: str) -> int:
    section = params["data"].get(dataset, {})
    return int(section.get("preprocess", {}).get("image_size", section.get("download", {}).get("image_size", 32)))


def trial_flops(params: Mapping) -> list[dict]:
    """One row per train@/finetune@ trial: its model, epochs, images and training FLOPs."""
    rows = []
    for group in ("train", "finetune"):
        for trial in params["trial_groups"][group]:
            config = resolve_trial(params, trial)
            dataset = config["dataset"]
            size = input_size(params, dataset)
            with torch.device("meta"):
                model = build_model(config["model"]["name"], CLASSES[dataset], input_size=size, **options_of(config))
            forward = count_flops(model, size)
            images = TRAIN_IMAGES[dataset_key(params, dataset)]
            if config["train"]["max_images"]:
                images = min(images, config["train"]["max_images"])
            epochs = config["train"]["epochs"]
            rows.append({"trial": trial, "dataset": dataset, "input": size, "gflop_fwd": forward / 1e9,
                         "images": images, "epochs": epochs, "pflop": 3 * forward * images * epochs / 1e15})
    return rows


def makespan(job_seconds: Sequence[float], gpus: int) -> float:
    """Longest-first list scheduling: each job to the GPU that frees first."""
    free = [0.0] * gpus
    for seconds in sorted(job_seconds, reverse=True):
        heapq.heapreplace(free, free[0] + seconds)
    return max(free)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m lpa.tools.estimate", description=__doc__.split("\n")[0])
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS, help="per GPU (default: H100 bf16)")
    p.add_argument("--utilisation", type=float, nargs="+", default=[0.1, 0.2, 0.4],
                   help="sustained fraction(s) of the peak to tabulate")
    args = p.parse_args(argv)
    params = load_params()
    rows = trial_flops(params)
    total = sum(r["pflop"] for r in rows)
    print(f"suite {params['suite_name']}: {len(rows)} training runs, {total:,.1f} PFLOP of training "
          f"(3 x forward FLOPs x images x epochs)")
    print(tabulate([[r["trial"], r["dataset"], r["input"], f"{r['gflop_fwd']:.3f}", f"{r['images']:,}", r["epochs"],
                     f"{r['pflop']:.2f}"] for r in sorted(rows, key=lambda r: -r["pflop"])],
                   headers=["trial", "dataset", "input", "GFLOP fwd/img", "images", "epochs", "PFLOP"],
                   tablefmt="github", disable_numparse=True))
    print()
    table = []
    for u in args.utilisation:
        rate = u * args.peak_tflops * 1e12
        seconds = [r["pflop"] * 1e15 / rate for r in rows]
        table.append([f"{u:.0%}", f"{u * args.peak_tflops:.0f}", f"{sum(seconds) / 3600:.1f}",
                      f"{max(seconds) / 3600:.1f}", f"{makespan(seconds, args.gpus) / 3600:.1f}"])
    print(f"wall time on {args.gpus} GPUs of {args.peak_tflops:g} TFLOP/s peak, one run per GPU at a time:")
    print(tabulate(table, headers=["utilisation", "TFLOP/s sustained", "GPU-hours", "longest run (h)",
                                   f"wall on {args.gpus} GPUs (h)"], tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
