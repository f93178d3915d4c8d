"""Replace submodules of a model in place: the one walk behind lpa's CPU kernels (counter dropout,
small-map convolutions) and the distributed BatchNorm, so each says only what it replaces."""
from __future__ import annotations

from typing import Callable

from torch import nn


def replace_modules(model: nn.Module, replacement: Callable[[nn.Module], nn.Module | None]) -> int:
    """Call `replacement(child)` on every submodule of `model` in module order (parents before
    children, children in definition order: the order that numbers counter-dropout layers) and put
    what it returns in the child's place (None: keep the child); returns how many were replaced.
    A replacement's own children are not visited."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = replacement(child)
            if new is not None:
                setattr(parent, name, new)
                count += 1
    return count
