"""The pieces the fault tests of ``tests/e2e/test_faults.py`` rely on, without Ray or a process:
the lock, reading a failed trial, SIGTERM handled as Ctrl-C, the progress counts of interrupted
trials, the Optuna views of a damaged database."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from analysis import search_plots
from repmet.cli import SigtermAsCtrlC, WorkFailed, run_command
from repmet.study_folder import lock as study_lock
from repmet.study_folder.layout import TRIAL_FAILED


def test_a_lock_has_one_holder_and_is_free_once_released(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    held = study_lock.acquire(folder, command="first")
    assert study_lock.holder_of(folder).startswith(f"pid {os.getpid()} on ")
    with pytest.raises(study_lock.StudyInUse, match=r"in use by another run \(pid \d+ on .*first"):
        study_lock.acquire(folder, command="second")
    held.release()
    assert study_lock.holder_of(folder) is None
    with study_lock.acquire(folder, command="third"):
        assert "third" in (folder / study_lock.LOCK_FILE).read_text()
    assert (folder / study_lock.LOCK_FILE).is_file()  # never deleted


def test_a_failed_trial_is_read_with_its_reason_and_never_selected(tmp_path: Path) -> None:
    from repmet.study_folder.trials import TrialStatus, read_trial

    failed = tmp_path / "trial_001_a"
    failed.mkdir()
    (failed / "params.json").write_text(json.dumps({"loss": "magnet", "iterations": 30}))
    rows = [
        {"iteration": 10, "val/error_simple": 0.2, "val/best/error_simple": 0.2, "done": False},
        {"iteration": 12, "val/error_simple": 1.0, "val/best/error_simple": 1.0, "done": True,
         TRIAL_FAILED: "training diverged at iteration 13: the magnet loss is nan"},
    ]  # fmt: skip
    (failed / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    trial = read_trial(failed)
    assert trial.status is TrialStatus.FAILED and trial.failed_by_configuration
    assert trial.failure == "training diverged at iteration 13: the magnet loss is nan"
    assert [step.iteration for step in trial.steps] == [10]  # the marker is no measurement
    assert trial.best_steps("val/error_simple", "min") == ()

    errored = tmp_path / "trial_002_b"
    errored.mkdir()
    (errored / "params.json").write_text(json.dumps({"loss": "magnet", "iterations": 30}))
    (errored / "error.txt").write_text(
        "Failure # 1\n\x1b[36mray::Trainable.train()\x1b[39m\n  File x\n"
        "repmet.errors.DataNotFoundError: data set 'mnist' not found\n\n"
    )
    trial = read_trial(errored)
    assert trial.status is TrialStatus.FAILED and not trial.failed_by_configuration
    assert trial.failure == "repmet.errors.DataNotFoundError: data set 'mnist' not found"


def test_sigterm_does_what_ctrl_c_does_and_ends_with_143(capsys) -> None:
    before = signal.getsignal(signal.SIGTERM)
    stopped = WorkFailed("interrupted during magnet")
    stopped.interrupted = True  # as study.tuning.StudyInterrupted

    def sleeper() -> int:
        signal.raise_signal(signal.SIGTERM)
        time.sleep(30)  # Python's SIGINT handler raises KeyboardInterrupt at once
        return 0

    def asks_to_stop() -> int:  # as Tune's SIGINT handler, which only asks the run to stop
        signal.raise_signal(signal.SIGTERM)
        assert calls == [signal.SIGINT]
        raise stopped

    def without_sigterm() -> int:
        raise stopped

    started = time.monotonic()
    sigterm = SigtermAsCtrlC("prog", deadline_s=60, late="late")
    # Python's own SIGINT handler, whatever an earlier test in this process (an in-process Tune
    # run) left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert run_command("prog", sleeper, sigterm=sigterm) == 143
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 10
    assert capsys.readouterr().err == "prog: error: stopped by SIGTERM: interrupted\n"
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        sigterm = SigtermAsCtrlC("prog", deadline_s=60, late="late")
        assert run_command("prog", asks_to_stop, sigterm=sigterm) == 143
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert err == "prog: error: stopped by SIGTERM: interrupted during magnet\n"
    assert (
        run_command("prog", without_sigterm, sigterm=SigtermAsCtrlC("p", deadline_s=1, late=""))
        == 130
    )
    assert capsys.readouterr().err == "prog: error: interrupted during magnet\n"
    assert signal.getsignal(signal.SIGTERM) is before


def test_progress_counts_interrupted_trials_as_interrupted() -> None:
    from ray.tune.experiment import Trial

    from study.progress import StudyProgress

    def trial(status: str, last: dict) -> SimpleNamespace:
        return SimpleNamespace(status=status, last_result=last, metric_analysis={})

    trials = [
        trial(Trial.TERMINATED, {"done": True, "iteration": 30}),  # finished
        trial(Trial.TERMINATED, {"done": True, TRIAL_FAILED: "diverged"}),  # failed
        trial(Trial.TERMINATED, {"iteration": 10}),  # stopped by Ctrl-C
        trial(Trial.RUNNING, {"iteration": 20}),
        trial(Trial.ERROR, {"iteration": 10}),  # errored after its retries
    ]
    progress = StudyProgress(
        losses=("magnet",), num_samples=6, iterations=30, metric="val/error_simple", mode="min",
    )  # fmt: skip
    line = progress.line(trials)
    assert "magnet: 3/6 done, 1 running, 2 failed, 1 interrupted" in line
    # The elapsed time counts from the start of the study's run.
    second = StudyProgress(
        losses=("magnet",), num_samples=6, iterations=30, metric="val/error_simple", mode="min",
        study_started_at=time.time() - 125,
    )  # fmt: skip
    assert "| 2m05s elapsed" in second.line(trials)


@pytest.mark.parametrize(
    ("damage", "note"),
    [
        (lambda good: os.urandom(20_000), "optuna.db is unreadable"),
        (lambda good: good[: len(good) // 3], "optuna.db is unreadable"),
        (lambda good: b"", "optuna.db"),
    ],
    ids=["random-bytes", "truncated", "empty"],
)
def test_optuna_views_of_a_damaged_database_are_one_note(tmp_path: Path, damage, note) -> None:
    storage = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="magnet", storage=f"sqlite:///{storage}")
    for value in (0.3, 0.2):
        study.add_trial(
            optuna.trial.create_trial(
                params={"alpha": value},
                distributions={"alpha": optuna.distributions.FloatDistribution(0.1, 1.0)},
                value=value,
            )
        )
    good = storage.read_bytes()
    storage.write_bytes(damage(good))
    written = storage.read_bytes()
    views = search_plots.plot_search_views(
        storage, ["magnet"], select="error_simple", folder=tmp_path
    )
    assert views.pictures == []
    assert len(views.notes) == 1 and note in views.notes[0], views.notes
    assert storage.read_bytes() == written  # the report never repairs (writes) the database


def test_progress_of_losses_side_by_side_counts_each_loss() -> None:
    from ray.tune.experiment import Trial

    from study.progress import StudyProgress

    def trial(loss: str, status: str, last: dict, best: float | None = None) -> SimpleNamespace:
        analysis = {} if best is None else {"val/error_simple": {"min": best}}
        return SimpleNamespace(
            status=status, last_result=last, metric_analysis=analysis, config={"loss": loss}
        )

    trials = [
        trial("magnet", Trial.TERMINATED, {"done": True, "iteration": 30}, best=0.25),
        trial("magnet", Trial.RUNNING, {"iteration": 10}, best=0.5),
        trial("repmet-v2", Trial.TERMINATED, {"done": True, "iteration": 10}, best=0.125),
        trial("repmet-v2", Trial.TERMINATED, {"done": True, TRIAL_FAILED: "diverged"}),
        trial("softmax", Trial.PENDING, {}),
    ]
    progress = StudyProgress(
        losses=("magnet", "repmet-v2", "softmax"), num_samples=2, iterations=30,
        metric="val/error_simple", mode="min",
    )  # fmt: skip
    line = progress.line(trials)
    assert line.startswith(
        "[3 losses] magnet 1/2, repmet-v2 2/2, softmax 0/2 done, 1 running, 1 failed | best "
        "val/error_simple magnet 0.2500, repmet-v2 0.1250, softmax - |"
    ), line
    # A resumed run planning 3 trials per loss: Tune plans them for the whole study.
    progress.setup(total_num_samples=9)
    assert "magnet 1/3, repmet-v2 2/3, softmax 0/3 done" in progress.line(trials)
