"""lpa.train.machine and config.json's `environment`: which machine made a run (the CPU model, its
instruction set and AMX, or the GPU and its compute capability; torch, CUDA, threads). The GPU fields
are checked with torch.cuda faked, as tests/train/test_gpu_path.py does."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lpa.train import machine
from lpa.train.distributed import World
from lpa.train.job import TrainJob, WarmStart, environment
from lpa.train.machine import cpu_model, cpuinfo_field, has_amx, machine_description

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
# two processors of one /proc/cpuinfo, as Linux writes it (tab before the colon)
CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile amx_int8
"""


def fake_gpu(monkeypatch, name: str = "NVIDIA H100 80GB HBM3", capability: tuple[int, int] = (9, 0)) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


def without_torch_amx_check(monkeypatch) -> None:
    """Make has_amx read the cpuinfo flags, whichever torch is installed."""
    monkeypatch.delattr(torch._C._cpu, "_is_amx_tile_supported", raising=False)


def test_cpu_description_names_the_processor_isa_and_threads():
    described = machine_description(CPU)
    assert set(described) == {"cpu", "cpu_isa", "amx", "threads", "torch", "cuda"}
    assert isinstance(described["cpu"], str) and described["cpu"]
    assert isinstance(described["cpu_isa"], str) and described["cpu_isa"]  # "AVX512", "AVX2", "DEFAULT", ...
    assert described["amx"] in (True, False, None)
    assert described["threads"] == torch.get_num_threads() and described["threads"] >= 1
    assert described["torch"] == torch.__version__
    assert described["cuda"] is None or isinstance(described["cuda"], str)
    assert json.loads(json.dumps(described)) == described  # config.json can hold it as it is


def test_gpu_description_adds_the_gpu_and_its_compute_capability(monkeypatch):
    fake_gpu(monkeypatch)
    described = machine_description(CUDA)
    assert described["gpu"] == "NVIDIA H100 80GB HBM3" and described["gpu_capability"] == "9.0"
    assert {"cpu", "cpu_isa", "threads", "torch", "cuda"} <= set(described)  # the host is named too


def test_cpu_model_reads_cpuinfo_and_falls_back_to_platform(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    assert cpu_model(info) == "Intel(R) Xeon(R) Platinum 8480+"
    monkeypatch.setattr(machine.platform, "processor", lambda: "arm")
    assert cpu_model(tmp_path / "absent") == "arm"  # not Linux
    monkeypatch.setattr(machine.platform, "processor", lambda: "")
    assert cpu_model(tmp_path / "absent") == "unknown"


def test_amx_from_torch_where_it_can_tell_else_from_cpuinfo_flags(tmp_path, monkeypatch):
    with_amx, without = tmp_path / "amx", tmp_path / "epyc"
    with_amx.write_text(CPUINFO)
    without.write_text("model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    without_torch_amx_check(monkeypatch)
    assert has_amx(with_amx) is True
    assert has_amx(without) is False
    assert has_amx(tmp_path / "absent") is None
    monkeypatch.setattr(torch._C._cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert has_amx(without) is True  # torch's own check wins where it exists


def test_cpuinfo_field_is_none_when_missing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    assert cpuinfo_field(info, "vendor_id") == "GenuineIntel"
    assert cpuinfo_field(info, "cpu MHz") is None
    assert cpuinfo_field(tmp_path / "absent", "model name") is None


def job() -> TrainJob:
    return TrainJob(config={}, trial="digits-vgg-seed0", suite="quick", processed=Path("data/processed/digits"),
                    meta={"num_classes": 10, "source": {"kind": "sklearn digits"}}, input_size=32,
                    preprocessing={}, parent=WarmStart(), data_fingerprint="")


def test_config_json_environment_records_the_machine_on_cpu():
    env = environment(job(), World(), CPU, train_images=1000)
    assert env["device"] == "cpu" and env["processes"] == 1
    assert env["cpu"] == cpu_model() and env["cpu_isa"] == torch.backends.cpu.get_cpu_capability()
    assert env["threads"] == torch.get_num_threads() and env["torch"] == torch.__version__
    assert "gpu" not in env and env["train_split_images"] == 1000 and env["data_source"] == "sklearn digits"
    json.dumps(env)


def test_config_json_environment_records_the_gpu_on_cuda(monkeypatch):
    fake_gpu(monkeypatch, "NVIDIA A100-SXM4-40GB", (8, 0))
    env = environment(job(), World(size=2), CUDA, train_images=1000)
    assert env["device"] == env["gpu"] == "NVIDIA A100-SXM4-40GB" and env["gpu_capability"] == "8.0"
    assert env["processes"] == 2 and env["cuda"] == torch.version.cuda
    json.dumps(env)


def test_this_machines_cpu_is_named_from_proc_cpuinfo():
    name = cpuinfo_field(Path("/proc/cpuinfo"), "model name")
    if name is None:
        pytest.skip("no /proc/cpuinfo model name here (not Linux, or an ARM kernel)")
    assert cpu_model() == name
