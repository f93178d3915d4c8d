"""The training engine: one loop for CPU and GPU.

In the style of cifar10-airbench: the whole split lives on the device as one tensor, batches are
drawn with `torch.randperm`, augmentation runs batched on the device, loss and accuracy accumulate
on the device and are read only when the progress bar refreshes (no per-step host sync), bf16
autocast and channels_last on CUDA. The final model is the last epoch's: nothing here ever looks
at the test split.

`train` reads top to bottom: `setup_training` (one TrainingState), `resume` (from a checkpoint),
then per epoch `train_epoch`, `validate`, `report_epoch` and `save_epoch_checkpoint`.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lpa.train.augment import augment_batch
from lpa.train.device import autocast_dtype, grad_scaler
from lpa.train.checkpoint import config_hash, load_checkpoint, save_checkpoint
from lpa.train.dropout import DropoutClock, use_counter_dropout
from lpa.train.small_map_conv import use_small_map_convs
from lpa.train.distributed import (SINGLE, World, all_max, all_sum, broadcast_from_main, dropout_seed, local_part,
                             synchronise_batchnorm, wrap)
from lpa.errors import ConfigError, NonFiniteLossError
from lpa.models import build_model, options_of

# How often (in steps) the progress bar reads the device accumulators (a host sync, so not every
# step). A non-finite loss is noticed at the next sync; the step it happened at is tracked on the
# device, so the message names it exactly either way.
SYNC_EVERY = 20


@dataclass
class DeviceData:
    """A split on the device. `images` stay in the processed arrays' dtype (float16 on disk: half the
    device memory of float32) and are made float32 a batch at a time (exact: every float16 is a
    float32). A subset or a held-out part is `rows` of the same `images`, never a copy of them.

    images: N x C x H x W, every image of the split this was cut from; labels: int64, one per image
    of this split; rows: int64, this split's rows of `images` (None: all of them, in order)."""
    images: torch.Tensor
    labels: torch.Tensor
    rows: torch.Tensor | None = None

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray, device: torch.device) -> "DeviceData":
        return cls(torch.from_numpy(np.ascontiguousarray(images)).to(device),
                   torch.from_numpy(np.ascontiguousarray(labels)).to(device, torch.int64))

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """Images `idx` (indices into this split, on the device) as float32."""
        return self.images[idx if self.rows is None else self.rows[idx]].float()

    def part(self, idx: torch.Tensor) -> "DeviceData":
        """The images `idx` of this split (indices on the device) as a split of their own: new rows, no copy."""
        return DeviceData(self.images, self.labels[idx], idx if self.rows is None else self.rows[idx])

    def split_images(self) -> torch.Tensor:
        """This split's images in their stored dtype (one gather when it is a part)."""
        return self.images if self.rows is None else self.images[self.rows]


# The training subset (train.max_images) is a property of the data, not of the trial: every seed
# trains on the same images, so seeds measure the training noise and not the sampling of images.
SUBSET_SEED = 0


def balanced_subset(data: DeviceData, max_images: int) -> DeviceData:
    """A fixed, class-balanced subset of `max_images` images (all of `data` when 0 or larger)."""
    if max_images <= 0 or max_images >= len(data):
        return data
    labels = data.labels.cpu()
    num_classes = int(labels.max()) + 1
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SUBSET_SEED))
    quota = [max_images // num_classes + (k < max_images % num_classes) for k in range(num_classes)]
    chosen = torch.cat([perm[labels[perm] == k][:quota[k]] for k in range(num_classes)])
    return data.part(chosen.sort().values.to(data.labels.device))


def split_validation(data: DeviceData, fraction: float, seed: int) -> tuple[DeviceData, DeviceData | None]:
    """Hold out a seeded `fraction` of the training split for monitoring (never the test split)."""
    if fraction <= 0:
        return data, None
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data), generator=gen).to(data.labels.device)
    n_val = max(1, int(round(fraction * len(data))))
    val, train = perm[:n_val], perm[n_val:]
    return data.part(train), data.part(val)


