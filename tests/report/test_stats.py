"""lpa.report.stats: per-seed summaries, Welch intervals, interval predicates.

Expected values are worked out by hand below; Student-t quantiles are literal constants from
standard tables (two-sided 95%, i.e. the 0.975 quantile), never computed with scipy, so that a
wrong quantile or formula in lpa.report.stats makes these tests fail.
"""
import json
import math

import pytest

from lpa.report.stats import contains, excludes_zero, summarize, welch

# t(0.975, df) from tables.
T975 = {
    1: 12.706204736174698,
    2: 4.302652729749464,
    3: 3.182446305284263,
    4: 2.7764451051977987,
    8: 2.306004135204166,
}


def _plain(obj):
    """Every leaf is a plain Python int/float/bool/None (no numpy scalars)."""
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_plain(v) for v in obj)
    return obj is None or type(obj) in (int, float, bool)


# --- summarize -----------------------------------------------------------------------------------

def test_summarize_known_sample():
    # [1, 2, 3]: mean 2, deviations -1, 0, 1 -> var = 2 / 2 = 1, std = 1, df = 2.
    s = summarize([1.0, 2.0, 3.0])
    half = T975[2] * 1.0 / math.sqrt(3)
    assert s["n"] == 3 and type(s["n"]) is int
    assert s["mean"] == pytest.approx(2.0)
    assert s["std"] == pytest.approx(1.0)
    assert s["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert s["ci95"] == pytest.approx([-0.484138, 4.484138], abs=1e-6)  # 2 -+ 4.302653/1.732051
    assert _plain(s)


def test_summarize_percent_error_rates():
    # Five seeds: 7, 8, 6, 9, 10 -> mean 8, squared deviations 1+0+4+1+4 = 10, var 10/4 = 2.5.
    s = summarize([7, 8, 6, 9, 10])
    std = math.sqrt(2.5)
    half = T975[4] * std / math.sqrt(5)  # = 2.7764 * sqrt(0.5) = 1.9632
    assert s["mean"] == pytest.approx(8.0)
    assert s["std"] == pytest.approx(std)
    assert s["ci95"] == pytest.approx([8.0 - half, 8.0 + half])
    assert half == pytest.approx(1.963243, abs=1e-6)


def test_summarize_two_values():
    # [4, 6]: mean 5, var (1 + 1) / 1 = 2, se = sqrt(2) / sqrt(2) = 1, df = 1.
    s = summarize([4.0, 6.0])
    assert s["std"] == pytest.approx(math.sqrt(2))
    assert s["ci95"] == pytest.approx([5.0 - T975[1], 5.0 + T975[1]])


def test_summarize_single_value_has_no_spread():
    s = summarize([6.5])
    assert s == {"n": 1, "mean": 6.5, "std": None, "ci95": None}
    json.dumps(s, allow_nan=False)


def test_summarize_zero_variance():
    s = summarize([5.25, 5.25, 5.25, 5.25])
    assert s["n"] == 4
    assert s["mean"] == pytest.approx(5.25)
    assert s["std"] == 0.0
    assert s["ci95"] == [pytest.approx(5.25), pytest.approx(5.25)]
    assert s["ci95"][0] == s["ci95"][1] == s["mean"]


def test_summarize_accepts_tuples_and_ints():
    s, ref = summarize((1, 2, 3)), summarize([1.0, 2.0, 3.0])
    assert s["n"] == ref["n"] and s["mean"] == pytest.approx(ref["mean"])
    assert s["std"] == pytest.approx(ref["std"]) and s["ci95"] == pytest.approx(ref["ci95"])
    assert type(s["mean"]) is float and type(s["std"]) is float


def test_summarize_does_not_round():
    s = summarize([1.0, 2.0, 2.0])  # mean 5/3
    assert s["mean"] == pytest.approx(5 / 3, abs=1e-15)


@pytest.mark.parametrize("bad", [[], ()])
def test_summarize_empty_raises(bad):
    with pytest.raises(ValueError, match="empty"):
        summarize(bad)


@pytest.mark.parametrize("bad", [[1.0, float("nan")], [float("inf"), 2.0], [float("-inf")]])
def test_summarize_non_finite_raises(bad):
    with pytest.raises(ValueError, match="finite"):
        summarize(bad)


def test_summarize_rejects_nested():
    with pytest.raises(ValueError):
        summarize([[1.0, 2.0], [3.0, 4.0]])


# --- welch ---------------------------------------------------------------------------------------

def test_welch_textbook_equal_sizes():
    # a = [1, 2, 3] (mean 2, var 1), b = [4, 5, 6] (mean 5, var 1), n = 3 each.
    # va/na = vb/nb = 1/3; se^2 = 2/3.
    # df = (2/3)^2 / ((1/3)^2/2 + (1/3)^2/2) = (4/9) / (1/9) = 4  (= pooled df 3 + 3 - 2).
    # diff = -3, half = t(0.975, 4) * sqrt(2/3) = 2.7764 * 0.8165 = 2.2670.
    w = welch([1, 2, 3], [4, 5, 6])
    half = T975[4] * math.sqrt(2 / 3)
    assert w["diff"] == pytest.approx(-3.0)
    assert w["df"] == pytest.approx(4.0)
    assert w["ci95"] == pytest.approx([-3.0 - half, -3.0 + half])
    assert w["ci95"] == pytest.approx([-5.266958, -0.733042], abs=1e-6)
    assert (w["n_a"], w["n_b"]) == (3, 3)
    assert _plain(w)


def test_welch_equal_sizes_five_each():
    # a = [7, 8, 6, 9, 10] (mean 8, var 2.5), b = [5, 6, 4, 7, 8] (mean 6, var 2.5).
    # se^2 = 0.5 + 0.5 = 1; df = 1 / (0.25/4 + 0.25/4) = 8; half = t(0.975, 8) * 1.
    w = welch([7, 8, 6, 9, 10], [5, 6, 4, 7, 8])
    assert w["diff"] == pytest.approx(2.0)
    assert w["df"] == pytest.approx(8.0)
    assert w["ci95"] == pytest.approx([2.0 - T975[8], 2.0 + T975[8]])


def test_welch_unequal_sizes_and_variances():
    # a = [1, 2, 3, 4, 5]: mean 3, var 10/4 = 2.5, va/na = 0.5.
    # b = [2, 4, 6]:       mean 4, var 8/2 = 4,    vb/nb = 4/3.
    # se^2 = 0.5 + 4/3 = 11/6.
    # df = (11/6)^2 / (0.5^2/4 + (4/3)^2/2) = (121/36) / (1/16 + 8/9) = (121/36) / (137/144)
    #    = 484/137 = 3.5328...
    w = welch([1, 2, 3, 4, 5], [2, 4, 6])
    assert w["diff"] == pytest.approx(-1.0)
    assert w["df"] == pytest.approx(484 / 137)
    lo, hi = w["ci95"]
    assert (lo + hi) / 2 == pytest.approx(-1.0)
    # Non-integer df: the critical value lies strictly between the table values for 4 and 3 df.
    t_used = (hi - lo) / 2 / math.sqrt(11 / 6)
    assert T975[4] < t_used < T975[3]


def test_welch_is_antisymmetric():
    w1 = welch([1, 2, 3, 4, 5], [2, 4, 6])
    w2 = welch([2, 4, 6], [1, 2, 3, 4, 5])
    assert w2["diff"] == pytest.approx(-w1["diff"])
    assert w2["df"] == pytest.approx(w1["df"])
    assert w2["ci95"] == pytest.approx([-w1["ci95"][1], -w1["ci95"][0]])


@pytest.mark.parametrize("a,b", [([4.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [4.0]), ([4.0], [1.0])])
def test_welch_single_value_side(a, b):
    w = welch(a, b)
    assert w["diff"] == pytest.approx(sum(a) / len(a) - sum(b) / len(b))
    assert w["ci95"] is None and w["df"] is None
    assert (w["n_a"], w["n_b"]) == (len(a), len(b))
    json.dumps(w, allow_nan=False)


def test_welch_both_zero_variance():
    # Documented convention: degenerate interval, df = n_a + n_b - 2.
    w = welch([3.0, 3.0, 3.0], [1.5, 1.5])
    assert w["diff"] == pytest.approx(1.5)
    assert w["ci95"] == [pytest.approx(1.5), pytest.approx(1.5)]
    assert w["df"] == pytest.approx(3.0)
    json.dumps(w, allow_nan=False)


def test_welch_one_zero_variance():
    # a = [1, 2, 3] (var 1, va/na = 1/3), b = [5, 5, 5] (var 0).
    # df = (1/3)^2 / ((1/3)^2 / 2 + 0) = 2; se = sqrt(1/3); diff = -3.
    w = welch([1, 2, 3], [5, 5, 5])
    half = T975[2] / math.sqrt(3)
    assert w["df"] == pytest.approx(2.0)
    assert w["ci95"] == pytest.approx([-3.0 - half, -3.0 + half])
    # ... and with the constant sample first: df = n_b - 1 = 4.
    # b = [7, 8, 6, 9, 10]: var 2.5, vb/nb = 0.5 -> half = t(0.975, 4) * sqrt(0.5).
    w = welch([0, 0], [7, 8, 6, 9, 10])
    half = T975[4] * math.sqrt(0.5)
    assert w["diff"] == pytest.approx(-8.0)
    assert w["df"] == pytest.approx(4.0)
    assert w["ci95"] == pytest.approx([-8.0 - half, -8.0 + half])


def test_welch_errors():
    with pytest.raises(ValueError, match="empty"):
        welch([], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        welch([1.0, 2.0], [])
    with pytest.raises(ValueError, match="finite"):
        welch([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        welch([1.0, 2.0], [float("inf"), 2.0])


# --- contains / excludes_zero --------------------------------------------------------------------

def test_contains():
    assert contains([1.0, 2.0], 1.5) is True
    assert contains([1.0, 2.0], 1.0) is True  # closed at both ends
    assert contains([1.0, 2.0], 2.0) is True
    assert contains([1.0, 2.0], 2.0001) is False
    assert contains([1.0, 2.0], 0.5) is False
    assert contains([3.0, 3.0], 3.0) is True
    assert contains(None, 1.0) is None


def test_contains_with_summary_interval():
    ci = summarize([1.0, 2.0, 3.0])["ci95"]  # about [-0.484, 4.484]
    assert contains(ci, 4.4) is True
    assert contains(ci, 4.6) is False
    assert contains(summarize([1.0])["ci95"], 1.0) is None


def test_excludes_zero():
    assert excludes_zero([0.5, 2.0]) is True
    assert excludes_zero([-2.0, -0.5]) is True
    assert excludes_zero([-1.0, 1.0]) is False
    assert excludes_zero([0.0, 1.0]) is False  # touching zero is not excluding it
    assert excludes_zero([-1.0, 0.0]) is False
    assert excludes_zero([0.0, 0.0]) is False
    assert excludes_zero(None) is None


def test_excludes_zero_with_welch():
    assert excludes_zero(welch([1, 2, 3], [4, 5, 6])["ci95"]) is True  # [-5.27, -0.73]
    assert excludes_zero(welch([1, 2, 3, 4, 5], [2, 4, 6])["ci95"]) is False
    assert excludes_zero(welch([1.0], [2.0])["ci95"]) is None


# --- serialisation -------------------------------------------------------------------------------

@pytest.mark.parametrize("result", [
    summarize([1.0, 2.0, 3.0]),
    summarize([2.0]),
    summarize([4.0, 4.0]),
    welch([1, 2, 3], [4, 5, 6]),
    welch([1.0], [2.0, 3.0]),
    welch([3.0, 3.0], [1.0, 1.0]),
    welch([1, 2, 3], [5, 5, 5]),
])
def test_results_are_json_serialisable(result):
    assert _plain(result)
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
