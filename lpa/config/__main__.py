"""`python -m lpa.config settings | compose [HYDRA_OVERRIDE ...] | check`.

A user's error (e.g. an override conf/ does not have, a damaged params.yaml) is one `error:` line
and exit 1, as in the stages; a wrong command line is argparse's usage and exit 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tabulate import tabulate

from lpa.config.params import PARAMS_FILE, compose_params_yaml, load_params
from lpa.config.run import all_settings, check_params
from lpa.config.stage_runner import user_errors_as_one_line


def print_settings(args: argparse.Namespace) -> None:
    """Every setting of params.yaml as a table: allowed values, library default, help."""
    print(tabulate(all_settings(), headers=("setting", "allowed", "library default", "help")))


def write_composed_params(args: argparse.Namespace) -> None:
    """params.yaml from conf/ with `args.overrides` (Hydra syntax), as `dvc exp run` writes it."""
    Path(PARAMS_FILE).write_text(compose_params_yaml(args.overrides), encoding="utf-8")
    print(f"wrote {PARAMS_FILE} from conf/ {' '.join(args.overrides)}".rstrip())


def check_params_file(args: argparse.Namespace) -> None:
    """Validate params.yaml as every stage does before it starts (a ConfigError names the value)."""
    check_params(load_params())
    print(f"{PARAMS_FILE}: every value is allowed")


def command_line() -> argparse.ArgumentParser:
    """The parser: one subcommand each, its function in `command`."""
    parser = argparse.ArgumentParser(prog="python -m lpa.config",
                                     description="params.yaml: list its settings, compose it from conf/, check it.")
    commands = parser.add_subparsers(metavar="COMMAND", required=True)
    settings = commands.add_parser("settings", help="print every setting of params.yaml: allowed values, "
                                                    "library default, help")
    settings.set_defaults(command=print_settings)
    compose = commands.add_parser("compose", help="write params.yaml from conf/ (the paper suite unless e.g. "
                                                  "suite=quick is given)")
    compose.add_argument("overrides", nargs="*", metavar="HYDRA_OVERRIDE", help="e.g. suite=quick model.width=0.5")
    compose.set_defaults(command=write_composed_params)
    check = commands.add_parser("check", help="validate params.yaml as every stage does before it starts")
    check.set_defaults(command=check_params_file)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = command_line().parse_args(argv)
    with user_errors_as_one_line():
        try:
            args.command(args)
            sys.stdout.flush()
        except BrokenPipeError:
            # the reader stopped early (`settings | head`): no traceback; Python's documented recipe
            # (signal module, "Note on SIGPIPE") keeps the interpreter's final flush from raising again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None


if __name__ == "__main__":
    main()
