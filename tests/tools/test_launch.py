"""The table across devices: lpa.tools.slots (jobs on device slots) and lpa.tools.launch (DVC's train stages
on them), on the CPU: two slots of one CPU stand for two GPUs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
import zc.lockfile  # DVC's repository lock

from lpa.config.run import check_params
from lpa.config.params import compose_params_yaml
from lpa.tools.slots import Job, error_line, parse_devices, run_jobs, slot_environment, summary_table
from lpa.tools.launch import parse_share, plan_jobs, stages_of_share
from tests.helpers.run import DIGITS_ONLY, REPO, TINY, compose, repo_snapshot, run_dvc, sh

# ---------------------------------------------------------------------------------------------
# slots


def fake_job(tmp_path: Path, name: str, seconds: float = 0.3, code: int = 0, after=(), epochs: int = 2) -> Job:
    """A job that records when it ran and under which device, prints epoch lines, exits with `code`."""
    script = (
        "import os, sys, time\n"
        f"open({str(tmp_path / (name + '.run'))!r}, 'w').write("
        "f\"{time.time()} {os.environ['CUDA_VISIBLE_DEVICES']!r} {os.environ.get('OMP_NUM_THREADS')}\\n\")\n"
        f"for e in range({epochs}):\n"
        f"    time.sleep({seconds / epochs})\n"
        f"    print(f'{name} epoch {{e + 1}}/{epochs}: loss 1.0', flush=True)\n"
        f"open({str(tmp_path / (name + '.run'))!r}, 'a').write(f'{{time.time()}}\\n')\n"
        + (f"print('error: {name} went wrong; fix it', file=sys.stderr)\n" if code else "")
        + f"sys.exit({code})\n")
    return Job(name, [sys.executable, "-c", script], tmp_path / "logs" / f"{name}.log", tuple(after))


def spans(tmp_path: Path, names) -> dict[str, tuple[float, float, str]]:
    out = {}
    for name in names:
        first, last = (tmp_path / f"{name}.run").read_text().splitlines()
        start, device, threads = first.split(" ")
        out[name] = (float(start), float(last), device.strip("'"), threads)
    return out


def test_devices_and_their_environment():
    assert parse_devices("0, 1,3") == ["0", "1", "3"] and parse_devices("cpu") == ["cpu"]
    for bad, says in (("", "no device"), ("0,gpu1", "'gpu1'"), ("0,0", "twice")):
        with pytest.raises(ValueError, match=says):
            parse_devices(bad)
    assert slot_environment("2", 4)["CUDA_VISIBLE_DEVICES"] == "2"
    env = slot_environment("cpu", 3)
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["OMP_NUM_THREADS"] == (os.environ.get("OMP_NUM_THREADS") or "3")


def test_slots_run_at_most_their_number_and_a_failure_stops_only_its_dependants(tmp_path):
    jobs = [fake_job(tmp_path, "a"), fake_job(tmp_path, "bad", code=1), fake_job(tmp_path, "c"),
            fake_job(tmp_path, "after-bad", after=["bad"]), fake_job(tmp_path, "after-a", after=["a"])]
    lines: list[str] = []
    run_jobs(jobs, ["0", "1"], slots_per_device=1, print_line=lines.append, poll_seconds=0.05)
    state = {job.name: job.state for job in jobs}
    assert state == {"a": "done", "bad": "failed", "c": "done", "after-bad": "skipped", "after-a": "done"}
    ran = spans(tmp_path, ["a", "bad", "c", "after-a"])
    # never more than 2 at once (one per device), each device given to one job at a time
    for t in [s for s, _, _, _ in ran.values()]:
        assert sum(s <= t < e for s, e, _, _ in ran.values()) <= 2
    assert {d for _, _, d, _ in ran.values()} == {"0", "1"}
    assert ran["after-a"][0] >= ran["a"][1]
    bad = next(job for job in jobs if job.name == "bad")
    assert bad.reason == "error: bad went wrong; fix it"
    table = summary_table(jobs)
    assert str(bad.log) in table and "skipped" in table and "bad failed" in table
    assert any(line.endswith("a: gpu 0 epoch 1/2 ETA " + line.split("ETA ")[-1]) for line in lines if " a: " in line)
    assert any("after-bad: skipped (bad failed)" in line for line in lines)


def test_cpu_slots_share_the_cores(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    jobs = [fake_job(tmp_path, "x"), fake_job(tmp_path, "y")]
    run_jobs(jobs, ["cpu"], slots_per_device=2, print_line=lambda _: None, poll_seconds=0.05)
    threads = {t for _, _, _, t in spans(tmp_path, ["x", "y"]).values()}
    assert threads == {str(max(1, (os.cpu_count() or 1) // 2))}


def test_ctrl_c_fails_the_running_jobs_but_not_one_that_had_ended(tmp_path):
    ended, running, waiting = (fake_job(tmp_path, "ended", seconds=0.0), fake_job(tmp_path, "running", seconds=60),
                               fake_job(tmp_path, "waiting", after=["running"]))
    lines: list[str] = []

    def print_line(line: str) -> None:  # Ctrl-C as "running" starts, once "ended" has exited 0
        lines.append(line)
        if "running: started" in line:
            assert wait_for_exit(ended, 20)
            raise KeyboardInterrupt

    run_jobs([ended, running, waiting], ["cpu"], slots_per_device=2, print_line=print_line, poll_seconds=0.05)
    assert [(job.state, job.reason) for job in (ended, running, waiting)] == [
        ("done", ""), ("failed", "interrupted"), ("skipped", "interrupted")]
    assert running.process.returncode != 0 and any("running: failed on cpu (interrupted)" in x for x in lines)


def wait_for_exit(job: Job, seconds: float) -> bool:
    try:
        job.process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return job.process.returncode == 0


def test_error_line_prefers_the_stage_own_message(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("Running stage 'train@x':\nerror: train.lr too large; lower it\n"
                   "ERROR: failed to reproduce 'train@x': exited with 1\n")
    assert error_line(log) == "error: train.lr too large; lower it"
    log.write_text("ERROR: a\nERROR: b\n")
    assert error_line(log) == "ERROR: b" and error_line(tmp_path / "missing.log") == ""


# ---------------------------------------------------------------------------------------------
# planning the paper suite's runs


@pytest.fixture(scope="module")
def paper_params() -> dict:
    params = yaml.safe_load(compose_params_yaml([], root=REPO))
    check_params(params)
    return params


def test_shares_cover_every_run_once_and_keep_a_finetune_with_its_parent(paper_params):
    every = [f"{g}@{t}" for g in ("train", "finetune") for t in paper_params["trial_groups"][g]]
    shares = [stages_of_share(paper_params, (k, 3)) for k in range(3)]
    assert sorted(s for share in shares for s, _, _ in share) == sorted(every)
    for share in shares:
        names = {stage for stage, _, _ in share}
        for stage, trial, _ in share:
            if stage.startswith("finetune@"):
                parent = paper_params["runs"][paper_params["trials"][trial]["run"]]["init_from"]
                assert f"train@{parent}-seed0" in names
    with pytest.raises(ValueError, match="K/N"):
        parse_share("3/3")


def test_a_finetune_waits_for_its_pending_parent_only(paper_params, tmp_path):
    stages = stages_of_share(paper_params, (0, 1))
    child = next(t for s, t, _ in stages if s.startswith("finetune@"))
    parent = paper_params["runs"][paper_params["trials"][child]["run"]]["init_from"] + "-seed0"
    both = plan_jobs(stages, {f"train@{parent}", f"finetune@{child}"}, tmp_path)
    assert [(j.name, j.after) for j in both] == [(parent, ()), (child, (parent,))]
    assert both[1].command[-3:] == ["repro", "--single-item", f"finetune@{child}"]
    alone = plan_jobs(stages, {f"finetune@{child}"}, tmp_path)
    assert [(j.name, j.after) for j in alone] == [(child, ())]


def test_a_launched_run_waits_for_the_repository_lock_to_record_itself(tmp_path):
    # a `dvc repro` lets go of the repository lock while its stage runs and takes it again to
    # write dvc.lock; another `dvc repro` holding it then for over DVC's 3 s used to fail the
    # finished run ("Unable to acquire lock"), which the next repro trained again from scratch
    repo = tmp_path / "repo"
    repo.mkdir()
    sh([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], repo)
    stage = "import time; open('started', 'w').close(); time.sleep(1); open('out', 'w').write('trained')"
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {"cmd": f'python -c "{stage}"',
                                                                       "outs": ["out"]}}}))
    [job] = plan_jobs([("train", "t", None)], {"train"}, tmp_path / "logs")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.Popen(job.command, cwd=repo, env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (repo / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    while True:  # the lock is free while the stage runs: another `dvc repro` takes it
        try:
            held = zc.lockfile.LockFile(str(repo / ".dvc/tmp/lock"))
            break
        except zc.lockfile.LockError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    time.sleep(5)  # held past the end of the stage and DVC's 3 s
    held.close()
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 0, out
    assert (repo / "out").read_text() == "trained" and "train:" in (repo / "dvc.lock").read_text()


def test_the_slurm_array_script_is_well_formed():
    script = REPO / "docs/cluster/train-array.sbatch"
    sh(["bash", "-n", str(script)], REPO)
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n") and "#SBATCH --gres=gpu:1" in text
    assert "SLURM_ARRAY_TASK_ID" in text and "dvc --wait-for-lock repro --single-item" in text


# ---------------------------------------------------------------------------------------------
# end to end through DVC: two CPU slots against a serial dvc repro

# the shared quick-suite run's settings (tests/conftest.py quick_suite) for its two digits trials only
TINY_DIGITS = [*TINY, *DIGITS_ONLY]
TRIALS = ["digits-vgg-seed0", "digits-vgg-att2-seed0"]


def launch(project: Path, *args: str) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "lpa.tools.launch", *args], project, check=False)


@pytest.mark.slow
def test_two_slots_match_a_serial_repro_and_a_failed_run_is_reported(quick_suite, tmp_path, monkeypatch):
    # the serial reference: the quick suite's `dvc exp run`, one stage at a time with one OpenMP
    # thread; the slots get one thread each too. The records are compared byte for byte on purpose:
    # the same computation (same trials, data, batches, thread count) on the same machine is
    # bit-exact, and a difference would mean a slot ran something else.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    serial, _ = quick_suite

    project = repo_snapshot(tmp_path / "launched")
    compose(project, *TINY_DIGITS, "+runs.digits-vgg.train.lr=1e30")  # a bad param for one run: its loss overflows
    out = launch(project, "--devices", "cpu", "--slots-per-device", "2")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "digits-vgg-att2-seed0: done on cpu" in out.stdout
    failed = [line for line in out.stdout.splitlines() if line.startswith("digits-vgg-seed0 ")]
    assert len(failed) == 1 and "failed" in failed[0] and "logs/launch/quick/digits-vgg-seed0.log" in failed[0]
    assert "loss became non-finite" in failed[0]
    assert "evaluation" not in out.stdout and "fix them and launch again" in out.stderr
    assert "loss became non-finite" in (project / "logs/launch/quick/digits-vgg-seed0.log").read_text()

    compose(project, *TINY_DIGITS)  # fixed: launching again trains only the failed run, then the rest
    out = launch(project, "--devices", "cpu", "--slots-per-device", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "runs: 1 to train, 1 up to date" in out.stdout and "digits-vgg-att2-seed0: started" not in out.stdout
    assert "done: every stage is up to date" in out.stdout
    assert "Data and pipelines are up to date" in run_dvc("status", cwd=project).stdout
    for trial in TRIALS:
        for record in ("metrics.json", "train/plots/metrics/train/loss.tsv"):
            launched = (project / "reports/quick/runs" / trial / record).read_text()
            assert launched == (serial / "reports/quick/runs" / trial / record).read_text(), (trial, record)
    assert json.loads((project / "reports/quick/summary.json").read_text())