def lr_at(train_cfg: Mapping, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate at `epoch` (0-based) and global `step`, following `train.lr_schedule`.

    Torch7's `learningRateDecay` (the official code sets 1e-7) divides the rate by
    (1 + step * lr_decay); `lr_decay: 0` switches it off.
    """
    sched = train_cfg["lr_schedule"]
    if sched["kind"] == "step":
        # the official Torch scripts' rule: before training (1-based) epoch e, the rate is multiplied
        # when e % step_epochs == 0 (step 25: the 25th epoch is the first at half the rate), or
        # when e is a milestone
        factor = sched["gamma"] ** ((epoch + 1) // sched["step_epochs"])
    elif sched["kind"] == "multistep":
        factors = sched["factors"] or [sched["gamma"]] * len(sched["milestones"])
        factor = math.prod(f for m, f in zip(sched["milestones"], factors) if epoch + 1 >= m)
    else:
        factor = 1.0
    warmup_steps = sched["warmup_epochs"] * steps_per_epoch
    if step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return train_cfg["lr"] * factor / (1.0 + step * train_cfg["lr_decay"])


def build_optimizer(model: torch.nn.Module, train_cfg: Mapping, device: torch.device) -> torch.optim.Optimizer:
    # foreach (multi-tensor) SGD everywhere; fused on CUDA, where it exists and is fastest
    fused = device.type == "cuda"
    return torch.optim.SGD(model.parameters(), lr=train_cfg["lr"], momentum=train_cfg["momentum"],
                           dampening=train_cfg["dampening"], nesterov=train_cfg["nesterov"],
                           weight_decay=train_cfg["weight_decay"],
                           **({"fused": True} if fused else {"foreach": True}))


def build_for_training(config: Mapping, num_classes: int, input_size: int, device: torch.device) -> torch.nn.Module:
    model = build_model(config["model"]["name"], num_classes, input_size=input_size, **options_of(config))
    model = model.to(device)
    if config["train"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model


# The forced CPU kernels refused under train.compile, with why and what to use instead: one rule,
# read by both swaps below and by lpa.tools.bench's --against.
NOT_UNDER_COMPILE = {
    "dropout_masks": ("counter", "the compiled model would be re-traced every step", "auto or torch"),
    "small_map_weight_grad": ("gemm", "not measured under the compiler", "auto or library"),
}


def refuse_under_compile(setting: str, value: str, compiled: bool) -> None:
    """ConfigError if `train.<setting>=<value>` forces a kernel that train.compile cannot take."""
    forced, why, instead = NOT_UNDER_COMPILE[setting]
    if compiled and value == forced:
        raise ConfigError(f"train.{setting}={value} cannot be combined with train.compile.<device>=true ({why}); "
                          f"use train.{setting}={instead}")


def counter_dropout(model: torch.nn.Module, masks: str, device: torch.device, seed: int,
                    compiled: bool = False) -> DropoutClock | None:
    """Swap the model's dropout for counter-based masks (lpa.train.dropout) where `train.dropout_masks`
    asks for them (auto: on the CPU, where PyTorch's masks cost as much as the convolutions; CUDA
    keeps PyTorch's); returns the clock the engine advances each step, or None.

    Not under train.compile: dynamo re-traces the model every step around the masks' step keys
    (measured: 98 s a step instead of 0.8 at width 0.25), so auto keeps PyTorch's masks there."""
    refuse_under_compile("dropout_masks", masks, compiled)
    if masks == "torch" or compiled or (masks == "auto" and device.type != "cpu"):
        return None
    clock = DropoutClock(seed)
    return clock if use_counter_dropout(model, clock) else None


def small_map_convs(model: torch.nn.Module, setting: str, device: torch.device, amp_dtype,
                    compiled: bool = False) -> int:
    """Swap the model's small-map 3x3 convolutions for lpa.train.small_map_conv's (weight gradient by one
    im2col GEMM) where `train.small_map_weight_grad` asks for them (auto: on the CPU under bf16, where
    oneDNN's weight gradient on 4x4 and 2x2 maps measured 2-11x slower); returns how many."""
    refuse_under_compile("small_map_weight_grad", setting, compiled)
    if setting == "library" or compiled or (setting == "auto" and (device.type != "cpu" or amp_dtype != torch.bfloat16)):
        return 0
    return use_small_map_convs(model)


def apply_warm_start(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy `state` (lpa.train.warm_start.plan_warm_start's tensors) into `model`; what it leaves out (the
    class-specific tensors) keeps its seeded initialisation."""
    unexpected = model.load_state_dict(dict(state), strict=False).unexpected_keys
    if unexpected:  # plan_warm_start only plans tensors of this model
        raise AssertionError(f"warm start planned tensors the model lacks: {unexpected[:6]}")


def train_batch(model, optimizer, data: "DeviceData", idx: torch.Tensor, gen: torch.Generator,
                augment: Mapping, channels_last: bool, amp_dtype, world: World = SINGLE,
                scaler: torch.amp.GradScaler | None = None):
    """Gather, augment (on the device, per image) and train on the batch `idx` of `data`.

    Under several processes every one draws the augmentation of the whole global batch from the
    same generator (so the generators stay equal and each image is augmented as in a
    single-process run) and trains on its own part; the returned loss and count are its part's."""
    x = augment_batch(data.batch(idx), gen, augment["flip"], augment["crop_padding"])
    y = data.labels[idx]
    loss_weight = None
    if world.distributed:
        part = local_part(idx.shape[0], world)
        x, y = x[part], y[part]
        # DDP averages the processes' gradients: weighting each part's mean loss by its share of the
        # global batch (x world size) makes that average the gradient of the global batch's mean loss
        loss_weight = y.shape[0] * world.size / idx.shape[0]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return train_step(model, optimizer, x, y, amp_dtype, loss_weight, scaler)


def train_step(model, optimizer, x, y, amp_dtype, loss_weight: float | None = None,
               scaler: torch.amp.GradScaler | None = None):
    """One SGD step; returns (mean loss, number correct) as device tensors (no host sync).
    `loss_weight` scales the loss that is differentiated (not the returned one); `scaler` (fp16,
    lpa.train.device.grad_scaler) scales it too and skips a step whose gradients overflowed."""
    with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        logits, _ = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    differentiated = loss if loss_weight is None else loss * loss_weight
    if scaler is None:
        differentiated.backward()
        optimizer.step()
    else:
        scaler.scale(differentiated).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach(), (logits.detach().argmax(1) == y).sum()


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int = 0


@dataclass
class TrainingState:
    """One run between its set-up and its last epoch: what every epoch reads and advances.

    `model` is the bare model (its state_dict is what checkpoints and model files hold);
    `forward_model` is what the steps call (`model` under DDP and/or torch.compile, when asked).
    `generator` draws the permutations and augmentations; the global RNG (seeded in set-up) the
    initialisation and PyTorch's dropout masks. `checkpoint_key`: the hash a checkpoint must carry to
    be resumed (config, data, shapes). `history`: one record per epoch done, restored ones included.
    """
    config: Mapping
    world: World
    model: torch.nn.Module
    forward_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_data: DeviceData
    val_data: DeviceData | None
    generator: torch.Generator
    amp_dtype: torch.dtype | None
    clock: DropoutClock | None
    steps_per_epoch: int
    checkpoint_key: str
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    scaler: torch.amp.GradScaler | None = None  # fp16's loss scaler (lpa.train.device.grad_scaler)

    @property
    def train_cfg(self) -> Mapping:
        return self.config["train"]

    @property
    def device(self) -> torch.device:
        return self.train_data.images.device


def train(config: Mapping, train_data: DeviceData, num_classes: int, *, checkpoint_dir: Path | None = None,
          data_fingerprint: str = "", on_epoch: Callable[[dict], None] | None = None,
          progress: bool | None = None, init_state: Mapping[str, torch.Tensor] | None = None,
          world: World = SINGLE) -> TrainResult:
    """Train `config`'s model on `train_data` (already on its device) and return the last epoch's model.

    `on_epoch(record)` is called after every epoch (and replayed for epochs restored from a
    checkpoint, so a logger sees the full history either way). A checkpoint in `checkpoint_dir`
    is resumed only if it was made under the same config, data (`data_fingerprint`, e.g.
    `lpa.data.arrays.fingerprint`) and shapes; the caller removes it once the model is saved.
    `init_state`: tensors copied over the seeded initialisation (lpa.train.warm_start, a run's
    init_from); a resumed checkpoint replaces them, as it replaces the initialisation.
    `world`: this process's place when several train together (lpa.train.distributed, started by
    torchrun, the process group already joined): each trains on its part of every global batch;
    only rank 0 logs, prints and checkpoints; all return the same model.
    """
    state = setup_training(config, train_data, num_classes, data_fingerprint, init_state, world)
    resume(state, checkpoint_dir, on_epoch)
    show_bar = world.is_main and (sys.stderr.isatty() if progress is None else progress)
    for epoch in range(state.start_epoch, state.train_cfg["epochs"]):
        record = train_epoch(state, epoch, show_bar)
        record.update(validate(state, epoch))
        state.history.append(record)
        if world.is_main:  # the other processes train alongside rank 0 and write nothing
            report_epoch(state, record, on_epoch)
            save_epoch_checkpoint(state, epoch, checkpoint_dir)
    return TrainResult(model=state.model, history=state.history, resumed_from_epoch=state.start_epoch)


def setup_training(config: Mapping, train_data: DeviceData, num_classes: int, data_fingerprint: str = "",
                   init_state: Mapping[str, torch.Tensor] | None = None, world: World = SINGLE) -> TrainingState:
    """`config`'s run ready for its first epoch: the seeded global RNG and generator, the training
    subset and the held-out validation part of `train_data`, the model (warm-started from
    `init_state` if given, with its kernel swaps, wrapped for `world`), the optimizer and the number
    of steps per epoch. ConfigError when the data is less than one batch."""
    cfg, seed, device = config["train"], config["seed"], train_data.images.device
    torch.manual_seed(seed)
    train_data = balanced_subset(train_data, cfg["max_images"])
    train_data, val_data = split_validation(train_data, cfg["val_fraction"], seed)
    input_size = train_data.images.shape[-1]
    model = build_for_training(config, num_classes, input_size, device)
    if init_state is not None:
        apply_warm_start(model, init_state)
    if world.distributed and cfg["distributed"]["sync_batchnorm"]:
        model = synchronise_batchnorm(model, device)
    compiled = cfg["compile"][device.type]
    amp_dtype = autocast_dtype(device, cfg["precision"])
    clock = counter_dropout(model, cfg["dropout_masks"], device, seed, compiled=compiled)
    small_map_convs(model, cfg["small_map_weight_grad"], device, amp_dtype, compiled=compiled)
    optimizer = build_optimizer(model, cfg, device)
    parallel_model = wrap(model, world, device)
    forward_model = torch.compile(parallel_model, mode=cfg["compile_mode"]) if compiled else parallel_model
    generator = torch.Generator(device=device).manual_seed(seed)
    n = len(train_data)
    key = config_hash({"config": _without_process_count(config), "data": data_fingerprint, "train_images": n,
                       "num_classes": num_classes, "input_size": input_size})
    return TrainingState(config, world, model, forward_model, optimizer, train_data, val_data, generator, amp_dtype,
                         clock, epoch_steps(config, n, world), key, scaler=grad_scaler(amp_dtype, device))


def epoch_steps(config: Mapping, n: int, world: World) -> int:
    """Optimizer steps in one epoch of `n` training images; ConfigError when that is none."""
    cfg = config["train"]
    bs = cfg["batch_size"]
    # a last batch of one image per process would break BatchNorm in training mode: drop it as
    # drop_last would (one process: a last batch of 1 image; two: of 1..3 images; ...)
    steps = n // bs if cfg["drop_last"] or 0 < n % bs < 2 * world.size else math.ceil(n / bs)
    if steps == 0:
        raise ConfigError(f"run {config['run']}: {n} training images make no full batch of {bs} (train.drop_last, "
                          "or a last batch of under 2 images per process, is dropped); lower train.batch_size")
    return steps


def resume(state: TrainingState, checkpoint_dir: Path | None,
           on_epoch: Callable[[dict], None] | None = None) -> None:
    """Restore `state` from the checkpoint in `checkpoint_dir` if one carries its checkpoint_key
    (else leave it at epoch 0): weights, optimizer, generator, global RNGs, history, start_epoch.
    Rank 0 says so and replays the restored records to `on_epoch`. ConfigError when the checkpoint
    was made by another number of processes."""
    world, run = state.world, state.config["run"]
    # rank 0 reads the checkpoint (it alone writes them: on several machines only its disk has it)
    saved = broadcast_from_main(load_checkpoint(checkpoint_dir, state.checkpoint_key, state.device.type) if world.is_main else None,
                                world)
    if saved is None:
        return
    made_by = saved.get("world_size", 1)
    if made_by != world.size:
        raise ConfigError(
            f"{run}: the checkpoint in {checkpoint_dir} was made by {made_by} "
            f"training process(es), this run has {world.size}; resume it with {made_by} "
            f"(train.distributed.processes, or torchrun's processes) or delete {checkpoint_dir} to start over")
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    if state.device.type == "cuda" and saved.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(saved["cuda_rng"])
    if state.scaler is not None and saved.get("scaler"):
        state.scaler.load_state_dict(saved["scaler"])
    state.history, state.start_epoch = saved["history"], saved["epoch"]
    if world.is_main:
        print(f"{run}: resuming from the checkpoint after epoch {state.start_epoch}")
        if on_epoch:
            for record in state.history:
                on_epoch(record)


def train_epoch(state: TrainingState, epoch: int, show_bar: bool) -> dict:
    """Train epoch `epoch` (0-based) of `state` and return its record: epoch (1-based), steps,
    train_loss, train_top1_error, lr, images_per_s, seconds (over every process's images).
    NonFiniteLossError when a step's loss was not finite."""
    cfg, world, device, steps = state.train_cfg, state.world, state.device, state.steps_per_epoch
    bs, optimizer = cfg["batch_size"], state.optimizer
    if world.distributed:
        torch.manual_seed(dropout_seed(state.config["seed"], world, epoch))
    state.forward_model.train()
    t0 = time.perf_counter()
    perm = torch.randperm(len(state.train_data), device=device, generator=state.generator)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    first_bad = torch.full((), -1, device=device, dtype=torch.int64)
    step_ids = torch.arange(steps, device=device)  # indexing it needs no host->device copy
    # host syncs: every SYNC_EVERY steps to refresh the bar, else only at the end of the epoch;
    # several processes meet (all_reduce) only at the end of an epoch
    sync_every = SYNC_EVERY if show_bar else steps
    seen = 0
    bar = tqdm(range(steps), desc=f"{state.config['run']} epoch {epoch + 1}/{cfg['epochs']}",
               disable=not show_bar, leave=False, unit="step")
    for b in bar:
        idx = perm[b * bs:(b + 1) * bs]
        step = epoch * steps + b
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, epoch, step, steps)
        part = local_part(idx.shape[0], world)  # this process's images (all of them when alone)
        if state.clock is not None:  # the masks of this step, for these images of the global batch
            state.clock.step, state.clock.first_image = step, part.start
        loss, n_correct = train_batch(state.forward_model, optimizer, state.train_data, idx, state.generator,
                                      cfg["augment"], cfg["channels_last"], state.amp_dtype, world, state.scaler)
        # remember the first bad step on the device; read it only at sync points
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step_ids[b], first_bad)
        loss_sum += loss * (part.stop - part.start)
        correct += n_correct
        seen += idx.shape[0]
        last = b + 1 == steps
        if last and world.distributed:  # every process's part, on every process
            first_bad = all_max(first_bad, world)
            loss_sum, correct = all_sum(loss_sum, world), all_sum(correct, world)
        if (b + 1) % sync_every == 0 or last:
            # several processes decide together, on the summed values, at the end of the epoch
            bad = int(first_bad) if last or not world.distributed else -1
            if bad >= 0:
                raise non_finite_loss(state.config, epoch, bad)
            if show_bar:
                elapsed = time.perf_counter() - t0
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{100 * int(correct) / seen:.2f}%",
                                img_s=f"{seen / elapsed:.0f}")
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "epoch": epoch + 1,
        "steps": steps,
        "train_loss": float(loss_sum) / seen,
        "train_top1_error": 100.0 * (1 - int(correct) / seen),
        "lr": optimizer.param_groups[0]["lr"],
        "images_per_s": seen / seconds,
        "seconds": seconds,
    }


