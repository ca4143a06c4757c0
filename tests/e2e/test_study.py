"""End-to-end tests of ``study/run.py`` on real Ray: a two-loss study, the refusal to overwrite,
resume after an injected failure, and a study against a separate Ray head (one-line errors for bad
input are ``test_bad_input.py``); then the report of the two-loss study, the stored study of the
report tests checked against it, and the report command as a process of its own."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
from processes import ray_head, run_study
from study_fixture import STORED_STUDY, TINY_STUDY_LOSSES, stored_files

from analysis import report as report_cli
from analysis.tables import loss_label
from repmet.study_folder.trials import loss_trial_folders
from study.run import main

REPOSITORY = Path(__file__).resolve().parents[2]
SMOKE_ITERATIONS = 20  # study.run.SMOKE


def manifest(folder: Path) -> dict:
    return json.loads((folder / "study.json").read_text())


def trial_folders(folder: Path, loss: str) -> list[Path]:
    return loss_trial_folders(folder, loss)[1]


def result_rows(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line]


def optuna_trials(folder: Path, loss: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=loss, storage=f"sqlite:///{folder / 'optuna.db'}")
    return study.trials


def snapshot(folder: Path) -> dict[str, float]:
    """Every path under ``folder`` with its modification time."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_two_loss_study_completes(two_loss_study) -> None:
    folder, status, output = two_loss_study
    assert status == 0, output
    info = manifest(folder)
    assert info["losses"] == ["magnet", "repmet-v2"]
    assert info["status"] == {"magnet": "finished", "repmet-v2": "finished"}
    assert info["num_samples"] == 3 and info["metric"] == "val/error_simple"
    assert info["fixed"]["iterations"] == SMOKE_ITERATIONS and info["finished"]
    # The hints run as written in a new shell: this interpreter, the tools beside it.
    hints = {
        line.split(":", 1)[0].strip(): shlex.split(line.split(":", 1)[1])
        for line in output.splitlines()
        if line.startswith("  ") and ":" in line
    }
    python, script, study = hints["table"]
    assert Path(python).resolve() == Path(sys.executable).resolve()
    assert script == "analysis/report.py" and Path(study).resolve() == folder.resolve()
    tensorboard, flag, logdir = hints["curves"]
    assert Path(tensorboard).resolve() == (Path(sys.executable).parent / "tensorboard").resolve()
    assert flag == "--logdir" and Path(logdir).resolve() == folder.resolve()

    for loss in info["losses"]:
        trials = trial_folders(folder, loss)
        assert len(trials) == 3
        for trial in trials:
            params = json.loads((trial / "params.json").read_text())
            assert params["loss"] == loss and params["iterations"] == SMOKE_ITERATIONS
            rows = result_rows(trial)
            iterations = [row["iteration"] for row in rows]
            assert iterations in ([10], [10, 20])  # ASHA may stop a trial after its first step
            assert rows[-1]["done"] is True
            assert all(0.0 <= row["val/error_simple"] <= 1.0 for row in rows)
            assert list(trial.glob("checkpoint_*/trial.pt")), trial
            assert list(trial.glob("events.out.tfevents.*")), trial
        # The baseline is the first trial, in Tune and in the persisted Optuna study.
        first = json.loads((trials[0] / "params.json").read_text())
        baseline = info["baseline"][loss]
        assert {name: first[name] for name in baseline} == baseline
        assert (baseline["k"], baseline["m"], baseline["d"]) == (3, 12, 4)
        studied = optuna_trials(folder, loss)
        assert len(studied) == 3
        # Trials ASHA stopped are PRUNED, those that ran all their iterations COMPLETE.
        finished = {t.name: result_rows(t)[-1]["iteration"] == SMOKE_ITERATIONS for t in trials}
        states = {
            t.user_attrs["trial_dir"].split("/")[-1]: t.state == optuna.trial.TrialState.COMPLETE
            for t in studied
        }
        assert states == finished
        assert studied[0].params == baseline
    # repmet-v2 does not search alpha (it cannot change a gradient there); magnet does.
    assert "alpha" not in info["baseline"]["repmet-v2"] and "alpha" in info["baseline"]["magnet"]


