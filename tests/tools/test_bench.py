"""The benchmark command runs and prints its figures (figures are measured, never asserted)."""
import re

import pytest
import torch

from lpa.tools.bench import device_peak_tflops, main, run_precision


def test_bench_prints_every_figure_and_ends_with_the_speedup(capsys):
    main(["--model", "vgg-att2", "--width", "0.125", "--batch-size", "8", "--steps", "2", "--warmup", "1",
          "--precision", "bf16", "--compare-reference", "--reference-workers", "0", "--repeats", "3"])
    out = capsys.readouterr().out.strip().splitlines()
    text = "\n".join(out)
    # on the CPU the benchmark first measures the device's own convolution peak
    assert re.match(r"cpu peak: calibrated 3x3 conv 128x256x16x16 bf16 channels_last: [\d.]+ TFLOP/s\ndevice: cpu",
                    text), text
    # and again after the timed steps (the CPU changes speed); --repeats: every block, the median reported
    assert re.search(r"^cpu peak after the timed steps: calibrated 3x3 conv .*: [\d.]+ TFLOP/s$", text, re.M), text
    for name in ("ours", "reference"):
        assert re.search(rf"^{name} blocks of 2 steps: [\d.]+ [\d.]+ [\d.]+ images/s \(median [\d.]+, best [\d.]+\)$",
                         text, re.M), text
    assert re.search(r"^ours achieved: [\d.]+ TFLOP/s = [\d.]+% of [\d.]+ TFLOP/s, this CPU's measured", text, re.M)
    for name in ("ours", "reference"):
        assert re.search(rf"^{name}: [\d.]+ images/s  [\d.]+ ms/step  peak memory \d+ MiB  warm-up [\d.]+ s$",
                         text, re.M), text
    assert "TFLOP/s" in text and "estimated 300 epochs" in text
    assert re.fullmatch(r"speedup_vs_reference: \d+\.\d\d", out[-1])


def test_bench_profiles_and_switches_dropout(capsys):
    main(["--model", "vgg-att2", "--width", "0.125", "--batch-size", "8", "--steps", "2", "--warmup", "1",
          "--precision", "bf16", "--dropout", "on", "--dropout-masks", "torch", "--profile", "--profile-rows", "40",
          "--peak-tflops", "1.0"])
    text = capsys.readouterr().out
    assert "profile of 2 steps (an extra block before the timed ones)" in text and "aten::bernoulli_" in text  # PyTorch's masks, profiled
    assert "cpu peak" not in text  # --peak-tflops given: nothing to calibrate
    main(["--model", "vgg-att2", "--width", "0.125", "--batch-size", "8", "--steps", "2", "--warmup", "1",
          "--precision", "bf16", "--dropout", "on", "--profile", "--profile-rows", "40", "--peak-tflops", "1.0"])
    assert "aten::bernoulli_" not in capsys.readouterr().out  # counter masks on the CPU by default


def test_bench_times_an_option_against_another_interleaved(capsys):
    main(["--model", "vgg", "--width", "0.125", "--batch-size", "8", "--steps", "1", "--warmup", "1",
          "--precision", "bf16", "--peak-tflops", "1.0", "--against", "small-map-weight-grad=gemm"])
    text = capsys.readouterr().out
    assert re.search(r"^against small-map-weight-grad=gemm, interleaved blocks of 1 steps \(ours/against images/s\):"
                     r"( [\d.]+/[\d.]+){3}$", text, re.M), text
    assert re.search(r"^against/ours: median [\d.]+ \(range [\d.]+-[\d.]+\)$", text, re.M), text


def test_bench_refuses_an_unknown_against_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "vgg", "--against", "small-map-weight-grad=fast"])
    assert exit_info.value.code == 2
    assert "expected OPTION=VALUE, one of dropout=on|off" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "vgg", "--repeats", "0"])
    assert "--repeats and --steps must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA L40", 181.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 NVL", 835.0), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100-PCIE-40GB", 312.0), ("NVIDIA GeForce RTX 4090", 165.0), ("NVIDIA GH200 480GB", None),
    ("NVIDIA GeForce RTX 4090 D", 165.0), ("Tesla T4", None)])
def test_a_gpu_peak_matches_whole_words_most_words_first(monkeypatch, name, peak):
    # "NVIDIA L40" holds "L4" as a substring: it is not an L4 (a third of its peak)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert device_peak_tflops(torch.device("cuda")) == (peak, name)


@pytest.fixture
def tf32_flags():
    """PyTorch's TF32 switches, restored after the test (monkeypatch cannot restore the cuBLAS one)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_bench_applies_the_engine_precision_settings(tf32_flags, monkeypatch):
    # fp32 on CUDA is the engine's fp32: no TF32 convolutions or matmuls (PyTorch's cuDNN default is on)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    assert run_precision(torch.device("cuda"), "fp32") == ("fp32", None)
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    # auto is the params.yaml default: on CUDA bf16 from compute capability 8.0, fp16 below
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert run_precision(torch.device("cuda"), "auto") == ("bf16", torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert run_precision(torch.device("cuda"), "auto") == ("fp16", torch.float16)
    assert run_precision(torch.device("cpu"), "auto") == ("fp32", None)
    assert run_precision(torch.device("cpu"), "fp16") == ("fp16", torch.float16)
    assert run_precision(torch.device("cpu"), "bf16") == ("bf16", torch.bfloat16)