def non_finite_loss(config: Mapping, epoch: int, step: int) -> NonFiniteLossError:
    """The one-line error for a non-finite loss at `step` (0-based, within the epoch) of `epoch`."""
    cfg = config["train"]
    return NonFiniteLossError(
        f"{config['run']}: loss became non-finite at epoch {epoch + 1}, step {step + 1}; "
        f"check the learning rate (train.lr={cfg['lr']}), the preprocessed inputs "
        f"(data/processed/{config['dataset']}) and train.precision")


def validate(state: TrainingState, epoch: int) -> dict:
    """{"val_top1_error": %} of the held-out part after the epochs train.eval_every asks for (and
    the last), on rank 0; {} otherwise."""
    cfg, world = state.train_cfg, state.world
    due = cfg["eval_every"] and ((epoch + 1) % cfg["eval_every"] == 0 or epoch + 1 == cfg["epochs"])
    if state.val_data is None or not due or not world.is_main:
        return {}
    # rank 0 alone, on the bare model (no DDP collectives); BatchNorm in eval mode needs no peers
    logits = predict(state.model if world.distributed else state.forward_model, state.val_data.split_images(),
                     cfg["eval_batch_size"], state.amp_dtype, cfg["channels_last"])
    return {"val_top1_error": 100.0 * float((logits.argmax(1) != state.val_data.labels.cpu()).float().mean())}


