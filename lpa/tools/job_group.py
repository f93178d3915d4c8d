"""Run one command as a process group that stops with its launcher, however the launcher ends.

    python -m lpa.tools.job_group LAUNCHER_PID -- COMMAND [ARG ...]

lpa.tools.launch starts each `dvc repro` through this guard (`guarded`). The command runs in a
session of its own (DVC, the stage, torchrun's agent: its training processes die with the agent,
lpa.train.distributed); the guard stops that whole group when it gets SIGTERM or SIGINT (the
launcher's Ctrl-C) and when the launcher dies, even killed outright (kill -9, the OOM killer):
Linux's PR_SET_PDEATHSIG sends the guard SIGTERM then. So no run goes on training behind DVC's
back, and DVC is left to clean up: stopping is SIGINT to the group first (the stage exits as on
Ctrl-C, DVC releases its repository locks and exits), then SIGKILL to whatever is left after
GRACE_S seconds. A lock of a DVC killed outright is not stuck either: `.dvc/tmp/lock` is an fcntl
lock the kernel drops with its process, and DVC removes `.dvc/tmp/rwlock` entries of dead pids.

Exit code: the command's, or 128 + the signal that stopped it. Not a DVC stage; no torch.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
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
    """Stop `child`'s process group: SIGINT, then SIGKILL to what is left after `grace_s` seconds
    (or at once once `child` has exited: its stragglers are not waited for)."""
    send(child.pid, signal.SIGINT)
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    send(child.pid, signal.SIGKILL)
    child.wait()


def send(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


def run_guarded(parent: int, command: Sequence[str], grace_s: float = GRACE_S) -> int:
    """Run `command` in a session of its own until it exits, or until this process is told to stop
    or `parent` dies (then stop_group); its exit code, or 128 + the stopping signal."""
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
    if child.poll() is None:
        stop_group(child, grace_s)
        return 128 + stops[0]
    return child.returncode  # it had ended on its own as the stop came


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or not args[0].isdigit() or args[1] != "--":
        print("usage: python -m lpa.tools.job_group LAUNCHER_PID -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    return run_guarded(int(args[0]), args[2:])


if __name__ == "__main__":
    raise SystemExit(main())
