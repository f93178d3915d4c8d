"""The one-line error checks: a user error (lpa/errors.py) is one line, which the stage runner
prints as `error: ...`; a failed stage prints exactly that line and no traceback."""
from __future__ import annotations

import subprocess

import pytest


def one_line(err: pytest.ExceptionInfo) -> str:
    """The message of the error `pytest.raises` caught, asserted to be a single line."""
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The stage failed as a user error: exit 1, stderr exactly one `error: ` line, no traceback.
    Returns that line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]