def report_epoch(state: TrainingState, record: dict, on_epoch: Callable[[dict], None] | None) -> None:
    """Print an epoch's one line and hand its `record` to `on_epoch` (rank 0's job)."""
    print(f"{state.config['run']} epoch {record['epoch']}/{state.train_cfg['epochs']}: "
          f"loss {record['train_loss']:.4f} train error {record['train_top1_error']:.2f}% lr {record['lr']:.4g} "
          f"{record['images_per_s']:.0f} img/s"
          + (f" val error {record['val_top1_error']:.2f}%" if "val_top1_error" in record else ""),
          flush=True)
    if on_epoch:
        on_epoch(record)


def save_epoch_checkpoint(state: TrainingState, epoch: int, checkpoint_dir: Path | None) -> None:
    """After epoch `epoch` (0-based), every train.checkpoint_every epochs but the last, write what
    `resume` restores to `checkpoint_dir` (rank 0's job; none without a directory)."""
    every, epochs = state.train_cfg["checkpoint_every"], state.train_cfg["epochs"]
    if checkpoint_dir is None or not every or (epoch + 1) % every != 0 or epoch + 1 >= epochs:
        return
    save_checkpoint(checkpoint_dir, {
        "config_hash": state.checkpoint_key, "epoch": epoch + 1, "history": state.history,
        "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
        "generator": state.generator.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state() if state.device.type == "cuda" else None,
        "world_size": state.world.size, "device_type": state.device.type,
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
    })


