"""The report: run records in, tables, intervals and figures out. Torch-free.

    lpa.report.notation         the paper's notation of a run config ((VGG-att2)-concat-pc ...)
    lpa.report.reference        the paper's and other reproductions' numbers, the deviations ledger
    lpa.report.records          reading run records (load_trial, load_trials, read_record)
    lpa.report.machines         which machines made a suite's records (the header's list)
    lpa.report.tables           the results table, summary.json and results.md
    lpa.report.stats            t and Welch intervals
    lpa.report.aggregate        mean/sd over seeds, the paper's comparisons
    lpa.report.claims           the paper's comparisons as tables and one sentence each, from the interval
    lpa.report.interval_figure  the intervals figure
    lpa.report.seed_figure      one measure per run with its seeds as dots (transfer, Jaccard)
    lpa.report.map_stats        attention-map statistics per run and level (largest weight, entropy)
    lpa.report.overlay_grid     photos, masks and each method's thresholded map in one grid
    lpa.report.robustness / transfer / segmentation   one experiment's section each
    lpa.report.suite            write_suite_report: what stages/report.py writes
"""
