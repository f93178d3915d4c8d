"""Device slots as a GPU machine would see them, on the CPU: inherited CUDA_VISIBLE_DEVICES,
GPU/MIG UUIDs, trials of several processes (one GPU each), OpenMP threads per slot. Fake jobs
record the environment they were started with; nothing touches a GPU."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from lpa.tools import launch
from lpa.tools.slots import (Job, check_fits, counts, parse_devices, run_jobs, slot_environment, summary_table,
                             take_slot)

UUID = "GPU-8f6c1a2b-1234-5678-9abc-def012345678"
MIG = "MIG-5c1e4b3a-0d2f-5a6b-8c7d-9e0f1a2b3c4d"


@pytest.fixture(autouse=True)
def _no_inherited_settings(monkeypatch):
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)


def recording_job(tmp_path: Path, name: str, processes: int = 1, seconds: float = 0.3) -> Job:
    """A job that writes '<CUDA_VISIBLE_DEVICES> <OMP_NUM_THREADS> <CUDA_DEVICE_ORDER>' and sleeps."""
    script = ("import os, time\n"
              f"open({str(tmp_path / (name + '.env'))!r}, 'w').write(' '.join(os.environ.get(k, '-') for k in "
              "('CUDA_VISIBLE_DEVICES', 'OMP_NUM_THREADS', 'CUDA_DEVICE_ORDER')))\n"
              f"time.sleep({seconds})\n")
    return Job(name, [sys.executable, "-c", script], tmp_path / "logs" / f"{name}.log", processes=processes)


def environment_of(tmp_path: Path, name: str) -> list[str]:
    return (tmp_path / f"{name}.env").read_text().split(" ")


def test_indices_name_the_gpus_of_the_allocation():
    # a SLURM job with GPUs 4-7: index 0 is GPU 4, never physical GPU 0 (someone else's)
    assert parse_devices("0,1", inherited="4,5,6,7") == ["4", "5"]
    assert parse_devices("1", inherited=f"{UUID},GPU-other") == ["GPU-other"]
    assert parse_devices("0,1") == ["0", "1"]  # nothing inherited: the machine's indices
    with pytest.raises(ValueError, match=r"device 4 is not among the 4 GPU\(s\).*CUDA_VISIBLE_DEVICES='4,5,6,7'"):
        parse_devices("0,4", inherited="4,5,6,7")
    with pytest.raises(ValueError, match=r"may use no GPU \(CUDA_VISIBLE_DEVICES=''\); use --devices cpu"):
        parse_devices("0", inherited="")
    with pytest.raises(ValueError, match="twice"):
        parse_devices(f"0,{UUID}", inherited=UUID)


def test_gpu_and_mig_uuids_are_devices():
    assert parse_devices(f"{UUID},{MIG}") == [UUID, MIG]
    assert parse_devices("MIG-GPU-8f6c1a2b-1234-5678-9abc-def012345678/1/0") == [
        "MIG-GPU-8f6c1a2b-1234-5678-9abc-def012345678/1/0"]  # the pre-R470 MIG names
    with pytest.raises(ValueError, match="'GPU'"):
        parse_devices("GPU")
    assert slot_environment(UUID, None)["CUDA_VISIBLE_DEVICES"] == UUID


def test_the_launcher_refuses_an_index_past_the_inherited_list_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert launch.main(["--devices", "0,5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: device 5 ") and "CUDA_VISIBLE_DEVICES='4,5,6,7'" in err[0]


def test_every_slot_counts_gpus_in_pci_bus_order_unless_told_otherwise(monkeypatch):
    assert slot_environment("3", None)["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert slot_environment("cpu", 2)["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")  # the environment's own choice stands
    assert slot_environment("3", None)["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"


def test_gpu_slots_share_the_cores(tmp_path, monkeypatch):
    # 4 slots (2 GPUs x 2) on 16 cores: 4 OpenMP threads each, not a pool of 16 per slot
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    jobs = [recording_job(tmp_path, f"j{k}") for k in range(4)]
    run_jobs(jobs, ["4", "5"], slots_per_device=2, print_line=lambda _: None, poll_seconds=0.05)
    seen = [environment_of(tmp_path, job.name) for job in jobs]
    assert sorted(d for d, _, _ in seen) == ["4", "4", "5", "5"]
    assert {(t, order) for _, t, order in seen} == {("4", "PCI_BUS_ID")}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's setting stands
    assert slot_environment("4", 4)["OMP_NUM_THREADS"] == "3"


def test_a_trial_of_several_processes_gets_as_many_gpus(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    jobs = [recording_job(tmp_path, "ddp", processes=2), recording_job(tmp_path, "one"),
            recording_job(tmp_path, "two")]
    lines: list[str] = []
    run_jobs(jobs, ["4", "5", "6"], print_line=lines.append, poll_seconds=0.05)
    assert counts(jobs) == {"done": 3}
    # two distinct GPUs, each process with its GPU's share of the cores (12 / 3 slots)
    assert environment_of(tmp_path, "ddp")[:2] == ["4,5", "4"]
    assert environment_of(tmp_path, "one")[:2] == ["6", "4"]
    assert any("ddp: started on gpus 4,5" in line for line in lines)
    assert "gpus 4,5" in summary_table(jobs)


def test_a_trial_of_several_processes_on_the_cpu_splits_its_slot(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    jobs = [recording_job(tmp_path, "ddp", processes=2), recording_job(tmp_path, "one")]
    run_jobs(jobs, ["cpu"], slots_per_device=2, print_line=lambda _: None, poll_seconds=0.05)
    assert environment_of(tmp_path, "ddp")[:2] == ["", "2"] and environment_of(tmp_path, "one")[:2] == ["", "4"]


def test_slots_of_several_gpus():
    free = ["0", "1", "0", "1", "cpu"]
    assert take_slot(free, 2) == "0,1" and free == ["0", "1", "cpu"]
    assert take_slot(free, 3) is None and free == ["0", "1", "cpu"]  # busy: nothing taken
    assert take_slot(free, 1) == "0" and take_slot([], 1) is None


def test_a_trial_needing_more_gpus_than_given_is_refused_before_anything_runs(tmp_path):
    jobs = [recording_job(tmp_path, "small"), recording_job(tmp_path, "digits-vgg-seed0", processes=4)]
    with pytest.raises(ValueError, match=r"^digits-vgg-seed0 trains on 4 processes \(train.distributed.processes\), "
                                         r"one GPU each, but --devices gives 2 GPU\(s\)"):
        check_fits(jobs, ["0", "1"])
    with pytest.raises(ValueError, match="4 processes"):
        run_jobs(jobs, ["0", "1", "cpu"], print_line=lambda _: None, poll_seconds=0.05)
    assert not (tmp_path / "small.env").exists()
    check_fits(jobs, ["cpu"])  # no GPU given: its processes share the CPU


def test_the_plan_knows_each_trial_processes(quick_params, tmp_path):
    trial = next(iter(quick_params["trial_groups"]["train"]))
    assert launch.trial_processes(quick_params, trial) == quick_params["train"]["distributed"]["processes"] == 1
    stages = [(f"train@{trial}", trial, None)]
    [job] = launch.plan_jobs(stages, {f"train@{trial}"}, tmp_path, {trial: 2})
    assert job.processes == 2 and job.command[-1] == f"train@{trial}"
