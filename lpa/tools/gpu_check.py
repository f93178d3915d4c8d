"""What only a GPU can show, in one run of at most 8 minutes: `make gpu-check` (`CPU=1`: the same steps
at tiny size on the CPU, as a test of this script).

    python -m lpa.tools.gpu_check [--cpu] [--out reports/gpu-check] [--work DIR]

Steps, each timed and recorded whether it passes or fails (a failure does not stop the others):
environment (torch, CUDA, the device, its compute capability, the precision train.precision picks
there); the training-step bench at width 1, eager against torch.compile'd (lpa.tools.bench); the real
stages in a scratch copy of the working tree (download, preprocess, train for one epoch, evaluate,
robustness/FGSM) on the CIFAR-10 JPEG copy (data/raw/cifar10-jpeg-q75.tar.gz, as the cifar-cpu suite
reads it) at full width with the data on the device; predict on pictures with the trained model file;
a checkpoint written on the device and resumed there; and, where there are two GPUs, the train
stage again over both (DDP). Writes OUT/report.md and OUT/report.json with every figure.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lpa.config.params import load_params
from lpa.config.run import resolve_trial
from lpa.data.arrays import read_split
from lpa.files import write_json, write_text
from lpa.train.device import pick_device, precision_for
from lpa.train.machine import machine_description
from lpa.train.engine import DeviceData, train

CIFAR_JPEG = Path("data/raw/cifar10-jpeg-q75.tar.gz")


# What each size runs: the GPU check on CIFAR-10 at full width, the CPU test on digits at width 0.125.
SIZES = {
    "gpu": {"trial": "cifar10-cpu-vgg-att2-seed0", "dataset": "cifar10", "width": 1.0, "bench": ["--steps", "20"],
            "overrides": ["suite=cifar-cpu", "model.width=1.0", "train.epochs=1", "train.max_images=0",
                          "robustness.images=1000"]},
    # the CPU's bench: a small batch, and a nominal peak instead of the calibrated convolution (a minute here)
    "cpu": {"trial": "digits-vgg-att2-seed0", "dataset": "digits", "width": 0.125,
            "bench": ["--steps", "2", "--batch-size", "16", "--peak-tflops", "1", "--dropout", "off"],
            "overrides": ["suite=quick", "data.datasets=[digits]", "~runs.pasted-vgg-att2", "~runs.pasted-vgg-gap",
                          "transfer.runs=[]", "segmentation.runs=[]", "segmentation.datasets=[]",
                          "model.width=0.125", "train.epochs=1",
                          "train.max_images=128", "robustness.images=20", "robustness.batch_size=20"]},
}
STEP_TIMEOUT_S = 300


class Check:
    """The report being assembled: one record per step (name, ok, seconds, figures or the error)."""

    def __init__(self):
        self.steps: list[dict] = []

    def step(self, name: str, fn: Callable[[], dict]) -> dict:
        t0 = time.perf_counter()
        try:
            figures, ok, error = fn(), True, ""
        except Exception as err:  # noqa: BLE001 (a failed step is a finding; the others still run)
            figures, ok, error = {}, False, f"{type(err).__name__}: {str(err).strip()[-2000:]}"
        record = {"step": name, "ok": ok, "seconds": round(time.perf_counter() - t0, 1), **figures}
        if error:
            record["error"] = error
        print(f"gpu-check {name}: {'ok' if ok else 'FAILED'} ({record['seconds']} s){' ' + error if error else ''}",
              flush=True)
        self.steps.append(record)
        return record


def run(cmd: list[str], cwd: Path) -> str:
    """stdout+stderr of `cmd` in `cwd`; RuntimeError with its tail when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[1:])}` exited {proc.returncode}: {out[-1500:]}")
    return out


def environment(device: torch.device, precision: dict) -> dict:
    """What a run record says of its machine (lpa.train.machine), plus what only this check needs:
    cuDNN's version, the GPU count and the precision train.precision picks on the device."""
    cuda = device.type == "cuda"
    return {"device": torch.cuda.get_device_name(device) if cuda else "cpu", **machine_description(device),
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "gpus": torch.cuda.device_count() if cuda else 0,
            "precision": precision_for(device, precision)}


def bench(width: float, options: list[str], compiled: bool, cwd: Path) -> dict:
    """lpa.tools.bench's images/s and peak memory for vgg-att2 at `width` (batch 128 unless `options`
    say otherwise), eager or compiled."""
    out = run([sys.executable, "-m", "lpa.tools.bench", "--model", "vgg-att2", "--width", str(width),
               "--warmup", "3", *options, *(["--compile"] if compiled else [])], cwd)
    found = re.search(r"^ours: ([\d.]+) images/s\s+([\d.]+) ms/step\s+peak memory (\d+) MiB\s+warm-up ([\d.]+) s",
                      out, re.MULTILINE)
    if not found:
        raise RuntimeError(f"no figures in the bench's output: {out[-800:]}")
    return {"images_per_s": float(found[1]), "ms_per_step": float(found[2]), "peak_mem_mib": int(found[3]),
            "warmup_s": float(found[4])}


def scratch_copy(repo: Path, work: Path) -> Path:
    """The working tree's files (tracked and untracked-not-ignored) copied to `work`, with the raw
    CIFAR-10 JPEG copy linked in: the stages run there, so params.yaml and the outputs here stay as they are."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (repo / rel).is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, work / rel)
    if (repo / CIFAR_JPEG).exists():
        (work / CIFAR_JPEG).parent.mkdir(parents=True, exist_ok=True)
        (work / CIFAR_JPEG).symlink_to((repo / CIFAR_JPEG).resolve())
    return work


def stage_figures(output: str) -> dict:
    """The last train epoch line's figures from a train stage's output."""
    lines = [line for line in output.splitlines() if re.search(r" epoch \d+/\d+: loss", line)]
    if not lines:
        return {}
    found = re.search(r"loss ([\d.naif]+) train error ([\d.]+)% lr \S+ (\d+) img/s", lines[-1])
    return {"train_loss": float(found[1]), "train_top1_error": float(found[2]), "images_per_s": int(found[3])} \
        if found else {"last_epoch": lines[-1]}


def pipeline(check: Check, work: Path, size: dict, suite: str, gpus: int) -> None:
    """The real stages on `size`'s trial in `work`: each a step of `check`."""
    py, trial, dataset = sys.executable, size["trial"], size["dataset"]
    check.step("compose params", lambda: {"overrides": " ".join(size["overrides"]),
                                          "out": run([py, "-m", "lpa.config", "compose", *size["overrides"]],
                                                     work).strip()})
    check.step("download", lambda: {"out": run([py, "-m", "stages.download", dataset], work)[-300:]})
    check.step("preprocess", lambda: {"out": run([py, "-m", "stages.preprocess", dataset], work)[-300:]})
    check.step("train (1 epoch, data on the device, autocast)",
               lambda: stage_figures(run([py, "-m", "stages.train", trial], work)))
    model = work / "models" / suite / trial / "model.pt"
    records = work / "reports" / suite / "runs" / trial
    check.step("model file", lambda: {"path": str(model.relative_to(work)), "mib": round(model.stat().st_size / 2**20, 1)})
    check.step("evaluate", lambda: evaluated(run([py, "-m", "stages.evaluate", trial], work), records))
    check.step("robustness (FGSM)",
               lambda: {"out": run([py, "-m", "stages.robustness", trial], work).strip().splitlines()[-1]})
    check.step("predict", lambda: predicted(work, dataset, model))
    if gpus >= 2:
        check.step("train over 2 GPUs (DDP)", lambda: stage_figures(
            run([py, "-m", "lpa.config", "compose", *size["overrides"], "train.distributed.processes=2"], work)
            and run([py, "-m", "stages.train", trial], work)))
    else:
        check.steps.append({"step": "train over 2 GPUs (DDP)", "ok": None, "seconds": 0,
                            "skipped": f"{gpus} GPU(s) here; DDP needs 2"})


def evaluated(_: str, records: Path) -> dict:
    test = json.loads((records / "metrics.json").read_text())["test"]
    return {k: test[k] for k in ("top1_error", "top5_error", "num_images", "num_nonfinite")}


def predicted(work: Path, dataset: str, model: Path) -> dict:
    """python -m lpa.predict on four test pictures written out as PNG files; its top class of each."""
    images, labels = read_split(work / "data" / "extracted" / dataset, "test")
    pictures = work / "gpu-check-pictures"
    pictures.mkdir(exist_ok=True)
    for i in range(4):
        Image.fromarray(np.ascontiguousarray(images[i].transpose(1, 2, 0)).squeeze()).save(pictures / f"{i}.png")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = run([sys.executable, "-m", "lpa.predict", str(model), str(pictures), "--json", "--device", device,
               "--out", str(work / "gpu-check-predictions")], work)
    return {"pictures": 4, "labels": [int(v) for v in labels[:4]], "json_chars": len(out)}


def checkpoint_round_trip(work: Path, size: dict, device: torch.device) -> dict:
    """The engine on the device: three epochs of a small subset, stopped once the first one's checkpoint
    (with the device's RNG states) is written, then resumed there; the resumed run must start at epoch 2."""
    params = load_params(work)
    config = resolve_trial(params, size["trial"])
    config = {**config, "train": {**config["train"], "epochs": 3, "checkpoint_every": 1, "max_images": 256}}
    images, labels = read_split(work / "data" / "processed" / size["dataset"], "train")
    data = DeviceData.from_arrays(images, labels, device)
    directory = work / "gpu-check-checkpoint"

    def stop_after_first(record: dict) -> None:  # epoch 1's checkpoint is written after its record
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    try:
        train(config, data, int(labels.max()) + 1, checkpoint_dir=directory, on_epoch=stop_after_first, progress=False)
    except KeyboardInterrupt:
        pass
    saved = torch.load(directory / "last.pt", map_location="cpu", weights_only=False)
    resumed = train(config, data, int(labels.max()) + 1, checkpoint_dir=directory, progress=False)
    if resumed.resumed_from_epoch != 1:
        raise RuntimeError(f"resumed from epoch {resumed.resumed_from_epoch}, not 1")
    return {"device_type": saved.get("device_type"), "stored_image_dtype": str(data.images.dtype),
            "resumed_from_epoch": resumed.resumed_from_epoch}


def report_markdown(report: dict) -> str:
    lines = ["# GPU check", "", f"size: {report['size']}  total: {report['seconds']} s", "", "## Environment", ""]
    lines += [f"- {k}: {v}" for k, v in report["environment"].items()]
    lines += ["", "## Steps", "", "| step | ok | s | figures |", "|---|---|---:|---|"]
    for s in report["steps"]:
        figures = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("step", "ok", "seconds"))
        ok = "skipped" if s["ok"] is None else ("yes" if s["ok"] else "**NO**")
        lines.append(f"| {s['step']} | {ok} | {s['seconds']} | {figures.replace('|', '/').replace(chr(10), ' ')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lpa.tools.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--cpu", action="store_true", help="the same steps at tiny size on the CPU (a test of this script)")
    p.add_argument("--out", type=Path, default=Path("reports/gpu-check"))
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    args = p.parse_args(argv)
    size_name = "cpu" if args.cpu else "gpu"
    size = SIZES[size_name]
    device = torch.device("cpu") if args.cpu else pick_device()
    if device.type != "cuda" and not args.cpu:
        print("error: no GPU here; `make gpu-check CPU=1` runs the same steps at tiny size on the CPU", file=sys.stderr)
        return 1
    if not args.cpu and not CIFAR_JPEG.exists():
        print(f"error: put the CIFAR-10 JPEG copy at {CIFAR_JPEG} (see `make cifar-cpu`)", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    check = Check()
    work = args.work or Path(tempfile.mkdtemp(prefix="lpa-gpu-check-"))
    try:
        scratch_copy(Path.cwd(), work)
        suite = size["overrides"][0].split("=", 1)[1]
        env = check.step("environment", lambda: environment(device, resolved_precision(work, size)))
        for compiled in (False, True):
            if args.cpu and compiled:  # the compiler's CPU build takes minutes: what it shows is the GPU's
                check.steps.append({"step": "bench compiled", "ok": None, "seconds": 0, "skipped": "on the CPU"})
                continue
            check.step(f"bench {'compiled' if compiled else 'eager'} (vgg-att2, width {size['width']})",
                       lambda: bench(size["width"], size["bench"], compiled, work))
        pipeline(check, work, size, suite, env.get("gpus", 0))
        check.step("checkpoint and resume on the device", lambda: checkpoint_round_trip(work, size, device))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    environment_record = {k: v for k, v in check.steps[0].items() if k not in ("step", "ok", "seconds")}
    report = {"size": size_name, "seconds": round(time.perf_counter() - t0, 1), "environment": environment_record,
              "steps": check.steps[1:]}
    write_json(args.out / "report.json", report)
    write_text(args.out / "report.md", report_markdown(report))
    print(f"gpu-check: {args.out / 'report.md'}")
    return 0 if all(s["ok"] is not False for s in check.steps) else 1


def resolved_precision(work: Path, size: dict) -> dict:
    """train.precision as `size`'s trial resolves it (params composed in `work` first)."""
    run([sys.executable, "-m", "lpa.config", "compose", *size["overrides"]], work)
    return resolve_trial(load_params(work), size["trial"])["train"]["precision"]


if __name__ == "__main__":
    sys.exit(main())
