import copy
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from lpa.config.run import check_params, resolve_run, resolve_trial
from lpa.errors import ConfigError, UndeclaredParamError
from lpa.config.params import compose_params_yaml, declared_param_keys, stage_params
from tests.helpers.run import REPO, sh


def test_committed_params_yaml_is_the_default_composition():
    committed = (REPO / "params.yaml").read_text()
    assert committed == compose_params_yaml(root=REPO), "params.yaml is stale: run `make params`"


def test_every_declared_param_exists_and_every_run_resolves():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(params["trials"]) == {f"{run}-seed{s}" for run in params["runs"] for s in params["seeds"]}
    for trial, entry in params["trials"].items():
        # resolving through the declared view proves the train stage reads nothing undeclared
        group = "finetune" if trial in params["trial_groups"]["finetune"] else "train"
        config = resolve_trial(stage_params(group, trial, root=REPO), trial)
        assert bool(config["init_from"]) == (group == "finetune")
        assert config["run"] == entry["run"] and config["seed"] == entry["seed"] and config["trial"] == trial
        assert config["dataset"] in params["data"]["datasets"]
    for dataset in params["data"]["datasets"]:
        for stage in ("download", "preprocess"):
            view = stage_params(stage, dataset, root=REPO)
            for key in declared_param_keys(stage, dataset, root=REPO):
                node = view
                for part in key.split("."):
                    node = node[part]


def test_paper_suite_has_the_issue_runs():
    runs = yaml.safe_load((REPO / "params.yaml").read_text())["runs"]
    expected = {f"{d}-{m}" for d in ("cifar10", "cifar100", "svhn") for m in ("vgg", "vgg-att2", "vgg-att3")}
    expected |= {f"{d}-{m}" for d in ("cifar10", "cifar100") for m in
                 ("vgg-att1", "vgg-gap", "vgg-pan", "resnet164", "resnet164-att2", "ran56", "ran92")}
    expected.add("cifar10-ran56-nal")
    expected |= {f"cub200-{m}" for m in ("vgg", "vgg-att2", "vgg-att3")}
    assert set(runs) == expected
    for model in ("vgg", "vgg-att2", "vgg-att3"):  # CUB starts from CIFAR-100 (official code)
        assert runs[f"cub200-{model}"]["init_from"] == f"cifar100-{model}"
    assert runs["cifar10-ran56-nal"]["model"]["attention_learning"] == "nal"


def test_reading_an_undeclared_param_fails_loudly(tmp_path: Path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"train": {"foreach": "${runs}", "do": {"cmd": "x", "params": ["train", "runs.${key}"]}}}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"train": {"lr": 1}, "attention": {"compat": "pc"}, "runs": {"a": {"dataset": "d"}, "b": {}}}))
    view = stage_params("train", "a", root=tmp_path)
    assert view["train"]["lr"] == 1 and view["runs"]["a"]["dataset"] == "d"
    with pytest.raises(UndeclaredParamError, match="'attention'"):
        view["attention"]
    with pytest.raises(UndeclaredParamError, match="'runs.b'"):
        view["runs"]["b"]
    with pytest.raises(UndeclaredParamError):
        view.get("attention")  # .get must not swallow it


def test_attention_section_reaches_attention_models_only(quick_params):
    params = copy.deepcopy(quick_params)
    params["attention"]["compat"] = "dp"
    att = resolve_run(params, "digits-vgg-att2")
    assert att["attention"]["compat"] == "dp" and att["model"]["width"] == 0.25
    assert resolve_run(params, "digits-vgg")["attention"] is None


@pytest.mark.parametrize("path,value,message", [
    (("train", "lr_schedule", "kind"), "cosine", "one of step, multistep, constant"),
    (("train", "epochs"), 0, "an integer >= 1"),
    (("train", "epochs"), True, "an integer >= 1"),
    (("train", "precision", "cpu"), "auto", "one of fp32, bf16, fp16"),  # auto: CUDA's alone
    (("attention", "compat"), "cosine", "pc"),
    (("model", "width"), -1, "width"),
])
def test_bad_values_list_what_is_allowed(quick_params, path, value, message):
    params = copy.deepcopy(quick_params)
    node = params
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        resolve_run(params, "digits-vgg-att2")


