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
import pickle
import shutil
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from lpa.errors import WriteError
from lpa.files import move_aside, write_bytes


def atomic_torch_save(obj, path: Path, what: str | None = None) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getbuffer(), what)


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


def save_checkpoint(directory: Path, state: dict) -> Path | None:
    """Write `state` to `directory`/last.pt and return that path; None, after one warning line, when
    the file system refuses it (full disk, quota): training goes on, the next checkpoint tries
    again and the previous one is kept as it was. A warning, not an error: an hours-long run is
    worth more than one checkpoint, and the model file's write at the end still fails loudly."""
    path = Path(directory) / "last.pt"
    try:
        atomic_torch_save(state, path, "checkpoint")
    except WriteError as err:
        kept = "the previous one is kept" if path.exists() else "there is no earlier one"
        print(f"warning: cannot write checkpoint {path}: {err.problem}; training goes on and the next "
              f"checkpoint tries again ({kept})", file=sys.stderr, flush=True)
        return None
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


def load_checkpoint(directory: Path | None, config_hash: str, device_type: str | None = None) -> dict | None:
    """The saved state if it was made under the same resolved config (and, given `device_type`, on
    the same type of device), else None.

    A damaged checkpoint (truncated, overwritten, not one of ours) is moved aside, renamed to
    `last.pt.damaged` (`.damaged.1`, ... if taken) next to itself and never deleted, with one
    warning line on stderr naming it; training then starts fresh. So is one made on another type of
    device (renamed `last.pt.<its device type>`): its random-number states (the batch generator's
    above all) are that device's and cannot be set on this one, so the run cannot go on as it would have.
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
        aside = move_aside(path, "damaged")
        print(f"warning: checkpoint {path} is damaged ({problem}); moved it to {aside.name} "
              "and training starts fresh", file=sys.stderr, flush=True)
        return None
    if state["config_hash"] != config_hash:
        print(f"checkpoint {path} was made under another config: starting fresh")
        return None
    made_on = saved_device_type(state)
    if device_type is not None and made_on != device_type:
        aside = move_aside(path, made_on)
        print(f"warning: checkpoint {path} was made on {made_on} and this run is on {device_type}, whose random "
              f"number states differ; moved it to {aside.name} and training starts fresh", file=sys.stderr, flush=True)
        return None
    return state


def saved_device_type(state: Mapping) -> str:
    """The device type a checkpoint was made on; for one written before it was recorded, "cuda" when it
    holds a CUDA RNG state (the engine saved one only there)."""
    return state.get("device_type") or ("cuda" if state.get("cuda_rng") is not None else "cpu")


def remove_checkpoints(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
