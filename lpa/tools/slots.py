"""Run many commands on a few devices: one command per device slot, the next one started as a slot
frees. The engine of `python -m lpa.tools.launch` (the table across GPUs), kept free of DVC.

A job is a command with a name, an environment, the names of the jobs it waits for and its number
of training processes. Each slot is a device ("cpu", or a GPU as CUDA names it: an index, a
`GPU-<uuid>` or a `MIG-<uuid>`); a job runs with CUDA_VISIBLE_DEVICES set to its slot's device
(empty for "cpu", so it cannot touch a GPU), a job of P processes with P GPUs (one slot on each
of P devices) or one CPU slot; its output in its own log file. A failed job does not stop the
others; the jobs that wait for it are skipped. Progress: one line per job when it starts, at each
new epoch its log shows (device, epoch, ETA) and when it ends.

GPU indices are this process's: inside an allocation that already set CUDA_VISIBLE_DEVICES (a
SLURM job exposing GPUs 4-7), index i is the i-th GPU of that list, never physical GPU i, which
belongs to someone else. Indices count in PCI bus order (CUDA_DEVICE_ORDER=PCI_BUS_ID, the order
of nvidia-smi) unless the environment chose an order.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from lpa.tools.job_group import guarded

# "<name> epoch 3/300: ..." as lpa.train.engine prints each epoch
EPOCH_LINE = re.compile(rb"epoch (\d+)/(\d+):")
# a GPU or MIG instance by its UUID, as nvidia-smi -L prints it (CUDA_VISIBLE_DEVICES takes both)
DEVICE_UUID = re.compile(r"(GPU|MIG)-[0-9A-Za-z/-]+")


@dataclass
class Job:
    name: str
    command: list[str]
    log: Path
    after: tuple[str, ...] = ()  # names of jobs that must be done first
    processes: int = 1           # training processes (train.distributed.processes): one GPU each
    state: str = "pending"       # pending | running | done | failed | skipped
    device: str = ""             # what CUDA_VISIBLE_DEVICES holds while it runs ("cpu": none)
    started: float = 0.0
    seconds: float = 0.0
    epoch: tuple[int, int] | None = None
    reason: str = ""
    process: subprocess.Popen | None = field(default=None, repr=False)


def parse_devices(text: str, inherited: str | None = None) -> list[str]:
    """'0,1,3' -> ['0', '1', '3']; 'cpu' -> ['cpu']; GPU-/MIG- UUIDs as given. `inherited`: the
    CUDA_VISIBLE_DEVICES this process was started with (None: unset), through which indices are
    mapped (index i -> its i-th entry). ValueError with the reason otherwise."""
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices:
        raise ValueError("no device given: --devices takes a comma-separated list such as 0,1,2,3 or cpu")
    bad = [d for d in devices if d != "cpu" and not d.isdigit() and not DEVICE_UUID.fullmatch(d)]
    if bad:
        raise ValueError(f"device {bad[0]!r} is neither a CUDA device index (0, 1, ...), a GPU-/MIG- UUID "
                         "(nvidia-smi -L) nor 'cpu'")
    devices = [visible_device(d, inherited) if d.isdigit() else d for d in devices]
    if len(set(devices)) != len(devices):
        raise ValueError(f"a device is listed twice in {text!r}; use --slots-per-device to share one")
    return devices


def visible_device(index: str, inherited: str | None) -> str:
    """The device CUDA_VISIBLE_DEVICES must name for this process's GPU `index`: the index itself
    when nothing was inherited, else the inherited list's entry (a child's CUDA_VISIBLE_DEVICES
    replaces the parent's, so a raw index would name a physical GPU outside the allocation)."""
    if inherited is None:
        return index
    visible = [d.strip() for d in inherited.split(",") if d.strip()]
    if int(index) >= len(visible):
        raise ValueError(f"device {index} is not among the {len(visible)} GPU(s) this process may use: "
                         f"CUDA_VISIBLE_DEVICES={inherited!r} (indices 0 to {len(visible) - 1} name its entries)"
                         if visible else
                         f"device {index}: this process may use no GPU (CUDA_VISIBLE_DEVICES={inherited!r}); "
                         "use --devices cpu")
    return visible[int(index)]


def gpus_of(devices: Sequence[str]) -> list[str]:
    return [d for d in devices if d != "cpu"]


def check_fits(jobs: Sequence[Job], devices: Sequence[str]) -> None:
    """ValueError naming the first job of P > 1 processes that `devices` cannot run: it needs P
    GPUs (one per process), or, given no GPU at all, runs its processes on the CPU."""
    gpus = gpus_of(devices)
    for job in jobs:
        if job.processes > 1 and gpus and job.processes > len(gpus):
            raise ValueError(f"{job.name} trains on {job.processes} processes (train.distributed.processes), one "
                             f"GPU each, but --devices gives {len(gpus)} GPU(s): give at least {job.processes}, or "
                             f"set its run's train.distributed.processes to at most {len(gpus)}")


