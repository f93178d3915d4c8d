"""``python -m lpa.models``: a table of every network (parameters, forward GFLOP, attention maps).

Built on the meta device, so it allocates nothing and runs in seconds.
"""
from __future__ import annotations

import argparse

from tabulate import tabulate

from . import MODEL_NAMES, model_summary


def _maps(sizes) -> str:
    if not sizes:
        return "-"
    return f"{len(sizes)}: " + ", ".join(f"{h}x{w}" for h, w in sizes)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lpa.models", description=__doc__)
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (default 1.0)")
    parser.add_argument("--input-size", type=int, default=32, help="input height = width (default 32)")
    args = parser.parse_args(argv)
    rows = []
    for name in MODEL_NAMES:
        s = model_summary(name, input_size=args.input_size, width=args.width)
        rows.append([name, f"{s['params_10']:,}", f"{s['params_100']:,}", f"{s['gflops']:.3f}",
                     _maps(s["maps"]), s["summary"]])
    print(f"lpa models at width {args.width:g}, {args.input_size}x{args.input_size} input, default options")
    print(tabulate(rows, headers=["model", "params (10 cl.)", "params (100 cl.)", "GFLOP fwd/img",
                                  "maps: sizes", "what"], tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
