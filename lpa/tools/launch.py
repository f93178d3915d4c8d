"""The table across GPUs: every pending train stage of the current params, one per device slot.

    python -m lpa.tools.launch --devices 0,1,2,3 [--slots-per-device 2] [--logs logs/launch] [--no-finish]
    make table DEVICES=0,1,2,3

Not a DVC stage: the driver of several `dvc repro` processes, on DVC's own machinery (DVC runs
stages of one repository concurrently when each is its own `dvc repro`, with per-output locks;
`dvc queue` cannot give a worker a device, iterative/dvc#4586). In order:

1. the data stages (download@, preprocess@ of data.datasets), once, in one `dvc repro`;
2. the train@/finetune@ stages `dvc status` reports as not done, each as
   `dvc --wait-for-lock repro --single-item <stage>` with CUDA_VISIBLE_DEVICES set to its slot's
   device (a trial of train.distributed.processes = P > 1: P GPUs, one slot on each; refused
   before anything runs when --devices gives fewer GPUs), its output in
   logs/launch/<suite>/<trial>.log, the next one started as a slot frees (a finetune@ waits for
   its parent; skipped if the parent failed). An interrupted one resumes from its checkpoint;
3. when every run is done, one `dvc repro` for the rest (evaluation, experiments, report).

Every DVC command here passes `--wait-for-lock`: a `dvc repro` takes the repository lock to
start, lets go of it while its stage runs and takes it again to write dvc.lock. Without the flag
DVC gives up after 3 s when another `dvc repro` holds it. At the end of a run that threw the
finished run away (model written, checkpoints removed, not in dvc.lock: the next repro trained
it from scratch; seen on a loaded 2-core machine with two slots), and a launch right after a
killed one failed while the old runs' DVC processes were still exiting.

A failed run does not stop the others; the summary lists each as done, failed (with its log) or
skipped, and the exit code is 1 if any failed. Launching again runs only what is not done.

Several machines: one checkout they all see, `--share K/N` on machine K (every N-th train run,
each finetune@ with its parent), after the data stages were run once. `--list` prints the pending
stages instead of running them, one per line with its number of processes (GPUs): the input of
docs/cluster/submit.sh (SLURM arrays of docs/cluster/train-array.sbatch).

Device indices are this process's: inside an allocation that set CUDA_VISIBLE_DEVICES (e.g. GPUs
4-7), `--devices 0,1` takes its first two GPUs (lpa.tools.slots).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from lpa.config.run import check_params, resolve_trial
from lpa.errors import DataError
from lpa.errors import ConfigError
from lpa.config.params import load_params
from lpa.tools.job_group import guarded
from lpa.tools.slots import (Job, check_fits, counts, parse_devices, python_module, run_jobs, slot_environment,
                             summary_table)


def dvc(*args: str) -> list[str]:
    """A DVC command that waits for the repository lock (see --wait-for-lock above)."""
    return python_module("dvc", "--wait-for-lock", *args)


def run_logged(command: list[str], log: Path, device: str) -> int:
    """Run `command` to completion with its output in `log` (one process: the whole device)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        return subprocess.run(guarded(command), stdout=out, stderr=subprocess.STDOUT,
                              env=slot_environment(device, threads=None)).returncode


