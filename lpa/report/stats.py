"""Small-sample statistics for results repeated over seeds.

A run is repeated with a handful of seeds, so a single number per configuration hides how much
it moves. These pure functions turn the per-seed values (typically test error rates in percent,
but nothing here assumes a unit) into a mean with a 95% Student-t interval, compare two
configurations with Welch's t-interval on the difference of means, and answer the two questions
reports ask of an interval: does it contain a value (e.g. the paper's figure), and does it
exclude zero.

Conventions:
  * Nothing is rounded here; callers round for display.
  * Results are plain Python ints/floats/lists/None, so `json.dumps(..., allow_nan=False)` works.
  * When a quantity is undefined (a spread from one value), it is None, never NaN.
  * Empty or non-finite input raises ValueError.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as _sps

_LEVEL = 0.95


def _sample(values: Sequence[float], name: str = "values") -> np.ndarray:
    """Validate a 1-D sequence of finite numbers and return it as a float64 array."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of numbers: {exc}") from None
    if x.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty: need at least one value")
    if not np.all(np.isfinite(x)):
        bad = [float(v) for v in x[~np.isfinite(x)]]
        raise ValueError(f"{name} must be finite, got {bad}")
    return x


def _t_quantile(df: float) -> float:
    """Two-sided 95% critical value of Student's t with `df` degrees of freedom."""
    return float(_sps.t.ppf(0.5 + _LEVEL / 2, df))


def _interval(center: float, half: float) -> list[float]:
    return [float(center - half), float(center + half)]


def summarize(values: Sequence[float]) -> dict:
    """Mean, sample std (ddof=1) and 95% Student-t interval of the mean of `values`.

    Returns {"n": int, "mean": float, "std": float | None, "ci95": [lo, hi] | None}.
    With one value, std and ci95 are None. With several equal values, std is 0 and the
    interval is [mean, mean].
    """
    x = _sample(values)
    n = int(x.size)
    mean = float(x.mean())
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "ci95": None}
    std = float(x.std(ddof=1))
    if std == 0.0:
        ci = [mean, mean]
    else:
        ci = _interval(mean, _t_quantile(n - 1) * std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "ci95": ci}


def welch(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's 95% t-interval for mean(a) - mean(b) from two independent samples.

    Returns {"diff": float, "ci95": [lo, hi] | None, "df": float | None, "n_a": int, "n_b": int}.

    Degrees of freedom are Welch–Satterthwaite:
        df = (va/na + vb/nb)^2 / ((va/na)^2/(na-1) + (vb/nb)^2/(nb-1)),
    with va, vb the sample variances (ddof=1). A zero variance simply contributes nothing, so if
    only b is constant, df = na - 1 (and symmetrically).

    Edge cases:
      * If either sample has fewer than 2 values, its variance is undefined, so ci95 and df are
        None (diff is still given).
      * If both variances are 0 the formula is 0/0. We then return the degenerate interval
        [diff, diff] and, by convention, the pooled df = na + nb - 2 (the df the interval would
        have under a pooled-variance t-test; it does not affect a zero-width interval).
    """
    xa = _sample(a, "a")
    xb = _sample(b, "b")
    na, nb = int(xa.size), int(xb.size)
    diff = float(xa.mean() - xb.mean())
    out = {"diff": diff, "ci95": None, "df": None, "n_a": na, "n_b": nb}
    if na < 2 or nb < 2:
        return out
    sa = float(xa.var(ddof=1)) / na  # squared standard error of mean(a)
    sb = float(xb.var(ddof=1)) / nb
    if sa == 0.0 and sb == 0.0:
        out["ci95"] = [diff, diff]
        out["df"] = float(na + nb - 2)
        return out
    se2 = sa + sb
    df = se2 * se2 / (sa * sa / (na - 1) + sb * sb / (nb - 1))
    out["df"] = float(df)
    out["ci95"] = _interval(diff, _t_quantile(df) * math.sqrt(se2))
    return out


def contains(interval: Sequence[float] | None, value: float) -> bool | None:
    """Whether lo <= value <= hi; None if there is no interval."""
    if interval is None:
        return None
    lo, hi = interval
    return bool(lo <= value <= hi)


def excludes_zero(interval: Sequence[float] | None) -> bool | None:
    """Whether the interval lies strictly above or strictly below 0; None if there is none."""
    if interval is None:
        return None
    lo, hi = interval
    return bool(lo > 0 or hi < 0)
