"""Faults a long run meets: a full disk or a folder that refuses writes (lpa.files' WriteError), a
killed training process (lpa.train.distributed), a killed launcher (lpa.tools.job_group). Each is one
error line, nothing half-written, and the rerun resumes from the checkpoints."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

import stages.train
from lpa import files
from lpa.config.stage_runner import user_errors_as_one_line
from lpa.errors import WriteError
from lpa.tools.job_group import guarded
from lpa.train.checkpoint import save_checkpoint
from tests.helpers.run import repo_snapshot, run_dvc, run_stage_in_process, sh


def disk_full(monkeypatch, limit: int = 1000) -> None:
    """Every fsync of a file over `limit` bytes fails as a full disk does (ENOSPC); no tmpfs needed."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.fstat(fd).st_size > limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".old")))


def test_a_write_too_big_for_the_disk_names_path_and_space_and_keeps_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "runs" / "model.pt"
    files.write_bytes(out, b"old")
    disk_full(monkeypatch)
    with pytest.raises(WriteError) as err:
        files.write_bytes(out, b"x" * 5000, "model file")
    message = str(err.value)
    assert message.startswith(f"cannot write model file {out}: no space left on device: it needs 4.9 KiB, ")
    assert f"the file system of {out.parent} has " in message and " free; " in message
    assert out.read_bytes() == b"old" and leftovers(out.parent) == []
    assert not isinstance(err.value, OSError)  # never mistaken for a missing input


def test_a_full_disk_inside_a_directory_output_removes_it_whole(tmp_path, monkeypatch):
    def fill(folder: Path) -> None:
        (folder / "a.npy").write_bytes(b"x" * 3000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError, match=r"cannot write directory .*processed: no space left on device: "
                                         r"it needs 2.9 KiB"):
        with files.atomic_path(tmp_path / "processed", directory=True) as tmp:
            fill(tmp)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_refuses_writes_is_a_write_error_but_a_missing_input_is_not(tmp_path, monkeypatch):
    def refuse(dir, prefix, suffix):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, prefix + "x" + suffix))

    with pytest.raises(FileNotFoundError):  # an input read inside the block: not the output's fault
        with files.atomic_path(tmp_path / "attention", directory=True):
            (tmp_path / "missing.npy").read_bytes()
    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError, match=r"cannot write record .*metrics.json: Permission denied \(EACCES\)"):
        files.write_json(tmp_path / "metrics.json", {"a": 1})


def test_a_checkpoint_the_disk_refuses_is_a_warning_and_the_previous_one_stays(tmp_path, monkeypatch, capsys):
    state = {"epoch": 1, "weights": torch.zeros(2000)}
    assert save_checkpoint(tmp_path, state) == tmp_path / "last.pt"
    disk_full(monkeypatch)
    assert save_checkpoint(tmp_path, {**state, "epoch": 2}) is None
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith(f"warning: cannot write checkpoint {tmp_path / 'last.pt'}: "
                                                       "no space left on device: it needs ")
    assert "training goes on" in warning[0] and "the previous one is kept" in warning[0]
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 1 and leftovers(tmp_path) == []


def test_the_stage_runner_prints_a_write_error_as_one_line(capsys, monkeypatch):
    monkeypatch.delenv("LPA_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_:
        with user_errors_as_one_line():
            raise WriteError("models/x/model.pt", "model file", "Read-only file system (EROFS)")
    assert exit_.value.code == 1
    assert capsys.readouterr().err.startswith("error: cannot write model file models/x/model.pt: Read-only")


# ---------------------------------------------------------------------------------------------
# a killed launcher: the guarded group goes with it

# what `dvc repro` does around its stage (dvc.stage.run._run): SIGINT ignored while the stage runs,
# then, the stage done, its outputs recorded. argv: the stage's code, the seconds the recording
# takes, the file the recording writes
DVC_LIKE = """
import signal, subprocess, sys, time
stage = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
code = stage.wait()
signal.signal(signal.SIGINT, handler)
if code == 0:
    time.sleep(float(sys.argv[2]))  # hashing the outputs, writing dvc.lock
    open(sys.argv[3], "w").write("recorded")
sys.exit(code)
"""


LAUNCHER = """
import subprocess, sys, time
from lpa.tools.job_group import guarded
# a run: DVC (argv[2], DVC_LIKE) around a stage, the training, that writes its pid to argv[1]
stage = "import os, time; open(%r, 'w').write(str(os.getpid())); time.sleep(600)" % sys.argv[1]
subprocess.Popen(guarded([sys.executable, "-c", sys.argv[2], stage, "0", sys.argv[1] + ".recorded"]))
time.sleep(600)
"""


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_a_guarded_run_stops_with_its_launcher(tmp_path, signum):
    pid_file = tmp_path / "pid"
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(pid_file), DVC_LIKE],
                                cwd=Path(__file__).parents[2], start_new_session=True)
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30)
    training = int(pid_file.read_text())
    guard = [c for c in psutil.Process(launcher.pid).children() if "lpa.tools.job_group" in c.cmdline()]
    assert len(guard) == 1
    if signum == signal.SIGKILL:
        launcher.kill()
    else:  # Ctrl-C or kill: the terminal signals the launcher's group (the guard too, not the run's)
        os.killpg(launcher.pid, signum)
    launcher.wait(10)
    assert wait_for(lambda: not psutil.pid_exists(training) or psutil.Process(training).status() == "zombie", 15)
    assert wait_for(lambda: not guard[0].is_running() or guard[0].status() == "zombie", 15)


