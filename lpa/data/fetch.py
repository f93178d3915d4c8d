"""Get an official file into the raw directory, verified by MD5.

`ensure_file(remote, raw_dir)`:

* `<raw_dir>/<filename>` exists and has the right MD5 -> used as is, no network.
* it exists with a wrong MD5 (corrupt, truncated, another version) -> moved aside to
  `<filename>.corrupt` and IntegrityError; the next run downloads it again.
* it is missing -> downloaded with torchvision's `download_url` to a temporary name in
  `raw_dir`, MD5-checked, then renamed into place. No network -> DownloadError naming the file,
  the URL and where to put a copy by hand.

The raw directory is never a DVC output, so DVC never deletes what lands there.
"""
from __future__ import annotations

import os
import socket
import urllib.error
from pathlib import Path

from lpa.errors import DownloadError, IntegrityError, WriteError
from lpa.files import REFUSED_WRITE, move_aside, write_problem
from lpa.data.sources import RemoteFile

DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation, so a dead network fails instead of hanging


def md5sum(path: str | os.PathLike) -> str:
    # local: torchvision costs ~2-4 s to import (measured); only this archive/download step needs it
    from torchvision.datasets.utils import calculate_md5

    return calculate_md5(os.fspath(path))


def redownload_advice(archive: Path, dataset: str) -> str:
    """What to do about a damaged official `archive` of `dataset` (the end of an error message)."""
    return (f"delete {archive} and re-run `dvc repro -f download@{dataset}` to download the official "
            f"{archive.name} again (or place a copy of it there)")


def _size(path: Path) -> str:
    return f"{path.stat().st_size:,} bytes"


def verify_file(path: Path, md5: str) -> None:
    """Raise IntegrityError (after moving the file aside) unless `path` has MD5 `md5`."""
    actual = md5sum(path)
    if actual != md5:
        size = _size(path)
        moved = move_aside(path, "corrupt")
        raise IntegrityError(
            f"{path} is corrupt or truncated ({size}, MD5 {actual}, expected {md5}); "
            f"moved it aside to {moved.name}; place a good copy at {path} or run again to download it"
        )


def _remove_stale_parts(raw_dir: Path, filename: str) -> None:
    """Delete partial downloads of `filename` left by processes that no longer run (kill -9)."""
    for part in raw_dir.glob(f".{filename}.*.part"):
        pid = part.name[len(filename) + 2:-len(".part")]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except PermissionError:  # someone else's live process
            pass


def ensure_file(remote: RemoteFile, raw_dir: str | os.PathLike, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Return the path of a verified copy of `remote` in `raw_dir`, downloading it if missing."""
    raw_dir = Path(raw_dir)
    path = raw_dir / remote.filename
    if path.is_file():
        verify_file(path, remote.md5)
        return path
    if path.exists():
        raise DownloadError(f"{path} exists but is not a file; remove it")

    # local: torchvision costs ~2-4 s to import (measured); only this archive/download step needs it
    from torchvision.datasets.utils import download_url

    raw_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(raw_dir, remote.filename)
    part = raw_dir / f".{remote.filename}.{os.getpid()}.part"
    part.unlink(missing_ok=True)  # download_url skips the download when the target exists
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        # md5=None: torchvision would only say "File not found or corrupted"; we check below.
        download_url(remote.url, os.fspath(raw_dir), filename=part.name, md5=None)
    except (urllib.error.URLError, OSError, ValueError) as err:
        part.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in REFUSED_WRITE:  # the network was fine, the disk was not
            raise WriteError(path, "download", write_problem(err, path, remote.size or 0)) from None
        if isinstance(err, urllib.error.HTTPError):
            reason = f"HTTP {err.code} {err.reason}"
        else:
            reason = getattr(err, "reason", None) or err
        size = f", about {remote.size / 2**20:.0f} MiB" if remote.size else ""
        raise DownloadError(
            f"cannot download {remote.filename} from {remote.url} ({reason}); if this machine has "
            f"no network, download it elsewhere and place it at {path} (MD5 {remote.md5}{size})"
        ) from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        socket.setdefaulttimeout(old_timeout)
    if not part.is_file():
        raise DownloadError(f"downloading {remote.url} produced no file; place {remote.filename} at {path}")
    actual = md5sum(part)
    if actual != remote.md5:
        size = _size(part)
        os.replace(part, path)
        moved = move_aside(path, "corrupt")
        raise IntegrityError(
            f"downloaded {remote.filename} from {remote.url} but its MD5 is {actual} ({size}), "
            f"expected {remote.md5}; kept it as {moved}; run again or place a good copy at {path}"
        )
    os.replace(part, path)
    return path
