"""Training-step benchmark: our engine, and optionally the usual PyTorch loop, on one device.

    python -m lpa.tools.bench --model vgg-att2 [--batch-size 128] [--steps 20] [--width 1.0]
                        [--precision auto|fp32|bf16|fp16] [--compile] [--compare-reference]
                        [--repeats R] [--profile] [--dropout on|off] [--against OPTION=VALUE]

Ours: data resident on the device, batched on-device flip + pad-4 crop, the engine's own
`train_batch` (bf16 autocast and channels_last on CUDA by default, fused/foreach SGD), no host
sync inside the timed loop. Reference (--compare-reference): the way the common ports train — a
torchvision-style Dataset of uint8 images turned into PIL images, per-image RandomCrop(32, 4),
RandomHorizontalFlip, ToTensor, Normalize, a DataLoader, fp32, NCHW, no compile, `loss.item()`
every step. Warm-up steps (and compilation) are timed separately and excluded. Figures are
printed, never asserted: timing is a measurement, not a test.
"""
from __future__ import annotations

import argparse
import re
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F

from lpa.tools.estimate import TRAIN_IMAGES
from lpa.train.device import autocast_dtype, grad_scaler, precision_for
from lpa.train.engine import (DeviceData, build_for_training, build_optimizer, counter_dropout, refuse_under_compile, small_map_convs, train_batch)
from lpa.errors import ConfigError
from lpa.models import build_model, count_flops

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; --peak-tflops overrides.
# A key matches a device name holding each of its words as a whole word (the most words win:
# "NVIDIA H100 PCIe" is an H100 PCIe; "NVIDIA L40" is not an L4).
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,  # SXM ("NVIDIA H100 80GB HBM3")
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
}
CIFAR_TRAIN_IMAGES = TRAIN_IMAGES["cifar10"]
PAPER_EPOCHS = 300


def name_words(name: str) -> set[str]:
    """'NVIDIA A100-SXM4-80GB' -> {'NVIDIA', 'A100', 'SXM4', '80GB'} (CUDA's names vary in case)."""
    return set(re.split(r"[\s_-]+", name.upper())) - {""}


def device_peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """(bf16 peak of the device from PEAK_BF16_TFLOPS or None when not there, its name)."""
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    words = name_words(name)
    keys = [key for key in PEAK_BF16_TFLOPS if name_words(key) <= words]
    return (PEAK_BF16_TFLOPS[max(keys, key=lambda key: len(name_words(key)))] if keys else None), name


def run_precision(device: torch.device, precision: str) -> tuple[str, torch.dtype | None]:
    """(precision, autocast dtype or None) of --precision on `device`, through the engine's own rules
    (lpa.train.device): 'auto' is the params.yaml default (fp32 on the CPU; on CUDA bf16 from compute
    capability 8.0, fp16 below), and on CUDA the same math switches (fp32 without TF32), so that the
    steps timed are the ones train.precision trains with."""
    setting = {"cpu": "fp32" if precision == "auto" else precision, "cuda": precision}
    return precision_for(device, setting), autocast_dtype(device, setting)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # process-wide peak resident set (Linux reports KiB); covers both loops when both run
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# SGD settings for both loops; the values do not affect speed.
BENCH_SGD = {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 5e-4}


def ours_step(args, device: torch.device, amp_dtype):
    """One training step of the engine (model, masks, optimizer, data on the device) as step(i)."""
    torch.manual_seed(0)
    # the engine's own model construction (model defaults, width, memory layout)
    config = {"model": {"name": args.model, "width": args.width,
                        **({} if args.dropout is None else {"dropout": args.dropout == "on"})},
              "attention": None, "train": {"channels_last": args.channels_last}}
    model = build_for_training(config, args.num_classes, 32, device)
    clock = counter_dropout(model, args.dropout_masks, device, seed=0, compiled=args.compile)
    small_map_convs(model, args.small_map_weight_grad, device, amp_dtype, compiled=args.compile)
    optimizer = build_optimizer(model, BENCH_SGD, device)
    forward = torch.compile(model, mode=args.compile_mode) if args.compile else model
    n = args.batch_size * 8
    data = DeviceData(torch.randn(n, 3, 32, 32, device=device),
                      torch.randint(0, args.num_classes, (n,), device=device))
    gen = torch.Generator(device=device).manual_seed(0)
    augment = {"flip": True, "crop_padding": 4}  # the same work as the reference's transforms
    scaler = grad_scaler(amp_dtype, device)  # fp16: the engine's loss scaling is part of its step

    def step(i):
        idx = torch.randint(0, n, (args.batch_size,), device=device, generator=gen)
        if clock is not None:
            clock.step = i
        return train_batch(forward, optimizer, data, idx, gen, augment, args.channels_last, amp_dtype, scaler=scaler)

    return step


