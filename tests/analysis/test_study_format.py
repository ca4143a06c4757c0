"""The study-folder format is a contract: a folder written by an earlier release must still be read.

``tests/data/study_v1`` was written once by ``study/run.py`` (format version 1: 2 losses x 2
trials x 20 iterations on digits, ``--space all --losses magnet,repmet-v2 --num-samples 2
--max-iterations 20 --eval-every 10``) and kept with only the files the analysis reads. Tune's
own state, TensorBoard events and pickles were left out to keep it small.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analysis import report as report_cli
from analysis.scores import select_best
from repmet.study_folder.trials import read_study

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








