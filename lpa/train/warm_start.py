"""Starting a run from another run's weights (`runs.<run>.init_from`, the finetune@ stages): the
paper's CUB-200-2011 models start from the CIFAR-100 ones.

Rule: every tensor of the new model (weights and BN statistics) is copied from the parent's model
file when the parent has a tensor of that name and shape; the class-specific tensors (those whose
shape depends on the number of classes: the final classifier, or each level's classifier in the
`indep` mode) are left as this run's seeded initialisation, even where the class counts happen to
match, because the classes are another dataset's. Any other difference (another model, width or
attention option) is one ConfigError naming the tensors. A larger input (CUB's 80x80) changes no
tensor's shape: the VGG models pool conv7's output to 32x32 (lpa/models/vgg_att.py).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from lpa.errors import ConfigError
from lpa.files import file_sha256
from lpa.layout import model_file
from lpa.train.modelfile import read_model_file
from lpa.models import build_model, options_of

SHOWN = 6  # tensors named in an error message


def class_specific_keys(config: Mapping, num_classes: int, input_size: int) -> set[str]:
    """Names of the tensors whose shape depends on the number of classes (found by building the
    model for two class counts: no per-model list to keep in step with the models)."""
    name, opts = config["model"]["name"], options_of(config)
    a = build_model(name, num_classes, input_size=input_size, **opts).state_dict()
    b = build_model(name, num_classes + 1, input_size=input_size, **opts).state_dict()
    return {k for k in a if a[k].shape != b[k].shape}


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def plan_warm_start(config: Mapping, num_classes: int, input_size: int, parent: Mapping,
                    parent_file: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(the tensors to load, a JSON-able record of what is loaded and re-initialised).

    `parent` is the parent's model record (lpa.train.modelfile.read_model_file). Raises ConfigError,
    before any training, when a tensor other than the class-specific ones does not match.
    """
    name, opts = config["model"]["name"], options_of(config)
    own = build_model(name, num_classes, input_size=input_size, **opts).state_dict()
    theirs = parent["state_dict"]
    fresh = class_specific_keys(config, num_classes, input_size)
    mismatched = [f"{k} ({_shape(theirs[k])} there, {_shape(own[k])} here)" for k in own
                  if k not in fresh and k in theirs and theirs[k].shape != own[k].shape]
    absent = [k for k in own if k not in fresh and k not in theirs]
    unused = [k for k in theirs if k not in own]
    if mismatched or absent or unused:
        parts = []
        for what, keys in (("differ in shape", mismatched), ("are missing there", absent),
                           ("have no place here", unused)):
            if keys:
                more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
                parts.append(f"{len(keys)} {what}: {', '.join(keys[:SHOWN])}{more}")
        parent_model = parent["config"]["model"]
        raise ConfigError(
            f"run {config['run']}: init_from={config['init_from']} ({parent_file}, {parent_model['name']} width "
            f"{parent_model.get('width', 1.0)}) does not fit {name} width {opts.get('width', 1.0)}: tensors "
            f"{'; '.join(parts)}. init_from needs the same model and options, only the classes may differ")
    load = {k: theirs[k] for k in own if k not in fresh}
    record = {"trial": config["init_trial"], "model_file": parent_file,
              "loaded_tensors": len(load), "loaded_values": int(sum(t.numel() for t in load.values())),
              "reinitialised": sorted(fresh),
              "reinitialised_values": int(sum(own[k].numel() for k in fresh)),
              "parent_classes": parent["num_classes"], "classes": num_classes,
              "parent_input_size": parent["input_size"], "input_size": input_size}
    return load, record


def parent_weights(config: Mapping, suite: str, num_classes: int,
                   input_size: int) -> tuple[dict[str, torch.Tensor] | None, dict | None, str]:
    """For a run with init_from (a finetune@ trial): (the tensors to load, the record for its
    config.json, the parent model file's SHA-256 for the resume key); (None, None, "") otherwise.
    The parent file is read and checked here, before the stage loads any data."""
    if not config["init_from"]:
        return None, None, ""
    parent_file = model_file(suite, config["init_trial"])
    state, record = plan_warm_start(config, num_classes, input_size, read_model_file(parent_file), str(parent_file))
    return state, record, file_sha256(parent_file)
