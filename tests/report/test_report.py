"""lpa.report.notation, reference, tables and aggregate: notation, reference data, tables, seeds, comparisons, summary."""
import json
import math
import re
import shutil
import sys

import pandas as pd
import pytest

from lpa.report.aggregate import HOLDS, NOT_RESOLVED, ONE_SEED, comparisons, run_summary
from lpa.config.params import compose_params_yaml
from lpa.report.notation import core_notation, family_notation, paper_notation
from lpa.report.reference import load_deviations, load_reference_numbers
from lpa.report.tables import TRIAL_COLUMNS, render_results_md, results_table, suite_header, summary_json
from tests.helpers.run import REPO, sh

ATT = {"compat": "pc", "g_mode": "concat", "normalize": "softmax", "project": "g_down"}


def cfg(name, attention=None, dataset="cifar10", run=None, **model):
    return {"run": run or name, "dataset": dataset, "model": {"name": name, "width": 1.0, **model},
            "attention": attention, "train": {"epochs": 300}}


@pytest.mark.parametrize("config,expected", [
    (cfg("vgg-att2", ATT), "(VGG-att2)-concat-pc"),
    (cfg("vgg-att3", ATT), "(VGG-att3)-concat-pc"),
    (cfg("vgg-att1", {**ATT, "compat": "dp"}), "(VGG-att1)-concat-dp"),
    (cfg("vgg-att3", {**ATT, "g_mode": "indep", "indep_combine": "logits"}),
     "(VGG-att3)-indep-pc [combine logits]"),
    (cfg("vgg", None), "VGG"),
    (cfg("vgg-gap", None), "VGG-GAP"),
    (cfg("vgg-pan", {"normalize": "sigmoid"}), "VGG-PAN"),  # PAN is sigmoid by design: no suffix
    (cfg("resnet164", None), "RN-164"),
    (cfg("resnet164-att2", ATT), "(RN-att2)-concat-pc"),
    (cfg("attention56", None, attention_learning="arl"), "Attention-56"),
    (cfg("attention56", None, attention_learning="nal"), "Attention-56 (NAL)"),
    (cfg("attention-92", None), "Attention-92"),
    (cfg("vgg-att2", {**ATT, "normalize": "sigmoid"}), "(VGG-att2)-concat-pc [sigmoid]"),
    (cfg("vgg-att3", {**ATT, "project": "l_up"}, width=0.25), "(VGG-att3)-concat-pc [l_up, width 0.25]"),
    (cfg("vgg", None, width=0.5), "VGG [width 0.5]"),
    (cfg("VGG_att2", {"compat": "pc", "g_mode": "concat"}), "(VGG-att2)-concat-pc"),
    (cfg("my-new-net", None), "my-new-net"),  # unknown: shown as is, matches nothing
])
def test_paper_notation(config, expected):
    assert paper_notation(config) == expected


def test_notation_parts():
    n = "(VGG-att3)-concat-pc [l_up, width 0.25]"
    assert core_notation(n) == "(VGG-att3)-concat-pc"
    assert family_notation(n) == "(VGG-att3)"
    assert family_notation("Attention-56 (NAL)") == "Attention-56"
    assert family_notation("VGG [width 0.5]") == "VGG"


REF = pd.DataFrame([
    ("cifar10", "(VGG-att2)-concat-pc", "paper", 5.0, "s1"),
    ("cifar10", "(VGG-att2)-concat-pc", "Keras", 6.0, "s2"),
    ("cifar10", "(VGG-att2)-concat-dp", "TF port", 5.5, "s3"),
    ("cifar100", "(VGG-att3)-concat-pc", "paper", 23.0, "s4"),
    ("cifar100", "VGG", "paper", 30.0, "s5"),
], columns=["dataset", "config", "who", "top1_error", "source"])


def run(name, dataset, model, attention, top1, top5, **model_opts):
    return {"run": name, "config": cfg(model, attention, dataset=dataset, run=name, **model_opts),
            "metrics": {"test": {"top1_error": top1, "top5_error": top5, "accuracy": 100 - top1,
                                 "num_images": 10000}}}


RUNS = [
    run("c10-att2", "cifar10", "vgg-att2", ATT, 5.75, 0.5),
    run("c100-att3-small", "cifar100", "vgg-att3", ATT, 30.0, 9.0, width=0.25),
    run("svhn-att2", "svhn", "vgg-att2", ATT, 4.0, 1.0),   # no paper number
    run("digits-vgg", "digits", "vgg", None, 2.5, 0.0),    # no reference at all
]


