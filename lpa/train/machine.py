"""Which machine trained a run, as config.json's `environment` records it.

Seeded runs are bit-identical only on the same kind of processor: an AMD EPYC and an Intel Xeon
with AMX give different bits for the same seeded bf16 run (other kernels, other rounding). So every
record names the CPU model, the instruction set PyTorch's CPU kernels dispatch to and whether the
CPU has AMX tiles, or on CUDA the GPU and its compute capability, with the torch and CUDA versions
and the number of threads.

    machine_description(device)   {cpu, cpu_isa, amx, threads, torch, cuda[, gpu, gpu_capability]}
"""
from __future__ import annotations

import platform
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo flags of the AMX tile unit (bf16 matrix multiply): oneDNN's fastest bf16 kernels
AMX_FLAGS = ("amx_tile", "amx_bf16")


def machine_description(device: torch.device) -> dict:
    """What made a run on `device`, JSON-ready: the host CPU (`cpu` model, `cpu_isa` e.g. "AVX512",
    `amx` True/False, None where unknown), `threads` (torch's intra-op threads), `torch` and `cuda`
    (the wheel's CUDA version, None for a CPU-only wheel); on a CUDA device also `gpu` (its name)
    and `gpu_capability` ("major.minor")."""
    described = {"cpu": cpu_model(), "cpu_isa": torch.backends.cpu.get_cpu_capability(), "amx": has_amx(),
                 "threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        described |= {"gpu": torch.cuda.get_device_name(device), "gpu_capability": f"{major}.{minor}"}
    return described


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name: /proc/cpuinfo's first `model name` on Linux, platform.processor()
    elsewhere (or where cpuinfo has none, as on some ARM kernels), "unknown" when both are empty."""
    name = cpuinfo_field(cpuinfo, "model name")
    return name or platform.processor() or "unknown"


def has_amx(cpuinfo: Path = CPUINFO) -> bool | None:
    """Whether the CPU has AMX tiles: torch's own check where this torch has it, else /proc/cpuinfo's
    flags; None where neither can tell (not Linux, not x86)."""
    # a private function, present in some torch versions only: hence getattr, and the cpuinfo fallback
    check = getattr(torch._C._cpu, "_is_amx_tile_supported", None)
    if check is not None:
        return bool(check())
    flags = cpuinfo_field(cpuinfo, "flags")
    if flags is None:
        return None
    return any(flag in flags.split() for flag in AMX_FLAGS)


def cpuinfo_field(cpuinfo: Path, key: str) -> str | None:
    """The value of the first `key : value` line of a /proc/cpuinfo-format file; None when the file
    or the key is missing."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return None