def test_a_guard_told_to_stop_twice_at_once_still_stops_its_run(tmp_path):
    # Ctrl-C on the launcher: the terminal's SIGINT and, microseconds later, the launcher's SIGTERM
    pid_file, interrupted = tmp_path / "pid", tmp_path / "interrupted"
    stage = (f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
             f"try:\n    time.sleep(600)\nexcept KeyboardInterrupt:\n    open({str(interrupted)!r}, 'w').close()\n"
             "    raise SystemExit(130)\n")  # as lpa's stage runner: SIGINT ends it quietly, failed
    guard = subprocess.Popen(guarded([sys.executable, "-c", DVC_LIKE, stage, "0", str(tmp_path / "recorded")]),
                             cwd=Path(__file__).parents[2], stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30)
    training = int(pid_file.read_text())
    guard.send_signal(signal.SIGINT)
    guard.send_signal(signal.SIGTERM)
    _, err = guard.communicate(timeout=30)
    assert guard.returncode == 128 + signal.SIGINT and err == "", err
    assert wait_for(lambda: not psutil.pid_exists(training) or psutil.Process(training).status() == "zombie", 15)
    assert interrupted.exists() and not (tmp_path / "recorded").exists()  # SIGINT stopped it, not the SIGKILL


def test_a_stop_while_dvc_records_a_finished_stage_lets_it_record(tmp_path):
    # Ctrl-C as a run ends: interrupting DVC then would lose the finished run (model written,
    # checkpoints removed, not in dvc.lock: the next repro trains it from scratch)
    finished, recorded = tmp_path / "finished", tmp_path / "recorded"
    stage = f"open({str(finished)!r}, 'w').close()"
    guard = subprocess.Popen(guarded([sys.executable, "-c", DVC_LIKE, stage, "3", str(recorded)]),
                             cwd=Path(__file__).parents[2], stderr=subprocess.PIPE, text=True)
    assert wait_for(finished.exists, 30)
    guard.send_signal(signal.SIGINT)
    guard.send_signal(signal.SIGTERM)
    _, err = guard.communicate(timeout=30)
    assert guard.returncode == 0 and err == "", err
    assert recorded.read_text() == "recorded"


# ---------------------------------------------------------------------------------------------
# end to end on the quick suite's digits (CPU): a full disk at the model write, a killed rank,
# a killed launcher

DIGITS_VGG = ["suite=quick", "model.width=0.125", "train.epochs=3", "train.checkpoint_every=1",
              "data.datasets=[digits]", "~runs.digits-vgg-att2", "~runs.pasted-vgg-att2", "~runs.pasted-vgg-gap",
              "transfer.runs=[]", "segmentation.runs=[]", "segmentation.datasets=[]"]
TRIAL = "digits-vgg-seed0"


def compose(project: Path, *overrides: str) -> None:
    sh([sys.executable, "-m", "lpa.config", "compose", *DIGITS_VGG, *overrides], project)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    project = repo_snapshot(tmp_path_factory.mktemp("faults"))
    compose(project)
    for name in ("download", "preprocess"):
        sh([sys.executable, "-m", f"stages.{name}", "digits"], project)
    return project


@pytest.mark.slow
def test_a_full_disk_at_the_model_write_keeps_the_checkpoint_and_the_rerun_resumes(digits, monkeypatch, capsys):
    compose(digits)
    model = digits / f"models/quick/{TRIAL}/model.pt"
    real = files.write_bytes

    def model_does_not_fit(path, data, what=None):
        if Path(path).name == "model.pt":
            with files.atomic_path(path, what=what, size=len(data)) as tmp:
                tmp.write_bytes(bytes(data)[:100])  # what fitted before the disk filled
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data, what)

    monkeypatch.setattr(files, "write_bytes", model_does_not_fit)
    monkeypatch.setattr("lpa.train.checkpoint.write_bytes", model_does_not_fit)  # the model file's writer
    errors = run_stage_in_process(monkeypatch, capsys, stages.train, TRIAL, digits)
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot write model file models/quick/{TRIAL}/model.pt: "
                                                     "no space left on device: it needs "), errors
    assert not model.exists() and leftovers(model.parent) == []
    ckpt = digits / f"checkpoints/quick/{TRIAL}/last.pt"
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2  # every epoch but the last

    monkeypatch.undo()  # space freed
    out = sh([sys.executable, "-m", "stages.train", TRIAL], digits)
    assert "resuming from the checkpoint after epoch 2" in out.stdout + out.stderr
    assert "epoch 1/3:" not in out.stdout and "epoch 3/3:" in out.stdout
    assert model.exists() and not ckpt.exists()