def _without_process_count(config: Mapping) -> dict:
    """`config` less train.distributed.processes: a checkpoint's hash does not depend on it; a
    resume under another process count is refused by its own message instead."""
    train_cfg = {**config["train"], "distributed": {k: v for k, v in config["train"]["distributed"].items()
                                                    if k != "processes"}}
    return {**config, "train": train_cfg}


def forward(model: torch.nn.Module, x: torch.Tensor, amp_dtype: torch.dtype | None = None,
            channels_last: bool = False):
    """model(x) -> (logits, maps) in the run's memory layout and autocast: every inference path
    (predict, FGSM, features) goes through here; the training step keeps its own."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        return model(x)


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int, amp_dtype: torch.dtype | None = None,
            channels_last: bool = False, with_maps: bool = False):
    """Logits (float32, on the CPU) for `images` in large no-grad batches; maps too if asked."""
    model.eval()
    logits, maps = [], []
    for i in range(0, images.shape[0], batch_size):
        # a batch at a time to float32: `images` may be the float16 arrays (DeviceData)
        out, level_maps = forward(model, images[i:i + batch_size].float(), amp_dtype, channels_last)
        logits.append(out.float().cpu())
        if with_maps:
            maps.append([m.float().cpu() for m in level_maps])
    logits = torch.cat(logits)
    if not with_maps:
        return logits
    levels = [torch.cat([batch[k] for batch in maps]) for k in range(len(maps[0]))] if maps else []
    return logits, levels
