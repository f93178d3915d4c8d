"""Everything the report stage writes for a suite, from its trials' records: results.md (the table,
the paper's comparisons, the other experiments' sections, the deviations ledger), summary.json (the
same numbers, nested, for `dvc metrics`), intervals.png and robustness/<dataset>.png. No DVC, no
params: stages/report.py says which suite and which trials.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lpa.report.aggregate import comparisons, run_summary
from lpa.files import atomic_path, write_json, write_text
from lpa.report.interval_figure import save_interval_figure
from lpa.layout import record_dir, suite_dir
from lpa.report.tables import (load_deviations, load_reference_numbers, load_trials, render_results_md, results_table,
                        suite_header, summary_json)
from lpa.report.robustness import (load_robustness, render_robustness_md, robustness_json, robustness_summary,
                                   save_robustness_figures)
from lpa.report.segmentation import load_segmentation, render_segmentation_md, segmentation_json, segmentation_summary
from lpa.report.transfer import (load_transfer, render_transfer_md, transfer_differences, transfer_json,
                                 transfer_summary)


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
    robustness = robustness_summary(load_robustness(records, dirs))
    transfer = transfer_summary(load_transfer(records, dirs))
    segmentation = segmentation_summary(load_segmentation(records, dirs))
    sections = [render_robustness_md(robustness), render_transfer_md(transfer, transfer_differences(transfer)),
                render_segmentation_md(segmentation)]

    out = suite_dir(suite)
    write_text(out / "results.md", render_results_md(table, load_deviations(), extra_header=header,
                                                     reference=load_reference_numbers(), runs=runs,
                                                     comparisons=comps, extra_sections=sections))
    write_json(out / "summary.json", {**summary_json(table, runs, comps), "robustness": robustness_json(robustness),
                                      "transfer": transfer_json(transfer),
                                      "segmentation": segmentation_json(segmentation)})
    with atomic_path(out / "robustness", directory=True) as tmp:
        save_robustness_figures(robustness, tmp, title=f"suite {suite}, FGSM")
    save_interval_figure(table, runs, out / "intervals.png", title=f"suite {suite}: top-1 error over seeds")
    return SuiteReport(len(records), len(runs), len(comps), missing)
