"""Resumable training state, kept outside DVC.

Checkpoints live in `checkpoints/<run>/last.pt` (git-ignored, not a DVC output): DVC deletes a
stage's outputs before re-running it, which would destroy exactly the state a crashed run needs,
and caching every checkpoint would fill the DVC cache with weights nobody asked for. Each file
carries the hash of the resolved config it was made under; a changed config starts fresh.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from lpa.files import atomic_path


def atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(directory: Path, state: dict) -> Path:
    path = Path(directory) / "last.pt"
    atomic_torch_save(state, path)
    return path


def load_checkpoint(directory: Path | None, config_hash: str) -> dict | None:
    """The saved state if it was made under the same resolved config, else None."""
    if directory is None:
        return None
    path = Path(directory) / "last.pt"
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config_hash") != config_hash:
        print(f"checkpoint {path} was made under another config: starting fresh")
        return None
    return state


def remove_checkpoints(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
