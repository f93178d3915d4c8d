"""How a stage entry point runs: check its argv, check every value of params.yaml, then call it;
a user's error (bad params, a missing or damaged file, a diverged run) is one `error:` line on
stderr and exit code 1, never a traceback. Set LPA_TRACEBACK=1 to see the traceback instead.

Library code raises the classes of lpa.errors and lpa.errors with messages that say what
was wrong and what to do; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

from lpa.config.run import check_params
from lpa.errors import DataError
from lpa.errors import ConfigError, DamagedFileError, NonFiniteLossError, UndeclaredParamError
from lpa.config.params import load_params

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, UndeclaredParamError, DamagedFileError, NonFiniteLossError, DataError, FileNotFoundError)


def run_stage(main: Callable[..., None], usage: str, nargs: int = 1) -> None:
    """Call `main(*argv[1:])` with exactly `nargs` arguments (a dataset or trial name, or none),
    after checking the whole params.yaml (a bad value anywhere stops every stage, before any work)."""
    if len(sys.argv) != nargs + 1:
        print(f"usage: {usage}", file=sys.stderr)
        raise SystemExit(2)
    try:
        check_params(load_params())
        main(*sys.argv[1:])
    except USER_ERRORS as err:
        if os.environ.get("LPA_TRACEBACK"):
            raise
        # one of several training processes (torchrun's RANK): they all meet the same user error,
        # and rank 0 says it once
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
