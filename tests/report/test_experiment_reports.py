"""The report's parts for the other experiments (lpa.report.robustness, lpa.report.transfer,
lpa.report.segmentation) on hand-made record directories, as the report stage reads them:
reports/<suite>/runs/<trial>/{config.json, metrics.json, robustness.json, transfer/*.json,
segmentation/*.json}, each trial's record from lpa.report.records.load_trial.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lpa.config.run import resolve_run
from lpa.errors import DamagedFileError
from lpa.report.notation import paper_notation
from lpa.report.records import load_trial
from lpa.report.robustness import (load_robustness, render_robustness_md, robustness_json, robustness_summary,
                                   save_robustness_figures)
from lpa.report.segmentation import (PRIOR, load_segmentation, render_segmentation_md, segmentation_json,
                                     segmentation_summary)
from lpa.report.transfer import (load_transfer, render_transfer_md, transfer_differences, transfer_json,
                                 transfer_summary)
from tests.helpers.checks import one_line
from tests.helpers.params import shrunk_params

PNG = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- helpers

def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def make_trials(root: Path, tiny_params: dict, trials: list[tuple[str, int]]) -> tuple[list[dict], list[Path]]:
    """Record directories with config.json (a resolved config) and metrics.json, read back by load_trial."""
    dirs = []
    for run, seed in trials:
        trial = f"{run}-seed{seed}"
        run_dir = root / "runs" / trial
        write_json(run_dir / "config.json", {"trial": trial, **resolve_run(tiny_params, run, seed)})
        write_json(run_dir / "metrics.json", {"test": {"top1_error": 10.0 + seed, "top5_error": 1.0}})
        dirs.append(run_dir)
    return [load_trial(d) for d in dirs], dirs


def notation(tiny_params, run) -> str:
    return paper_notation(resolve_run(tiny_params, run))


def tables(md: str) -> list[dict[str, dict[str, str]]]:
    """Each markdown table of `md` as {first cell: {header: cell}}."""
    out, rows = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            header, body = rows[0], rows[2:]
            out.append({r[0]: dict(zip(header, r)) for r in body})
            rows = []
    return out


def number_leaves(tree) -> list:
    """Every leaf of a nested dict; fails on anything but dicts with str keys and numbers at the leaves."""
    assert isinstance(tree, dict)
    leaves = []
    for key, value in tree.items():
        assert isinstance(key, str)
        if isinstance(value, dict):
            leaves += number_leaves(value)
        else:
            assert type(value) in (int, float), (key, value, type(value))
            leaves.append(value)
    json.dumps(tree)
    return leaves


# ----------------------------------------------------------------------------- robustness

ROBUSTNESS = {
    ("digits-vgg-att2", 0): {"eps_0": 10.0, "eps_0p5": 15.0, "eps_2": 20.0},
    ("digits-vgg-att2", 1): {"eps_0": 12.0, "eps_0p5": 17.0, "eps_2": 26.0},
    ("digits-vgg", 0): {"eps_0": 8.0, "eps_0p5": 30.0, "eps_2": 40.0},
    ("pasted-vgg-att2", 0): {"eps_0": 5.0, "eps_2": 9.0},
    # pasted-vgg-gap-seed0: not attacked yet, no robustness.json
}


@pytest.fixture(scope="module")
def robustness(tmp_path_factory, quick_params) -> dict:
    root = tmp_path_factory.mktemp("robustness")
    records, dirs = make_trials(root, shrunk_params(quick_params), list(ROBUSTNESS) + [("pasted-vgg-gap", 0)])
    for (key, curve), run_dir in zip(ROBUSTNESS.items(), dirs):
        write_json(run_dir / "robustness.json", {"fgsm": {"top1_error": curve, "images": 200}})
    points = load_robustness(records, dirs)
    return {"records": records, "dirs": dirs, "points": points, "summary": robustness_summary(points)}


def test_robustness_points(robustness):
    points = robustness["points"]
    assert len(points) == 3 + 3 + 3 + 2
    assert set(points["run"]) == {"digits-vgg-att2", "digits-vgg", "pasted-vgg-att2"}   # gap: no record
    assert sorted(set(points["epsilon"])) == [0.0, 0.5, 2.0]
    assert points.loc[points["run"] == "digits-vgg-att2", "attention"].all()
    assert not points.loc[points["run"] == "digits-vgg", "attention"].any()


def test_robustness_summary_averages_over_seeds(robustness, tiny_params):
    s = robustness["summary"].set_index(["run", "epsilon"])
    row = s.loc[("digits-vgg-att2", 2.0)]
    assert row["mean"] == pytest.approx(23.0) and row["n"] == 2 and row["sd"] == pytest.approx(18 ** 0.5)
    assert s.loc[("digits-vgg-att2", 0.5), "mean"] == pytest.approx(16.0)
    assert s.loc[("digits-vgg", 2.0), "n"] == 1 and pd.isna(s.loc[("digits-vgg", 2.0), "sd"])
    assert s.loc[("pasted-vgg-att2", 0.0), "dataset"] == "pasted_digits"
    assert s.loc[("digits-vgg-att2", 0.0), "config"] == notation(tiny_params, "digits-vgg-att2")
    assert len(robustness["summary"]) == 3 + 3 + 2


def test_robustness_json(robustness):
    out = robustness_json(robustness["summary"])
    assert out == {"digits-vgg-att2": {"eps_0": 11.0, "eps_0p5": 16.0, "eps_2": 23.0},
                   "digits-vgg": {"eps_0": 8.0, "eps_0p5": 30.0, "eps_2": 40.0},
                   "pasted-vgg-att2": {"eps_0": 5.0, "eps_2": 9.0}}
    number_leaves(out)


def test_robustness_markdown(robustness, tiny_params):
    md = render_robustness_md(robustness["summary"])
    assert md.startswith("## Robustness to adversarial noise (FGSM, top-1 error %)")
    assert "| run | config | n | ε=0 | ε=0.5 | ε=2 |" in md
    assert f"| digits-vgg-att2 | {notation(tiny_params, 'digits-vgg-att2')} | 2 | 11.00 | 16.00 | 23.00 |" in md
    assert f"| digits-vgg | {notation(tiny_params, 'digits-vgg')} | 1 | 8.00 | 30.00 | 40.00 |" in md
    (table,) = tables(md)
    assert table["pasted-vgg-att2"]["ε=0.5"] == "" and table["pasted-vgg-att2"]["ε=2"] == "9.00"
    assert "pasted-vgg-gap" not in md


def test_robustness_figures_one_per_dataset(robustness, tmp_path):
    written = save_robustness_figures(robustness["summary"], tmp_path / "robustness", title="suite quick")
    assert sorted(p.name for p in written) == ["digits.png", "pasted_digits.png"]
    assert sorted(p.name for p in (tmp_path / "robustness").iterdir()) == ["digits.png", "pasted_digits.png"]
    for path in written:
        assert Path(path).read_bytes()[:8] == PNG


@pytest.mark.parametrize("content, kind", [
    ("{not json", "JSONDecodeError"),
    ({"clean": 1}, "KeyError"),
    ({"fgsm": []}, "TypeError"),
    ({"fgsm": {"top1_error": [1, 2]}}, "AttributeError"),
    ({"fgsm": {"top1_error": {"eps_two": 3.0}}}, "ValueError"),
    ({"fgsm": {"top1_error": {"eps_2": "high"}}}, "ValueError"),
])
def test_damaged_robustness_record(tmp_path, tiny_params, content, kind):
    records, dirs = make_trials(tmp_path, tiny_params, [("digits-vgg", 0)])
    path = write_json(dirs[0] / "robustness.json", content)
    with pytest.raises(DamagedFileError) as err:
        load_robustness(records, dirs)
    assert one_line(err) == (f"{path} is not a robustness record ({kind}); "
                             f"re-run `dvc repro -f robustness@digits-vgg-seed0`")


def test_no_robustness_records(tmp_path, tiny_params):
    records, dirs = make_trials(tmp_path, tiny_params, [("digits-vgg", 0)])
    summary = robustness_summary(load_robustness(records, dirs))
    assert len(summary) == 0 and robustness_json(summary) == {}
    assert "No robustness records yet" in render_robustness_md(summary)
    assert save_robustness_figures(summary, tmp_path / "figs") == []


# ----------------------------------------------------------------------------- transfer

TRANSFER = {
    ("pasted-vgg-att2", 0): {"digits": 30.0, "stl10": 50.0},
    ("pasted-vgg-att2", 1): {"digits": 40.0, "stl10": 54.0},
    ("pasted-vgg-gap", 0): {"digits": 50.0, "stl10": 47.0},
    ("digits-vgg-att2", 0): {"pasted_digits": 20.0},   # no baseline of digits has a record: no difference
    ("digits-vgg", 0): {},
}


def transfer_record(error: float) -> dict:
    return {"transfer": {"test": {"accuracy": 100.0 - error, "top1_error": error}, "C": 0.1, "cv_accuracy": 80.0,
                         "feature_dim": 128, "train_images": 100, "test_images": 50, "target_classes": 10}}


@pytest.fixture(scope="module")
def transfer(tmp_path_factory, quick_params) -> dict:
    root = tmp_path_factory.mktemp("transfer")
    records, dirs = make_trials(root, shrunk_params(quick_params), list(TRANSFER))
    for targets, run_dir in zip(TRANSFER.values(), dirs):
        for target, error in targets.items():
            write_json(run_dir / "transfer" / f"{target}.json", transfer_record(error))
    points = load_transfer(records, dirs)
    summary = transfer_summary(points)
    return {"points": points, "summary": summary, "differences": transfer_differences(summary)}


def test_transfer_summary_averages_over_seeds(transfer, tiny_params):
    assert len(transfer["points"]) == 2 + 2 + 2 + 1
    s = transfer["summary"].set_index(["run", "target"])
    assert s.loc[("pasted-vgg-att2", "digits"), "mean"] == pytest.approx(35.0)
    assert s.loc[("pasted-vgg-att2", "digits"), "n"] == 2
    assert s.loc[("pasted-vgg-att2", "stl10"), "mean"] == pytest.approx(52.0)
    assert s.loc[("pasted-vgg-gap", "digits"), "n"] == 1
    assert bool(s.loc[("pasted-vgg-att2", "digits"), "attention"])
    assert not bool(s.loc[("pasted-vgg-gap", "digits"), "attention"])
    assert s.loc[("pasted-vgg-gap", "digits"), "config"] == notation(tiny_params, "pasted-vgg-gap")
    assert s.loc[("digits-vgg-att2", "pasted_digits"), "dataset"] == "digits"
    assert len(transfer["summary"]) == 5


def test_transfer_differences_subtract_the_baseline_per_target(transfer):
    d = transfer["differences"]
    got = {(r["attention run"], r["baseline run"], r["target"]): r["difference"] for _, r in d.iterrows()}
    assert got == {("pasted-vgg-att2", "pasted-vgg-gap", "digits"): pytest.approx(-15.0),
                   ("pasted-vgg-att2", "pasted-vgg-gap", "stl10"): pytest.approx(5.0)}


def test_transfer_json(transfer):
    out = transfer_json(transfer["summary"])
    assert out == {"pasted-vgg-att2": {"digits": 35.0, "stl10": 52.0},
                   "pasted-vgg-gap": {"digits": 50.0, "stl10": 47.0},
                   "digits-vgg-att2": {"pasted_digits": 20.0}}
    number_leaves(out)


def test_transfer_markdown(transfer, tiny_params):
    md = render_transfer_md(transfer["summary"], transfer["differences"])
    assert md.startswith("## Cross-domain classification")
    errors, differences = tables(md)
    assert errors["pasted-vgg-att2"]["config"] == notation(tiny_params, "pasted-vgg-att2")
    assert errors["pasted-vgg-att2"]["digits"] == "35.00 (n=2)"
    assert errors["pasted-vgg-att2"]["stl10"] == "52.00 (n=2)"
    assert errors["pasted-vgg-gap"]["digits"] == "50.00 (n=1)"
    assert errors["pasted-vgg-att2"]["pasted_digits"] == ""
    assert errors["digits-vgg-att2"]["pasted_digits"] == "20.00 (n=1)"
    assert "digits-vgg" not in errors
    assert differences["pasted-vgg-att2"]["baseline run"] == "pasted-vgg-gap"
    assert differences["pasted-vgg-att2"]["digits"] == "-15.00"
    assert differences["pasted-vgg-att2"]["stl10"] == "+5.00"
    assert "digits-vgg-att2" not in differences


def test_transfer_markdown_without_a_baseline(transfer):
    summary = transfer["summary"]
    only_attention = summary[summary["attention"]]
    md = render_transfer_md(only_attention, transfer_differences(only_attention))
    assert len(tables(md)) == 1 and "Attention minus baseline" not in md


@pytest.mark.parametrize("content, kind", [
    ("{not json", "JSONDecodeError"),
    ([], "TypeError"),
    ({"transfer": {"test": {}}}, "KeyError"),
    ({"transfer": {"test": {"top1_error": "n/a"}}}, "ValueError"),
])
def test_damaged_transfer_record(tmp_path, tiny_params, content, kind):
    records, dirs = make_trials(tmp_path, tiny_params, [("pasted-vgg-att2", 0)])
    path = write_json(dirs[0] / "transfer" / "digits.json", content)
    with pytest.raises(DamagedFileError) as err:
        load_transfer(records, dirs)
    assert one_line(err) == (f"{path} is not a transfer record ({kind}); "
                             f"re-run `dvc repro -f transfer@pasted-vgg-att2-seed0-to-digits`")


def test_no_transfer_records(tmp_path, tiny_params):
    records, dirs = make_trials(tmp_path, tiny_params, [("pasted-vgg-att2", 0)])
    summary = transfer_summary(load_transfer(records, dirs))
    differences = transfer_differences(summary)
    assert len(summary) == 0 and len(differences) == 0 and transfer_json(summary) == {}
    assert "No transfer records yet" in render_transfer_md(summary, differences)


# ----------------------------------------------------------------------------- segmentation

PASTED_PRIOR = {"0": 0.2, "1": 0.3, "mean": 0.25}
OD_PRIOR = {"airplane": 0.4, "car": 0.5, "mean": 0.45}
SEGMENTATION = {
    ("pasted-vgg-att2", 0): {"pasted": {"0": 0.5, "1": 0.7, "mean": 0.6},
                             "od": {"airplane": 0.6, "car": 0.4, "mean": 0.5}},
    ("pasted-vgg-att2", 1): {"pasted": {"0": 0.6, "1": 0.8, "mean": 0.7}},
    ("pasted-vgg-gap", 0): {"pasted": {"0": 0.3, "1": 0.4, "mean": 0.35},
                            "od": {"airplane": 0.1, "car": 0.3, "mean": 0.2}},
}
PRIORS = {"pasted": PASTED_PRIOR, "od": OD_PRIOR}


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory, quick_params) -> dict:
    root = tmp_path_factory.mktemp("segmentation")
    records, dirs = make_trials(root, shrunk_params(quick_params), list(SEGMENTATION))
    for datasets, run_dir in zip(SEGMENTATION.values(), dirs):
        for name, scores in datasets.items():
            write_json(run_dir / "segmentation" / f"{name}.json",
                       {"jaccard": {"model": scores, "centre_prior": PRIORS[name]}, "images": 20})
            (run_dir / "segmentation" / name).mkdir()          # the figures folder: not a record
            (run_dir / "segmentation" / name / "0.png").write_bytes(PNG)
    points = load_segmentation(records, dirs)
    return {"points": points, "summary": segmentation_summary(points)}


def test_segmentation_points(segmentation, tiny_params):
    p = segmentation["points"]
    assert len(p) == 5 * (3 + 3)          # 5 records, each with 3 model and 3 centre-prior rows
    assert set(p["name"]) == {"pasted", "od"}
    prior = p[p["run"] == PRIOR]
    assert set(prior["config"]) == {"Gaussian at the centre"}
    model = p[p["run"] == "pasted-vgg-gap"]
    assert set(model["config"]) == {notation(tiny_params, "pasted-vgg-gap")}


def test_segmentation_summary_averages_over_seeds_with_the_prior_once(segmentation):
    s = segmentation["summary"]
    idx = s.set_index(["name", "run", "group"])
    assert idx.loc[("pasted", "pasted-vgg-att2", "0"), "mean"] == pytest.approx(0.55)
    assert idx.loc[("pasted", "pasted-vgg-att2", "mean"), "mean"] == pytest.approx(0.65)
    assert idx.loc[("pasted", "pasted-vgg-att2", "1"), "n"] == 2
    assert idx.loc[("od", "pasted-vgg-att2", "car"), "n"] == 1
    prior = s[s["run"] == PRIOR]
    # three trials wrote the pasted prior, two the od one: each dataset's prior is kept once
    assert sorted(zip(prior["name"], prior["group"])) == sorted(
        [("pasted", g) for g in PASTED_PRIOR] + [("od", g) for g in OD_PRIOR])
    assert (prior["n"] == 1).all()
    assert idx.loc[("od", PRIOR, "mean"), "mean"] == pytest.approx(0.45)


def test_segmentation_json(segmentation):
    out = segmentation_json(segmentation["summary"])
    assert out == {
        "pasted": {"pasted-vgg-att2": {"0": 0.55, "1": 0.75, "mean": 0.65},
                   "pasted-vgg-gap": {"0": 0.3, "1": 0.4, "mean": 0.35},
                   PRIOR: PASTED_PRIOR},
        "od": {"pasted-vgg-att2": {"airplane": 0.6, "car": 0.4, "mean": 0.5},
               "pasted-vgg-gap": {"airplane": 0.1, "car": 0.3, "mean": 0.2},
               PRIOR: OD_PRIOR},
    }
    number_leaves(out)


def test_segmentation_markdown(segmentation, tiny_params):
    md = render_segmentation_md(segmentation["summary"])
    assert md.startswith("## Weakly supervised segmentation")
    assert "Dataset `pasted`:" in md and "Dataset `od`:" in md
    assert "| run | map | n | 0 | 1 | mean |" in md
    assert "| run | map | n | airplane | car | mean |" in md
    att = notation(tiny_params, "pasted-vgg-att2")
    assert f"| pasted-vgg-att2 | {att} | 2 | 0.550 | 0.750 | 0.650 |" in md
    assert f"| pasted-vgg-att2 | {att} | 1 | 0.600 | 0.400 | 0.500 |" in md
    assert "| centre prior | Gaussian at the centre | 1 | 0.200 | 0.300 | 0.250 |" in md
    assert "| centre prior | Gaussian at the centre | 1 | 0.400 | 0.500 | 0.450 |" in md
    assert md.count("| centre prior |") == 2     # once per dataset, not once per trial


@pytest.mark.parametrize("content, kind", [
    ("{not json", "JSONDecodeError"),
    ({"jaccard": {"model": {"mean": 0.5}}}, "KeyError"),
    ({"jaccard": {"model": {"mean": "good"}, "centre_prior": {"mean": 0.1}}}, "ValueError"),
    ({"jaccard": {"model": [0.5], "centre_prior": {"mean": 0.1}}}, "AttributeError"),
    ({"jaccard": None}, "TypeError"),
])
def test_damaged_segmentation_record(tmp_path, tiny_params, content, kind):
    records, dirs = make_trials(tmp_path, tiny_params, [("pasted-vgg-gap", 0)])
    path = write_json(dirs[0] / "segmentation" / "pasted.json", content)
    with pytest.raises(DamagedFileError) as err:
        load_segmentation(records, dirs)
    assert one_line(err) == (f"{path} is not a segmentation record ({kind}); "
                             f"re-run `dvc repro -f segment@pasted-vgg-gap-seed0-on-pasted`")


def test_no_segmentation_records(tmp_path, tiny_params):
    records, dirs = make_trials(tmp_path, tiny_params, [("pasted-vgg-gap", 0)])
    summary = segmentation_summary(load_segmentation(records, dirs))
    assert len(summary) == 0 and segmentation_json(summary) == {}
    assert "No segmentation records yet" in render_segmentation_md(summary)
