"""Where a process computes and in what precision: its device, the autocast dtype of `train.precision`,
the fp16 loss scaler and CUDA's math switches.

No GPU has run this project's code while it was written: what only a GPU can show is measured by
`make gpu-check` (lpa/tools/gpu_check.py).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from lpa.errors import DeviceError

# CUDA_VISIBLE_DEVICES values that give a process no GPU on purpose
NO_GPUS = ("", "-1")
# autocast dtype of each train.precision value (None: plain fp32)
PRECISION_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# train.precision.cuda=auto: bf16 from compute capability 8.0 (Ampere, native bf16 tensor cores); below
# it bf16 is emulated or refused, and fp16 with a loss scaler is what those GPUs' tensor cores run
BF16_FROM_CAPABILITY = (8, 0)


def gpus_given() -> str | None:
    """CUDA_VISIBLE_DEVICES when it gives this process GPUs (set, not empty, not -1), else None."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return None if value is None or value.strip() in NO_GPUS else value


def pick_device(requested: str = "auto") -> torch.device:
    """The device to compute on: `requested` ("cpu", "cuda", "cuda:N") or, for "auto", the GPU when
    CUDA works and the CPU otherwise.

    DeviceError when the process was given GPUs (CUDA_VISIBLE_DEVICES, or `requested` a cuda device)
    and CUDA cannot start (no such device, a driver older than the wheel's CUDA, a CPU-only wheel):
    such a run would otherwise train on the CPU, silently and a hundred times slower."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda" if requested == "auto" else requested)
    given = gpus_given()
    if requested.startswith("cuda") or given is not None:
        asked = f"CUDA_VISIBLE_DEVICES={given}" if given is not None else f"device {requested}"
        built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA (a CPU-only wheel)"
        raise DeviceError(
            f"this run was given GPUs ({asked}) but CUDA cannot start: torch {torch.__version__} is built for "
            f"{built} and sees no GPU; check `nvidia-smi` (the driver must support that CUDA version) and the "
            "device numbers, or set CUDA_VISIBLE_DEVICES= (empty) to run on the CPU")
    return torch.device("cpu")


def precision_for(device: torch.device, precision: Mapping) -> str:
    """fp32, bf16 or fp16: `train.precision`'s entry for `device`'s type, cuda's `auto` resolved by the
    GPU's compute capability (bf16 from 8.0, fp16 below)."""
    name = precision["cuda" if device.type == "cuda" else "cpu"]
    if name == "auto":
        name = "bf16" if torch.cuda.get_device_capability(device) >= BF16_FROM_CAPABILITY else "fp16"
    return name


def autocast_dtype(device: torch.device, precision: Mapping) -> torch.dtype | None:
    """The autocast dtype (fp32 master weights) of `train.precision` on `device`, None for plain fp32.
    On CUDA it also sets the math switches (set_cuda_math)."""
    if device.type == "cuda":
        set_cuda_math()
    return PRECISION_DTYPES[precision_for(device, precision)]


def set_cuda_math() -> None:
    """cuDNN's autotuner on (every step has the same shapes, so the fastest algorithm found at the
    first is the fastest at all the others); TF32 off, so fp32 means fp32 (PyTorch's cuDNN default
    is TF32 on)."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False


def grad_scaler(amp_dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 autocast needs (fp16 gradients underflow without it); None otherwise."""
    return torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
