"""Faults in the middle of a study, each ending with every finished trial kept and the study
completable: a second run, a ``--resume`` and an ``--overwrite`` while the study runs, then
``kill -9`` mid-trial; Ctrl-C and SIGTERM mid-trial followed by ``--resume``; a trial that always
fails, and a damaged ``optuna.db`` under the report.

The studies are tiny (one or two losses, a few trials of 30 iterations on digits). The runs that
are killed or run side by side are processes of their own; resumes run in this process on one
shared Ray. The pieces they rely on (the lock, reading a failed trial, the progress counts, the
Optuna views of a damaged database) are tested without Ray in
``tests/study/test_fault_handling.py``; here, those that need a process of their own: a lock dies
with its holder, a command that ignores SIGTERM ends at its deadline.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from processes import STUDY_COMMAND, run_study, subprocess_env

from analysis import report as report_cli
from repmet.study_folder import lock as study_lock
from repmet.study_folder.layout import TRIAL_FAILED
from repmet.study_folder.trials import loss_trial_folders
from study.run import main as study_main

REPOSITORY = Path(__file__).resolve().parents[2]
#: One loss, three trials one at a time, three steps each: a run lasts long enough to be hit
#: mid-trial, and every trial runs to its end (no ASHA).
STUDY = [
    "--space", "magnet", "--losses", "magnet", "--num-samples", "3", "--max-iterations", "30",
    "--eval-every", "10", "--scheduler", "none", "--max-concurrent", "1",
]  # fmt: skip
ITERATIONS = [10, 20, 30]
#: Result fields that differ between two runs of the same step (time, process, host).
VOLATILE = {
    "date", "timestamp", "time_this_iter_s", "time_total_s", "time_since_restore", "pid",
    "hostname", "node_ip", "iterations_since_restore", "training_iteration",
    "time/seconds_per_iteration", "time/examples_per_second", "checkpoint_dir_name",
}  # fmt: skip


def start_study(*args: str, **env: str) -> subprocess.Popen:
    """A study in a session of its own, as a terminal would start it."""
    return subprocess.Popen(
        [*STUDY_COMMAND, *args],
        cwd=REPOSITORY,
        env=subprocess_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(condition: Callable[[], bool], *, what: str, process=None, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the study ended before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f}s")
        time.sleep(0.05)


def manifest(folder: Path) -> dict:
    return json.loads((folder / "study.json").read_text())


def trial_folders(folder: Path, loss: str = "magnet") -> list[Path]:
    return loss_trial_folders(folder, loss)[1] if folder.is_dir() else []


def result_rows(trial: Path) -> list[dict]:
    path = trial / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mid_trial(folder: Path, number: int, loss: str = "magnet") -> Callable[[], bool]:
    """True once trial ``number`` of ``loss`` has reported a step but not its last."""

    def check() -> bool:
        trials = trial_folders(folder, loss)
        if len(trials) < number:
            return False
        rows = result_rows(trials[number - 1])
        return bool(rows) and not rows[-1].get("done") and rows[-1]["iteration"] < 30

    return check


def finished(trial: Path) -> bool:
    rows = result_rows(trial)
    return bool(rows) and rows[-1].get("done") is True


def finished_files(trial: Path) -> dict[str, bytes]:
    """The result and checkpoint files of a trial, by path."""
    files = [trial / "result.json", *sorted(trial.glob("checkpoint_*/trial.pt"))]
    return {str(p.relative_to(trial)): p.read_bytes() for p in files}


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("study/run.py: error: "), stderr
    return lines[0]


def assert_continued_exactly(trial: Path) -> None:
    """A trial cut short and resumed reports every step once, to the end; a step it ran twice
    (reported, then cut before its checkpoint) has the same metrics both times, bit for bit."""
    rows = result_rows(trial)
    by_iteration: dict[int, dict] = {}
    for row in rows:
        kept = {key: value for key, value in row.items() if key not in VOLATILE}
        if row["iteration"] in by_iteration:
            assert by_iteration[row["iteration"]] == kept, trial
        by_iteration[row["iteration"]] = kept
    assert sorted(by_iteration) == ITERATIONS, [row["iteration"] for row in rows]
    assert rows[-1]["done"] is True


def assert_resume_completes(storage: Path, name: str, kept: dict[str, dict[str, bytes]]) -> None:
    """``--resume`` finishes the study without redoing (or touching) a finished trial."""
    folder = storage / name
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = study_main(["--resume", "--storage", str(storage), "--name", name])
    assert status == 0, out.getvalue()
    info = manifest(folder)
    assert info["status"] == {"magnet": "finished"} and info["finished"]
    trials = trial_folders(folder)
    assert len(trials) == 3
    for name_, files in kept.items():
        assert finished_files(loss_trial_folders(folder, "magnet")[0] / name_) == files, name_
    for trial in trials:
        assert_continued_exactly(trial)
    studied = optuna.load_study(study_name="magnet", storage=f"sqlite:///{folder / 'optuna.db'}")
    assert len(studied.trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in studied.trials)


# ------------------------------------------------------------ in use, then killed mid-trial


def test_a_running_study_refuses_other_runs_then_kill_9_and_resume_complete_it(
    ray_local, tmp_path: Path
) -> None:
    """While a study runs, a second run of it, a --resume and an --overwrite are each refused in
    one line and do not disturb it; killed with SIGKILL mid-trial, it leaves no lock behind and
    --resume completes it, after which --resume has nothing to do and the report reads it."""
    storage = tmp_path / "studies"
    args = [*STUDY, "--storage", str(storage), "--name", "killed"]
    process = start_study(*args)
    folder = storage / "killed"
    try:
        wait_for(mid_trial(folder, 1), what="the first trial mid-way", process=process)
        others = {
            "again": start_study(*args),
            "resume": start_study("--resume", "--storage", str(storage), "--name", "killed"),
            "overwrite": start_study(*args, "--overwrite"),
        }
        refused = {how: (p, *p.communicate(timeout=60)) for how, p in others.items()}
        still_running = process.poll() is None
        # The first run goes on undisturbed, to a later trial (the second, or on a busy machine
        # the third).
        later = [mid_trial(folder, number) for number in (2, 3)]
        wait_for(lambda: any(c() for c in later), what="a later trial mid-way", process=process)
        # Tune writes a trial's result.json from the driver: an earlier trial's last row may land
        # after the next trial's first.
        earlier = trial_folders(folder)[:-1]
        for trial in earlier:
            wait_for(lambda t=trial: finished(t), what=f"{trial.name}'s end", process=process)
        kept = {trial.name: finished_files(trial) for trial in earlier}
        os.kill(process.pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    assert still_running, "the first run ended before the others were refused"
    for how, (other, out, err) in refused.items():
        assert other.returncode == 2, (how, out, err)
        line = one_error_line(err)
        assert f"is in use by another run (pid {process.pid} on" in line, (how, line)
    assert process.returncode == -signal.SIGKILL
    info = manifest(folder)
    assert info["status"] == {"magnet": "running"} and info["command"].endswith("--name killed")
    # The kernel released the dead run's lock: nothing is left to clear by hand.
    assert study_lock.holder_of(folder) is None
    assert_resume_completes(storage, "killed", kept)
    # Once it has ended, --resume finds nothing to do and the report reads the study.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert study_main(["--resume", "--storage", str(storage), "--name", "killed"]) == 0
    assert "nothing to do" in out.getvalue()
    report = tmp_path / "report"
    with contextlib.redirect_stdout(io.StringIO()):
        argv = [str(folder), "--no-plots", "--device", "cpu", "--out", str(report)]
        assert report_cli.main(argv) == 0
    assert "Magnet Loss 3 of 3 trials finished" in (report / "results.md").read_text()


def test_ctrl_c_mid_trial_says_interrupted_then_resume_completes(ray_local, tmp_path) -> None:
    """What Ctrl-C on a terminal sends: SIGINT to the whole process group (SIGTERM to the study
    alone is the two-loss test below)."""
    storage = tmp_path / "studies"
    process = start_study(*STUDY, "--storage", str(storage), "--name", "interrupted")
    folder = storage / "interrupted"
    try:
        wait_for(mid_trial(folder, 2), what="the second trial mid-way", process=process)
        # Tune writes a trial's result.json from the driver: the first trial's last row may land
        # after the second trial's first.
        first = trial_folders(folder)[0]
        wait_for(lambda: finished(first), what="the first trial's last result", process=process)
        kept = {first.name: finished_files(first)}
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 130, stdout + stderr
    line = one_error_line(stderr)
    assert "error: interrupted during magnet" in line
    assert "continue the study with --resume" in line
    assert "fix the cause" not in line
    # The last progress line counts the interrupted trial as interrupted, not done.
    done = sum(map(finished, trial_folders(folder)))
    progress = [line for line in stdout.splitlines() if line.startswith("[1/1] magnet:")]
    assert f"{done}/3 done" in progress[-1] and "1 interrupted" in progress[-1], stdout
    assert f"({done} of 3 trials finished)" in line
    assert manifest(folder)["status"] == {"magnet": "interrupted"}
    assert_resume_completes(storage, "interrupted", kept)


def test_sigterm_with_two_losses_under_way_then_resume_continues_both(ray_local, tmp_path):
    """``kill PID`` or ``docker stop``: SIGTERM to the study's process alone. Both losses' trials
    run side by side in one experiment: SIGTERM stops both, each loss is counted and marked
    interrupted, and --resume continues each trial exactly."""
    losses = ("magnet", "repmet-v2")
    args = [*STUDY, "--space", "all", "--losses", ",".join(losses), "--num-samples", "2"]
    storage = tmp_path / "studies"
    process = start_study(*args, "--storage", str(storage), "--name", "both")
    folder = storage / "both"

    def under_way(loss: str) -> bool:
        """The loss has reported a step and has trials left. (Each loss's trial being mid-way at
        the same moment is too narrow a window: a step of these trials takes a fraction of a
        second, and on a busy machine one loss's trials can start seconds after the other's.)"""
        trials = trial_folders(folder, loss)
        return any(map(result_rows, trials)) and sum(map(finished, trials)) < 2

    try:
        wait_for(lambda: all(map(under_way, losses)), what="both losses under way", process=process)
        os.kill(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 143, stdout + stderr
    line = one_error_line(stderr)
    assert "error: stopped by SIGTERM: interrupted during magnet (" in line, line
    assert line.endswith("; continue the study with --resume")
    assert "fix the cause" not in line
    # Each loss is counted as its trials ended: the interrupted ones are not done.
    progress = [line for line in stdout.splitlines() if line.startswith("[2 losses]")]
    for loss in losses:
        done = sum(map(finished, trial_folders(folder, loss)))
        assert f"{loss} ({done} of 2 trials finished)" in line, line
        assert f"{loss} {done}/2" in progress[-1], stdout
    assert manifest(folder)["status"] == dict.fromkeys(losses, "interrupted")

    with contextlib.redirect_stdout(io.StringIO()):
        assert study_main(["--resume", "--storage", str(storage), "--name", "both"]) == 0
    assert manifest(folder)["status"] == dict.fromkeys(losses, "finished")
    for loss in losses:
        trials = trial_folders(folder, loss)
        assert [trial.name.split("_")[:2] for trial in trials] == [
            [f"{loss}-trial", "001"],
            [f"{loss}-trial", "002"],
        ]
        for trial in trials:
            assert_continued_exactly(trial)
        studied = optuna.load_study(study_name=loss, storage=f"sqlite:///{folder / 'optuna.db'}")
        assert [t.state for t in studied.trials] == [optuna.trial.TrialState.COMPLETE] * 2


# ---------------------------------------------------------------- a trial that always fails


@pytest.fixture(scope="module")
def failing_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two losses, two trials each; the first trial of every loss diverges at its first step,
    every time it is run (injected by REPMET_DIVERGE_TRIALS)."""
    storage = tmp_path_factory.mktemp("failing")
    args = ["--space", "all", "--losses", "magnet,repmet-v2", "--num-samples", "2"]
    args += ["--max-iterations", "30", "--eval-every", "10", "--scheduler", "none"]
    args += ["--max-concurrent", "1", "--storage", str(storage), "--name", "failing"]
    result = run_study(*args, timeout=240, REPMET_DIVERGE_TRIALS="1")
    assert result.returncode == 0, result.stdout + result.stderr
    return storage / "failing", result.stdout


