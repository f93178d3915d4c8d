"""Resumable training state, kept outside DVC.

Checkpoints live in `checkpoints/<run>/last.pt` (git-ignored, not a DVC output): DVC deletes a
stage's outputs before re-running it, which would destroy exactly the state a crashed run needs,
and caching every checkpoint would fill the DVC cache with weights nobody asked for. Each file
carries the hash of the resolved config it was made under; a changed config starts fresh.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import torch

from lpa.files import write_bytes


def atomic_torch_save(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getbuffer())


def save_model(path: Path, model: torch.nn.Module, config: dict, num_classes: int, classes: list,
               input_size: int) -> None:
    """models/<run>/model.pt: the weights plus everything needed to rebuild and evaluate them."""
    atomic_torch_save({"config": config, "num_classes": num_classes, "classes": classes,
                       "input_size": input_size, "state_dict": model.state_dict()}, path)


def load_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The model saved by `save_model`, rebuilt on `device`, and the saved record."""
    from lpa.engine import build_for_training  # the engine imports this module

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run the train stage that writes it first")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model = build_for_training(saved["config"], saved["num_classes"], saved["input_size"], device)
    model.load_state_dict(saved["state_dict"])
    return model, saved


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
