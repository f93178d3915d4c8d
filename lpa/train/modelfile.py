"""The model file, models/<suite>/<trial>/model.pt: a trained run's weights with everything needed
to rebuild, evaluate or use it (its resolved config, classes, input size, and its preprocessing:
how a picture is converted to the dataset's images and the transform fitted on its training split,
so `lpa.experiments.predict` and the robustness stage need nothing but this file). A DVC output, written once by
the train stage; resumable training state is lpa.train.checkpoint's, outside DVC.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from lpa.train.checkpoint import TORCH_LOAD_ERRORS, atomic_torch_save, load_error_reason
from lpa.data.arrays import read_meta
from lpa.data.conversion import ImageConversion, conversion_for
from lpa.data.transforms import Transform, load_transform
from lpa.train.device import autocast_dtype
from lpa.train.engine import build_for_training, predict
from lpa.errors import DamagedFileError

# bumped when the saved record changes (2: the preprocessing travels with the weights); older files
# are refused, not misread
FORMAT = "lpa.model/2"
KEYS = ("format", "config", "num_classes", "classes", "input_size", "preprocessing", "state_dict")
# the train settings that rebuilding and evaluating a saved model read from its config
CONFIG_TRAIN_KEYS = ("channels_last", "precision", "eval_batch_size")


def preprocessing_record(processed_dir: Path, meta: Mapping | None = None) -> dict:
    """What a model trained on data/processed/<dataset> needs to be given a new picture: the
    dataset's image conversion and the fitted transform (transform.npz's bytes). `meta`: the
    directory's meta.json when the caller has already read it."""
    return {"conversion": conversion_for(meta if meta is not None else read_meta(processed_dir)).to_dict(),
            "transform": load_transform(processed_dir).to_bytes()}


def save_model(path: Path, model: torch.nn.Module, config: dict, num_classes: int, classes: list,
               input_size: int, preprocessing: dict) -> None:
    """Write the model file atomically (a crash never leaves half a file where DVC looks)."""
    atomic_torch_save({"format": FORMAT, "config": config, "num_classes": num_classes, "classes": classes,
                       "input_size": input_size, "preprocessing": preprocessing, "state_dict": model.state_dict()},
                      path, "model file")


def model_preprocessing(saved: Mapping, path: Path) -> tuple[ImageConversion, Transform]:
    """The conversion and fitted transform a read model file carries (checked by read_model_file)."""
    record = saved["preprocessing"]
    return (ImageConversion.from_dict(record["conversion"]),
            Transform.from_bytes(record["transform"], f"{path} (its preprocessing transform)",
                                 retrain_advice(path, saved)))


def retrain_advice(path: Path, saved: object = None) -> str:
    """What to do about the damaged model file `path` (the end of an error message): re-run the
    train stage of its trial, named by its own record `saved` when that is readable, else by its
    directory (models/SUITE/TRIAL/model.pt)."""
    config = saved.get("config") if isinstance(saved, Mapping) else None
    trial = config.get("trial") if isinstance(config, Mapping) else None
    trial = trial if isinstance(trial, str) and trial else path.parent.name
    return f"delete it and re-run its train stage (`dvc repro train@{trial}`)"


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _record_problem(saved: Mapping) -> str | None:
    """What is wrong with the fields of a model record of the current format, or None."""
    missing = [k for k in KEYS if k not in saved]
    if missing:
        return f"lacks {', '.join(missing)}"
    config = saved["config"]
    if not (isinstance(config, Mapping) and isinstance(config.get("dataset"), str)
            and isinstance(config.get("model"), Mapping) and isinstance(config["model"].get("name"), str)
            and isinstance(config.get("train"), Mapping) and all(k in config["train"] for k in CONFIG_TRAIN_KEYS)):
        return f"has a config without dataset, model.name or train.{{{','.join(CONFIG_TRAIN_KEYS)}}}"
    if not (_positive_int(saved["num_classes"]) and _positive_int(saved["input_size"])):
        return f"has num_classes {saved['num_classes']!r} and input_size {saved['input_size']!r}"
    classes = saved["classes"]
    if not (isinstance(classes, (list, tuple)) and len(classes) == saved["num_classes"]):
        return f"has {len(classes) if isinstance(classes, (list, tuple)) else 'no list of'} class names " \
               f"for {saved['num_classes']} classes"
    record = saved["preprocessing"]
    if not (isinstance(record, Mapping) and isinstance(record.get("transform"), bytes)):
        return "has no preprocessing record (conversion and transform)"
    try:
        conversion = ImageConversion.from_dict(record.get("conversion"))
    except ValueError as err:
        return f"has a damaged preprocessing record ({err})"
    if conversion.size != saved["input_size"]:
        return f"converts pictures to {conversion.size} pixels for a model of input size {saved['input_size']}"
    if not isinstance(saved["state_dict"], Mapping):
        return f"has a state_dict that is a {type(saved['state_dict']).__name__}"
    return None


