import math
import shutil

import pytest
import torch

from lpa.train.augment import random_crop, random_flip
from lpa.errors import NonFiniteLossError
from lpa.train.engine import lr_at, predict, train
from tests.helpers.toy_data import toy_data


def test_flip_and_crop_are_per_image_and_exact():
    x = torch.arange(64 * 3 * 4 * 4, dtype=torch.float32).reshape(64, 3, 4, 4)
    gen = torch.Generator().manual_seed(0)
    flipped = random_flip(x, gen)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 10 < int(mirrored.sum()) < 54  # independent per image
    cropped = random_crop(x, 2, torch.Generator().manual_seed(1))
    assert cropped.shape == x.shape
    # every crop is a shifted window of the zero-padded image
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(8):
        assert any(torch.equal(cropped[i], padded[i, :, dy:dy + 4, dx:dx + 4])
                   for dy in range(5) for dx in range(5))
    assert len({tuple(cropped[i, 0, 0].tolist()) for i in range(64)}) > 5


def test_lr_schedules():
    cfg = {"lr": 1.0, "lr_decay": 0.0, "lr_schedule": {"kind": "step", "step_epochs": 25, "milestones": [],
                                                       "gamma": 0.5, "warmup_epochs": 0}}
    assert lr_at(cfg, 0, 0, 10) == 1.0 and lr_at(cfg, 25, 250, 10) == 0.5 and lr_at(cfg, 299, 0, 10) == 0.5 ** 12
    cfg["lr_schedule"].update(kind="multistep", milestones=[60, 120, 160], gamma=0.2, factors=[])
    assert lr_at(cfg, 58, 0, 10) == 1.0 and lr_at(cfg, 59, 0, 10) == pytest.approx(0.2)
    assert lr_at(cfg, 170, 0, 10) == pytest.approx(0.008)
    cfg["lr_schedule"].update(kind="constant", warmup_epochs=2)
    assert lr_at(cfg, 0, 0, 10) == pytest.approx(0.05) and lr_at(cfg, 2, 20, 10) == 1.0
    cfg["lr_decay"] = 1e-3
    assert lr_at(cfg, 5, 1000, 10) == pytest.approx(0.5)
    # per-milestone factors (the official CUB schedule: x2, x2, then x0.5)
    cfg["lr_decay"] = 0.0
    cfg["lr_schedule"].update(kind="multistep", warmup_epochs=0, milestones=[30, 60, 90], factors=[2.0, 2.0, 0.5])
    assert [lr_at(cfg, e, 0, 10) for e in (28, 29, 59, 89)] == pytest.approx([1.0, 2.0, 4.0, 2.0])


def test_same_seed_same_result(tiny_config):
    config = tiny_config(epochs=3, lr=0.05)
    a = train(config, toy_data(), 10, progress=False)
    b = train(config, toy_data(), 10, progress=False)
    # bit-exact on purpose: the same computation twice in one process (same BLAS, threads, batches)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k


def test_resume_after_a_crash_matches_an_uninterrupted_run(tiny_config, tmp_path):
    config = tiny_config(epochs=3, lr=0.05, checkpoint_every=1)
    full = train(config, toy_data(), 10, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, toy_data(), 10, checkpoint_dir=tmp_path, on_epoch=crash_in_epoch_2, progress=False)
    assert (tmp_path / "last.pt").exists()
    seen = []
    resumed = train(config, toy_data(), 10, checkpoint_dir=tmp_path, on_epoch=seen.append, progress=False)
    assert resumed.resumed_from_epoch == 1
    assert [r["epoch"] for r in seen] == [1, 2, 3]  # replayed epoch 1, then trained 2 and 3
    # bit-exact on purpose: the resumed run repeats the uninterrupted one's computation on the same
    # machine, in the same process; any difference is state the checkpoint failed to restore
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert (tmp_path / "last.pt").exists()  # the train stage removes it once model.pt is saved


def crash_in_epoch_2(record):
    if record["epoch"] == 2:
        raise KeyboardInterrupt  # the process dies before epoch 2's checkpoint is written


def test_a_changed_config_does_not_resume(tiny_config, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(checkpoint_every=1), toy_data(), 10, checkpoint_dir=tmp_path,
              on_epoch=crash_in_epoch_2, progress=False)
    assert (tmp_path / "last.pt").exists()
    other = tiny_config(checkpoint_every=1, lr=0.02)  # the quick suite uses 0.05
    assert train(other, toy_data(), 10, checkpoint_dir=tmp_path, progress=False).resumed_from_epoch == 0


def test_non_finite_loss_stops_with_one_line_naming_run_epoch_step(tiny_config):
    data = toy_data()
    data.images[:] = float("nan")
    with pytest.raises(NonFiniteLossError) as err:
        train(tiny_config(), data, 10, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "digits-vgg-att2" in message and "epoch 1, step 1;" in message and "train.lr" in message


def test_non_finite_loss_later_in_training_names_that_epoch(tiny_config):
    data = toy_data()

    def poison_after_epoch_1(record):
        data.images[:] = float("inf")  # the engine holds this very tensor

    with pytest.raises(NonFiniteLossError, match="epoch 2, step 1;"):
        train(tiny_config(epochs=3), data, 10, on_epoch=poison_after_epoch_1, progress=False)


def test_batch_bigger_than_the_data_is_a_clear_error(tiny_config):
    with pytest.raises(ValueError, match="make no full batch of"):
        train(tiny_config(batch_size=64), toy_data(n=40), 10, progress=False)


def test_bf16_autocast_path_on_cpu(tiny_config):
    """The CUDA precision path (bf16 autocast, fp32 master weights), exercised on the CPU."""
    config = tiny_config(epochs=1)
    result = train({**config, "train": {**config["train"], "precision": {"cpu": "bf16", "cuda": "bf16"}}},
                   toy_data(), 10, progress=False)
    model = result.model
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x = toy_data(n=4).images.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, maps = model.eval()(x)
    assert logits.dtype == torch.bfloat16
    out = predict(model, toy_data(n=20).images, 8, torch.bfloat16, True)
    assert out.dtype == torch.float32 and out.shape == (20, 10)


def test_predict_returns_maps_for_attention_models(tiny_config):
    model = train(tiny_config(epochs=1), toy_data(), 10, progress=False).model
    logits, maps = predict(model, toy_data(n=5).images, 2, with_maps=True)
    assert logits.shape == (5, 10) and [m.shape for m in maps] == [(5, 1, 16, 16), (5, 1, 8, 8)]
    assert torch.allclose(maps[0].sum((1, 2, 3)), torch.ones(5), atol=1e-4)


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on the CPU needs a C++ compiler")
def test_torch_compile_path_trains_like_eager(tiny_config):
    """train.compile (Inductor) with bf16 autocast and channels_last: the GPU recipe, run on the CPU."""
    eager = train(tiny_config(epochs=1), toy_data(), 10, progress=False)
    compiled = train(tiny_config(epochs=1, compile={"cpu": True, "cuda": True}), toy_data(), 10, progress=False)
    assert math.isfinite(compiled.history[0]["train_loss"])
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"], rel=0.05)
