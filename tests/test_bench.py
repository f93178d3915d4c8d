"""The benchmark command runs and prints its figures (figures are measured, never asserted)."""
import re

from lpa.bench import main


def test_bench_prints_every_figure_and_ends_with_the_speedup(capsys):
    main(["--model", "vgg-att2", "--width", "0.125", "--batch-size", "8", "--steps", "2", "--warmup", "1",
          "--precision", "bf16", "--compare-reference", "--reference-workers", "0"])
    out = capsys.readouterr().out.strip().splitlines()
    text = "\n".join(out)
    assert text.startswith("device: cpu")
    for name in ("ours", "reference"):
        assert re.search(rf"^{name}: [\d.]+ images/s  [\d.]+ ms/step  peak memory \d+ MiB  warm-up [\d.]+ s$",
                         text, re.M), text
    assert "TFLOP/s" in text and "estimated 300 epochs" in text
    assert re.fullmatch(r"speedup_vs_reference: \d+\.\d\d", out[-1])
