"""The study-folder format is a contract: a folder written by an earlier release must still be read.

``tests/data/study_v1`` was written once by ``study/run.py`` (format version 1: 2 losses x 2
trials x 20 iterations on digits, ``--space all --losses magnet,repmet-v2 --num-samples 2
--max-iterations 20 --eval-every 10``) and kept with only the files the analysis reads. Tune's
own state, TensorBoard events and pickles were left out to keep it small.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from study_folders import write_manifest

from analysis import report as report_cli
from analysis.scores import select_best
from repmet.study_folder.layout import EXPERIMENT_DIR, trial_loss, trial_number
from repmet.study_folder.trials import loss_trial_folders, read_study
from repmet.study_folder.trials_csv import write_trials_csv

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "study_v1"

#: What the study's files say: the selected trial, its checkpoint and validation error per loss.
SELECTED = {
    "magnet": ("trial_001_6173fb1e", 10, 0.05277777777777781),
    "repmet-v2": ("trial_001_6f220408", 10, 0.5694444444444444),
}


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """A copy, so that the report's output never lands in the repository."""
    copy = tmp_path / "study_v1"
    shutil.copytree(GOLDEN, copy)
    return copy


def test_version_1_study_is_read_and_selected_as_written(golden: Path) -> None:
    study = read_study(golden)
    assert list(study.losses) == list(SELECTED)
    for loss, (trial, iteration, value) in SELECTED.items():
        selection = select_best(study.losses[loss], metric=study.metric, mode="min")
        assert selection is not None
        assert (selection.trial.name, selection.checkpoint_iteration) == (trial, iteration)
        assert selection.best_value == pytest.approx(value, abs=1e-12)


def test_version_1_checkpoints_evaluate_to_the_numbers_of_their_release(golden: Path) -> None:
    # RepMet.v2's simple error needs no k-means (its centroids are the stored representatives),
    # so it pins the checkpoint's weights, configuration and evaluation exactly; the Magnet row
    # depends on the k-means of evaluation and is only checked for being a percentage.
    args = report_cli.parse_args([str(golden), "--device", "cpu", "--no-plots"])
    report = report_cli.run(args)
    rows = {row.key: row for row in report.results.rows}
    train, test = rows["repmet-v2"].values["error_simple"]
    assert (round(train.mean, 1), round(test.mean, 1)) == (55.2, 57.5)
    magnet = rows["magnet"].values
    for stat in (*magnet["error_simple"], *magnet["error_unsupervised"]):
        assert 0.0 <= stat.mean <= 100.0


def test_trials_csv_of_a_version_1_study_names_its_per_loss_folders(golden: Path) -> None:
    import pandas as pd

    table = pd.read_csv(write_trials_csv(golden))
    assert list(table["loss"]) == ["magnet", "magnet", "repmet-v2", "repmet-v2"]
    assert list(table["trial"]) == [1, 2, 1, 2]
    for row in table.itertuples(index=False):
        assert row.trial_dir.startswith(f"{row.loss}/trial_00{row.trial}_")
        assert (golden / row.trial_dir / "result.json").is_file()


def test_the_one_experiment_layout_is_read_per_loss(tmp_path: Path) -> None:
    """Format 3: every loss's trials in ``trials/``, named ``<loss>-trial_<NNN>_<id>``, NNN counted
    per loss; a loss whose name is the start of another's keeps its own trials."""
    names = ["repmet-v2-trial_002_b2", "magnet-trial_001_a1", "repmet-v2-trial_001_b1"]
    names += ["magnet-trial_002_a2"]
    for name in names:
        folder = tmp_path / EXPERIMENT_DIR / name
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({"loss": trial_loss(name)}))
    write_manifest(tmp_path, losses=("magnet", "repmet-v2"))
    study = read_study(tmp_path)
    assert list(study.losses) == ["magnet", "repmet-v2"]
    for loss, ids in (("magnet", ["a1", "a2"]), ("repmet-v2", ["b1", "b2"])):
        found = study.losses[loss]
        assert found.path == tmp_path / EXPERIMENT_DIR
        assert [t.name.rsplit("_", 1)[1] for t in found.trials] == ids
        assert [trial_number(t.name) for t in found.trials] == [1, 2]
        assert all(t.params["loss"] == loss for t in found.trials)
    assert loss_trial_folders(tmp_path, "repmet") == (tmp_path / EXPERIMENT_DIR, [])
    assert (trial_number("trial_007_x"), trial_loss("trial_007_x")) == (7, None)
    assert trial_number("magnet") is None
