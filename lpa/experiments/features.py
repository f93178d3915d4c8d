"""A frozen network's image features, for the cross-domain experiment (lpa.experiments.transfer).

Which vector (ltpa.md section 7: the official notebooks wrote these to CSV):

    classifier_input   attention models: the attention-weighted vectors g_a of every level,
                       concatenated (the final classifier's input, before its BN/ReLU; 1280-d for
                       the full-width VGG-att3, as the official features); other models: the input
                       of their class-specific layer(s) (VGG: the penultimate 512-d vector after
                       BN/ReLU; VGG-GAP, ResNet, RAN: the pooled vector)
    g                  attention models only: the global vector g (the ablation)

Read with forward hooks, so the models need no feature API of their own; the model runs in eval
mode without gradients, with its own autocast, and features come back as float32 numpy.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from lpa.train.engine import forward
from lpa.errors import ConfigError
from lpa.train.warm_start import class_specific_keys

FEATURES = ("classifier_input", "g")


def _hook_points(model: torch.nn.Module, config: Mapping, num_classes: int, input_size: int,
                 feature: str) -> list[tuple[torch.nn.Module, int]]:
    """(module, which positional input) pairs whose inputs, concatenated, are the feature."""
    attention = getattr(model, "attention", None)
    if feature == "g":
        if attention is None:
            raise ConfigError(f"feature g needs an attention model; {config['model']['name']} has no global "
                              f"attention vector (use feature: classifier_input)")
        return [(attention, 1)]                      # AttentionHead.forward(locals_, g)
    if attention is not None:
        return [(attention.classifier, 0)]           # LevelClassifier.forward([g_a per level])
    modules = dict(model.named_modules())
    owners = sorted({key.rsplit(".", 1)[0] for key in class_specific_keys(config, num_classes, input_size)})
    return [(modules[name], 0) for name in owners]


@torch.no_grad()
def extract_features(model: torch.nn.Module, config: Mapping, num_classes: int, images: torch.Tensor,
                     feature: str = "classifier_input", batch_size: int = 500,
                     amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> np.ndarray:
    """N x D float32 features of preprocessed `images` (N x C x H x W, on the model's device)."""
    if feature not in FEATURES:
        raise ConfigError(f"unknown feature {feature!r}; allowed: {', '.join(FEATURES)}")
    points = _hook_points(model, config, num_classes, images.shape[-1], feature)
    captured: list[torch.Tensor] = []

    def grab(position: int):
        def hook(_module, args):
            value = args[position]
            parts = value if isinstance(value, (list, tuple)) else [value]
            captured.extend(p.flatten(1).float() for p in parts)
        return hook

    handles = [module.register_forward_pre_hook(grab(position)) for module, position in points]
    model.eval()
    out = []
    try:
        for start in range(0, images.shape[0], batch_size):
            captured.clear()
            forward(model, images[start:start + batch_size], amp_dtype, channels_last)
            out.append(torch.cat(captured, dim=1).cpu())
    finally:
        for handle in handles:
            handle.remove()
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()
