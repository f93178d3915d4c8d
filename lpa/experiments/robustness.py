"""The paper's robustness experiment: top-1 error under the fast gradient sign method (FGSM,
Goodfellow et al. 2015), x' = clip(x + eps * sign(grad_x loss(f(T(x)), y)), 0, 255).

x are the test images' pixels (0..255, before preprocessing) and T the run's fitted preprocessing
as torch ops (lpa.experiments.pixel_transform), so the gradient is taken through GCN and ZCA (or the
standardisation) to the pixels, and eps is in pixel units. The gradient is taken once per image at
the clean point (FGSM is one step), then every epsilon is one forward pass. The model runs in eval
mode (BN running statistics, no dropout) with its own autocast; the transform and the loss stay in
float32. No DVC here: stages/robustness.py says where the files are.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lpa.data.arrays import read_split
from lpa.train.device import pick_device
from lpa.train.engine import forward
from lpa.config.experiment_options import epsilon_key
from lpa.files import write_bytes, write_json
from lpa.train.modelfile import load_trained
from lpa.experiments.pixel_transform import PixelTransform

PIXEL_MAX = 255.0


def attack_subset(labels: np.ndarray, images: int, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random subset of `images` test images (all if 0 or more than
    there are): it depends on the seed and the split's size only, so every run of a dataset is
    attacked on the same images."""
    n = labels.shape[0]
    if images == 0 or images >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=images, replace=False))


def _logits(model, prep, pixels, amp_dtype, channels_last):
    logits, _ = forward(model, prep(pixels), amp_dtype, channels_last)
    return logits.float()


def fgsm_direction(model: torch.nn.Module, prep: PixelTransform, pixels: torch.Tensor, labels: torch.Tensor,
                   amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> torch.Tensor:
    """sign of d loss / d pixels at the clean images (float32, values in {-1, 0, 1})."""
    x = pixels.detach().float().requires_grad_(True)
    loss = F.cross_entropy(_logits(model, prep, x, amp_dtype, channels_last), labels)
    (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def fgsm_images(pixels: torch.Tensor, direction: torch.Tensor, eps: float) -> torch.Tensor:
    """The attacked images: pixels + eps * direction, clipped to the valid range 0..255."""
    return (pixels.float() + eps * direction).clamp(0.0, PIXEL_MAX)


def fgsm_errors(model: torch.nn.Module, prep: PixelTransform, pixels: torch.Tensor, labels: torch.Tensor,
                epsilons: Sequence[float], batch_size: int, amp_dtype: torch.dtype | None = None,
                channels_last: bool = False) -> dict[float, float]:
    """Top-1 error (percent) at each epsilon over all `pixels` (N x C x H x W, 0..255, on the
    model's device). Wrong counts accumulate on the device: one host sync at the end."""
    model.eval()
    wrong = torch.zeros(len(epsilons), dtype=torch.int64, device=pixels.device)
    for start in range(0, pixels.shape[0], batch_size):
        x, y = pixels[start:start + batch_size], labels[start:start + batch_size]
        direction = fgsm_direction(model, prep, x, y, amp_dtype, channels_last)
        with torch.no_grad():
            for k, eps in enumerate(epsilons):
                pred = _logits(model, prep, fgsm_images(x, direction, eps), amp_dtype, channels_last).argmax(1)
                wrong[k] += (pred != y).sum()
    n = max(1, pixels.shape[0])
    return {eps: 100.0 * w / n for eps, w in zip(epsilons, wrong.tolist())}


def robustness_csv(errors: dict[float, float]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["epsilon", "top1_error"])
    for eps, err in errors.items():
        writer.writerow([f"{eps:g}", f"{err:.4f}"])
    return out.getvalue().encode()


def robustness_run(model_file: Path, data_dir: Path, out_dir: Path, settings: dict) -> dict:
    """Everything `robustness@<trial>` writes: out_dir/robustness.json (top-1 error per epsilon,
    nested for `dvc metrics`) and out_dir/robustness.csv (the curve, for `dvc plots`)."""
    device = pick_device()
    trained = load_trained(model_file, device)
    extracted = Path(data_dir) / "extracted" / trained.config["dataset"]
    trained.check_data(extracted)
    images, labels = read_split(extracted, "test")
    idx = attack_subset(labels, settings["images"], settings["subset_seed"])
    pixels = torch.from_numpy(np.ascontiguousarray(images[idx])).to(device, torch.float32)
    targets = torch.from_numpy(np.ascontiguousarray(labels[idx])).to(device, torch.int64)
    prep = PixelTransform(trained.transform).to(device)
    errors = fgsm_errors(trained.model, prep, pixels, targets, settings["epsilons"], settings["batch_size"],
                         trained.amp_dtype, trained.channels_last)
    # numbers only, as every metrics file (dvc metrics); epsilons are pixel units, before preprocessing
    record = {"fgsm": {"top1_error": {epsilon_key(e): round(v, 4) for e, v in errors.items()},
                       "images": int(idx.shape[0]), "subset_seed": settings["subset_seed"]}}
    out_dir = Path(out_dir)
    write_json(out_dir / "robustness.json", record)
    write_bytes(out_dir / "robustness.csv", robustness_csv(errors))
    return record
