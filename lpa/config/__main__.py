"""`python -m lpa.config settings | compose [HYDRA_OVERRIDE ...] | check`."""
from __future__ import annotations

import sys
from pathlib import Path

from tabulate import tabulate

from lpa.config.params import PARAMS_FILE, compose_params_yaml, load_params
from lpa.config.run import all_settings, check_params
from lpa.errors import ConfigError, DamagedFileError, DataError


USAGE = """usage: python -m lpa.config settings | compose [HYDRA_OVERRIDE ...] | check

  settings   print every setting of params.yaml: allowed values, library default, help
  compose    write params.yaml from conf/ (the paper suite unless e.g. suite=quick is given)
  check      validate params.yaml as every stage does before it starts"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        if argv:
            print()
            print(tabulate(all_settings(), headers=("setting", "allowed", "library default", "help")))
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "settings":
        print(tabulate(all_settings(), headers=("setting", "allowed", "library default", "help")))
    elif command == "compose":
        Path(PARAMS_FILE).write_text(compose_params_yaml(rest), encoding="utf-8")
        print(f"wrote {PARAMS_FILE} from conf/ {' '.join(rest)}".rstrip())
    elif command == "check":
        check_params(load_params())
        print(f"{PARAMS_FILE}: every value is allowed")
    else:
        print(USAGE, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except (ConfigError, DamagedFileError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
