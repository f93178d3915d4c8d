"""The other experiments over seeds: transfer accuracy and Jaccard with t-intervals, the paper's
comparisons with Welch intervals and their sentences, the map statistics, the figures and the
overlay grid, and the whole report rendered from the committed quick records."""
from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import lpa.report.suite as suite_report
from lpa.config.run import resolve_run
from lpa.report.aggregate import DOES_NOT_HOLD, HOLDS, NOT_RESOLVED, compare_runs, verdict
from lpa.report.claims import claim_sentence
from lpa.report.map_stats import load_map_stats, map_stats_json, map_stats_summary, render_map_stats_md
from lpa.report.overlay_grid import find_first_images, save_overlay_grid
from lpa.report.records import load_trial
from lpa.report.segmentation import (PRIOR, VS_PRIOR, jaccard_comparisons, jaccard_seed_table, load_segmentation,
                                     render_jaccard_seeds_md, save_jaccard_figure)
from lpa.report.stats import summarize
from lpa.report.transfer import (load_transfer, render_transfer_seeds_md, save_transfer_figure, transfer_comparisons,
                                 transfer_seed_table)
from lpa.thumbnails import FOLDER, Thumbnail, save_thumbnails
from tests.helpers.params import shrunk_params
from tests.helpers.run import REPO

PNG = b"\x89PNG\r\n\x1a\n"
ATT, GAP = "pasted-vgg-att2", "pasted-vgg-gap"
SEEDS = (0, 1, 2)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def trials(tmp_path, quick_params):
    """Three seeds of an attention run and of VGG-GAP, each with config.json and metrics.json."""
    params = shrunk_params(quick_params)
    records, dirs = [], []
    for run in (ATT, GAP):
        for seed in SEEDS:
            run_dir = tmp_path / "runs" / f"{run}-seed{seed}"
            write_json(run_dir / "config.json", {"trial": run_dir.name, **resolve_run(params, run, seed)})
            write_json(run_dir / "metrics.json", {"test": {"top1_error": 10.0, "top5_error": 1.0}})
            records.append(load_trial(run_dir))
            dirs.append(run_dir)
    return records, dirs


def configs(records) -> dict:
    return {r["run"]: r["config"] for r in records}


# ----------------------------------------------------------------------------- verdicts

def test_verdict_for_a_measure_where_higher_is_better():
    assert verdict([1.0, 3.0], 2.0, higher_is_better=True) == HOLDS
    assert verdict([-3.0, -1.0], -2.0, higher_is_better=True) == DOES_NOT_HOLD
    assert verdict([-1.0, 3.0], 1.0, higher_is_better=True) == NOT_RESOLVED
    assert verdict([1.0, 3.0], 2.0) == DOES_NOT_HOLD   # error: lower is better (unchanged)


def test_compare_runs_skips_pairs_without_values():
    comps = compare_runs({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]},
                         [("k", "a", "b"), ("k", "a", "missing")], higher_is_better=True)
    assert len(comps) == 1
    row = comps.iloc[0]
    assert row["diff"] == pytest.approx(-3.0) and row["verdict"] == DOES_NOT_HOLD
    assert row["n_first"] == 3 and row["n_second"] == 3


# ----------------------------------------------------------------------------- transfer

ACCURACY = {ATT: [40.0, 41.0, 43.0], GAP: [50.0, 51.0, 52.0]}


def write_transfer(records, dirs, with_mean_class=True):
    for record, run_dir in zip(records, dirs):
        acc = ACCURACY[record["run"]][record["seed"]]
        test = {"accuracy": acc, "top1_error": 100.0 - acc}
        if with_mean_class:
            test["mean_class_accuracy"] = acc - 5.0
        write_json(run_dir / "transfer" / "caltech101.json", {"transfer": {"test": test, "C": 0.1}})