def read_model_file(path: Path) -> dict:
    """The saved record, checked: one DamagedFileError line for a truncated, foreign or old file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run the train stage that writes it first")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except TORCH_LOAD_ERRORS as err:
        raise DamagedFileError(f"{path} is not a readable model file (truncated or overwritten: "
                               f"{load_error_reason(err)}); {retrain_advice(path)}") from None
    if not isinstance(saved, Mapping) or "state_dict" not in saved:
        what = f"a {type(saved).__name__}" + (f" with keys {', '.join(map(str, list(saved)[:6]))}"
                                              if isinstance(saved, Mapping) else "")
        raise DamagedFileError(f"{path} is not an lpa model file (it holds {what}); {retrain_advice(path)}")
    if saved.get("format") != FORMAT:
        raise DamagedFileError(f"{path} is a model file of an older lpa format ({saved.get('format', 'unversioned')}, "
                               f"this lpa reads {FORMAT}); {retrain_advice(path, saved)}")
    problem = _record_problem(saved)
    if problem:
        raise DamagedFileError(f"{path} {problem}; {retrain_advice(path, saved)}")
    return dict(saved)


def load_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The model saved by `save_model`, rebuilt on `device`, and the saved record."""
    path = Path(path)
    saved = read_model_file(path)
    try:
        model = build_for_training(saved["config"], saved["num_classes"], saved["input_size"], device)
    except ValueError as err:  # build_model rejects an unknown model or option (ConfigError is one too)
        raise DamagedFileError(f"{path}: its config does not build a model ({load_error_reason(err)}); "
                               f"{retrain_advice(path, saved)}") from None
    try:
        model.load_state_dict(saved["state_dict"])
    except (RuntimeError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise DamagedFileError(f"{path}: its weights do not fit its own config ({first}); "
                               f"{retrain_advice(path, saved)}") from None
    return model, saved


@dataclass
class TrainedModel:
    """A saved run ready for inference, with how its training ran it (autocast, memory layout,
    batch size) and how it takes a new picture (`conversion`, then `transform`). What predict, the
    evaluate stage and the experiments' stages share instead of each re-reading the config."""

    path: Path
    model: torch.nn.Module
    saved: dict
    amp_dtype: torch.dtype | None
    channels_last: bool
    batch_size: int

    @property
    def config(self) -> dict:
        return self.saved["config"]

    @property
    def trial(self) -> str:
        return self.config.get("trial", self.path.parent.name)

    @functools.cached_property
    def _preprocessing(self) -> tuple[ImageConversion, Transform]:
        return model_preprocessing(self.saved, self.path)

    @property
    def conversion(self) -> ImageConversion:
        return self._preprocessing[0]

    @property
    def transform(self) -> Transform:
        return self._preprocessing[1]

    def check_data(self, directory: Path) -> None:
        """DamagedFileError unless dataset `directory` (extracted or processed) still holds images of
        this model's size and classes: data changed under a trained model is retrained, not misread."""
        meta = read_meta(directory)
        shape, classes = list(meta["image_shape"]), list(meta["classes"])
        size, own = self.saved["input_size"], list(self.saved["classes"])
        if shape[-1] != size or shape[-2] != size or classes != own:
            raise DamagedFileError(
                f"{self.path} was trained on {size}x{size} images of {len(own)} classes "
                f"({', '.join(map(str, own[:5]))}...), but {directory} holds other data now "
                f"({'x'.join(map(str, shape))} images of classes {', '.join(map(str, classes[:5]))}...): "
                f"the data changed since training; re-run `dvc repro train@{self.trial}`")

    def predict(self, inputs: torch.Tensor, with_maps: bool = False):
        """engine.predict with this run's batch size, autocast and layout."""
        return predict(self.model, inputs, self.batch_size, self.amp_dtype, self.channels_last, with_maps=with_maps)


def load_trained(path: Path, device: torch.device) -> TrainedModel:
    """load_model, plus the inference settings its config holds (train.precision for `device`,
    train.channels_last, train.eval_batch_size)."""
    model, saved = load_model(path, device)
    train_cfg = saved["config"]["train"]
    return TrainedModel(Path(path), model, saved, autocast_dtype(device, train_cfg["precision"]),
                        train_cfg["channels_last"], train_cfg["eval_batch_size"])
