"""One run on several processes: torch.distributed data parallelism (DDP), one process per GPU.

The processes are started by `torchrun` (PyTorch's launcher, `torch.distributed.run`), either by
the train stage itself (`train.distributed.processes` > 1, one machine) or by a user on each of
several machines. Every process keeps the whole training split on its device and draws the same
seeded permutation and augmentation for each global batch (`train.batch_size`, the paper's 128);
process k trains on its k-th part of it. Gradients are averaged by DDP with each part's loss
weighted by its share of the batch, so one step is the single-process step on the same 128
images; the learning rate is unchanged. BatchNorm: `train.distributed.sync_batchnorm` (default
true) takes the statistics over the whole global batch, as the paper's single GPU did; without it
each process normalises over its own part only (128 / processes images).

Rank 0 alone writes (model, records, dvclive log, checkpoints); the others train and exit.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from lpa.train.device import pick_device
from lpa.train.module_swap import replace_modules

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run (torchrun's RANK, WORLD_SIZE, LOCAL_RANK)."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def world_from_environment() -> World:
    """The world torchrun describes in the environment; one process when not started by torchrun."""
    if "WORLD_SIZE" not in os.environ:
        return SINGLE
    return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


def start(world: World, backend: str) -> torch.device:
    """Join the process group (env:// rendezvous, as torchrun sets it up) and return this process's
    device: cuda:<local rank> where GPUs exist, else the CPU (gloo)."""
    _die_with_launcher()
    cuda = pick_device().type == "cuda"  # DeviceError when given GPUs that CUDA cannot start
    if cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"process {world.rank} has local rank {world.local_rank} but this machine shows "
                               f"{torch.cuda.device_count()} GPUs")
        torch.cuda.set_device(world.local_rank)
    if world.distributed and not dist.is_initialized():
        chosen = backend if backend != "auto" else ("nccl" if cuda else "gloo")
        dist.init_process_group(chosen)
    return torch.device("cuda", world.local_rank) if cuda else torch.device("cpu")


def _die_with_launcher() -> None:
    """Let the kernel kill this process when its launcher dies (Linux's PR_SET_PDEATHSIG).

    torchrun starts each process in a session of its own, so a launcher killed outright (SIGKILL,
    an out-of-memory kill) would leave them training on, orphaned, writing a run nobody waits for."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the launcher died before the request was in place
        os._exit(1)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def local_part(n: int, world: World) -> slice:
    """This process's contiguous part of a global batch of `n` images (torch.tensor_split's sizes:
    the first n % size parts get one more)."""
    base, extra = divmod(n, world.size)
    start_ = world.rank * base + min(world.rank, extra)
    return slice(start_, start_ + base + (world.rank < extra))


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """The sum over processes of `tensor` (a new tensor; `tensor` itself is left as it is)."""
    out = tensor.clone()
    if world.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_max(tensor: torch.Tensor, world: World) -> torch.Tensor:
    out = tensor.clone()
    if world.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def broadcast_from_main(obj: object, world: World) -> object:
    """Rank 0's `obj` on every process (a checkpoint read on rank 0's machine only)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """DDP around `model` when there are several processes (it averages the gradients), else `model`."""
    if not world.distributed:
        return model
    return nn.parallel.DistributedDataParallel(model, **ddp_options(model, device))


def ddp_options(model: nn.Module, device: torch.device) -> dict:
    """DDP's device_ids (this process's GPU) and broadcast_buffers: off when the BatchNorm statistics are
    synchronised (every process computes the same running statistics from the global batch, so rank 0's
    need not be sent to the others before every forward pass)."""
    synchronised = any(isinstance(m, (GlobalBatchNorm, nn.SyncBatchNorm)) for m in model.modules())
    return {"device_ids": [device.index] if device.type == "cuda" else None, "broadcast_buffers": not synchronised}


class _GatherFromProcesses(torch.autograd.Function):
    """all_gather along a new first dimension; the backward sums every process's gradient for
    this process's slot (each process's loss depends on every slot)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[dist.get_rank()]


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch (every process's part).

    The role of torch.nn.SyncBatchNorm, which runs on GPUs only: this one also runs on the CPU
    (gloo), so the multi-process tests exercise the default. Each process computes its part's
    per-channel mean and sum of squared deviations (two passes, as a one-pass E[x^2] - E[x]^2
    loses the variance to cancellation when the mean is large); one all_gather brings every
    part's, combined by Chan et al.'s parallel formula; its backward sums every process's
    gradient, as SyncBatchNorm's does. In eval mode, or alone, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected 2D to 5D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x.float()
        count = x.numel() // c
        local_mean = xf.mean(dims)
        local_m2 = (xf - local_mean.view(shape)).square().sum(dims)
        counts = torch.full((1,), float(count), device=x.device)
        parts = _GatherFromProcesses.apply(torch.cat([local_mean, local_m2, counts]))  # world x (2c + 1)
        means, m2s, ns = parts[:, :c], parts[:, c:2 * c], parts[:, 2 * c:]
        n = ns.sum()
        mean = (ns * means).sum(0) / n
        var = (m2s.sum(0) + (ns * (means - mean).square()).sum(0)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * (n / (n - 1)), self.momentum)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def synchronise_batchnorm(module: nn.Module, device: torch.device | None = None) -> nn.Module:
    """`module` with every BatchNorm1d/2d replaced by one whose training statistics are the global
    batch's, holding the same tensors (state_dict keys unchanged: a saved model loads into the plain
    architecture): torch.nn.SyncBatchNorm on a GPU (fused CUDA kernels, the same statistics),
    GlobalBatchNorm elsewhere (SyncBatchNorm runs on GPUs only)."""
    if device is not None and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    replace_modules(module, lambda child: _global_twin(child)
                    if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)) else None)
    return module