def step_times(trial: Path) -> list[float]:
    """The wall times of a trial's steps, from its TensorBoard events (``train/loss``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trial), size_guidance={"scalars": 0})
    events.Reload()
    return sorted(event.wall_time for event in events.Scalars("train/loss"))


def test_the_losses_run_side_by_side_in_one_experiment(two_loss_study) -> None:
    """One Tune experiment for the study: the trials of both losses share the time (each loss
    one trial at a time, --max-concurrent 1), each loss with its own budget and baseline first."""
    folder, status, output = two_loss_study
    assert status == 0, output
    spans = {}
    for loss in ("magnet", "repmet-v2"):
        trials = trial_folders(folder, loss)
        assert [t.name.split("_")[0] for t in trials] == [f"{loss}-trial"] * 3
        assert {t.parent for t in trials} == {folder / "trials"}
        # When each trial's steps were written, to the microsecond (Tune's own timestamps are
        # whole seconds, coarser than a smoke trial).
        written = [step_times(t) for t in trials]
        assert all(written)
        spans[loss] = (min(w[0] for w in written), max(w[-1] for w in written))
    overlap = min(end for _, end in spans.values()) - max(start for start, _ in spans.values())
    assert overlap > 0.0, spans  # one loss after the other would not overlap at all
    assert "[2 losses] magnet 3/3, repmet-v2 3/3 done" in output
    assert not (folder / "magnet").exists() and not (folder / "repmet-v2").exists()


def test_rerun_refuses_and_leaves_the_folder_untouched(two_loss_study, capsys) -> None:
    folder, _, _ = two_loss_study
    before = snapshot(folder)
    argv = ["--space", "all", "--losses", "magnet", "--smoke"]
    status = main([*argv, "--storage", str(folder.parent), "--name", folder.name])
    error = capsys.readouterr().err.strip()
    assert status != 0
    assert len(error.splitlines()) == 1
    assert "already exists" in error and "--resume" in error and "--overwrite" in error
    assert snapshot(folder) == before


def test_resume_after_injected_failure_finishes_without_redoing_trials(ray_local, tmp_path) -> None:
    storage, marker = tmp_path / "studies", tmp_path / "failed-once"
    common = ["--storage", str(storage), "--name", "resume"]
    args = [
        "--space",
        "magnet",
        "--losses",
        "magnet",
        "--num-samples",
        "2",
        "--max-iterations",
        "30",
    ]
    args += ["--eval-every", "10", "--scheduler", "none", "--max-failures", "0"]
    args += ["--max-concurrent", "1"]
    # The first trial fails once on its way to iteration 20 (after its checkpoint at 10); the
    # second then runs to the end.
    failed = run_study(
        *args,
        *common,
        REPMET_FAIL_AT_ITERATION="20",
        REPMET_FAIL_ONCE_FILE=str(marker),
    )
    assert failed.returncode != 0, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr and "--resume" in failed.stderr
    assert marker.exists()
    folder = storage / "resume"
    assert manifest(folder)["status"] == {"magnet": "interrupted"}
    trials = trial_folders(folder, "magnet")
    assert len(trials) == 2
    errored = [t for t in trials if (t / "error.txt").exists()]
    assert len(errored) == 1
    finished = next(t for t in trials if t not in errored)
    finished_rows = result_rows(finished)
    assert [row["iteration"] for row in finished_rows] == [10, 20, 30]
    assert [row["iteration"] for row in result_rows(errored[0])] == [10]
    # The failed trial stays open in Optuna, to be completed by the resumed run.
    states = [t.state for t in optuna_trials(folder, "magnet")]
    assert states == [optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE]

    assert main(["--resume", *common]) == 0
    assert manifest(folder)["status"] == {"magnet": "finished"}
    assert trial_folders(folder, "magnet") == trials  # no trial was added or re-sampled
    assert result_rows(finished) == finished_rows  # the finished trial did not run again
    # The failed trial continued from its checkpoint at iteration 10.
    assert [row["iteration"] for row in result_rows(errored[0])] == [10, 20, 30]
    studied = optuna_trials(folder, "magnet")
    assert len(studied) == 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in studied)


def test_smoke_study_on_a_separate_ray_head(tmp_path) -> None:
    with ray_head(num_cpus=2) as address:
        result = run_study(
            "--space", "magnet", "--losses", "magnet", "--smoke", "--address", address,
            "--storage", str(tmp_path),
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    info = manifest(tmp_path / "magnet")
    assert info["status"] == {"magnet": "finished"}
    assert len(trial_folders(tmp_path / "magnet", "magnet")) == 2
    assert "tensorboard --logdir" in result.stdout


def test_a_study_one_trial_at_a_time_is_reproducible(ray_local, tmp_path) -> None:
    """With --max-concurrent 1 neither Optuna nor ASHA depends on which trial finishes first, so
    the same command gives the same trials, configurations and numbers."""
    import pandas as pd

    tables = []
    for name in ("first", "second"):
        argv = ["--space", "repmet", "--losses", "repmet-v2", "--num-samples", "4"]
        argv += ["--max-iterations", "40", "--eval-every", "10", "--max-concurrent", "1"]
        argv += ["--storage", str(tmp_path), "--name", name]
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(argv) == 0
        table = pd.read_csv(tmp_path / name / "trials.csv")
        tables.append(table.drop(columns=["seconds", "trial_dir"]))
    assert len(tables[0]) == 4 and set(tables[0]["status"]) >= {"completed"}
    pd.testing.assert_frame_equal(tables[0], tables[1])


# --------------------------------------------------------------- the study, then its report


def _layout(folder: Path) -> set[str]:
    """The kinds of file a stored copy of a study keeps: its paths with every trial and every
    checkpoint folder named alike."""
    names = (str(p) for p in stored_files(folder))
    return {re.sub(r"trial_\d+_[0-9a-f]+", "trial", re.sub(r"_\d{6}\b", "", p)) for p in names}


def test_the_stored_study_has_the_files_and_format_a_study_writes_today(two_loss_study) -> None:
    """The report tests read ``tests/data/study_tiny``: it must look like a study of today."""
    folder, _, _ = two_loss_study
    rerun = "the stored study is out of date: rerun `PYTHONPATH=. python tests/study_fixture.py`"
    assert _layout(folder) == _layout(STORED_STUDY), rerun
    live, stored = (manifest(f) for f in (folder, STORED_STUDY))
    assert (live["version"], sorted(live)) == (stored["version"], sorted(stored)), rerun
    assert sorted(live["fixed"]) == sorted(stored["fixed"]), rerun
    assert live["losses"] == list(TINY_STUDY_LOSSES)


def test_the_study_is_reported(two_loss_study, tmp_path) -> None:
    folder, _, _ = two_loss_study
    out = tmp_path / "report"
    args = report_cli.parse_args([str(folder), "--device", "cpu", "--out", str(out)])
    report = report_cli.run(args)
    rows = {row.key: row for row in report.results.rows}
    assert set(TINY_STUDY_LOSSES) <= set(rows)
    for loss in TINY_STUDY_LOSSES:
        for stat in (*rows[loss].values["error_simple"], *rows[loss].values["error_unsupervised"]):
            assert 0.0 <= stat.mean <= 100.0
    assert "Study complete" in report.results.caption
    page = (out / "report.html").read_text()
    assert all(loss_label(loss) in page for loss in TINY_STUDY_LOSSES)
    assert (out / "results.md").is_file() and list(out.glob("embedding_*.png"))


def test_missing_manifest_is_one_line_from_the_command_line(study_dir, tmp_path) -> None:
    study = tmp_path / "study"
    shutil.copytree(study_dir, study)
    (study / "study.json").unlink()
    completed = subprocess.run(
        [sys.executable, str(REPOSITORY / "analysis" / "report.py"), str(study), "--no-plots"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("analysis/report.py: error: ")
    assert "study.json" in lines[0]
