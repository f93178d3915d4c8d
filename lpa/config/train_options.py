"""The `train` section of params.yaml, declared once (lpa.config.settings): what lpa.train.engine reads.

The pipeline's values live in conf/ only (no library defaults here, so each value exists in one
place); `python -m lpa.config settings` lists them. Kept apart from the engine so that checking
params (lpa.config, run by every stage first) does not import torch or the training loop.
"""
from __future__ import annotations

from collections.abc import Mapping

from lpa.config.settings import Setting
from lpa.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_POSITIVE = {"low": 0, "low_open": True}
TRAIN_SETTINGS: dict = {
    "epochs": Setting("int", "passes over the training split", low=1),
    "batch_size": Setting("int", "images per SGD step (the paper: 128)", low=1),
    "drop_last": Setting("bool", "drop the last partial batch of an epoch (official: true)"),
    "optimizer": Setting("choice", "the optimiser", choices=("sgd",)),
    "lr": Setting("number", "learning rate (the official 1 assumes train.dampening 0.9)", **_POSITIVE),
    "lr_decay": Setting("number", "Torch7 learningRateDecay: lr / (1 + step * lr_decay); 0 switches it off", low=0),
    "momentum": Setting("number", "SGD momentum", low=0),
    "dampening": Setting("number", "SGD dampening: v = m v + (1 - d) g (Torch7's default d = momentum)",
                         low=0, high=1, high_open=True),
    "nesterov": Setting("bool", "Nesterov momentum (needs momentum > 0 and dampening 0)"),
    "weight_decay": Setting("number", "L2 weight decay", low=0),
    "lr_schedule": {
        "kind": Setting("choice", "learning-rate schedule", choices=("step", "multistep", "constant")),
        "step_epochs": Setting("int", "step: multiply lr by gamma every step_epochs epochs", low=1),
        "milestones": Setting("int_list", "multistep: epochs at which lr is multiplied by gamma", low=1),
        "gamma": Setting("number", "the schedule's factor", **_POSITIVE),
        "factors": Setting("number_list", "multistep: the factor at each milestone, in order (empty: gamma at "
                                          "every one; official CUB: x2, x2, then x0.5)", **_POSITIVE),
        "warmup_epochs": Setting("int", "linear warm-up from 0 over this many epochs (not official)", low=0),
    },
    "augment": {
        "flip": Setting("bool", "random horizontal flip, per image"),
        "crop_padding": Setting("int", ">0: zero-pad and random-crop back (official VGG: never called)", low=0),
    },
    "precision": {
        "cpu": Setting("choice", "on a CPU: fp32 | bf16 autocast | fp16 autocast with a loss scaler (master "
                                 "weights stay fp32)", choices=PRECISIONS),
        "cuda": Setting("choice", "on a GPU: fp32 (TF32 off) | bf16 autocast | fp16 autocast with a loss scaler | "
                                  "auto (bf16 from compute capability 8.0, fp16 below)", choices=(*PRECISIONS, "auto")),
    },
    "channels_last": Setting("bool", "NHWC memory layout (tensor cores on CUDA, oneDNN on CPU)"),
    "dropout_masks": Setting("choice", "how dropout masks are drawn: auto (counter on the CPU, torch on CUDA) | "
                                       "torch (nn.Dropout) | counter (lpa.train.dropout: hashed, ~5x faster on a CPU)",
                             choices=("auto", "torch", "counter")),
    "small_map_weight_grad": Setting(
        "choice", "weight gradient of 3x3 convolutions on maps of at most 4x4 with >= 64 input channels: auto (one "
                  "im2col GEMM on the CPU under bf16, lpa/train/small_map_conv.py; the library's elsewhere) | library "
                  "(PyTorch's: oneDNN / cuDNN) | gemm (the GEMM on any device and precision)",
        choices=("auto", "library", "gemm")),
    "compile": {
        "cpu": Setting("bool", "torch.compile the model on a CPU (measured slower here: docs/speed.md)"),
        "cuda": Setting("bool", "torch.compile the model on a GPU"),
    },
    "compile_mode": Setting("choice", "torch.compile mode", choices=COMPILE_MODES),
    "max_images": Setting("int", ">0: a fixed class-balanced subset of this many training images; 0: all", low=0),
    "val_fraction": Setting("number", ">0: hold out this share of train for monitoring (never the test split)",
                            low=0, high=1, high_open=True),
    "eval_every": Setting("int", "epochs between validation passes (with val_fraction > 0)", low=0),
    "eval_batch_size": Setting("int", "images per no-grad evaluation batch", low=1),
    "checkpoint_every": Setting("int", "epochs between resumable checkpoints (0: none)", low=0),
    "distributed": {
        "processes": Setting("int", "training processes on this machine, one per GPU (DDP); >1: the train stage "
                                    "starts itself under torchrun. The global batch stays train.batch_size", low=1),
        "backend": Setting("choice", "torch.distributed backend (auto: nccl on GPUs, gloo on CPUs)",
                           choices=("auto", "nccl", "gloo")),
        "sync_batchnorm": Setting("bool", "BatchNorm statistics over the whole global batch, as on one device "
                                          "(false: each process's part)"),
    },
}


def check_train_section(train: Mapping, where: str) -> None:
    """The checks that span several `train` settings (each one alone is checked by its Setting):
    `train` is a run's merged, checked section, `where` names the run in the message (e.g. 'run
    cifar10-vgg'). Raises ConfigError."""
    if train["nesterov"] and (train["dampening"] != 0 or train["momentum"] == 0):
        raise ConfigError(f"{where}: train.nesterov=true needs train.momentum > 0 and train.dampening=0 "
                          f"(got momentum={train['momentum']}, dampening={train['dampening']})")
    sched = train["lr_schedule"]
    if sched["factors"] and len(sched["factors"]) != len(sched["milestones"]):
        raise ConfigError(f"{where}: train.lr_schedule.factors has {len(sched['factors'])} factors for "
                          f"{len(sched['milestones'])} milestones; give one per milestone, or [] for gamma at each")
    if train["max_images"] == 1:
        raise ConfigError(f"{where}: train.max_images=1 is too few; use 0 (all) or >= 2")