def take_slot(free: list[str], gpus: int) -> str | None:
    """Remove from `free` (a device once per free slot) the slot(s) of a job and return its
    CUDA_VISIBLE_DEVICES ('cpu': the CPU), or None while they are busy: `gpus` = 1, the first
    free slot; more, one slot on each of that many distinct GPUs."""
    if gpus == 1:
        return free.pop(0) if free else None
    chosen = list(dict.fromkeys(d for d in free if d != "cpu"))[:gpus]
    if len(chosen) < gpus:
        return None
    for device in chosen:
        free.remove(device)
    return ",".join(chosen)


def slot_environment(device: str, threads: int | None) -> dict[str, str]:
    """The environment of a job on `device` (a CUDA_VISIBLE_DEVICES value, or 'cpu'): only those
    GPUs visible (none for 'cpu'), counted in PCI bus order unless the environment chose an order;
    `threads` OpenMP threads per process (the job's share of the cores: slots on one machine must
    not each start a pool of all its cores), unless the user set OMP_NUM_THREADS; None: PyTorch's
    own choice."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="" if device == "cpu" else device)
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def threads_per_process(cores: int, slots: int, taken: int, processes: int) -> int:
    """OpenMP threads of each of a job's `processes` when it holds `taken` of `slots` slots on a
    machine of `cores` cores: its slots' share of the cores, split among its processes."""
    return max(1, cores // max(1, slots) * taken // processes)


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
    return "cpu" if device == "cpu" else f"gpu {device}" if "," not in device else f"gpus {device}"


def run_jobs(jobs: Sequence[Job], devices: Sequence[str], slots_per_device: int = 1,
             print_line: Callable[[str], None] = print, poll_seconds: float = 1.0) -> list[Job]:
    """Run `jobs` on `slots_per_device` slots of each device until every one is done, failed or
    skipped; returns them. Started in the order given, each as soon as its slots are free and the
    jobs it waits for are done (a job of several processes waiting for GPUs lets later ones by).
    Ctrl-C stops the running ones (they resume on the next launch). ValueError (check_fits) if a
    job can never get its GPUs."""
    check_fits(jobs, devices)
    slots = [d for d in devices for _ in range(slots_per_device)]
    on_gpus = bool(gpus_of(devices))
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
                if job.state != "pending" or not all(by_name[a].state == "done" for a in job.after):
                    continue
                gpus = job.processes if job.processes > 1 and on_gpus else 1
                device = take_slot(free, gpus)
                if device is None:
                    continue
                job.device = device
                threads = threads_per_process(os.cpu_count() or 1, len(slots), gpus, job.processes)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                with open(job.log, "wb") as log:
                    job.process = subprocess.Popen(guarded(job.command), stdout=log, stderr=subprocess.STDOUT,
                                                   env=slot_environment(job.device, threads))
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
                if code is not None:
                    free.extend(job.device.split(","))
                    finish(job, "done" if code == 0 else "failed",
                           "" if code == 0 else error_line(job.log) or f"exit code {code}")
    except KeyboardInterrupt:
        for job in jobs:
            if job.state == "running":
                job.process.terminate()
        for job in jobs:
            if job.state == "running":  # one that ended on its own as the Ctrl-C came is done, not failed
                if job.process.wait() == 0:
                    finish(job, "done")
                else:
                    finish(job, "failed", "interrupted")
            elif job.state == "pending":
                job.state, job.reason = "skipped", "interrupted"
    return list(jobs)


def summary_table(jobs: Sequence[Job]) -> str:
    """One row per job: name, state, device, time, and the log of a failed one."""
    rows = []
    for job in jobs:
        note = str(job.log) if job.state == "failed" else job.reason
        if job.state == "failed" and job.reason:
            note += f" ({job.reason})"
        rows.append((job.name, job.state, device_label(job.device) if job.device else "-",
                     clock(job.seconds) if job.started else "-", note))
    return tabulate(rows, headers=("run", "state", "device", "time", "log / reason"), tablefmt="plain",
                    disable_numparse=True)


def counts(jobs: Sequence[Job]) -> Counter[str]:
    """How many jobs are in each state."""
    return Counter(job.state for job in jobs)


def python_module(module: str, *args: str) -> list[str]:
    """A command running `python -m module args` with this interpreter (this environment's DVC)."""
    return [sys.executable, "-m", module, *args]
