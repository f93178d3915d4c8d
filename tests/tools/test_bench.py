"""The benchmark command runs and prints its figures (figures are measured, never asserted)."""
import re

import pytest

from lpa.tools.bench import main


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
          "--precision", "bf16", "--dropout", "on", "--dropout-masks", "torch", "--profile", "--profile-rows", "5",
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
