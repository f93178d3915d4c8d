"""report: reports/SUITE/results.md, summary.json, intervals.png and robustness/ for the suite's trials.

    python -m stages.report

Reads the params it declares (suite_name; runs and trials: which runs and seeds exist, in order)
and each trial's records: config.json, metrics.json and the other experiments' (robustness.json,
transfer/*.json, segmentation/*.json). results.md: the mean over seeds per run with its 95%
interval next to the paper's number, the paper's comparisons (Welch intervals and a verdict), the
FGSM, transfer and segmentation tables, every trial, the deviations ledger. summary.json: the same
numbers, nested, for `dvc metrics`. The work is lpa.report.suite's.
"""
from __future__ import annotations

import sys

from lpa.layout import suite_dir
from lpa.config.params import stage_params
from lpa.config.stage_runner import run_stage
from lpa.report.suite import write_suite_report


def main() -> None:
    params = stage_params("report")
    suite = params["suite_name"]
    done = write_suite_report(suite, list(params["trials"]))
    if done.missing:
        print(f"report: no metrics.json yet for {', '.join(done.missing)}: reported as not run", file=sys.stderr)
    print(f"report: {done.trials} trials of {done.runs} runs, {done.comparisons} comparisons -> {suite_dir(suite)}")


if __name__ == "__main__":
    run_stage(main, "python -m stages.report")
