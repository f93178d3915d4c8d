"""The paper's comparisons as text: a markdown table of lpa.report.aggregate.compare_runs rows and
one sentence per row derived from its Welch interval (holds / does not hold / not resolved), so
every claim the report makes about the paper follows from the numbers, none is written by hand.
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from lpa.report.aggregate import DOES_NOT_HOLD, HOLDS, NO_SPREAD, ONE_SEED


def interval_text(ci95, decimals: int) -> str:
    """`[lo, hi]`, or a dash with the reason there is none."""
    if ci95 is None:
        return "— (needs 2+ seeds)"
    lo, hi = ci95
    return f"[{lo:+.{decimals}f}, {hi:+.{decimals}f}]"


def claim_sentence(row: Mapping, names: Mapping[str, str], measure: str, better: str, decimals: int) -> str:
    """One sentence: the paper's claim "first is `better`" on `measure`, judged by the row's interval.

    `row`: a compare_runs row; `names`: run -> how to call it (its notation)."""
    first, second = names.get(row["first"], row["first"]), names.get(row["second"], row["second"])
    claim = f"{first} {better} than {second} ({measure})"
    diff = f"{row['diff']:+.{decimals}f}"
    n = f"n = {row['n_first']} and {row['n_second']} seeds"
    if row["verdict"] == HOLDS:
        return f"The claim that {claim} holds at this scale: first minus second is {diff}, 95% Welch interval " \
               f"{interval_text(row['ci95'], decimals)}, clear of 0 ({n})."
    if row["verdict"] == DOES_NOT_HOLD:
        return f"The claim that {claim} does not hold at this scale: first minus second is {diff}, 95% Welch " \
               f"interval {interval_text(row['ci95'], decimals)}, clear of 0 on the wrong side ({n})."
    if row["verdict"] in (ONE_SEED, NO_SPREAD):
        return f"The claim that {claim} cannot be judged here: {row['verdict']} (difference {diff}, {n})."
    return f"The claim that {claim} is not shown at this scale: first minus second is {diff}, and its 95% Welch " \
           f"interval {interval_text(row['ci95'], decimals)} includes 0 ({n})."


def render_comparisons_md(comps: pd.DataFrame, names: Mapping[str, str], measure: str, better: str,
                          decimals: int = 2) -> list[str]:
    """Markdown lines: a table of the comparisons, then one claim sentence per row (nothing if none)."""
    if not len(comps):
        return []
    lines = [f"| comparison | first | second | n | difference of {measure} | 95% CI (Welch) | the claim |",
             "|---|---|---|---:|---:|---|---|"]
    for r in comps.to_dict("records"):
        lines.append(f"| {r['kind']} | {names.get(r['first'], r['first'])} | {names.get(r['second'], r['second'])} "
                     f"| {r['n_first']} / {r['n_second']} | {r['diff']:+.{decimals}f} "
                     f"| {interval_text(r['ci95'], decimals)} | {r['verdict']} |")
    lines.append("")
    lines += [f"- {claim_sentence(r, names, measure, better, decimals)}" for r in comps.to_dict("records")]
    return lines + [""]
