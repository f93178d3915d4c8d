"""report: reports/results.md (every run next to the paper and other reproductions, then the
deviations ledger) and reports/summary.json (numbers only, for `dvc metrics`).

    python -m stages.report

Reads the `runs` param (which runs exist, in order) and each run's config.json and metrics.json.
"""
from __future__ import annotations

from pathlib import Path

from lpa.cli import run_stage
from lpa.config import stage_params
from lpa.files import write_json, write_text
from lpa.report import load_deviations, load_reference_numbers, load_run, render_results_md, results_table, summary_json


def main() -> None:
    runs = [load_run(Path("reports/runs") / run) for run in stage_params("report")["runs"]]
    table = results_table(runs)
    write_text("reports/results.md",
               render_results_md(table, load_deviations(), reference=load_reference_numbers()))
    write_json("reports/summary.json", summary_json(table))


if __name__ == "__main__":
    run_stage(main, "python -m stages.report", nargs=0)
