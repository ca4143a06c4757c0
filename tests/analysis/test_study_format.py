"""The study-folder format is a contract: a folder written by an earlier release must still be read.

``tests/data/study_v1`` was written once by ``study/run.py`` (format version 1: 2 losses x 2
trials x 20 iterations on digits, ``--space all --losses magnet,repmet-v2 --num-samples 2
--max-iterations 20 --eval-every 10``) and kept with only the files the analysis reads. Tune's
own state, TensorBoard events and pickles were left out to keep it small.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import report as report_cli
from analysis.scores import select_best
from analysis.study_files import read_study

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


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in done.stdout.split()}


def test_the_contract_loads_neither_ray_nor_torch() -> None:
    loaded = _modules_loaded_by("import repmet.study_format, repmet.catalogue")
    assert not {"ray", "torch", "optuna"} & loaded


def test_the_analysis_does_not_load_ray() -> None:
    loaded = _modules_loaded_by("import analysis.report, analysis.study_files, analysis.scores")
    assert "ray" not in loaded


def test_a_small_cnn_run_on_in_memory_data_does_not_import_torchvision() -> None:
    # torchvision takes longer to import than the rest of a trial's worker; only photo sets and
    # ResNets need it.
    statement = (
        "from repmet.config import TrainingConfig; from repmet.training import TrainingRun; "
        "TrainingRun(TrainingConfig(iterations=1)).train(1)"
    )
    assert "torchvision" not in _modules_loaded_by(statement)
