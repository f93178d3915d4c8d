"""Run many commands on a few devices: one command per device slot, the next one started as a slot
frees. The engine of `python -m lpa.tools.launch` (the table across GPUs), kept free of DVC.

A job is a command with a name, an environment and the names of the jobs it waits for. Each
slot is a device ("0", "1", ... a CUDA device index, or "cpu"); a job runs with
CUDA_VISIBLE_DEVICES set to its slot's device (empty for "cpu", so it cannot touch a GPU), its
output in its own log file. A failed job does not stop the others; the jobs that wait for it are
skipped. Progress: one line per job when it starts, at each new epoch its log shows (device,
epoch, ETA) and when it ends.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# "<name> epoch 3/300: ..." as lpa.train.engine prints each epoch
EPOCH_LINE = re.compile(rb"epoch (\d+)/(\d+):")


@dataclass
class Job:
    name: str
    command: list[str]
    log: Path
    after: tuple[str, ...] = ()  # names of jobs that must be done first
    state: str = "pending"       # pending | running | done | failed | skipped
    device: str = ""
    started: float = 0.0
    seconds: float = 0.0
    epoch: tuple[int, int] | None = None
    reason: str = ""
    retried: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)


def parse_devices(text: str) -> list[str]:
    """'0,1,3' -> ['0', '1', '3']; 'cpu' -> ['cpu']. ValueError with the reason otherwise."""
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices:
        raise ValueError("no device given: --devices takes a comma-separated list such as 0,1,2,3 or cpu")
    bad = [d for d in devices if d != "cpu" and not d.isdigit()]
    if bad:
        raise ValueError(f"device {bad[0]!r} is neither a CUDA device index (0, 1, ...) nor 'cpu'")
    if len(set(devices)) != len(devices):
        raise ValueError(f"a device is listed twice in {text!r}; use --slots-per-device to share one")
    return devices


def slot_environment(device: str, cpu_threads: int | None) -> dict[str, str]:
    """The environment of a job on `device`: only that GPU visible (none for 'cpu'); on CPU slots
    the OpenMP threads are the slot's share of the cores, `cpu_threads` (several slots must not
    oversubscribe them), unless the user set OMP_NUM_THREADS; None: PyTorch's own choice."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="" if device == "cpu" else device)
    if device == "cpu" and cpu_threads is not None and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(cpu_threads)
    return env