def test_results_table_columns_and_differences():
    t = results_table(RUNS, reference=REF)
    assert list(t.columns) == list(TRIAL_COLUMNS)
    assert t["run"].tolist() == [r["run"] for r in RUNS]
    assert t["config"].tolist() == ["(VGG-att2)-concat-pc", "(VGG-att3)-concat-pc [width 0.25]",
                                    "(VGG-att2)-concat-pc", "VGG"]
    assert t.loc[0, "paper"] == 5.0 and t.loc[0, "difference"] == pytest.approx(0.75)
    assert t.loc[1, "paper"] == 23.0 and t.loc[1, "difference"] == pytest.approx(7.0)
    assert math.isnan(t.loc[2, "paper"]) and math.isnan(t.loc[2, "difference"])
    assert math.isnan(t.loc[3, "paper"])  # cifar100's VGG number must not leak to digits
    assert t.loc[0, "other reproductions"] == "Keras 6.00; TF port 5.50 (as (VGG-att2)-concat-dp)"
    assert t.loc[2, "other reproductions"] == "" and t.loc[3, "other reproductions"] == ""


def test_dataset_alias():
    r = run("c10-jpeg", "cifar10-jpeg", "vgg-att2", ATT, 6.0, 0.5)
    assert math.isnan(results_table([r], reference=REF).loc[0, "paper"])
    t = results_table([r], reference=REF, dataset_aliases={"cifar10-jpeg": "cifar10"})
    assert t.loc[0, "paper"] == 5.0 and t.loc[0, "dataset"] == "cifar10-jpeg"


def _md_row(md, run_name):
    line = next(l for l in md.splitlines() if l.startswith(f"| {run_name} "))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_render_markdown_missing_cells_empty_never_nan():
    t = results_table(RUNS, reference=REF)
    devs = [{"topic": "ZCA", "paper_or_official": "pylearn2", "ours": "scikit-learn | numpy",
             "why": "pylearn2 is gone"}]
    md = render_results_md(t, devs, extra_header="Commit abc123.")
    assert md.startswith("# ") and "Commit abc123." in md
    assert not re.search(r"\bnan\b", md, flags=re.IGNORECASE)
    header = [c.strip() for c in md.splitlines()[md.splitlines().index("## Test error per trial (%)") + 2]
              .strip().strip("|").split("|")]
    columns = [c for c in TRIAL_COLUMNS if c != "run"]
    assert header == columns
    row = dict(zip(columns, _md_row(md, "svhn-att2")))
    assert row["top-1 error"] == "4.00" and row["paper"] == "" and row["difference"] == ""
    row = dict(zip(columns, _md_row(md, "c10-att2")))
    assert row["paper"] == "5.00" and row["difference"] == "+0.75"
    row = dict(zip(columns, _md_row(md, "c100-att3-small")))
    assert row["config"] == "(VGG-att3)-concat-pc [width 0.25]" and row["difference"] == "+7.00"
    # the deviations ledger is a second table; a '|' inside a cell is escaped
    assert "| ZCA " in md and "scikit-learn \\| numpy" in md
    # a dash instead of empty cells, on request
    assert _md_row(render_results_md(t, devs, missing="—"), "svhn-att2")[columns.index("paper")] == "—"


def test_render_with_reference_and_empty_inputs():
    md = render_results_md(results_table([], reference=REF), [], reference=REF)
    assert "No evaluated runs." in md and "None recorded." in md
    assert "| cifar100  | VGG" in md


def test_summary_json_numbers_only_and_omits_missing():
    table = results_table(RUNS, reference=REF)
    s = summary_json(table, run_summary(table))
    assert s["trials"]["c10-att2"] == {"top1_error": 5.75, "top5_error": 0.5}
    assert s["runs"]["c10-att2"] == {"n": 1, "top1_error": {"mean": 5.75}, "top5_error": {"mean": 0.5},
                                     "paper_top1_error": 5.0, "diff_vs_paper": 0.75}  # one seed: no interval
    assert s["runs"]["svhn-att2"] == {"n": 1, "top1_error": {"mean": 4.0}, "top5_error": {"mean": 1.0}}
    assert set(s["trials"]) == {r["run"] for r in RUNS}


def seeded(run_name, model, attention, errors, dataset="cifar10", **model_opts):
    return [{**run(run_name, dataset, model, attention, e, e / 10, **model_opts), "trial": f"{run_name}-seed{k}",
             "seed": k} for k, e in enumerate(errors)]