def pending_stages(stages: list[str]) -> set[str]:
    """Which of `stages` DVC says are not done (changed deps, params or missing outputs)."""
    if not stages:
        return set()
    proc = subprocess.run(dvc("status", "--json", *stages), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"`dvc status` failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return set(json.loads(proc.stdout or "{}"))


def parse_share(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N): this machine's share of the runs, one of N machines (K = 0 .. N-1)."""
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise ValueError(f"--share {text!r}: expected K/N with 0 <= K < N, e.g. 0/4 on the first of 4 machines")
    return int(k), int(n)


def stages_of_share(params: dict, share: tuple[int, int]) -> list[tuple[str, str, str | None]]:
    """(stage, trial, parent trial or None) of the train@ and finetune@ stages machine K of N takes:
    every N-th train trial in params order, and each finetune@ with its parent (its dep is the
    parent's model file)."""
    k, n = share
    train = params["trial_groups"]["train"]
    mine = {t for i, t in enumerate(train) if i % n == k}
    out: list[tuple[str, str, str | None]] = [(f"train@{t}", t, None) for t in train if t in mine]
    for trial in params["trial_groups"]["finetune"]:
        parent = resolve_trial(params, trial)["init_trial"]
        if parent in mine:
            out.append((f"finetune@{trial}", trial, parent))
    return out


def trial_processes(params: dict, trial: str) -> int:
    """How many training processes (one GPU each) `trial` runs on: train.distributed.processes."""
    return resolve_trial(params, trial)["train"]["distributed"]["processes"]


def plan_jobs(stages: list[tuple[str, str, str | None]], pending: set[str], logs: Path,
              processes: dict[str, int] | None = None) -> list[Job]:
    """One job per pending stage; a finetune@ waits for its parent when that is pending.
    `processes`: trial -> its training processes, where not 1."""
    jobs = []
    for stage, trial, parent in stages:
        if stage not in pending:
            continue
        after = (parent,) if parent and f"train@{parent}" in pending else ()
        command = dvc("repro", "--single-item", stage)
        jobs.append(Job(trial, command, logs / f"{trial}.log", after, (processes or {}).get(trial, 1)))
    return jobs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lpa.tools.launch", description=__doc__.split("\n")[0])
    p.add_argument("--devices", required=True, help="CUDA device indices, e.g. 0,1,2,3 (of the GPUs an inherited "
                                                    "CUDA_VISIBLE_DEVICES allows), GPU-/MIG- UUIDs; or cpu")
    p.add_argument("--slots-per-device", type=int, default=1, help="runs at once on each device (small models)")
    p.add_argument("--logs", type=Path, default=Path("logs/launch"), help="per-run logs go to LOGS/<suite>/")
    p.add_argument("--no-finish", action="store_true", help="train only; no final `dvc repro`")
    p.add_argument("--share", default="0/1", help="K/N: machine K of N on one shared checkout takes its share of "
                                                  "the runs; needs the data stages done; implies --no-finish")
    p.add_argument("--list", action="store_true", help="run the data stages, print the pending train@/finetune@ "
                                                       "stages one per line with their training processes "
                                                       "(GPUs), e.g. for docs/cluster/submit.sh, and stop")
    args = p.parse_args(argv)
    try:
        share = parse_share(args.share)
        devices = parse_devices(args.devices, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if args.slots_per_device < 1:
            raise ValueError(f"--slots-per-device must be at least 1, not {args.slots_per_device}")
        if not Path("dvc.yaml").exists():
            raise ConfigError("no dvc.yaml here: run the launcher from the repository's root")
        params = load_params()
        check_params(params)
    except (ValueError, ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    logs = args.logs / params["suite_name"]
    data_stages = [f"{kind}@{d}" for d in params["data"]["datasets"] for kind in ("download", "preprocess")]
    stages = stages_of_share(params, share)
    try:
        if share[1] > 1:  # N launchers on one checkout: the data stages were run once, before them
            stale = pending_stages(data_stages)
            if stale:
                raise ConfigError(f"with --share, run the data stages once before the launchers: "
                                  f"dvc repro {' '.join(sorted(stale))}")
        else:
            print(f"data: {' '.join(data_stages)} (log {logs / 'data.log'})",
                  file=sys.stderr if args.list else sys.stdout, flush=True)
            if run_logged(dvc("repro", *data_stages), logs / "data.log", "cpu") != 0:
                raise ConfigError(f"the data stages failed; see {logs / 'data.log'}")
        processes = {trial: trial_processes(params, trial) for _, trial, _ in stages}
        jobs = plan_jobs(stages, pending_stages([stage for stage, _, _ in stages]), logs, processes)
        if args.list:  # one line per stage: its name and its processes (a SLURM task needs as many GPUs)
            for job in jobs:
                print(job.command[-1], job.processes)
            return 0
        check_fits(jobs, devices)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"runs: {len(jobs)} to train, {len(stages) - len(jobs)} up to date; "
          f"{args.slots_per_device} slot(s) on each of {', '.join(devices)}", flush=True)
    run_jobs(jobs, devices, args.slots_per_device, print_line=lambda line: print(line, flush=True))
    if jobs:
        print(summary_table(jobs))
    states = counts(jobs)
    failed = states["failed"] + states["skipped"]
    if failed:
        print(f"error: {failed} of {len(jobs)} runs not done (failed or skipped; logs above); fix them and "
              "launch again: runs that are done are not run again", file=sys.stderr)
        return 1
    if args.no_finish or share[1] > 1:
        return 0
    finish_log = logs / "finish.log"
    print(f"evaluation, experiments and report: dvc repro (log {finish_log})", flush=True)
    if run_logged(dvc("repro"), finish_log, devices[0]) != 0:
        print(f"error: the final `dvc repro` failed; see {finish_log}", file=sys.stderr)
        return 1
    print("done: every stage is up to date", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