def _global_twin(module: nn.BatchNorm1d | nn.BatchNorm2d) -> GlobalBatchNorm:
    bn = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                         module.track_running_stats)
    if module.affine:
        bn.weight, bn.bias = module.weight, module.bias
    if module.track_running_stats:
        bn.running_mean, bn.running_var = module.running_mean, module.running_var
        bn.num_batches_tracked = module.num_batches_tracked
    bn.train(module.training)
    return bn


def dropout_seed(seed: int, world: World, epoch: int) -> int:
    """The seed of process `rank`'s own random stream (dropout masks) for `epoch`: distinct per
    process (each masks different images) and re-derived each epoch, so a resumed run needs no
    per-process generator state in its checkpoint."""
    return (seed * 1_000_003 + world.rank * 7_919 + epoch * 104_729 + 1) % (2 ** 63)


def run_on_every_rank(job: Callable[[World, torch.device], None], processes: int, backend: str,
                      module: str, args: Sequence[str]) -> None:
    """Run `job(world, device)` in this process as its rank of the run.

    Asked for `processes` > 1 outside torchrun, this process is the launcher: it starts
    `python -m module args` that many times (launch_here) and exits with their code (SystemExit).
    Under torchrun it joins the process group (`backend`: train.distributed.backend) and runs `job` on
    its rank's device; alone, on lpa.train.device.pick_device's. The process group is left however
    `job` ends."""
    world = world_from_environment()
    if processes > 1 and not world.distributed:
        raise SystemExit(launch_here(processes, module, args))
    device = start(world, backend) if world.distributed else pick_device()
    try:
        job(world, device)
    except RuntimeError as err:
        if world.distributed and lost_a_peer(err):
            # another process died and gloo said so at once: its launcher names it (launch_here);
            # this one leaves without a traceback and writes nothing more. os._exit: tearing the
            # broken group down would abort in gloo's destructor (SIGABRT, a second "crash")
            sys.stdout.flush()
            os._exit(PEER_LOST)
        raise
    finally:
        stop()


# a surviving process's exit code when a peer died under it (launch_here does not count it as the crash)
PEER_LOST = 75
# what gloo's TCP transport says when the process at the other end of a collective is gone
PEER_GONE_MESSAGES = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")


def lost_a_peer(err: RuntimeError) -> bool:
    """Whether `err`, raised in a collective, says another process of the run is gone."""
    return isinstance(err, dist.DistError) or any(m in str(err) for m in PEER_GONE_MESSAGES)


def thread_environment(processes: int, environ: Mapping[str, str]) -> dict[str, str]:
    """What launch_here adds to the environment its `processes` processes inherit: OMP_NUM_THREADS, each
    process's share of this machine's cores, unless `environ` sets it. On GPUs too: torchrun's default
    of one thread starves what still runs on the CPU there (the launch, the checkpoint, evaluation)."""
    if "OMP_NUM_THREADS" in environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))}


def launch_here(processes: int, module: str, args: Sequence[str]) -> int:
    """Run `python -m module args` as `processes` processes on this machine under PyTorch's elastic
    launcher (torchrun's machinery, a `--standalone` local rendezvous on a free port) and return
    0, or 1 if any process failed.

    Each process prints its own `error:` line; the launcher's report of a failed child (a long
    traceback of its agent) is replaced by one line. On the CPU each process gets its share of
    the cores as OpenMP threads (torchrun would give each one thread) unless OMP_NUM_THREADS is set.
    """
    os.environ.update(thread_environment(processes, os.environ))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=f"lpa-{os.getpid()}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    quiet = logging.getLogger("torch.distributed.elastic")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", module, *args)
    except ChildFailedError as err:
        died = {rank: failure for rank, failure in err.failures.items()
                if failure.exitcode < 0 and failure.exitcode != -signal.SIGTERM}  # SIGTERM: the agent's stop
        if died:
            names = ", ".join(f"{rank} ({failure.signal_name()})" for rank, failure in sorted(died.items()))
            print(f"error: process {names} of the {processes} processes of `python -m {module}` died; the "
                  "others were stopped and wrote nothing: run it again to resume from the last checkpoint",
                  file=sys.stderr, flush=True)
            return 1
        codes = sorted({f.exitcode for f in err.failures.values()} - {PEER_LOST})
        # exit code 1 is a user error, which every process meets and rank 0 prints (lpa.config.stage_runner);
        # the launcher may stop the others meanwhile (SIGTERM). Without a 1 it was a crash: say so
        if 1 not in codes:
            print(f"error: {len(err.failures)} of {processes} processes of `python -m {module}` failed "
                  f"(exit code {', '.join(map(str, codes))}); their messages are above", file=sys.stderr, flush=True)
        return 1
    finally:
        quiet.setLevel(level)
    return 0
