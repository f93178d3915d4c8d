"""report: reports/SUITE/results.md, summary.json and intervals.png for the suite's trials.

    python -m stages.report

Reads the params it declares (suite_name; runs and trials: which runs and seeds exist, in order)
and each trial's config.json, metrics.json and the other experiments' records (robustness.json,
transfer/*.json, segmentation/*.json). results.md: the mean over seeds per run with its
95% interval next to the paper's number, the paper's comparisons (Welch intervals and a verdict),
the FGSM curves, the transfer and segmentation tables, every trial, the deviations ledger. summary.json: the same numbers, nested, for
`dvc metrics`. robustness/<dataset>.png: the FGSM curves of the attention runs and baselines.
"""
from __future__ import annotations

import sys

from lpa.aggregate import comparisons, run_summary
from lpa.files import atomic_path, write_json, write_text
from lpa.interval_figure import save_interval_figure
from lpa.layout import record_dir, suite_dir
from lpa.params import stage_params
from lpa.report import (load_deviations, load_reference_numbers, load_trials, render_results_md, results_table,
                        suite_header, summary_json)
from lpa.robustness_report import (load_robustness, render_robustness_md, robustness_json, robustness_summary,
                                   save_robustness_figures)
from lpa.segmentation_report import load_segmentation, render_segmentation_md, segmentation_json, segmentation_summary
from lpa.stage_runner import run_stage
from lpa.transfer_report import (load_transfer, render_transfer_md, transfer_differences, transfer_json,
                                 transfer_summary)


def main() -> None:
    params = stage_params("report")
    suite = params["suite_name"]
    dirs = [record_dir(suite, trial) for trial in params["trials"]]
    records, missing = load_trials(dirs)
    if missing:
        print(f"report: no metrics.json yet for {', '.join(missing)}: reported as not run", file=sys.stderr)
    table = results_table(records)
    runs = run_summary(table)
    configs = {r["run"]: r["config"] for r in records}
    comps = comparisons(table, configs)
    header = suite_header(suite, records)
    if missing:
        header += f" Not run yet (no evaluated record): {', '.join(missing)}."
    evaluated = {r["trial"] for r in records}
    done = [d for d in dirs if d.name in evaluated]  # in the order of `records`
    robustness = robustness_summary(load_robustness(records, done))
    transfer = transfer_summary(load_transfer(records, done))
    segmentation = segmentation_summary(load_segmentation(records, done))
    out = suite_dir(suite)
    write_text(out / "results.md", render_results_md(table, load_deviations(), extra_header=header,
                                                     reference=load_reference_numbers(), runs=runs,
                                                     comparisons=comps,
                                                     extra_sections=[
                                                         render_robustness_md(robustness),
                                                         render_transfer_md(transfer, transfer_differences(transfer)),
                                                         render_segmentation_md(segmentation)]))
    write_json(out / "summary.json", {**summary_json(table, runs, comps), "robustness": robustness_json(robustness),
                                      "transfer": transfer_json(transfer),
                                      "segmentation": segmentation_json(segmentation)})
    with atomic_path(out / "robustness", directory=True) as tmp:
        save_robustness_figures(robustness, tmp, title=f"suite {suite}, FGSM")
    save_interval_figure(table, runs, out / "intervals.png", title=f"suite {suite}: top-1 error over seeds")
    print(f"report: {len(records)} trials of {len(runs)} runs, {len(comps)} comparisons -> {out}")


if __name__ == "__main__":
    run_stage(main, "python -m stages.report", nargs=0)