def training_processes(project: Path) -> list[psutil.Process]:
    """The processes of `python -m stages.train` (launcher, agent or rank) running in `project`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if proc.info["cwd"] == str(project) and "stages.train" in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def rank_of(proc: psutil.Process) -> int | None:
    try:
        return int(proc.environ().get("RANK", -1))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@pytest.mark.slow
def test_a_killed_rank_stops_the_run_with_one_line_and_the_rerun_resumes(digits):
    compose(digits, "train.distributed.processes=2")
    ckpt = digits / f"checkpoints/quick/{TRIAL}/last.pt"
    model = digits / f"models/quick/{TRIAL}/model.pt"
    model.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("LPA_TRACEBACK", None)
    proc = subprocess.Popen([sys.executable, "-m", "stages.train", TRIAL], cwd=digits, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert wait_for(lambda: ckpt.exists() or proc.poll() is not None, 300) and proc.poll() is None
    rank1 = [p for p in training_processes(digits) if rank_of(p) == 1]
    assert len(rank1) == 1
    rank1[0].kill()
    killed = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    stopped_in = time.monotonic() - killed
    assert proc.returncode == 1 and stopped_in < 30, (proc.returncode, stopped_in)
    assert wait_for(lambda: not training_processes(digits), 10)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: process 1 (SIGKILL) of the 2 processes"), stderr
    assert "Traceback" not in stderr and not model.exists() and ckpt.exists()

    out = sh([sys.executable, "-m", "stages.train", TRIAL], digits)
    assert "resuming from the checkpoint after epoch " in out.stdout + out.stderr
    assert model.exists() and not ckpt.exists()
    state = torch.load(model, weights_only=False)["state_dict"]
    # the same optimizer steps as an uninterrupted run: the global batch is train.batch_size (drop_last)
    assert {int(v) for k, v in state.items() if k.endswith("num_batches_tracked")} == {3 * (1437 // 32)}


# digits-vgg trains ~3x faster than digits-vgg-att2: more epochs keep it training until att2's
# first checkpoint, so the launcher is stopped with both slots busy; att2's 7 epochs after that
# checkpoint (~9 s on 2 cores) keep it training until the stop lands, even when digits-vgg's
# `dvc repro` started seconds late, waiting for the repository lock
LAUNCH_DIGITS = ["suite=quick", "model.width=0.125", "train.epochs=8", "train.checkpoint_every=1",
                 "train.max_images=480", "+runs.digits-vgg.train.epochs=24",
                 "data.datasets=[digits]", "~runs.pasted-vgg-att2", "~runs.pasted-vgg-gap", "transfer.runs=[]",
                 "segmentation.runs=[]", "segmentation.datasets=[]"]
LAUNCH_TRIALS = ["digits-vgg-seed0", "digits-vgg-att2-seed0"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_launcher_leaves_no_training_and_a_relaunch_resumes_both(tmp_path, signum):
    project = repo_snapshot(tmp_path / "launched")
    sh([sys.executable, "-m", "lpa.config", "compose", *LAUNCH_DIGITS], project)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    launcher = subprocess.Popen([sys.executable, "-m", "lpa.tools.launch", "--devices", "cpu",
                                 "--slots-per-device", "2"], cwd=project, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    ckpts = [project / f"checkpoints/quick/{trial}/last.pt" for trial in LAUNCH_TRIALS]
    models = [project / f"models/quick/{trial}/model.pt" for trial in LAUNCH_TRIALS]
    assert wait_for(lambda: all(c.exists() for c in ckpts) or launcher.poll() is not None, 600)
    assert launcher.poll() is None and not any(m.exists() for m in models)  # both slots still training
    if signum == signal.SIGKILL:
        launcher.kill()
    else:
        os.killpg(launcher.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the launcher's group
    out, _ = launcher.communicate(timeout=60)
    assert wait_for(lambda: not training_processes(project), 20), [p.cmdline() for p in training_processes(project)]
    if signum == signal.SIGINT:
        for trial in LAUNCH_TRIALS:
            assert f"{trial}: failed on cpu (interrupted)" in out, out

    # the final `dvc repro` (evaluation, report) is test_launch's; here the runs alone
    relaunch = sh([sys.executable, "-m", "lpa.tools.launch", "--devices", "cpu", "--slots-per-device", "2",
                   "--no-finish"], project, check=False)
    data_log = project / "logs/launch/quick/data.log"  # the data stages' dvc repro, run first
    data_out = data_log.read_text() if data_log.exists() else ""
    assert relaunch.returncode == 0, relaunch.stdout + relaunch.stderr + data_out
    assert "runs: 2 to train" in relaunch.stdout
    for trial in LAUNCH_TRIALS:
        log = (project / f"logs/launch/quick/{trial}.log").read_text()
        assert "resuming from the checkpoint after epoch " in log, log
    status = run_dvc("status", *[f"train@{trial}" for trial in LAUNCH_TRIALS], cwd=project).stdout
    assert "Data and pipelines are up to date" in status, status
