import copy
from pathlib import Path

import pytest
import yaml

from lpa.config import (ConfigError, UndeclaredParamError, compose_params_yaml, declared_param_keys,
                        resolve_run, stage_params)
from tests.conftest import REPO


def test_committed_params_yaml_is_the_default_composition():
    committed = (REPO / "params.yaml").read_text()
    assert committed == compose_params_yaml(root=REPO), "params.yaml is stale: run `make params`"


def test_every_declared_param_exists_and_every_run_resolves():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for run in params["runs"]:
        # resolving through the declared view proves the train stage reads nothing undeclared
        config = resolve_run(stage_params("train", run, root=REPO), run)
        assert config["run"] == run and config["dataset"] in params["data"]["datasets"]
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
    assert set(runs) == expected
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
    (("train", "lr_schedule", "kind"), "cosine", "choose one of step, multistep, constant"),
    (("train", "epochs"), 0, "positive integer"),
    (("train", "epochs"), True, "positive integer"),
    (("train", "precision", "cpu"), "fp16", "choose one of fp32, bf16"),
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


def test_bad_run_definitions(quick_params):
    params = copy.deepcopy(quick_params)
    params["runs"]["x"] = {"dataset": "digits", "model": {"name": "vgg-att9"}}
    with pytest.raises(ConfigError, match="vgg-att2"):
        resolve_run(params, "x")
    params["runs"]["x"] = {"dataset": "digits", "model": {"name": "vgg", "attention_learning": "nal"}}
    with pytest.raises(ConfigError, match="does not take"):
        resolve_run(params, "x")
    params["runs"]["x"] = {"dataset": "mnist", "model": {"name": "vgg"}}
    with pytest.raises(ConfigError, match="choose one of cifar10, cifar100, svhn, digits, imagefolder"):
        resolve_run(params, "x")
    with pytest.raises(ConfigError, match="runs in params.yaml"):
        resolve_run(params, "nope")
    params["model"]["widht"] = 0.5
    with pytest.raises(ConfigError, match="unknown option.*widht"):
        resolve_run(params, "digits-vgg")
    del params["model"]["widht"]
    params["train"]["typo"] = 1
    with pytest.raises(ConfigError, match="unknown train setting"):
        resolve_run(params, "digits-vgg")