def test_an_always_failing_trial_is_recorded_and_the_study_goes_on(failing_study) -> None:
    folder, stdout = failing_study
    info = manifest(folder)
    assert info["status"] == {"magnet": "finished", "repmet-v2": "finished"}
    for loss in ("magnet", "repmet-v2"):
        failed, other = trial_folders(folder, loss)
        rows = result_rows(failed)
        # One attempt: no retry, no error file, one final result saying why.
        assert len(rows) == 1 and rows[0]["done"] is True
        assert "training diverged" in rows[0][TRIAL_FAILED]
        assert rows[0]["val/best/error_simple"] == 1.0
        assert not (failed / "error.txt").exists()
        assert f"{loss}: trial {failed.name} failed: training diverged" in stdout
        assert [row["iteration"] for row in result_rows(other)] == [10, 20, 30]
        assert TRIAL_FAILED not in result_rows(other)[-1]
        assert list(other.glob("checkpoint_*/trial.pt"))
    assert "magnet: 2 trials (1 failed for their configuration), best" in stdout
    assert "Done in" in stdout


def test_the_report_lists_the_failed_trial_with_its_reason(failing_study, tmp_path) -> None:
    folder, _ = failing_study
    out = tmp_path / "report"
    with contextlib.redirect_stdout(io.StringIO()):
        argv = [str(folder), "--no-plots", "--device", "cpu", "--out", str(out)]
        assert report_cli.main(argv) == 0
    text = (out / "results.md").read_text()
    for loss, label in (("magnet", "Magnet Loss"), ("repmet-v2", "RepMet.v2")):
        failed, other = trial_folders(folder, loss)
        assert f"{label} {failed.name}: training diverged at iteration 1" in text
        # The failed trial never stands for its loss.
        assert f"| {label} | {other.name} |" in text
    assert "| Magnet Loss | 2 | 2 of 2 | 1 | 0 | 1 | 0 |" in text


