"""One way to declare a setting: its kind, allowed values, the library's default and a line of help.

Every section of params.yaml is declared as a dict of `Setting`s (nested dicts for subsections),
next to the code it configures: `lpa.config.train_options.TRAIN_SETTINGS`, `lpa.config.model_options`
(`MODEL_SETTINGS`, `ATTENTION_SETTINGS`), `lpa.config.data_options` (download/preprocess per dataset),
`lpa.config.TOP_SETTINGS`. `check_section`
validates values against a declaration with one policy and one-line errors; `describe_settings`
renders the declarations for `python -m lpa.config settings`.

Policy: params.yaml must list every setting (DVC tracks what it sees, so a silent library
default would be an untracked parameter); library callers (a notebook calling `build_model` or
`extract_dataset`) may leave out those with a default. A bool is never accepted as a number.

Why plain dataclasses rather than OmegaConf structured configs or pydantic: the checks lpa needs
are value checks (choices, ranges, lists) with messages that name the key and list what is
allowed; structured configs check types only and raise tracebacks, and pydantic would be one more
dependency for the same few dozen lines.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lpa.errors import ConfigError

KINDS = ("bool", "int", "number", "choice", "text", "path", "int_list", "number_list", "text_list")


class _Unset:
    def __repr__(self) -> str:
        return "unset"


UNSET: Any = _Unset()  # no library default / no paper value


@dataclass(frozen=True)
class Setting:
    kind: str                          # one of KINDS
    help: str                          # one line: what it does (and its source, where it has one)
    default: Any = UNSET               # the library's own default (UNSET: the caller must give it)
    choices: tuple = ()                # kind "choice": the allowed values
    low: float | None = None           # int/number/int_list items: inclusive minimum
    high: float | None = None          # inclusive maximum
    high_open: bool = False            # the maximum itself is not allowed
    low_open: bool = False             # the minimum itself is not allowed
    paper: Any = UNSET                 # the paper's / official code's value, where the results
                                       # table marks a departure from it (lpa.report notation)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise AssertionError(f"unknown setting kind {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise AssertionError("a choice setting needs its choices")

    def allowed(self) -> str:
        """What values are allowed, in words."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind in ("text", "path"):
            return f"a non-empty {'path' if self.kind == 'path' else 'string'}"
        what = {"int": "an integer", "number": "a number", "int_list": "a list of integers",
                "number_list": "a list of numbers", "text_list": "a list of non-empty strings"}[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return what + (" " + " and ".join(bounds) if bounds else "")

    def _in_range(self, v: float) -> bool:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        if self.high is not None and (v > self.high or (self.high_open and v == self.high)):
            return False
        return True

    def check(self, value: Any, name: str, error: type[Exception] = ConfigError) -> Any:
        """`value` if allowed (ints given for a number become floats), else `error` naming `name`."""
        ok = False
        if self.kind == "bool":
            ok = isinstance(value, bool)
        elif self.kind == "choice":
            ok = isinstance(value, (str, int, float)) and not isinstance(value, bool) and value in self.choices
        elif self.kind in ("text", "path"):
            ok = isinstance(value, str) and value.strip() != ""
        elif self.kind == "int":
            ok = _is_int(value) and self._in_range(value)
        elif self.kind == "number":
            ok = _is_number(value) and self._in_range(value)
            value = float(value) if ok else value
        elif self.kind == "int_list":
            ok = isinstance(value, (list, tuple)) and all(_is_int(v) and self._in_range(v) for v in value)
            value = list(value) if ok else value
        elif self.kind == "text_list":
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) and v.strip() for v in value)
            value = list(value) if ok else value
        elif self.kind == "number_list":
            ok = isinstance(value, (list, tuple)) and all(_is_number(v) and self._in_range(v) for v in value)
            value = [float(v) for v in value] if ok else value
        if not ok:
            raise error(f"{name}={value!r} is not allowed; it must be {self.allowed()} ({self.help})")
        return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


Section = Mapping[str, Any]  # name -> Setting | Section


def check_section(values: Any, section: Section, where: str, *, fill_defaults: bool = False,
                  error: type[Exception] = ConfigError) -> dict:
    """Validate a mapping against its declaration; returns a new plain dict.

    Unknown keys, a value that is not allowed, and (unless `fill_defaults`, or the setting has no
    default) a missing key raise `error` with the dotted name and what is allowed.
    """
    if values is None and fill_defaults:
        values = {}
    if not isinstance(values, Mapping):
        raise error(f"{where} must be a mapping with keys: {', '.join(section) or 'none'}")
    unknown = sorted(set(map(str, values)) - set(section))
    if unknown:
        raise error(f"{where} has unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(section) or 'none'}")
    out = {}
    for key, spec in section.items():
        name = f"{where}.{key}"
        if isinstance(spec, Mapping):
            out[key] = check_section(values.get(key), spec, name, fill_defaults=fill_defaults, error=error) \
                if key in values or fill_defaults else _missing(name, None, error)
            continue
        if key in values:
            out[key] = spec.check(values[key], name, error)
        elif fill_defaults and spec.default is not UNSET:
            out[key] = spec.default
        else:
            _missing(name, spec, error)
    return out


def _missing(name: str, spec: Setting | None, error: type[Exception]):
    hint = f": {spec.allowed()} ({spec.help})" if spec is not None else ""
    raise error(f"params.yaml lacks {name}{hint}; add it to conf/ (or params.yaml)")


def defaults(section: Section) -> dict:
    """The library defaults of a declaration (settings without one are left out)."""
    out = {}
    for key, spec in section.items():
        if isinstance(spec, Mapping):
            out[key] = defaults(spec)
        elif spec.default is not UNSET:
            out[key] = spec.default
    return out


def describe_settings(section: Section, prefix: str) -> list[tuple[str, str, str, str]]:
    """Rows (name, allowed values, library default, help) for every setting, depth first."""
    rows = []
    for key, spec in section.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(spec, Mapping):
            rows.extend(describe_settings(spec, name))
        else:
            default = "" if spec.default is UNSET else repr(spec.default)
            rows.append((name, spec.allowed(), default, spec.help))
    return rows