def time_ours(args, device: torch.device, amp_dtype) -> dict:
    return run_timed(ours_step(args, device, amp_dtype), args, device, "ours", profile=args.profile)


# --against OPTION=VALUE: the options an A/B comparison may change, with their allowed values
AGAINST = {"dropout": ("on", "off"), "dropout-masks": ("auto", "torch", "counter"),
           "small-map-weight-grad": ("auto", "library", "gemm")}


def parse_against(text: str) -> tuple[str, str]:
    option, _, value = text.partition("=")
    if option not in AGAINST or value not in AGAINST[option]:
        allowed = "; ".join(f"{k}={'|'.join(v)}" for k, v in AGAINST.items())
        raise argparse.ArgumentTypeError(f"{text!r}: expected OPTION=VALUE, one of {allowed}")
    return option, value


def interleaved(args, device: torch.device, amp_dtype) -> None:
    """Ours against ours with one option changed, in one process, blocks alternating (A B, B A, ...):
    both see the same machine state, so their ratio holds where this CPU's speed moves under both."""
    option, value = args.against
    other = argparse.Namespace(**{**vars(args), option.replace("-", "_"): value})
    steps = {"ours": ours_step(args, device, amp_dtype), "against": ours_step(other, device, amp_dtype)}
    for step in steps.values():
        timed_block(step, 0, args.warmup, device)
    rates: dict[str, list[float]] = {"ours": [], "against": []}
    for r in range(max(args.repeats, 3)):
        for name in (("ours", "against") if r % 2 == 0 else ("against", "ours")):
            seconds = timed_block(steps[name], args.warmup + r * args.steps, args.steps, device)
            rates[name].append(args.steps * args.batch_size / seconds)
    ratios = sorted(b / a for a, b in zip(rates["ours"], rates["against"]))
    pairs = " ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(rates["ours"], rates["against"]))
    print(f"against {option}={value}, interleaved blocks of {args.steps} steps (ours/against images/s): {pairs}")
    print(f"against/ours: median {ratios[len(ratios) // 2]:.3f} (range {ratios[0]:.3f}-{ratios[-1]:.3f})")


def time_reference(args, device: torch.device) -> dict:
    # local: only --compare-reference needs them; torchvision alone costs ~4 s to import here (measured)
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms
    from PIL import Image

    class ArrayImages(Dataset):
        """Like torchvision.datasets.CIFAR10: uint8 HWC arrays, PIL image per item, transforms."""

        def __init__(self, n, num_classes, transform):
            rng = np.random.default_rng(0)
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = rng.integers(0, num_classes, n).tolist()
            self.transform = transform

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            return self.transform(Image.fromarray(self.data[i])), self.targets[i]

    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    n = args.batch_size * (args.warmup + args.steps * args.repeats)
    loader = DataLoader(ArrayImages(n, args.num_classes, transform), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.reference_workers, drop_last=True, pin_memory=device.type == "cuda",
                        persistent_workers=False)
    torch.manual_seed(0)
    model = build_model(args.model, args.num_classes, width=args.width).to(device)
    optimizer = torch.optim.SGD(model.parameters(), **BENCH_SGD)
    batches = iter(loader)

    def step(i):
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits, _ = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()  # what the ports do to log every step

    return run_timed(step, args, device, "reference")


def timed_block(step, first: int, steps: int, device: torch.device) -> float:
    """Seconds for step(first) .. step(first + steps - 1), the device synchronised at both ends."""
    sync(device)
    t = time.perf_counter()
    for i in range(first, first + steps):
        step(i)
    sync(device)
    return time.perf_counter() - t