def test_transfer_over_seeds(trials, tmp_path):
    records, dirs = trials
    write_transfer(records, dirs)
    points = load_transfer(records, dirs)
    table = transfer_seed_table(points).set_index("run")
    s = summarize(ACCURACY[ATT])
    assert table.loc[ATT, "n"] == 3
    assert table.loc[ATT, "accuracy_mean"] == pytest.approx(s["mean"])
    assert table.loc[ATT, "accuracy_ci95"] == pytest.approx(s["ci95"])
    assert table.loc[ATT, "mean_class_accuracy_mean"] == pytest.approx(s["mean"] - 5.0)

    comps = transfer_comparisons(points, configs(records))
    assert set(comps["measure"]) == {"accuracy", "mean_class_accuracy"}
    row = comps[comps["measure"] == "accuracy"].iloc[0]
    assert (row["kind"], row["first"], row["second"]) == ("attention vs baseline", ATT, GAP)
    assert row["diff"] == pytest.approx(np.mean(ACCURACY[ATT]) - np.mean(ACCURACY[GAP]))
    assert row["verdict"] == DOES_NOT_HOLD      # the attention features transfer worse here

    md = render_transfer_seeds_md(transfer_seed_table(points), comps, {ATT: "Att", GAP: "Gap"})
    assert "| pasted-vgg-att2 |" in md and "[" in md
    assert "The claim that Att transfers better than Gap (top-1 accuracy on caltech101, points) does not hold " \
           "at this scale" in md
    assert "![transfer accuracy per run, seeds as dots](transfer.png)" in md
    assert save_transfer_figure(points, tmp_path / "t.png").read_bytes()[:8] == PNG


def test_transfer_records_without_mean_class_accuracy(trials):
    records, dirs = trials
    write_transfer(records, dirs, with_mean_class=False)
    points = load_transfer(records, dirs)
    assert points["mean_class_accuracy"].isna().all()
    table = transfer_seed_table(points)
    assert (table["mean_class_accuracy_n"] == 0).all()
    comps = transfer_comparisons(points, configs(records))
    assert set(comps["measure"]) == {"accuracy"}   # nothing to compare on the missing measure
    render_transfer_seeds_md(table, comps, {})      # renders with empty cells


# ----------------------------------------------------------------------------- segmentation

JACCARD = {ATT: [0.30, 0.32, 0.37], GAP: [0.50, 0.52, 0.51]}
PRIOR_VALUE = 0.40


def write_segmentation(records, dirs):
    for record, run_dir in zip(records, dirs):
        mean = JACCARD[record["run"]][record["seed"]]
        write_json(run_dir / "segmentation" / "horse.json",
                   {"jaccard": {"model": {"horse": mean, "mean": mean},
                                "centre_prior": {"horse": PRIOR_VALUE, "mean": PRIOR_VALUE}}, "images": 3})


def test_jaccard_over_seeds_and_comparisons(trials, tmp_path):
    records, dirs = trials
    write_segmentation(records, dirs)
    points = load_segmentation(records, dirs)
    table = jaccard_seed_table(points).set_index("run")
    assert table.loc[ATT, "mean"] == pytest.approx(np.mean(JACCARD[ATT])) and table.loc[ATT, "n"] == 3
    assert table.loc[PRIOR, "n"] == 1 and table.loc[PRIOR, "ci95"] is None   # the prior: one number

    comps = jaccard_comparisons(points, configs(records))
    by = {(r["kind"], r["first"], r["second"]): r for r in comps.to_dict("records")}
    cam = by[("attention vs baseline", ATT, GAP)]        # VGG-GAP's class activation map is the baseline
    assert cam["verdict"] == DOES_NOT_HOLD
    floor = by[(VS_PRIOR, ATT, PRIOR)]
    # against a fixed number: the one-sample t-interval of the run's seeds
    one_sample = summarize([v - PRIOR_VALUE for v in JACCARD[ATT]])
    assert floor["diff"] == pytest.approx(one_sample["mean"])
    assert floor["ci95"] == pytest.approx(one_sample["ci95"]) and floor["n_second"] == 1
    assert by[(VS_PRIOR, GAP, PRIOR)]["verdict"] == HOLDS

    md = render_jaccard_seeds_md(jaccard_seed_table(points), comps, {ATT: "Att", GAP: "Gap"})
    assert "The claim that Att finds the object better than Gap (Jaccard on horse) does not hold at this scale" in md
    assert "Nothing is tuned on these images or masks" in md
    assert save_jaccard_figure(points, tmp_path / "j.png").read_bytes()[:8] == PNG


def test_claim_sentence_when_the_interval_includes_zero():
    row = {"first": "a", "second": "b", "diff": 0.5, "ci95": [-1.0, 2.0], "n_first": 3, "n_second": 3,
           "verdict": NOT_RESOLVED}
    text = claim_sentence(row, {"a": "A", "b": "B"}, "accuracy", "transfers better", 2)
    assert text == ("The claim that A transfers better than B (accuracy) is not shown at this scale: first minus "
                    "second is +0.50, and its 95% Welch interval [-1.00, +2.00] includes 0 (n = 3 and 3 seeds).")


