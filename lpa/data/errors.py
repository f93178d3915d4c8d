"""Exceptions of the data layer.

Library code raises these (ordinary exceptions with a one-line message that says what is wrong
and what to do); the stage entry points (through `lpa.stage_runner.run_stage`, whose
`USER_ERRORS` includes `DataError`) print that line and exit 1.
"""
from __future__ import annotations


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
