"""The errors a user causes and can fix. The stage runner (lpa/config/stage_runner.py) prints their
one-line message as `error: ...` and exits 1; anything else is a bug and keeps its traceback.

A leaf module: every layer raises these without importing the layers above it. The data layer's
own classes (lpa/errors.py) are user errors too.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A parameter value is invalid; the message says which and what is allowed."""


class UndeclaredParamError(RuntimeError):
    """Code read a param its stage does not declare in dvc.yaml.

    Deliberately not a KeyError, so `Mapping.get` cannot swallow it.
    """


class DamagedFileError(RuntimeError):
    """A file the pipeline reads is truncated, overwritten or not what its name says; the message
    names the file and what to do (which stage to re-run, which file to delete)."""


class NonFiniteLossError(RuntimeError):
    """Training diverged (a NaN or infinite loss); the message names the epoch and step."""


class DataError(RuntimeError):
    """Base class of every error raised by `lpa.data`."""


class DataParamError(DataError, ValueError):
    """An unknown dataset or an invalid data parameter; the message lists what is allowed.

    Raised before any download or computation starts.
    """


class DownloadError(DataError):
    """A needed file is neither in the raw directory nor downloadable (no network, bad URL)."""


class IntegrityError(DataError):
    """A raw file does not have its expected MD5 (corrupt or truncated); it was moved aside."""


class DatasetFormatError(DataError):
    """A file is readable but not in the expected format (names the file)."""