def last_epoch(log: Path) -> tuple[int, int] | None:
    """The last 'epoch k/E:' a log shows, read from its tail (logs of long runs are long)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            matches = EPOCH_LINE.findall(f.read())
    except OSError:
        return None
    return (int(matches[-1][0]), int(matches[-1][1])) if matches else None


def error_line(log: Path) -> str:
    """What a failed job's log says went wrong: its first `error:` line (lpa's one-line errors),
    else its last `ERROR:` line (DVC's), else ''."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    ours = [line for line in lines if line.startswith("error: ")]
    theirs = [line for line in lines if line.startswith("ERROR: ")]
    return (ours[:1] or theirs[-1:] or [""])[0][:300]


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def device_label(device: str) -> str:
    return "cpu" if device == "cpu" else f"gpu {device}"


def run_jobs(jobs: Sequence[Job], devices: Sequence[str], slots_per_device: int = 1,
             print_line: Callable[[str], None] = print, poll_seconds: float = 1.0,
             retry_when: Callable[[Path], bool] | None = None, retries: int = 3) -> list[Job]:
    """Run `jobs` on `slots_per_device` slots of each device until every one is done, failed or
    skipped; returns them. Started in the order given, each as soon as a slot is free and the jobs
    it waits for are done. Ctrl-C stops the running ones (they resume on the next launch)."""
    slots = [d for d in devices for _ in range(slots_per_device)]
    cpu_slots = sum(d == "cpu" for d in slots)
    cpu_threads = max(1, (os.cpu_count() or 1) // max(1, cpu_slots))
    by_name = {job.name: job for job in jobs}
    free = list(slots)
    t0 = time.monotonic()

    def stamp() -> str:
        return f"[{clock(time.monotonic() - t0)}]"

    def finish(job: Job, state: str, reason: str = "") -> None:
        job.state, job.reason = state, reason
        job.seconds = time.monotonic() - job.started if job.started else 0.0
        where = f" on {device_label(job.device)}" if job.device else ""
        tail = f" ({reason})" if reason else ""
        print_line(f"{stamp()} {job.name}: {state}{where}{tail}" + (f" in {clock(job.seconds)}" if job.started else ""))

    try:
        while any(job.state in ("pending", "running") for job in jobs):
            for job in jobs:  # skip what waits for a job that will not be done
                if job.state == "pending":
                    blocked = [a for a in job.after if by_name[a].state in ("failed", "skipped")]
                    if blocked:
                        finish(job, "skipped", f"{blocked[0]} {by_name[blocked[0]].state}")
            for job in jobs:
                if job.state == "pending" and free and all(by_name[a].state == "done" for a in job.after):
                    job.device = free.pop(0)
                    job.log.parent.mkdir(parents=True, exist_ok=True)
                    with open(job.log, "wb") as log:
                        job.process = subprocess.Popen(job.command, stdout=log, stderr=subprocess.STDOUT,
                                                       env=slot_environment(job.device, cpu_threads))
                    job.state, job.started = "running", time.monotonic()
                    print_line(f"{stamp()} {job.name}: started on {device_label(job.device)}, log {job.log}")
            time.sleep(poll_seconds)
            for job in jobs:
                if job.state != "running":
                    continue
                epoch = last_epoch(job.log)
                if epoch and epoch != job.epoch:
                    job.epoch = epoch
                    done, total = epoch
                    eta = (time.monotonic() - job.started) / done * (total - done)
                    print_line(f"{stamp()} {job.name}: {device_label(job.device)} epoch {done}/{total} "
                               f"ETA {clock(eta)}")
                code = job.process.poll()
                if code is not None and code != 0 and retry_when and job.retried < retries and retry_when(job.log):
                    free.append(job.device)  # a transient failure (retry_when says so): run it again
                    job.retried += 1
                    job.state, job.epoch = "pending", None
                    print_line(f"{stamp()} {job.name}: {error_line(job.log)[:120]}; retry {job.retried} of {retries}")
                    continue
                if code is not None:
                    free.append(job.device)
                    finish(job, "done" if code == 0 else "failed",
                           "" if code == 0 else error_line(job.log) or f"exit code {code}")
    except KeyboardInterrupt:
        for job in jobs:
            if job.state == "running":
                job.process.terminate()
        for job in jobs:
            if job.state == "running":
                job.process.wait()
                finish(job, "failed", "interrupted")
            elif job.state == "pending":
                job.state, job.reason = "skipped", "interrupted"
    return list(jobs)


def summary_table(jobs: Sequence[Job]) -> str:
    """One row per job: name, state, device, time, and the log of a failed one."""
    rows = [("run", "state", "device", "time", "log / reason")]
    for job in jobs:
        note = str(job.log) if job.state == "failed" else job.reason
        if job.state == "failed" and job.reason:
            note += f" ({job.reason})"
        rows.append((job.name, job.state, device_label(job.device) if job.device else "-",
                     clock(job.seconds) if job.started else "-", note))
    widths = [max(len(r[k]) for r in rows) for k in range(4)]
    return "\n".join("  ".join(r[k].ljust(widths[k]) for k in range(4)) + "  " + r[4] for r in rows).rstrip()


def counts(jobs: Sequence[Job]) -> Mapping[str, int]:
    out: dict[str, int] = {}
    for job in jobs:
        out[job.state] = out.get(job.state, 0) + 1
    return out


def python_module(module: str, *args: str) -> list[str]:
    """A command running `python -m module args` with this interpreter (this environment's DVC)."""
    return [sys.executable, "-m", module, *args]
