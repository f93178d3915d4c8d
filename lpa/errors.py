"""The errors a user causes and can fix. The stage runner (lpa/config/stage_runner.py) prints their
one-line message as `error: ...` and exits 1; anything else is a bug and keeps its traceback.

A leaf module: every layer raises these without importing the layers above it. The data layer's
own classes (lpa/errors.py) are user errors too.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A parameter value is invalid; the message says which and what is allowed."""


class DeviceError(ConfigError):
    """The run was given GPUs that cannot be used (CUDA_VISIBLE_DEVICES set, CUDA cannot start); the
    message names the variable's value and the CUDA version torch was built for."""


class UndeclaredParamError(RuntimeError):
    """Code read a param its stage does not declare in dvc.yaml.

    Deliberately not a KeyError, so `Mapping.get` cannot swallow it.
    """


class DamagedFileError(RuntimeError):
    """A file the pipeline reads is truncated, overwritten or not what its name says; the message
    names the file and what to do (which stage to re-run, which file to delete)."""


class WriteError(RuntimeError):
    """An output could not be written: the disk is full, the folder read-only, a quota reached.

    `path`: the output; `what`: what it is (e.g. "checkpoint"); `problem`: why, in a few words (for a
    full disk, how much space the write needed and how much the file system has). The temporary
    file is gone and a previous `path`, if any, is as it was. Not an OSError, so that code catching
    OSError around a read cannot mistake it for a missing input."""

    def __init__(self, path: object, what: str, problem: str):
        self.path, self.what, self.problem = path, what, problem
        super().__init__(f"cannot write {what} {path}: {problem}; free space (or fix the folder's "
                         "permissions) and re-run: a previous version of it, if any, is as it was")


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
