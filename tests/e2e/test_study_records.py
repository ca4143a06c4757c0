"""What a real study (the two-loss study of ``conftest.py``: three trials each, on Ray) records for
the tools of the ecosystem: TensorBoard, Optuna and ``trials.csv``."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from tensorboard_records import projector, tensorboard_view

from repmet.catalogue import LOSSES
from repmet.study_folder import layout
from repmet.study_folder.trials import loss_trial_folders
from trainables.records import final_metrics

LOSSES_STUDIED = ("magnet", "repmet-v2")  # different searched fields: alpha, sigma, ...


@pytest.fixture(scope="module")
def study_folder(two_loss_study) -> Path:
    folder, status, output = two_loss_study
    assert status == 0, output
    return folder


def trial_folders(folder: Path, loss: str) -> list[Path]:
    return loss_trial_folders(folder, loss)[1]


def last_result(trial: Path) -> dict:
    return json.loads((trial / "result.json").read_text().splitlines()[-1])


@pytest.mark.slow
def test_tensorboard_shows_one_clean_run_per_trial(study_folder) -> None:
    view = tensorboard_view(study_folder)
    trials = {
        t.relative_to(study_folder).as_posix(): t
        for loss in LOSSES_STUDIED
        for t in trial_folders(study_folder, loss)
    }
    # One run per trial, named trials/<loss>-trial_<NNN>_<id>.
    assert set(view["runs"]) == set(trials)
    for run, tags in view["runs"].items():
        assert tags and not any(tag.startswith("ray/tune/") for tag in tags), run
    metrics = list(final_metrics("error_simple"))
    assert [m["name"]["tag"] for m in view["experiment"]["metricInfos"]] == metrics
    assert set(view["sessions"]) == set(trials)
    for run, session in view["sessions"].items():
        loss = session["hparams"]["loss"]
        assert set(session["hparams"]) == {"loss", *LOSSES.get(loss).searched}, run
        last = last_result(trials[run])
        assert session["metrics"] == pytest.approx({m: last[m] for m in metrics}), run
        # Every trial that trained has a projector snapshot, those stopped early included.
        _, rows, _ = projector(trials[run])
        assert len(rows) > 1


@pytest.mark.slow
def test_optuna_records_name_the_metric_prune_and_link_trials(study_folder) -> None:
    storage = f"sqlite:///{study_folder / layout.OPTUNA_FILE}"
    pruned = 0
    for loss in LOSSES_STUDIED:
        study = optuna.load_study(study_name=loss, storage=storage)
        assert study.metric_names == ["val/best/error_simple"]
        folders = {t.name: t for t in trial_folders(study_folder, loss)}
        assert len(study.trials) == len(folders) == 3
        for trial in study.trials:
            folder = study_folder / trial.user_attrs["trial_dir"]
            assert folder.parent.name == layout.EXPERIMENT_DIR and folder.name in folders
            assert folder.name.startswith(f"{loss}-trial_")
            assert folder.name.endswith("_" + trial.user_attrs["tune_trial_id"])
            rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
            # Intermediate values: the objective at every step, keyed by training iteration.
            assert trial.intermediate_values == {
                row[layout.ITERATION]: row["val/best/error_simple"] for row in rows
            }
            finished = rows[-1][layout.ITERATION] == 20
            assert trial.state == (TrialState.COMPLETE if finished else TrialState.PRUNED)
            assert trial.value == rows[-1]["val/best/error_simple"]
            pruned += not finished
    assert pruned  # ASHA stopped some trial (deterministic: seeded search, one thread each)


def test_trials_csv_is_one_table_for_pandas(study_folder) -> None:
    path = study_folder / layout.TRIALS_FILE  # as the study wrote it
    assert path.is_file()
    table = pd.read_csv(path)
    assert len(table) == 6
    assert list(table["loss"]) == [loss for loss in LOSSES_STUDIED for _ in range(3)]
    assert list(table["trial"]) == [1, 2, 3] * 2
    searched = {name for loss in LOSSES_STUDIED for name in LOSSES.get(loss).searched}
    assert searched <= set(table.columns)
    assert table.loc[table["loss"] == "repmet-v2", "alpha"].isna().all()
    assert table.loc[table["loss"] == "magnet", "alpha"].notna().all()
    for row in table.itertuples(index=False):
        row = row._asdict()
        folder = study_folder / row["trial_dir"]
        last = last_result(folder)
        assert row["iterations"] == last[layout.ITERATION]
        assert row["status"] == ("completed" if last[layout.ITERATION] == 20 else "stopped early")
        assert row["seconds"] == pytest.approx(last["time_total_s"])
        params = json.loads((folder / "params.json").read_text())
        for name in LOSSES.get(row["loss"]).searched:
            assert row[name] == params[name]
    # A column per validation metric, with the values of each trial's best step.
    best = table["val/error_simple"].min()
    assert set(table.columns) >= set(layout.validation_metrics()) and 0 <= best <= 1
