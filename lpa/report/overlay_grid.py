"""The report's grid of segmentations across methods: per mask dataset, the first test images
(rows) with the photo, the ground-truth mask, the thresholded centre prior and each run's
thresholded map (lowest seed), from the thumbnails segment@<trial>-on-<name> stores
(runs/<trial>/segmentation/<name>/first_images/, in lpa.thumbnails' format). Written to
reports/<suite>/segmentation-<name>-grid.png.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
# A bare Figure on the Agg canvas: no display and no pyplot global state (see lpa.experiments.figures).
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lpa.files import write_figure
from lpa.thumbnails import FOLDER, INDEX, load_thumbnails

MAX_ROWS = 4


def grid_name(dataset: str) -> str:
    return f"segmentation-{dataset}-grid.png"


def find_first_images(records: Sequence[Mapping], run_dirs: Sequence[Path]) -> dict[str, dict[str, Path]]:
    """{dataset: {run: its lowest seed's thumbnail folder}} (runs in record order)."""
    found: dict[str, dict[str, tuple[int, Path]]] = {}
    for record, run_dir in zip(records, run_dirs):
        for index in sorted(Path(run_dir).glob(f"segmentation/*/{FOLDER}/{INDEX}")):
            path = index.parent
            seed = int(record["seed"]) if record["seed"] is not None else 0
            runs = found.setdefault(path.parent.name, {})
            if record["run"] not in runs or seed < runs[record["run"]][0]:
                runs[record["run"]] = (seed, path)
    return {name: {run: path for run, (_, path) in runs.items()} for name, runs in found.items()}


def _cell(ax, picture: np.ndarray, title: str) -> None:
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1 if picture.dtype == bool else None,
              interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def save_overlay_grid(sources: Mapping[str, Path], path: Path, title: str = "") -> Path | None:
    """`sources`: run -> thumbnail folder of one dataset. Rows: the first images every source has
    (up to MAX_ROWS); columns: photo, mask, centre prior, each run's thresholded map with its Jaccard.
    None (nothing written) when there is no source."""
    if not sources:
        return None
    saved = {run: load_thumbnails(p) for run, p in sources.items()}
    first = next(iter(saved.values()))
    rows = min(MAX_ROWS, *(len(s) for s in saved.values()))
    columns = 3 + len(saved)
    fig = Figure(figsize=(1.6 * columns, 1.45 * rows + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(rows, columns, squeeze=False))
    for i in range(rows):
        _cell(axes[i, 0], first[i].image, first[i].name)
        _cell(axes[i, 1], first[i].mask, "mask")
        _cell(axes[i, 2], first[i].prior, "centre prior")
        for j, (run, s) in enumerate(saved.items()):
            _cell(axes[i, 3 + j], s[i].binary, f"{run}\nJaccard {s[i].jaccard:.2f}")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return write_figure(fig, path)
