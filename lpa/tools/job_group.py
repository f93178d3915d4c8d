"""Run one command as a process group that stops with its launcher, however the launcher ends.

    python -m lpa.tools.job_group LAUNCHER_PID -- COMMAND [ARG ...]

lpa.tools.launch starts each `dvc repro` through this guard (`guarded`). The command runs in a
session of its own (DVC, the stage, torchrun's agent: its training processes die with the agent,
lpa.train.distributed); the guard stops that whole group when it gets SIGTERM or SIGINT (the
launcher's Ctrl-C) and when the launcher dies, even killed outright (kill -9, the OOM killer):
Linux's PR_SET_PDEATHSIG sends the guard SIGTERM then. So no run goes on training behind DVC's
back.

Stopping (stop_group) interrupts the stage, not DVC: SIGINT goes to every process of the group
but its leader, the `dvc repro` (the stage exits as on Ctrl-C; DVC reports it failed, releases
its repository locks and exits), then SIGKILL to whatever is left after GRACE_S seconds. DVC
ignores SIGINT while its stage runs anyway; once the stage has ended, DVC is hashing its outputs
and writing dvc.lock, and a SIGINT then would throw away a run that had just finished: its
model file on disk and its checkpoints removed, but not in the lock, so the next `dvc repro`
trains it again from scratch. Left alone, DVC records it and exits 0 within the grace. A lock of
a DVC killed outright is not stuck either: `.dvc/tmp/lock` is an fcntl lock the kernel drops with
its process, and DVC removes `.dvc/tmp/rwlock` entries of dead pids.

Exit code: the command's (0 when it finished as the stop came), or 128 + the signal that stopped
it. Not a DVC stage; no torch.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# how long the stopped group gets to exit on SIGINT (DVC writes its lock files back) before SIGKILL
GRACE_S = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# how often the guard looks whether it was told to stop while its command runs
POLL_S = 0.1


def guarded(command: Sequence[str]) -> list[str]:
    """`command` run under this guard, tied to this process (the launcher)."""
    return [sys.executable, "-m", "lpa.tools.job_group", str(os.getpid()), "--", *command]


def die_with(parent: int) -> None:
    """Have the kernel send this process SIGTERM when its parent dies; if `parent` is already
    gone (it died before the request was in place), SIGTERM now."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def stop_group(child: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """Stop `child`'s process group: SIGINT to each process in it but `child` itself (the stage
    under DVC, and what the stage started), also to those that appear meanwhile (a stage DVC was
    about to start), until `child` exits; SIGKILL to what is left after `grace_s` seconds, or at
    once when `child` has exited (its stragglers are not waited for). Where the group cannot be
    listed (no /proc), SIGINT goes to the whole group, `child` included."""
    deadline = time.monotonic() + grace_s
    told: set[int] = set()
    while True:
        members = group_members(child.pid)
        if members is None:
            if not told:
                send(child.pid, signal.SIGINT)
                told.add(child.pid)
        else:
            for pid in sorted(members - told - {child.pid}):
                send(pid, signal.SIGINT, group=False)
                told.add(pid)
        try:
            child.wait(timeout=min(POLL_S, max(deadline - time.monotonic(), 0.0)))
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                break
    send(child.pid, signal.SIGKILL)
    child.wait()


def group_members(group: int) -> set[int] | None:
    """The pids of the processes in process group `group`, read from /proc; None without /proc."""
    proc = "/proc"
    if not os.path.isdir(proc):
        return None
    members = set()
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # it exited while we looked
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ")"
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[2]) == group:
            members.add(int(name))
    return members


def send(pid: int, signum: int, group: bool = True) -> None:
    """`signum` to process group `pid` (or, `group` false, to the one process), if still there."""
    try:
        (os.killpg if group else os.kill)(pid, signum)
    except (ProcessLookupError, PermissionError):  # gone already
        pass


def run_guarded(parent: int, command: Sequence[str], grace_s: float = GRACE_S) -> int:
    """Run `command` in a session of its own until it exits, or until this process is told to stop
    or `parent` dies (then stop_group); its exit code, or 128 + the stopping signal (0 when the
    stopped command still exited 0)."""
    # The handler only records the signal. It used to raise, and on Ctrl-C the launcher's SIGTERM
    # follows the terminal's SIGINT within microseconds: the second handler then raised out of the
    # stopping itself, the guard died with a traceback and its run trained on behind DVC's back
    # (seen under pytest-xdist load: the killed-launcher test found the runs done, not resumable).
    stops: list[int] = []

    def stop(signum: int, _frame) -> None:
        stops.append(signum)

    # blocked while the child starts: a stop arriving then is handled once `child` exists
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    die_with(parent)
    # a blocked signal stays blocked across fork and exec: without the unblock in the child, DVC and
    # the stage would never see the SIGINT of stop_group and would train on until its SIGKILL
    child = subprocess.Popen(list(command), start_new_session=True,
                             preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    while not stops:
        try:
            return child.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
    if child.poll() is not None:
        return child.returncode  # it had ended on its own as the stop came
    stop_group(child, grace_s)
    # 0: DVC was recording a stage that had finished, and did (see the module docstring)
    return 0 if child.returncode == 0 else 128 + stops[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or not args[0].isdigit() or args[1] != "--":
        print("usage: python -m lpa.tools.job_group LAUNCHER_PID -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    return run_guarded(int(args[0]), args[2:])


if __name__ == "__main__":
    raise SystemExit(main())