# -------------------------------------------------------------- a damaged optuna.db


def test_a_damaged_optuna_db_costs_only_the_optuna_views(failing_study, tmp_path, capsys):
    original, _ = failing_study
    folder = tmp_path / "damaged"
    shutil.copytree(original, folder)
    (folder / "optuna.db").write_bytes(os.urandom(20_000))
    out = tmp_path / "report"
    assert report_cli.main([str(folder), "--device", "cpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    for name in ("results.md", "results.csv", "results.tex", "report.html"):
        assert (out / name).is_file(), name
    notes = [line for line in captured.err.splitlines() if "optuna.db" in line]
    assert len(notes) == 1 and "optuna.db is unreadable" in notes[0]
    text = (out / "results.md").read_text()
    assert "skipped for magnet, repmet-v2: optuna.db is unreadable" in text
    assert (out / "val_error_curves.png").is_file()


# ------------------------------------------------------- more trials for a finished study


def test_a_larger_num_samples_extends_a_finished_study_copied_elsewhere(
    ray_local, failing_study, tmp_path: Path
) -> None:
    # On a copy in another folder: the resumed searcher must write to the copy's optuna.db, and
    # the original must stay as it was.
    original, _ = failing_study
    storage = tmp_path / "elsewhere"
    folder = storage / "extended"
    shutil.copytree(original, folder)

    def optuna_trials(study_folder: Path) -> dict[str, list]:
        database = f"sqlite:///{study_folder / 'optuna.db'}"
        return {
            loss: [(t.number, t.params, t.value, t.state) for t in optuna.load_study(
                study_name=loss, storage=database).trials]
            for loss in ("magnet", "repmet-v2")
        }  # fmt: skip

    before = optuna_trials(folder)
    database = f"sqlite:///{folder / 'optuna.db'}"
    kept = {
        loss: {t.name: finished_files(t) for t in trial_folders(folder, loss)}
        for loss in ("magnet", "repmet-v2")
    }
    argv = ["--resume", "--storage", str(storage), "--name", "extended", "--num-samples", "3"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert study_main(argv) == 0
    info = manifest(folder)
    assert info["num_samples"] == 3 and info["finished"]
    assert info["status"] == {"magnet": "finished", "repmet-v2": "finished"}
    assert "--num-samples 3" in info["command"]
    for loss in ("magnet", "repmet-v2"):
        trials = trial_folders(folder, loss)
        assert len(trials) == 3 and trials[2].name.startswith(f"{loss}-trial_003_")
        for name, files in kept[loss].items():
            assert finished_files(trials[0].parent / name) == files
        assert [row["iteration"] for row in result_rows(trials[2])] == [10, 20, 30]
        after = optuna.load_study(study_name=loss, storage=database).trials
        assert len(after) == 3
        assert [(t.number, t.params, t.value, t.state) for t in after[:2]] == before[loss]
        assert after[2].state == optuna.trial.TrialState.COMPLETE
        assert after[2].user_attrs["trial_dir"] == trials[2].relative_to(folder).as_posix()
    assert optuna_trials(original) == before


# ------------------------------------------------------------------ the pieces, without Ray


def test_a_lock_dies_with_its_holder(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    code = "import sys, time; from repmet.study_folder import lock; "
    code += "lock.acquire(lock.Path(sys.argv[1]), "
    code += "command='holder'); print('held', flush=True); time.sleep(600)"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert study_lock.holder_of(folder).startswith(f"pid {holder.pid} on ")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert study_lock.holder_of(folder) is None
    study_lock.acquire(folder, command="next").release()


def test_a_command_that_does_not_stop_after_sigterm_ends_at_its_deadline(tmp_path) -> None:
    # Tune's SIGINT handler only asks the run to stop; here nothing ever stops it.
    code = (
        "import signal, sys, time\n"
        "from repmet.cli import SigtermAsCtrlC, run_command\n"
        "signal.signal(signal.SIGINT, lambda signum, frame: None)\n"
        "def body():\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(120)\n"
        "    return 0\n"
        "sigterm = SigtermAsCtrlC('prog', deadline_s=1.0, late='did not stop in 1 s')\n"
        "sys.exit(run_command('prog', body, sigterm=sigterm))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143
    assert 1.0 <= time.monotonic() - started < 30
    assert stderr == "prog: error: stopped by SIGTERM: did not stop in 1 s\n"
