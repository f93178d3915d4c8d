"""Tools around the pipeline: they call into every layer below, nothing calls them.

    lpa.tools.bench     training throughput (`python -m lpa.tools.bench`)
    lpa.tools.estimate  FLOP-based wall-time estimate of a suite (`python -m lpa.tools.estimate`)
    lpa.tools.slots     device slots, their environments and the job table of the launcher
    lpa.tools.launch    every pending train stage across devices (`python -m lpa.tools.launch`)
    lpa.tools.job_group one `dvc repro` as a process group that stops with its launcher
    lpa.tools.gpu_check what only a GPU can show, in one report (`make gpu-check`)
"""
