"""How a stage entry point runs: parse its argv, check every value of params.yaml, then call it;
a user's error (bad params, a missing or damaged file, a diverged run) is one `error:` line on
stderr and exit code 1, never a traceback. Set LPA_TRACEBACK=1 to see the traceback instead.

Library code raises the classes of lpa.errors with messages that say what was wrong and what to
do; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator

from lpa.config.params import load_params
from lpa.config.run import check_params
from lpa.errors import (ConfigError, DamagedFileError, DataError, NonFiniteLossError,
                        UndeclaredParamError, WriteError)

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, UndeclaredParamError, DamagedFileError, NonFiniteLossError, DataError, FileNotFoundError,
    WriteError)

# `-h` text for the names a stage's main takes (its one parameter, if any)
ARGUMENT_HELP = {
    "dataset": "a dataset of params.yaml data.datasets, e.g. cifar10",
    "trial": "a trial of params.yaml trials, e.g. cifar10-vgg-att2-seed0",
    "pair": "a pair of params.yaml transfer_pairs or segmentation_pairs",
}


def stage_arguments(main: Callable[..., None], prog: str) -> argparse.ArgumentParser:
    """An argparse parser for `main`'s required positional parameters (e.g. `trial` as TRIAL),
    in order, and nothing else: what DVC's `cmd:` passes (a `${key}`) or, for a stage without
    foreach, no argument. `prog`: the command as the user types it, for the usage line; the
    description is the first line of main's module docstring (what the stage makes)."""
    summary = (inspect.getdoc(inspect.getmodule(main)) or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog=prog, description=summary or None)
    for param in inspect.signature(main).parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD) and param.default is param.empty:
            parser.add_argument(param.name, metavar=param.name.upper(), help=ARGUMENT_HELP.get(param.name))
    return parser


@contextlib.contextmanager
def user_errors_as_one_line() -> Iterator[None]:
    """Turn a USER_ERRORS exception raised inside into `error: <message>` on stderr and exit 1
    (the traceback instead when LPA_TRACEBACK is set); anything else propagates unchanged."""
    try:
        yield
    except USER_ERRORS as err:
        if os.environ.get("LPA_TRACEBACK"):
            raise
        # one of several training processes (torchrun's RANK): they all meet the same user error,
        # and rank 0 says it once
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def run_stage(main: Callable[..., None], prog: str) -> None:
    """Call `main` with the arguments of sys.argv (exactly its positional parameters: a dataset,
    trial or pair name, or none; anything else is argparse's usage line and exit 2), after checking
    the whole params.yaml (a bad value anywhere stops every stage, before any work).
    `prog`: the command line as typed, e.g. "python -m stages.evaluate"."""
    args = stage_arguments(main, prog).parse_args()
    try:
        with user_errors_as_one_line():
            check_params(load_params())
            main(*vars(args).values())
    except KeyboardInterrupt:  # Ctrl-C, or the launcher stopping its runs: what was kept, not a traceback
        if os.environ.get("LPA_TRACEBACK"):
            raise
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {prog} was interrupted; outputs are written only when complete, and a run "
                  "again resumes training from its last checkpoint", file=sys.stderr)
        raise SystemExit(130) from None
