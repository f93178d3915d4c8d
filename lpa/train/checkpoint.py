"""Resumable training state, kept outside DVC.

Checkpoints live in `checkpoints/<suite>/<trial>/last.pt` (git-ignored, not a DVC output): DVC deletes a
stage's outputs before re-running it, which would destroy exactly the state a crashed run needs,
and caching every checkpoint would fill the DVC cache with weights nobody asked for. Each file
carries the hash of the resolved config it was made under; a changed config starts fresh.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import sys
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from lpa.files import write_bytes


def atomic_torch_save(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getbuffer())


# what the engine's save_checkpoint writes; anything else is not a checkpoint it can resume
STATE_KEYS = {"config_hash", "epoch", "history", "model", "optimizer", "generator", "torch_rng"}

# What torch.load raises for a file that is truncated, overwritten or not a torch file at all
# (zip reader: RuntimeError; legacy pickle path: UnpicklingError, EOFError, "Invalid magic
# number" RuntimeError; pickles of things that no longer exist: AttributeError, ImportError;
# reducers fed garbage: TypeError, KeyError, IndexError, OverflowError). Only ever caught around
# torch.load itself, so no bug of ours hides behind it.
TORCH_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, AttributeError,
    ImportError, TypeError, KeyError, IndexError, OverflowError)


def load_error_reason(err: BaseException) -> str:
    """A torch.load failure in a few words, on one line."""
    first = (str(err).strip().splitlines() or [""])[0][:120]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def config_hash(config: Mapping) -> str:
    """Stable short hash of a resolved config (and data): checkpoints resume only under the same hash."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_checkpoint(directory: Path, state: dict) -> Path:
    path = Path(directory) / "last.pt"
    atomic_torch_save(state, path)
    return path


def _state_problem(state: object) -> str | None:
    """What makes a loaded object unusable as a checkpoint of the engine, or None."""
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a checkpoint"
    missing = sorted(STATE_KEYS - set(state))
    if missing:
        return f"lacks {', '.join(missing)}"
    types = {"config_hash": str, "epoch": int, "history": list, "model": Mapping, "optimizer": Mapping,
             "generator": torch.Tensor, "torch_rng": torch.Tensor}
    wrong = [key for key, kind in types.items() if not isinstance(state[key], kind)]
    if wrong:
        return f"has {', '.join(wrong)} of the wrong type"
    return None


def load_checkpoint(directory: Path | None, config_hash: str) -> dict | None:
    """The saved state if it was made under the same resolved config, else None.

    A damaged checkpoint (truncated, overwritten, not one of ours) is set aside, renamed to
    `last.pt.damaged-<time>` next to itself and never deleted, with one warning line on stderr;
    training then starts fresh.
    """
    if directory is None:
        return None
    path = Path(directory) / "last.pt"
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except TORCH_LOAD_ERRORS as err:
        problem = f"unreadable: {load_error_reason(err)}"
    else:
        problem = _state_problem(state)
    if problem is not None:
        aside = set_aside(path)
        print(f"warning: checkpoint {path} is damaged ({problem}); moved it to {aside.name} "
              "and training starts fresh", file=sys.stderr, flush=True)
        return None
    if state["config_hash"] != config_hash:
        print(f"checkpoint {path} was made under another config: starting fresh")
        return None
    return state


def set_aside(path: Path) -> Path:
    """Rename a damaged file next to itself (kept for a post-mortem, never deleted)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        n += 1
    os.replace(path, aside)
    return aside


def remove_checkpoints(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