def test_seeds_are_summarised_with_t_intervals_and_the_paper_comparisons():
    dp = {**ATT, "compat": "dp"}
    indep = {**ATT, "g_mode": "indep", "indep_combine": "sum_logits"}
    trials = (seeded("att2", "vgg-att2", ATT, [5.0, 6.0, 7.0]) + seeded("vgg", "vgg", None, [8.0, 9.0, 10.0])
              + seeded("att2-dp", "vgg-att2", dp, [6.0, 6.0, 6.0]) + seeded("att2-indep", "vgg-att2", indep, [5.5])
              + seeded("att2-wide", "vgg-att2", ATT, [1.0, 2.0], width=2.0))  # another width: compared with nothing
    table = results_table(trials, reference=REF)
    runs = run_summary(table)
    att2 = runs.set_index("run").loc["att2"]
    # [5, 6, 7]: mean 6, sd 1, t(0.975, 2) = 4.302653 -> 6 +- 4.302653 / sqrt(3)
    assert att2["n"] == 3 and att2["top1_mean"] == pytest.approx(6.0) and att2["top1_std"] == pytest.approx(1.0)
    assert att2["top1_ci95"] == pytest.approx([6 - 2.484138, 6 + 2.484138], abs=1e-5)
    assert att2["paper"] == 5.0 and att2["paper_in_ci95"] is True
    assert runs.set_index("run").loc["att2-indep", "top1_ci95"] is None  # one seed: no interval

    configs = {r["run"]: r["config"] for r in trials}
    comps = comparisons(table, configs).set_index(["first", "second"])
    assert set(comps.index) == {("att2", "vgg"), ("att2-dp", "vgg"), ("att2-indep", "vgg"), ("att2", "att2-dp"),
                                ("att2", "att2-indep")}
    vs_vgg = comps.loc[("att2", "vgg")]
    # Welch, equal variances and sizes: diff -3, se sqrt(2/3), df 4, t 2.776445
    assert vs_vgg["kind"] == "attention vs baseline" and vs_vgg["diff"] == pytest.approx(-3.0)
    assert vs_vgg["ci95"] == pytest.approx([-3 - 2.776445 * (2 / 3) ** 0.5, -3 + 2.776445 * (2 / 3) ** 0.5], abs=1e-5)
    assert vs_vgg["verdict"] == HOLDS
    assert comps.loc[("att2", "att2-dp"), "kind"] == "pc vs dp"
    assert comps.loc[("att2", "att2-dp"), "verdict"] == NOT_RESOLVED  # [-2.48, 2.48]: includes 0
    assert comps.loc[("att2", "att2-indep"), "verdict"] == ONE_SEED
    assert math.isnan(comps.loc[("att2", "vgg"), "paper_diff"])  # no paper VGG number in REF for cifar10

    s = summary_json(table, runs, comparisons(table, configs))
    assert s["comparisons"]["att2 vs vgg"]["top1_diff"] == -3.0 and "ci95_low" in s["comparisons"]["att2 vs vgg"]
    assert "ci95_low" not in s["comparisons"]["att2 vs att2-indep"]
    assert s["runs"]["att2"]["paper_in_ci95"] == 1
    json.dumps(s, allow_nan=False)
    md = render_results_md(table, [], runs=runs, comparisons=comparisons(table, configs))
    assert "## Mean over seeds (%)" in md and "6.00 ± 1.00" in md and "— (one seed)" in md
    assert "## The paper's comparisons" in md and "holds" in md and not re.search(r"\bnan\b", md)


def test_shipped_reference_numbers():
    ref = load_reference_numbers()
    assert (ref["source"].str.len() > 0).all()
    assert set(ref["dataset"]) <= {"cifar10", "cifar100", "svhn"}
    paper = ref[ref["who"] == "paper"].set_index(["dataset", "config"])["top1_error"]
    assert paper[("cifar10", "(VGG-att2)-concat-pc")] == 5.23
    assert paper[("cifar10", "(VGG-att3)-concat-pc")] == 6.34
    assert paper[("cifar100", "(VGG-att3)-concat-pc")] == 22.97
    assert paper[("svhn", "(VGG-att3)-concat-pc")] == 3.52
    assert paper[("cifar100", "VGG")] == 30.62
    # the default reference is the shipped file
    t = results_table([run("c10", "cifar10", "vgg-att2", ATT, 6.0, 0.4)])
    assert t.loc[0, "paper"] == 5.23 and "Keras 6.16" in t.loc[0, "other reproductions"]


def test_reference_validation(tmp_path):
    bad = tmp_path / "numbers.csv"
    bad.write_text("dataset,config,who,top1_error,source\ncifar10,VGG,paper,7.0,\n")
    with pytest.raises(ValueError, match="empty source"):
        load_reference_numbers(bad)
    bad.write_text("dataset,config,who,top1_error,source\nimagenet,VGG,paper,7.0,x\n")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_reference_numbers(bad)


