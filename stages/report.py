"""report: reports/SUITE/results.md, summary.json and intervals.png for the suite's trials.

    python -m stages.report

Reads the params it declares (suite_name; runs and trials: which runs and seeds exist, in order)
and each trial's config.json and metrics.json. results.md: the mean over seeds per run with its
95% interval next to the paper's number, the paper's comparisons (Welch intervals and a verdict),
every trial, the deviations ledger. summary.json: the same numbers, nested, for `dvc metrics`.
"""
from __future__ import annotations

import sys

from lpa.aggregate import comparisons, run_summary
from lpa.files import write_json, write_text
from lpa.interval_figure import save_interval_figure
from lpa.layout import record_dir, suite_dir
from lpa.params import stage_params
from lpa.report import (load_deviations, load_reference_numbers, load_trials, render_results_md, results_table,
                        suite_header, summary_json)
from lpa.stage_runner import run_stage


def main() -> None:
    params = stage_params("report")
    suite = params["suite_name"]
    records, missing = load_trials([record_dir(suite, trial) for trial in params["trials"]])
    if missing:
        print(f"report: no metrics.json yet for {', '.join(missing)}: reported as not run", file=sys.stderr)
    table = results_table(records)
    runs = run_summary(table)
    configs = {r["run"]: r["config"] for r in records}
    comps = comparisons(table, configs)
    header = suite_header(suite, records)
    if missing:
        header += f" Not run yet (no evaluated record): {', '.join(missing)}."
    out = suite_dir(suite)
    write_text(out / "results.md", render_results_md(table, load_deviations(), extra_header=header,
                                                     reference=load_reference_numbers(), runs=runs,
                                                     comparisons=comps))
    write_json(out / "summary.json", summary_json(table, runs, comps))
    save_interval_figure(table, runs, out / "intervals.png", title=f"suite {suite}: top-1 error over seeds")
    print(f"report: {len(records)} trials of {len(runs)} runs, {len(comps)} comparisons -> {out}")


if __name__ == "__main__":
    run_stage(main, "python -m stages.report", nargs=0)
