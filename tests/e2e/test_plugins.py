"""A plugin loss and a plugin metric (``tests/plugins``, named in ``$REPMET_PLUGINS``) reach the
single-trial command, a study and the report with no other change, each command a process of its
own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from processes import REPOSITORY, STUDY_COMMAND, subprocess_env

from repmet.study_folder.trials import loss_trial_folders

ROOT = REPOSITORY
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _plugin_environment(plugins: str = "throwaway_loss") -> dict[str, str]:
    """This process's environment with the repository importable, no Ray address, and the
    test plugins ``plugins`` (comma-separated) importable and named in ``$REPMET_PLUGINS``."""
    env = subprocess_env(REPMET_PLUGINS=plugins)
    env["PYTHONPATH"] = os.pathsep.join((str(PLUGINS), env["PYTHONPATH"]))
    return env


def test_a_plugin_loss_trains_through_the_single_trial_command(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "repmet.train", "--loss", "throwaway", "--iterations", "20"]
    command += ["--eval-every", "10", "--num-threads", "1", "--m", "4", "--k", "2"]
    done = subprocess.run(
        command, env=_plugin_environment(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "throwaway on digits" in done.stdout
    assert "| test |" in done.stdout


def test_a_plugin_loss_and_metric_are_searched_recorded_tabled_and_reported(tmp_path) -> None:
    """One study of the plugin loss, selected by the plugin metric: the loss is searched with its
    own fields, the metric reaches the trial results, trials.csv, TensorBoard, Optuna and the
    report, each with no change anywhere else."""
    env = _plugin_environment(plugins="throwaway_loss,throwaway_metric")
    study = [*STUDY_COMMAND, "--space", "all", "--losses", "throwaway", "--smoke"]
    study += ["--storage", str(tmp_path), "--name", "plugin", "--select", "error_1nn"]
    done = subprocess.run(study, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "plugin"
    manifest = json.loads((folder / "study.json").read_text())
    assert manifest["losses"] == ["throwaway"]
    assert set(manifest["baseline"]["throwaway"]) == {
        "k",
        "m",
        "d",
        "normalize_embeddings",
        "lr",
        "alpha",
    }
    trials = loss_trial_folders(folder, "throwaway")[1]
    assert trials
    for trial in trials:
        config = json.loads((trial / "params.json").read_text())
        assert config["normalize_representatives"] == config["normalize_embeddings"]

    steps = [
        json.loads(line)
        for trial in trials
        for line in (trial / "result.json").read_text().splitlines()
    ]
    assert steps and all(0.0 <= step["val/error_1nn"] <= 1.0 for step in steps)
    assert all("val/best/error_1nn" in step for step in steps)
    header = (folder / "trials.csv").read_text().splitlines()[0].split(",")
    assert "val/error_1nn" in header

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in folder.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {"val/error_1nn", "val/best/error_1nn"} <= tags
    import optuna

    search = optuna.load_study(study_name="throwaway", storage=f"sqlite:///{folder}/optuna.db")
    assert search.metric_names == ["val/best/error_1nn"]
    assert search.direction == optuna.study.StudyDirection.MINIMIZE
    assert all(0.0 <= trial.value <= 1.0 for trial in search.trials)

    report = [sys.executable, str(ROOT / "analysis" / "report.py"), str(folder)]
    done = subprocess.run(
        [*report, "--no-plots", "--device", "cpu"], env=env, capture_output=True, text=True,
        timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| Throwaway (test plugin) |" in done.stdout
    assert "Throwaway (test plugin): a plugin loss with alpha = " in done.stdout
    assert "| Unsup. Error | 1-NN Error |" in done.stdout
    assert "from the checkpoint with the lowest val/error_1nn" in done.stdout
