"""How stage entry points report failure: one line on stderr and exit code 1, no traceback.

Library code raises ordinary exceptions with messages that say what was wrong and what to do;
the stage turns them into that one line. Set LPA_TRACEBACK=1 to see the traceback instead.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable



def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can cause and fix: bad params, missing or corrupt files, a diverging run.

    Anything else is a bug and keeps its traceback.
    """
    from lpa.config import ConfigError, UndeclaredParamError
    from lpa.data.errors import DataError
    from lpa.engine import NonFiniteLossError

    return (ConfigError, UndeclaredParamError, DataError, NonFiniteLossError, FileNotFoundError)


def run_stage(main: Callable[..., None], usage: str, nargs: int = 1) -> None:
    """Call `main(*argv[1:])` with exactly `nargs` arguments (a dataset or run name, or none)."""
    if len(sys.argv) != nargs + 1:
        print(f"usage: {usage}", file=sys.stderr)
        raise SystemExit(2)
    try:
        main(*sys.argv[1:])
    except _user_errors() as err:
        if os.environ.get("LPA_TRACEBACK"):
            raise
        message = err
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1) from None
