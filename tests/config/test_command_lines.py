"""The command lines of lpa.config: a stage's (run_stage) and `python -m lpa.config`'s, both argparse.

Wrong arguments: argparse's usage and exit 2; a user's error: one `error:` line and exit 1."""
from __future__ import annotations

import shutil
import sys

import pytest

from lpa.config import __main__ as config_cli
from lpa.config.stage_runner import run_stage
from lpa.errors import ConfigError
from tests.helpers.run import REPO


def one_trial(trial: str) -> None:
    print(f"ran {trial}")


def no_argument() -> None:
    print("ran")


def bad_trial(trial: str) -> None:
    raise ConfigError(f"'{trial}' is not in params.yaml trials")


def run(monkeypatch, main, *argv: str) -> int:
    """run_stage(main) with `argv` in the repository; its exit code (0 when it returns)."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["stage", *argv])
    monkeypatch.delenv("LPA_TRACEBACK", raising=False)
    try:
        run_stage(main, "python -m stages.x")
    except SystemExit as exit_:
        return exit_.code
    return 0


@pytest.mark.parametrize("main,argv", [(one_trial, ()), (one_trial, ("a", "b")), (no_argument, ("a",))])
def test_a_stage_with_wrong_arguments_prints_its_usage_and_exits_2(monkeypatch, capsys, main, argv):
    assert run(monkeypatch, main, *argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "ran" not in err
    usage = "usage: python -m stages.x [-h]" + (" TRIAL" if main is one_trial else "")
    assert err.splitlines()[0] == usage


def test_a_stage_gets_exactly_its_positional_arguments(monkeypatch, capsys):
    assert run(monkeypatch, one_trial, "digits-vgg-seed0") == 0
    assert run(monkeypatch, no_argument) == 0
    assert capsys.readouterr().out == "ran digits-vgg-seed0\nran\n"


def test_a_stage_user_error_is_one_line_and_exit_1(monkeypatch, capsys):
    assert run(monkeypatch, bad_trial, "nope") == 1
    assert capsys.readouterr().err == "error: 'nope' is not in params.yaml trials\n"
    monkeypatch.setenv("LPA_TRACEBACK", "1")
    monkeypatch.setattr(sys, "argv", ["stage", "nope"])
    with pytest.raises(ConfigError):
        run_stage(bad_trial, "python -m stages.x")


@pytest.mark.parametrize("argv", [[], ["bogus"], ["check", "extra"]])
def test_config_cli_with_wrong_arguments_exits_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        config_cli.main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("usage: python -m lpa.config")


def test_config_cli_user_error_is_one_line_and_exit_1(monkeypatch, capsys, tmp_path):
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LPA_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_:
        config_cli.main(["compose", "suite=nosuch"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot compose conf/ with suite=nosuch") and len(err.splitlines()) == 1
    assert not (tmp_path / "params.yaml").exists()