def test_shipped_deviations():
    devs = load_deviations()
    assert len(devs) >= 5
    assert all(set(d) == {"topic", "paper_or_official", "ours", "why"} for d in devs)
    topics = " ".join(d["topic"] for d in devs).lower()
    for word in ("zca", "svhn", "gradient", "jpeg"):
        assert word in topics


def test_deviation_validation(tmp_path):
    bad = tmp_path / "d.yaml"
    bad.write_text("- topic: x\n  ours: y\n")
    with pytest.raises(ValueError):
        load_deviations(bad)


EPYC = {"device": "cpu", "cpu": "AMD EPYC 9654 96-Core Processor", "cpu_isa": "AVX512", "amx": False,
        "threads": 8, "torch": "2.5.1", "cuda": None, "data_source": "sklearn digits"}
XEON = {**EPYC, "cpu": "Intel(R) Xeon(R) Platinum 8480+", "amx": True}
H100 = {**EPYC, "device": "NVIDIA H100 80GB HBM3", "gpu": "NVIDIA H100 80GB HBM3", "gpu_capability": "9.0",
        "cuda": "12.4"}


def trial_record(trial, seed, environment):
    config = {**cfg("vgg", None, dataset="digits", run="digits-vgg"), "trial": trial, "seed": seed,
              "train": {"epochs": 2}}
    if environment is not None:
        config["environment"] = environment
    return {"run": "digits-vgg", "trial": trial, "seed": seed, "config": config, "metrics": {}}


def test_suite_header_lists_the_machines_behind_its_trials():
    """Seeded runs repeat bit for bit only on the same kind of CPU: the header says which made which."""
    header = suite_header("quick", [trial_record("digits-vgg-seed0", 0, EPYC), trial_record("digits-vgg-seed1", 1, XEON),
                                    trial_record("digits-vgg-seed2", 2, EPYC), trial_record("digits-vgg-seed3", 3, H100),
                                    trial_record("digits-vgg-seed4", 4, {"device": "cpu"}),
                                    trial_record("digits-vgg-seed5", 5, None)])
    machines = header[header.index("Machines: "):]
    assert machines == ("Machines: AMD EPYC 9654 96-Core Processor (AVX512): digits-vgg-seed0, digits-vgg-seed2; "
                        "Intel(R) Xeon(R) Platinum 8480+ (AVX512+AMX): digits-vgg-seed1; "
                        "NVIDIA H100 80GB HBM3 (compute capability 9.0): digits-vgg-seed3; "
                        "not recorded (device: cpu): digits-vgg-seed4; not recorded: digits-vgg-seed5.")
    assert header.startswith("Suite `quick`: 6 trials (1 runs x seeds 0, 1, 2, 3, 4, 5).")


def test_suite_header_of_one_machine_names_it_once():
    header = suite_header("quick", [trial_record("digits-vgg-seed0", 0, EPYC), trial_record("digits-vgg-seed1", 1, EPYC)])
    assert header.endswith("Machines: AMD EPYC 9654 96-Core Processor (AVX512): all 2 trials.")
    rendered = render_results_md(results_table([trial_record("digits-vgg-seed0", 0, EPYC)]), [],
                                 extra_header=suite_header("quick", [trial_record("digits-vgg-seed0", 0, EPYC)]))
    assert "Machines: AMD EPYC 9654 96-Core Processor (AVX512): the one trial." in rendered.split("## ")[0]


def test_report_stage_names_trials_without_records(tmp_path):
    """Run by hand on a suite cut short, the report covers what was evaluated and names the rest."""
    shutil.copytree(REPO / "reports/quick", tmp_path / "reports/quick")
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text(compose_params_yaml(["suite=quick"], root=REPO))
    (tmp_path / "reports/quick/runs/digits-vgg-seed0/metrics.json").unlink()
    proc = sh([sys.executable, "-m", "stages.report"], tmp_path, code_from_repo=True)
    assert "no metrics.json yet for digits-vgg-seed0" in proc.stderr
    results = (tmp_path / "reports/quick/results.md").read_text()
    assert "Not run yet (no evaluated record): digits-vgg-seed0." in results
    summary = json.loads((tmp_path / "reports/quick/summary.json").read_text())
    assert set(summary["trials"]) == {"digits-vgg-att2-seed0", "pasted-vgg-att2-seed0", "pasted-vgg-gap-seed0"}
