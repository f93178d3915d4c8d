"""Attention on your own pictures: a trained run's top classes and attention maps for any image.

    python -m lpa.predict MODEL IMAGE_OR_FOLDER... [--out DIR] [--top-k 5] [--json] [--device auto]

MODEL is a model file (models/<suite>/<trial>/model.pt). Every picture (png, jpg, ... of any size
and mode; a folder gives the pictures directly inside it) is converted as the run's dataset was
(lpa.data.conversion) and preprocessed with the transform fitted on its training split, both
carried by the model file, so the model sees what it saw in training. Prints the top-k classes per
picture (a table, or JSON with --json) and writes DIR/<picture name>.png: the picture with each
level's attention map upsampled over it. A picture that cannot be read is one `error:` line; the
others are still processed, and the exit code is 1 if any failed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tabulate import tabulate

from lpa.data.conversion import ImageConversion
from lpa.data.imagefolder import IMAGE_ERRORS, image_files
from lpa.train.device import pick_device
from lpa.errors import DamagedFileError, DeviceError, WriteError
from lpa.experiments.figures import save_prediction_figure
from lpa.train.modelfile import TrainedModel, load_trained

# what a folder contributes: Pillow reads more, but these are the pictures people keep
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DISPLAY_MAX = 512  # longest side of the picture drawn in the figure (pixels)


class PictureError(ValueError):
    """A path given to predict that yields no picture; the message names it."""


@dataclass
class Picture:
    path: Path
    shown: np.ndarray      # H x W x 3 uint8: the picture as drawn in the figure
    converted: np.ndarray  # 3 x S x S uint8: as the model's dataset images were made


def find_pictures(paths: list[str]) -> tuple[list[Path], list[str]]:
    """The picture files named or inside the named folders (sorted), and one problem per bad path."""
    found, problems = [], []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            inside = image_files(path, IMAGE_SUFFIXES)
            if not inside:
                problems.append(f"{path} holds no pictures ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            problems.append(f"{path} does not exist")
    return found, problems


def read_picture(path: Path, conversion: ImageConversion) -> Picture:
    """Read one picture file; PictureError (one line) if it is not a readable image."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)  # a phone photo is stored sideways with an EXIF turn
            converted = conversion.convert(img)
            shown = img.convert("RGB")
            shown.thumbnail((DISPLAY_MAX, DISPLAY_MAX), Image.Resampling.LANCZOS)
            return Picture(path, np.asarray(shown), converted)
    except IMAGE_ERRORS as err:
        first = (str(err).strip().splitlines() or [""])[0][:120]
        raise PictureError(f"cannot read {path} as an image ({type(err).__name__}: {first}); skipped") from None


def figure_path(out_dir: Path, picture: Path, taken: set[Path]) -> Path:
    """out_dir/<name>.png; a second picture of the same name gets <name>-2.png, and so on."""
    path, k = out_dir / f"{picture.stem}.png", 1
    while path in taken:
        k += 1
        path = out_dir / f"{picture.stem}-{k}.png"
    taken.add(path)
    return path


def classify(trained: TrainedModel, pictures: list[Picture], device: torch.device,
             top_k: int) -> tuple[list[list[tuple[str, float]]], list[list[np.ndarray]]]:
    """Per picture: the top-k (class, probability) and one (h, w) attention map per level."""
    inputs = trained.transform.apply(np.stack([p.converted for p in pictures]))
    logits, maps = trained.predict(torch.from_numpy(inputs).to(device), with_maps=True)
    probs = torch.softmax(logits.float(), dim=1)
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    classes = trained.saved["classes"]
    ranked = [[(str(classes[c]), float(p)) for p, c in zip(ps.tolist(), cs.tolist())]
              for ps, cs in zip(top.values, top.indices)]
    per_picture = [[level[i, 0].numpy() for level in maps] for i in range(len(pictures))]
    return ranked, per_picture


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lpa.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model file, models/<suite>/<trial>/model.pt")
    parser.add_argument("images", nargs="+", help="picture files, or folders of them")
    parser.add_argument("--out", default="predictions", help="folder for one figure per picture (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=5, help="classes listed per picture (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when present (default)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"error: --out {args.out} is a file; give a folder (it is created if missing)", file=sys.stderr)
        return 1
    try:  # the device, then the model: a bad model file stops everything before any picture is read
        device = pick_device(args.device)  # --device cuda without a working CUDA: one line, not the CPU
    except DeviceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        trained = load_trained(Path(args.model), device)
        conversion = trained.conversion
    except (DamagedFileError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    files, problems = find_pictures(args.images)
    pictures = []
    for path in files:
        try:
            pictures.append(read_picture(path, conversion))
        except PictureError as err:
            problems.append(str(err))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)

    results = []
    if pictures:
        ranked, maps = classify(trained, pictures, device, args.top_k)
        out_dir, taken = Path(args.out), set()
        for picture, top, level_maps in zip(pictures, ranked, maps):
            label, prob = top[0]
            title = f"{picture.path.name}: {label} ({prob:.1%})  [{trained.trial}]"
            try:
                figure = save_prediction_figure(picture.shown, level_maps, figure_path(out_dir, picture.path, taken),
                                                title)
            except WriteError as err:  # a full disk or a folder we may not write: say so, do not half-finish
                print(f"error: {err}", file=sys.stderr)
                return 1
            results.append({"image": os.fspath(picture.path), "figure": os.fspath(figure),
                            "top_k": [{"class": c, "probability": round(p, 6)} for c, p in top]})

    if args.json:
        print(json.dumps({"model": args.model, "predictions": results, "failed": problems}, indent=2))
    elif results:
        rows = [[r["image"], *(f"{t['class']} {t['probability']:.3f}" for t in r["top_k"])] for r in results]
        print(tabulate(rows, headers=["image", *(f"top-{k}" for k in range(1, args.top_k + 1))]))
        print(f"\nfigures: {args.out}/")
    if problems:
        print(f"error: {len(problems)} of {len(problems) + len(pictures)} inputs failed (listed above); "
              f"{len(pictures)} processed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