def run_timed(step, args, device: torch.device, name: str, profile: bool = False) -> dict:
    """Warm-up steps, then `args.repeats` blocks of `args.steps` timed steps; the figures are the
    median block's (a CPU shared with others changes speed between blocks: --repeats shows it)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warmup_s = timed_block(step, 0, args.warmup, device)
    if profile:  # an extra block under torch.profiler, before the timed ones (its overhead stays out of them)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]
                                    + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])) as prof:
            timed_block(step, args.warmup, args.steps, device)
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"profile of {args.steps} steps (an extra block before the timed ones):")
        print(prof.key_averages().table(sort_by=sort, row_limit=args.profile_rows, max_name_column_width=40))
    first = args.warmup + (args.steps if profile else 0)
    blocks = [timed_block(step, first + r * args.steps, args.steps, device) for r in range(args.repeats)]
    seconds = sorted(blocks)[len(blocks) // 2]
    images = args.steps * args.batch_size
    if len(blocks) > 1:
        rates = " ".join(f"{images / b:.1f}" for b in blocks)
        print(f"{name} blocks of {args.steps} steps: {rates} images/s (median {images / seconds:.1f}, "
              f"best {images / min(blocks):.1f})")
    return {"warmup_s": warmup_s, "ms_per_step": 1000 * seconds / args.steps,
            "images_per_s": images / seconds, "peak_mem_mb": peak_memory_mb(device)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m lpa.tools.bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--repeats", type=int, default=1, help="blocks of --steps timed steps (>= 1); figures of the median block")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: the params.yaml defaults (CUDA: bf16 from compute capability 8.0, fp16 "
                        "below; CPU: fp32); fp16 with the engine's loss scaler")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on for CUDA, and on CPU with bf16")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-mode", default="default")
    p.add_argument("--compare-reference", action="store_true")
    p.add_argument("--reference-workers", type=int, default=2, help="DataLoader workers of the reference loop")
    p.add_argument("--peak-tflops", type=float, default=None, help="device bf16 peak, if not in the table")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    p.add_argument("--dropout", choices=["on", "off"], default=None, help="default: the model's own (on)")
    p.add_argument("--dropout-masks", choices=["auto", "torch", "counter"], default="auto",
                   help="as train.dropout_masks (auto: counter-based on the CPU)")
    p.add_argument("--small-map-weight-grad", choices=["auto", "library", "gemm"], default="auto",
                   help="as train.small_map_weight_grad (auto: im2col GEMM on the CPU under bf16)")
    p.add_argument("--against", type=parse_against, default=None, metavar="OPTION=VALUE",
                   help="also time ours with one option changed (" + ", ".join(AGAINST) + "), blocks alternating "
                        "in this process, and print the ratio (max(--repeats, 3) blocks each)")
    p.add_argument("--profile", action="store_true", help="print the top operators of the timed steps")
    p.add_argument("--profile-rows", type=int, default=15)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.steps < 1:
        p.error("--repeats and --steps must be at least 1")
    try:  # the engine's own rule, checked before anything is timed (for --against's option too)
        for option, value in [("dropout-masks", args.dropout_masks), ("small-map-weight-grad", args.small_map_weight_grad),
                              *([args.against] if args.against else [])]:
            if option != "dropout":
                refuse_under_compile(option.replace("-", "_"), value, args.compile)
    except ConfigError as err:
        p.error(str(err))

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision, amp_dtype = run_precision(device, args.precision)
    if args.channels_last is None:
        args.channels_last = device.type == "cuda" or precision == "bf16"
    peak, device_name = device_peak_tflops(device)
    peak = args.peak_tflops or peak
    if device.type == "cpu" and peak is None:
        peak = measured_conv_peak(amp_dtype, args.channels_last)
    flops_fwd = count_flops(build_model(args.model, args.num_classes, width=args.width), 32)
    flops_train = 3 * flops_fwd  # backward ~ 2x forward

    print(f"device: {device_name}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    print(f"model: {args.model}  width {args.width}  batch {args.batch_size}  steps {args.steps} (+{args.warmup} warm-up)"
          f"  forward {flops_fwd / 1e9:.3f} GFLOP/image, train step ~{flops_train / 1e9:.3f} GFLOP/image")
    print(f"ours: precision {precision}  channels_last {args.channels_last}  "
          f"compile {args.compile_mode if args.compile else 'off'}  dropout masks {args.dropout_masks}  "
          f"small-map weight grad {args.small_map_weight_grad}  data on device, batched flip+crop")
    ours = time_ours(args, device, amp_dtype)
    report("ours", ours)
    if device.type == "cpu" and not args.peak_tflops:
        # calibrated again after the steps: this CPU's speed moves (shared, measured 0.6-2.2 TFLOP/s
        # on the same convolution within minutes), so the higher of the two is the peak
        after = measured_conv_peak(amp_dtype, args.channels_last, when="after the timed steps")
        if max(peak, after) > 1.3 * min(peak, after):
            print(f"note: the calibrated convolution ran {max(peak, after) / min(peak, after):.1f}x faster at one end "
                  "of the run than at the other: this CPU changed speed; compare figures taken in one state")
        peak = max(peak, after)
    tflops = ours["images_per_s"] * flops_train / 1e12
    what = ("this CPU's measured 3x3 convolution peak" if device.type == "cpu" and not args.peak_tflops
            else "bf16 peak")
    print(f"ours achieved: {tflops:.3f} TFLOP/s" + (f" = {100 * tflops / peak:.1f}% of {peak:.3f} TFLOP/s, {what}"
                                                     if peak else " (device peak unknown: --peak-tflops)"))
    print(f"ours estimated {PAPER_EPOCHS} epochs x {CIFAR_TRAIN_IMAGES} images: "
          f"{PAPER_EPOCHS * CIFAR_TRAIN_IMAGES / ours['images_per_s'] / 60:.1f} min")
    if args.against:
        interleaved(args, device, amp_dtype)
    if args.compare_reference:
        print(f"reference: fp32, NCHW, no compile, DataLoader({args.reference_workers} workers) "
              "+ per-image PIL RandomCrop/Flip/ToTensor/Normalize, loss.item() per step")
        ref = time_reference(args, device)
        report("reference", ref)
        print(f"reference estimated {PAPER_EPOCHS} epochs: "
              f"{PAPER_EPOCHS * CIFAR_TRAIN_IMAGES / ref['images_per_s'] / 60:.1f} min")
        print(f"speedup_vs_reference: {ours['images_per_s'] / ref['images_per_s']:.2f}")


# The calibrated convolution: a 3x3 layer the size of the paper network's widest ones at 16x16
# (batch 128, 256 -> 256 channels), forward only, as the device's reachable conv throughput.
PEAK_CONV = {"batch": 128, "channels": 256, "size": 16, "repeats": 10}


def measured_conv_peak(amp_dtype, channels_last: bool, when: str = "") -> float:
    """TFLOP/s of the calibrated convolution on the CPU in the run's dtype and layout (a few s)."""
    b, c, hw = PEAK_CONV["batch"], PEAK_CONV["channels"], PEAK_CONV["size"]
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
    x = torch.randn(b, c, hw, hw)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    flops = 2 * b * c * c * 9 * hw * hw
    with torch.no_grad(), torch.autocast("cpu", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        conv(x)
        times = []
        for _ in range(PEAK_CONV["repeats"]):
            t0 = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - t0)
        seconds = min(times)  # a peak: the best of the repeats (others are disturbed by the machine)
    tflops = flops / seconds / 1e12
    print(f"cpu peak{' ' + when if when else ''}: calibrated 3x3 conv {b}x{c}x{hw}x{hw} {'bf16' if amp_dtype else 'fp32'} "
          f"{'channels_last' if channels_last else 'NCHW'}: {tflops:.3f} TFLOP/s")
    return tflops


def report(name: str, r: dict) -> None:
    print(f"{name}: {r['images_per_s']:.1f} images/s  {r['ms_per_step']:.1f} ms/step  "
          f"peak memory {r['peak_mem_mb']:.0f} MiB  warm-up {r['warmup_s']:.1f} s")


if __name__ == "__main__":
    main()