# ----------------------------------------------------------------------------- map statistics

def test_map_statistics_table(trials):
    records, _ = trials
    for r in records:
        if r["run"] == ATT:
            r["metrics"]["attention_stats"] = {
                "level1": {"height": 8, "width": 8, "max_weight": 0.1 + 0.1 * r["seed"], "entropy": 3.0,
                           "max_entropy": float(np.log(64))},
                "level2": {"height": 4, "width": 4, "max_weight": 0.5, "entropy": 1.0 + r["seed"],
                           "max_entropy": float(np.log(16))}}
    summary = map_stats_summary(load_map_stats(records)).set_index(["run", "level"])
    assert list(summary.index) == [(ATT, 1), (ATT, 2)]            # VGG-GAP has no attention maps
    assert summary.loc[(ATT, 1), "max_weight"] == pytest.approx(0.2) and summary.loc[(ATT, 1), "n"] == 3
    assert summary.loc[(ATT, 2), "entropy"] == pytest.approx(2.0)
    md = render_map_stats_md(map_stats_summary(load_map_stats(records)))
    assert "| 1 | 8x8 | 0.200 | 3.00 | 4.16 |" in md and "measures top-1 test error only" in md
    assert map_stats_json(map_stats_summary(load_map_stats(records)))[ATT]["level2"] == {"max_weight": 0.5,
                                                                                          "entropy": 2.0}


def test_no_map_statistics():
    summary = map_stats_summary(load_map_stats([]))
    assert len(summary) == 0 and "No map statistics yet" in render_map_stats_md(summary)


# ----------------------------------------------------------------------------- overlay grid

def fake_first_images(folder: Path, n: int, score: float) -> Path:
    rng = np.random.default_rng(0)
    return save_thumbnails([Thumbnail(f"horse{i:03d}", score, rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
                                      rng.random((24, 32)) > 0.5, rng.random((24, 32)) > 0.5,
                                      rng.random((24, 32)) > 0.5) for i in range(n)], folder)


def test_overlay_grid_from_the_lowest_seed_of_each_run(trials, tmp_path):
    records, dirs = trials
    for record, run_dir in zip(records, dirs):
        if record["seed"] > 0:   # seed 0 of the attention run has no thumbnails: seed 1 is used
            fake_first_images(run_dir / "segmentation" / "horse" / FOLDER, 3, 0.5)
    fake_first_images(dirs[3] / "segmentation" / "horse" / FOLDER, 2, 0.6)   # GAP seed 0
    found = find_first_images(records, dirs)
    assert list(found) == ["horse"]
    assert found["horse"] == {ATT: dirs[1] / "segmentation" / "horse" / FOLDER,
                              GAP: dirs[3] / "segmentation" / "horse" / FOLDER}
    out = save_overlay_grid(found["horse"], tmp_path / "grid.png", title="t")
    assert out.read_bytes()[:8] == PNG
    assert save_overlay_grid({}, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


# ----------------------------------------------------------------------------- the whole report

def test_quick_records_render_with_every_linked_figure(tmp_path):
    """The committed quick records render: every figure that results.md links exists next to it,
    and the attention runs' map statistics (evaluate's attention_stats) reach summary.json."""
    runs = REPO / "reports" / "quick" / "runs"
    if not runs.is_dir():
        pytest.skip("no committed quick records")
    trials = sorted(p.name for p in runs.iterdir())
    with mock.patch.object(suite_report, "record_dir", lambda suite, trial: runs / trial), \
            mock.patch.object(suite_report, "suite_dir", lambda suite: tmp_path / suite):
        suite_report.write_suite_report("quick", trials)
    out = tmp_path / "quick"
    md = (out / "results.md").read_text()
    links = [line.split("](", 1)[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert "transfer.png" in links and "segmentation.png" in links and "robustness/digits.png" in links
    for link in links:
        assert (out / link).read_bytes()[:8] == PNG, link
    assert "### Over seeds: Jaccard index" in md and "## What the attention maps do" in md
    summary = json.loads((out / "summary.json").read_text())
    attention_runs = {r.rsplit("-seed", 1)[0] for r in trials if "-att" in r}
    assert set(summary["attention_maps"]) == attention_runs
    for levels in summary["attention_maps"].values():
        assert all(0 < s["max_weight"] <= 1 and s["entropy"] >= 0 for s in levels.values())
