"""The GPU path on a machine without one: device choice, precision, checkpoints across device types,
data kept in its stored dtype, BatchNorm synchronisation, host syncs, launch environment, schedule.

CUDA is faked where the logic only asks torch about it (is_available, get_device_capability); what
needs a real GPU is `make gpu-check` (lpa/tools/gpu_check.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lpa.errors import DeviceError
from lpa.models.attention import LevelClassifier
from lpa.train import distributed, dropout
from lpa.train.checkpoint import load_checkpoint, save_checkpoint
from lpa.train.device import autocast_dtype, grad_scaler, pick_device, precision_for
from lpa.train.distributed import GlobalBatchNorm, ddp_options, synchronise_batchnorm, thread_environment
from lpa.train.engine import DeviceData, balanced_subset, lr_at, split_validation, train, train_step
from tests.train.test_engine import toy_data

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def no_cuda(monkeypatch, visible: str | None):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)


@pytest.mark.parametrize("visible", ["0", "0,1", "GPU-1234"])
def test_given_gpus_that_cuda_cannot_start_is_one_error(monkeypatch, visible):
    no_cuda(monkeypatch, visible)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    with pytest.raises(DeviceError) as err:
        pick_device()
    message = str(err.value)
    assert f"CUDA_VISIBLE_DEVICES={visible}" in message and "CUDA 12.8" in message and "\n" not in message
    assert "nvidia-smi" in message and "CUDA_VISIBLE_DEVICES= (empty)" in message


@pytest.mark.parametrize("visible", [None, "", "-1", " "])
def test_without_gpus_given_the_cpu_is_chosen(monkeypatch, visible):
    no_cuda(monkeypatch, visible)
    assert pick_device() == CPU and pick_device("cpu") == CPU


def test_an_explicit_cuda_request_without_cuda_is_one_error(monkeypatch):
    no_cuda(monkeypatch, None)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(DeviceError, match=r"device cuda:1\).*CPU-only wheel"):
        pick_device("cuda:1")


def test_with_cuda_the_gpu_is_chosen(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == CUDA and pick_device("cuda:1") == torch.device("cuda", 1) and pick_device("cpu") == CPU


def test_a_distributed_process_given_dead_gpus_stops_too(monkeypatch):
    no_cuda(monkeypatch, "0")
    monkeypatch.setattr(distributed, "_die_with_launcher", lambda: None)
    with pytest.raises(DeviceError):
        distributed.start(distributed.World(0, 2, 0), "auto")


@pytest.mark.parametrize("capability, expected", [((7, 0), torch.float16), ((7, 5), torch.float16),
                                                  ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_cuda_auto_precision_follows_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert autocast_dtype(CUDA, {"cpu": "fp32", "cuda": "auto"}) == expected
    assert torch.backends.cudnn.benchmark  # static shapes: cuDNN's autotuner is switched on for CUDA runs


def test_precision_names_map_to_autocast_dtypes(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert [autocast_dtype(CPU, {"cpu": p, "cuda": "auto"}) for p in ("fp32", "bf16", "fp16")] == \
        [None, torch.bfloat16, torch.float16]
    assert not torch.backends.cudnn.benchmark  # a CPU run leaves CUDA's switches alone
    assert precision_for(CUDA, {"cpu": "fp32", "cuda": "fp16"}) == "fp16"
    assert grad_scaler(torch.float16, CPU) is not None and grad_scaler(torch.bfloat16, CPU) is None
    assert grad_scaler(None, CPU) is None


def test_fp16_with_a_loss_scaler_trains_on_the_cpu(tiny_config):
    config = tiny_config(epochs=1)
    result = train({**config, "train": {**config["train"], "precision": {"cpu": "fp16", "cuda": "auto"}}},
                   toy_data(), 10, progress=False)
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert np.isfinite(result.history[0]["train_loss"])


def test_the_loss_scaler_skips_a_step_whose_gradients_overflow():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    wrapped = lambda x: (model(x), [])  # noqa: E731 (the engine's models return (logits, maps))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    before = [p.detach().clone() for p in model.parameters()]
    train_step(wrapped, optimizer, x, y, torch.float16, loss_weight=float("inf"), scaler=scaler)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # skipped, not applied
    assert scaler.get_scale() < 2.0 ** 16  # and the scale backed off
    train_step(wrapped, optimizer, x, y, torch.float16, scaler=scaler)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_checkpoint_made_on_another_device_type_starts_fresh(tmp_path, capsys):
    state = {"config_hash": "k", "epoch": 2, "history": [], "model": {}, "optimizer": {},
             "generator": torch.zeros(16, dtype=torch.uint8), "torch_rng": torch.get_rng_state(),
             "device_type": "cuda"}
    save_checkpoint(tmp_path, state)
    assert load_checkpoint(tmp_path, "k", "cuda") is not None  # the same device type resumes
    assert load_checkpoint(tmp_path, "k", "cpu") is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "made on cuda" in lines[0] and "on cpu" in lines[0] and "starts fresh" in lines[0]
    assert not (tmp_path / "last.pt").exists() and (tmp_path / "last.pt.cuda").exists()  # kept, not deleted


def test_a_checkpoint_from_before_the_device_type_was_recorded_is_known_by_its_cuda_rng(tmp_path):
    old = {"config_hash": "k", "epoch": 1, "history": [], "model": {}, "optimizer": {},
           "generator": torch.zeros(16, dtype=torch.uint8), "torch_rng": torch.get_rng_state(),
           "cuda_rng": torch.zeros(16, dtype=torch.uint8)}
    save_checkpoint(tmp_path, old)
    assert load_checkpoint(tmp_path, "k", "cpu") is None
    save_checkpoint(tmp_path, {**old, "cuda_rng": None})
    assert load_checkpoint(tmp_path, "k", "cpu") is not None


def test_resuming_a_cuda_checkpoint_on_the_cpu_trains_from_scratch(tiny_config, tmp_path, capsys):
    """The engine end to end: a checkpoint of the same run whose recorded device is cuda (faked: the
    real one would hold a CUDA generator state, which the CPU refuses) is not resumed."""
    config = tiny_config(epochs=2, checkpoint_every=1)
    train(config, toy_data(), 10, checkpoint_dir=tmp_path, progress=False, on_epoch=None)
    saved = torch.load(tmp_path / "last.pt", weights_only=False)
    assert saved["device_type"] == "cpu"
    save_checkpoint(tmp_path, {**saved, "device_type": "cuda", "generator": torch.zeros(16, dtype=torch.uint8)})
    fresh = train(config, toy_data(), 10, checkpoint_dir=tmp_path, progress=False)
    assert fresh.resumed_from_epoch == 0 and len(fresh.history) == 2
    assert "made on cuda" in capsys.readouterr().err


def test_device_data_keeps_the_stored_dtype_and_batches_come_out_float32():
    images = np.random.default_rng(0).normal(size=(20, 3, 8, 8)).astype(np.float16)
    data = DeviceData.from_arrays(images, np.arange(20) % 4, CPU)
    assert data.images.dtype == torch.float16
    batch = data.batch(torch.tensor([3, 1]))
    assert batch.dtype == torch.float32 and torch.equal(batch, torch.from_numpy(images[[3, 1]]).float())


def test_subset_and_validation_parts_are_rows_of_the_same_images():
    data = toy_data(n=60)
    subset = balanced_subset(data, 40)
    train_part, val_part = split_validation(subset, 0.25, seed=0)
    assert train_part.images is data.images and val_part.images is data.images  # no copy of the split
    assert len(train_part) + len(val_part) == 40
    rows = train_part.rows[torch.tensor([0, 5])]
    assert torch.equal(train_part.batch(torch.tensor([0, 5])), data.images[rows])
    assert torch.equal(train_part.labels, data.labels[train_part.rows])
    assert torch.equal(val_part.split_images(), data.images[val_part.rows])


def test_batchnorm_is_synchronised_by_syncbatchnorm_on_gpus_and_globalbatchnorm_elsewhere():
    def model():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2), nn.BatchNorm1d(2))

    on_gpu, on_cpu = synchronise_batchnorm(model(), CUDA), synchronise_batchnorm(model(), CPU)
    assert [type(m) for m in on_gpu if "BatchNorm" in type(m).__name__] == [nn.SyncBatchNorm] * 2
    assert [type(m) for m in on_cpu if "BatchNorm" in type(m).__name__] == [GlobalBatchNorm] * 2
    assert set(on_gpu.state_dict()) == set(model().state_dict()) == set(on_cpu.state_dict())
    assert ddp_options(on_gpu, torch.device("cuda", 1)) == {"device_ids": [1], "broadcast_buffers": False}
    assert ddp_options(on_cpu, CPU) == {"device_ids": None, "broadcast_buffers": False}
    assert ddp_options(model(), CPU)["broadcast_buffers"]  # unsynchronised: rank 0's statistics are sent


def test_launched_processes_share_the_cores_on_gpu_machines_too(monkeypatch):
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 16)
    assert thread_environment(4, {}) == {"OMP_NUM_THREADS": "4"}
    assert thread_environment(32, {}) == {"OMP_NUM_THREADS": "1"}
    assert thread_environment(4, {"OMP_NUM_THREADS": "2"}) == {}
    seen = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(distributed, "elastic_launch",
                        lambda config, entrypoint: lambda *args: seen.update(omp=distributed.os.environ["OMP_NUM_THREADS"]))
    assert distributed.launch_here(2, "stages.train", ["t"]) == 0 and seen == {"omp": "8"}


def test_dropout_keys_reach_a_gpu_without_a_synchronising_copy(monkeypatch):
    assert [int(k) for k in dropout.key_tensors((1, 2, 3), CPU)] == [1, 2, 3]
    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: calls.append("pin") or self)
    real_to = torch.Tensor.to

    def fake_to(self, *args, **kwargs):
        if args and args[0] == CUDA:
            calls.append(("to", kwargs.get("non_blocking")))
            return self
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    keys = dropout.key_tensors((1, 2, 2 ** 32 - 1), CUDA)
    assert calls == ["pin", ("to", True)] and [int(k) for k in keys] == [1, 2, -1]


def test_mean_prob_combine_is_the_log_of_the_mean_probability():
    torch.manual_seed(0)
    head = LevelClassifier([4, 6, 5], 3, g_mode="indep", indep_combine="mean_prob", use_dropout=False).eval()
    feats = [torch.randn(2, d) for d in (4, 6, 5)]
    z = [h(f) for h, f in zip(head.heads, feats)]
    expected = torch.log(torch.stack([zk.softmax(1) for zk in z]).mean(0))
    torch.testing.assert_close(head(feats), expected)


def test_the_step_schedule_changes_the_rate_at_the_official_epochs():
    """Official VGG script: before (1-based) epoch e, halve when e % 25 == 0: the 25th epoch is the first
    at half the rate. Multistep milestones name the first epoch at the new rate likewise (official CUB)."""
    cfg = {"lr": 1.0, "lr_decay": 0.0, "lr_schedule": {"kind": "step", "step_epochs": 25, "milestones": [],
                                                       "factors": [], "gamma": 0.5, "warmup_epochs": 0}}
    rates = [lr_at(cfg, e - 1, 0, 10) for e in range(1, 301)]  # by 1-based epoch
    changes = [e for e in range(2, 301) if rates[e - 1] != rates[e - 2]]
    assert changes == list(range(25, 301, 25)) and rates[24] == 0.5 and rates[23] == 1.0
    cfg["lr_schedule"].update(kind="multistep", milestones=[30, 60, 90], factors=[2.0, 2.0, 0.5])
    rates = [lr_at(cfg, e - 1, 0, 10) for e in range(1, 101)]
    assert [e for e in range(2, 101) if rates[e - 1] != rates[e - 2]] == [30, 60, 90]
    assert rates[29] == 2.0 and rates[59] == 4.0 and rates[89] == 2.0