@pytest.mark.parametrize("overrides,message", [
    ({"nesterov": True, "momentum": 0.9, "dampening": 0.5},
     "run digits-vgg: train.nesterov=true needs train.momentum > 0 and train.dampening=0 "
     "(got momentum=0.9, dampening=0.5)"),
    ({"lr_schedule": {"kind": "multistep", "milestones": [2, 4], "factors": [0.5]}},
     "run digits-vgg: train.lr_schedule.factors has 1 factors for 2 milestones; give one per milestone, "
     "or [] for gamma at each"),
    ({"max_images": 1}, "run digits-vgg: train.max_images=1 is too few; use 0 (all) or >= 2"),
])
def test_train_settings_that_contradict_each_other_name_the_run(quick_params, overrides, message):
    """lpa.config.train_options.check_train_section, on a run's merged section."""
    params = copy.deepcopy(quick_params)
    params["runs"]["digits-vgg"]["train"] = overrides
    with pytest.raises(ConfigError) as err:
        resolve_run(params, "digits-vgg")
    assert str(err.value) == message


def test_bad_run_definitions(quick_params):
    params = copy.deepcopy(quick_params)
    params["runs"]["x"] = {"dataset": "digits", "model": {"name": "vgg-att9"}}
    with pytest.raises(ConfigError, match="vgg-att2"):
        resolve_run(params, "x")
    params["runs"]["x"] = {"dataset": "digits", "model": {"name": "vgg", "attention_learning": "nal"}}
    with pytest.raises(ConfigError, match="does not take"):
        resolve_run(params, "x")
    params["runs"]["x"] = {"dataset": "mnist", "model": {"name": "vgg"}}
    with pytest.raises(ConfigError, match="one of cifar10, cifar100, svhn, digits, imagefolder"):
        resolve_run(params, "x")
    with pytest.raises(ConfigError, match="runs in params.yaml"):
        resolve_run(params, "nope")
    params["model"]["widht"] = 0.5
    with pytest.raises(ConfigError, match="model has unknown setting.*widht"):
        resolve_run(params, "digits-vgg")
    del params["model"]["widht"]
    params["train"]["typo"] = 1
    with pytest.raises(ConfigError, match="train has unknown setting"):
        resolve_run(params, "digits-vgg")


def test_every_value_is_checked_whatever_the_stage(tmp_path: Path, quick_params):
    """A bad attention value stops a baseline's train stage (and a data stage) before any work."""
    params = copy.deepcopy(quick_params)
    params["attention"]["compat"] = "cosine"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    for stage, arg in (("train", "digits-vgg-seed0"), ("download", "digits")):
        proc = sh([sys.executable, "-m", f"stages.{stage}", arg], tmp_path, check=False, code_from_repo=True)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.strip() == ("error: attention.compat='cosine' is not allowed; it must be one of pc, dp "
                                       "(compatibility: pc <u, l + g> | dp <l, g>)")
        assert not (tmp_path / "data").exists() and not (tmp_path / "models").exists()


def test_input_size_comes_from_the_data(quick_params):
    params = copy.deepcopy(quick_params)
    params["runs"]["digits-vgg"]["model"]["input_size"] = 64
    with pytest.raises(ConfigError, match="runs.digits-vgg.model.input_size is not a setting: the input size "
                                          r"comes from the data \(data/processed/digits/meta.json"):
        resolve_run(params, "digits-vgg")


def test_trials_are_derived_and_checked(quick_params):
    params = copy.deepcopy(quick_params)
    check_params(params)
    params["seeds"] = [0, 1]
    with pytest.raises(ConfigError, match="`trials` or `trial_groups` does not match"):
        check_params(params)
    params["seeds"] = [0, 0]
    with pytest.raises(ConfigError, match="lists a seed twice"):
        check_params(params)


def test_settings_are_printed_from_their_one_declaration():
    proc = sh([sys.executable, "-m", "lpa.config", "settings"], REPO)
    lines = proc.stdout.splitlines()
    for name, allowed in (("attention.compat", "one of pc, dp"), ("train.epochs", "an integer >= 1"),
                          ("data.cifar10.preprocess.transform", "one of zca, standardize, scale, none"),
                          ("model.width", "a number > 0 and <= 16"), ("seeds", "a list of integers >= 0")):
        assert any(line.startswith(name + " ") and allowed in line for line in lines), name
    assert sh([sys.executable, "-m", "lpa.config", "check"], REPO).stdout.strip() == "params.yaml: every value is allowed"
