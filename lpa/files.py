"""Atomic file output: write under a temporary name in the same directory, then rename.

A crash or a bad input never leaves a half-written file or directory where a later stage (or DVC)
would take it for a result. Same directory, so os.replace is a rename on one filesystem.
A bad input (a damaged checkpoint, a corrupt archive) is moved aside the same way: renamed next to
itself, never deleted, so a post-mortem can look at it.
A write the file system refuses (a full disk, a read-only folder, a quota) is one WriteError naming
the output, with the temporary file removed and the previous output untouched.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lpa.errors import WriteError


# errno values by which a file system refuses a write whatever the writer was doing (full disk,
# quota, read-only mount, file too large); any other OSError only when it names the output itself
REFUSED_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}

# what an output is, by its suffix, for the message of a write that failed
OUTPUT_KINDS = {".png": "figure", ".json": "record", ".csv": "table", ".md": "report", ".pt": "torch file",
                ".npy": "array", ".npz": "arrays", ".tsv": "log"}


@contextmanager
def atomic_path(path: Path | str, directory: bool = False, what: str | None = None, size: int | None = None):
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it vanishes.

    A write the file system refuses (inside the block or in the rename) is a WriteError naming
    `path`, `what` it is (default: by its suffix) and, for a full disk, how much space the write
    needed (`size` bytes if given, else what the temporary file had reached) and how much is free."""
    path = Path(path)
    what = what or ("directory" if directory else OUTPUT_KINDS.get(path.suffix, "file"))
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        else:
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            tmp = Path(name)
        yield tmp
        # mkstemp/mkdtemp create 0600/0700; outputs should be readable like any other file
        os.chmod(tmp, 0o755 if directory else 0o644)
        old = None
        if directory and path.exists():
            # rename the old directory aside first: there is never a moment without an output
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as err:
        reached = disk_size(tmp) if tmp is not None else 0
        if tmp is not None:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and refused_write(err, path, tmp):
            raise WriteError(path, what, write_problem(err, path, size if size is not None else reached)) from err
        raise


def refused_write(err: OSError, path: Path, tmp: Path | None) -> bool:
    """Whether `err`, met while writing `path` under the temporary name `tmp`, is the file system
    refusing the write, not (say) a missing input read inside atomic_path's block."""
    if err.errno in REFUSED_WRITE:
        return True
    named = [Path(f) for f in (err.filename, err.filename2) if f is not None]
    # the output, a folder above it (mkdir), a temporary name next to it (mkstemp) or under it
    return any(f == path or f in path.parents or (f.parent == path.parent and f.name.startswith(f".{path.name}."))
               or (tmp is not None and tmp in f.parents) for f in named)


def write_problem(err: OSError, path: Path, needed: int) -> str:
    """`err` in a few words; for a full disk, the space the write of `path` needed and the space
    the file system holding it has (measured now, with the temporary file removed)."""
    if err.errno != errno.ENOSPC:
        return f"{err.strerror or err} ({errno.errorcode.get(err.errno, err.errno)})"
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(folder).free
    need = f"it needs {human_size(needed)}" if needed else "it needs more"
    return f"no space left on device: {need}, the file system of {folder} has {human_size(free)} free"


def disk_size(path: Path) -> int:
    """Bytes in the file `path`, or in the files under the directory `path` (0 if it is gone)."""
    try:
        if path.is_dir():
            return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def write_bytes(path: Path | str, data: bytes, what: str | None = None) -> Path:
    """`data` written atomically to `path` (fsynced); WriteError when the file system refuses it.
    `what`: what the file is, for that message (default: by its suffix)."""
    with atomic_path(path, what=what, size=len(data)) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: Path | str, text: str, what: str | None = None) -> Path:
    return write_bytes(path, text.encode("utf-8"), what)


def write_json(path: Path | str, obj: Any, what: str | None = None) -> Path:
    """Stable JSON (indented, trailing newline); NaN/inf are rejected, never written."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n", what)


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (e.g. a parent model file in a resume key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def move_aside(path: Path | str, reason: str) -> Path:
    """Rename the bad file `path` to `<name>.<reason>` next to itself (`<name>.<reason>.1`, `.2`, ...
    when taken: an earlier one is never overwritten) and return the new path, for the message
    that says where it went. `reason`: one word for what is wrong with it, e.g. "corrupt"."""
    path = Path(path)
    target = path.with_name(f"{path.name}.{reason}")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{reason}.{n}")
    os.replace(path, target)
    return target


def write_figure(fig, path: str | Path) -> Path:
    """A matplotlib figure (anything with `savefig`) as a PNG at `path`, atomically (write_bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_bytes(path, buffer.getvalue())
