"""Everything the report stage writes for a suite, from its trials' records: results.md (the table,
the paper's comparisons, the other experiments' sections with their comparisons over seeds, the
attention maps' statistics, the deviations ledger), summary.json (the same numbers, nested, for
`dvc metrics`), intervals.png, robustness/<dataset>.png, transfer.png, segmentation.png and
segmentation-<dataset>-grid.png. No DVC, no params: stages/report.py says which suite and which trials.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lpa.report.aggregate import comparisons, run_summary
from lpa.files import atomic_path, write_json, write_text
from lpa.report.interval_figure import save_interval_figure
from lpa.layout import record_dir, suite_dir
from lpa.report.map_stats import load_map_stats, map_stats_json, map_stats_summary, render_map_stats_md
from lpa.report.overlay_grid import find_first_images, grid_name, save_overlay_grid
from lpa.report.records import load_trials
from lpa.report.reference import load_deviations, load_reference_numbers
from lpa.report.tables import render_results_md, results_table, suite_header, summary_json
from lpa.report.robustness import (load_robustness, render_robustness_md, robustness_json, robustness_summary,
                                   save_robustness_figures)
from lpa.report.segmentation import (FIGURE as JACCARD_FIGURE, jaccard_comparisons, jaccard_seed_table,
                                     load_segmentation, render_jaccard_seeds_md, render_segmentation_md,
                                     save_jaccard_figure, segmentation_json, segmentation_summary)
from lpa.report.transfer import (FIGURE as TRANSFER_FIGURE, load_transfer, render_transfer_md,
                                 render_transfer_seeds_md, save_transfer_figure, transfer_comparisons,
                                 transfer_differences, transfer_json, transfer_seed_table, transfer_summary)


@dataclass
class SuiteReport:
    trials: int
    runs: int
    comparisons: int
    missing: list[str]   # trials without an evaluated record (reported as not run)


def write_suite_report(suite: str, trials: Sequence[str]) -> SuiteReport:
    """Write reports/<suite>/ for `trials` (in order); trials not evaluated yet are named, not fatal."""
    records, missing = load_trials([record_dir(suite, trial) for trial in trials])
    dirs = [r["dir"] for r in records]
    table = results_table(records)
    runs = run_summary(table)
    comps = comparisons(table, {r["run"]: r["config"] for r in records})
    header = suite_header(suite, records)
    if missing:
        header += f" Not run yet (no evaluated record): {', '.join(missing)}."
    configs = {r["run"]: r["config"] for r in records}
    # how comparisons and their sentences name a run: its notation without the [options] suffix
    names = {r["run"]: r["config"].split(" [")[0] for r in table.to_dict("records")}
    robustness = robustness_summary(load_robustness(records, dirs))
    transfer_points = load_transfer(records, dirs)
    transfer = transfer_summary(transfer_points)
    segmentation_points = load_segmentation(records, dirs)
    segmentation = segmentation_summary(segmentation_points)
    maps = map_stats_summary(load_map_stats(records))
    out = suite_dir(suite)
    grids = {name: save_overlay_grid(sources, out / grid_name(name),
                                     title=f"suite {suite}, {name}: thresholded maps of the first test images")
             for name, sources in find_first_images(records, dirs).items()}
    sections = [render_robustness_md(robustness),
                render_transfer_md(transfer, transfer_differences(transfer)),
                render_transfer_seeds_md(transfer_seed_table(transfer_points),
                                         transfer_comparisons(transfer_points, configs), names,
                                         TRANSFER_FIGURE if len(transfer_points) else None),
                render_segmentation_md(segmentation),
                render_jaccard_seeds_md(jaccard_seed_table(segmentation_points),
                                        jaccard_comparisons(segmentation_points, configs), names,
                                        JACCARD_FIGURE if len(segmentation_points) else None),
                "\n".join(f"![{name}: photo, mask, centre prior and each run's thresholded map]({p.name})\n"
                          for name, p in grids.items() if p is not None),
                render_map_stats_md(maps)]

    write_text(out / "results.md", render_results_md(table, load_deviations(), extra_header=header,
                                                     reference=load_reference_numbers(), runs=runs,
                                                     comparisons=comps, extra_sections=[s for s in sections if s]))
    write_json(out / "summary.json", {**summary_json(table, runs, comps), "robustness": robustness_json(robustness),
                                      "transfer": transfer_json(transfer),
                                      "segmentation": segmentation_json(segmentation),
                                      "attention_maps": map_stats_json(maps)})
    with atomic_path(out / "robustness", directory=True) as tmp:
        save_robustness_figures(robustness, tmp, title=f"suite {suite}, FGSM")
    if len(transfer_points):
        save_transfer_figure(transfer_points, out / TRANSFER_FIGURE, title=f"suite {suite}: transfer over seeds")
    if len(segmentation_points):
        save_jaccard_figure(segmentation_points, out / JACCARD_FIGURE, title=f"suite {suite}: Jaccard over seeds")
    save_interval_figure(table, runs, out / "intervals.png", title=f"suite {suite}: top-1 error over seeds")
    return SuiteReport(len(records), len(runs), len(comps), missing)
