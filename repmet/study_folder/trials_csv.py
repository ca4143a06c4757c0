"""``<study>/trials.csv``: every trial of every loss in one table, for pandas
(``pd.read_csv("results/repmet/trials.csv")``) or a spreadsheet.

One row per trial folder, in the study's loss order and creation order, written from the study
folder's files alone (:mod:`repmet.study_folder.trials`), so it can be rewritten at any time, also
for a study copied elsewhere. Columns:

- ``loss``, ``trial`` (the creation number NNN within the loss of ``<loss>-trial_<NNN>_<id>``, or
  of ``trial_<NNN>_<id>`` in a format-2 study);
- every parameter that the study searches for some loss, the trial's value where its loss searches
  it and empty where not;
- ``status``: ``completed``, ``stopped early`` (by the scheduler), ``failed`` (an error, or a
  configuration that cannot train: ``failure`` says which) or ``running`` (no final result yet:
  running, pending or interrupted);
- ``iterations`` (trained), ``best_iteration`` (the step that stands for the trial: the best value
  of the selection metric on validation, the latest on ties) and every validation metric at that
  step, under its study name (``val/error_simple``, ..., ``val/ami``);
- ``seconds`` (Tune's ``time_total_s``), ``failure`` and ``trial_dir`` (the folder, relative to
  the study folder).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repmet.protocols import CLOSED_SET
from repmet.study_folder.layout import ITERATION, TRIALS_FILE, validation_metrics
from repmet.study_folder.searched import searched_by_any, searched_parameters
from repmet.study_folder.trials import StudyFolder, TrialFolder, TrialStatus, read_study

LEADING = ("loss", "trial")
LINKS = ("failure", "trial_dir")


def trailing_columns(protocol: str) -> tuple[str, ...]:
    """The columns after the searched parameters: the outcome and every validation metric."""
    return ("status", "iterations", "best_iteration", *validation_metrics(protocol), "seconds")


def write_trials_csv(study_folder: Path) -> Path:
    """Writes (or replaces, atomically) ``trials.csv`` in the study folder; returns its path.

    Raises:
        repmet.study_folder.layout.StudyFolderError: the folder is not a readable study.
    """
    study = read_study(Path(study_folder))
    searched = searched_by_any(study.settings, list(study.losses))
    columns = [*LEADING, *searched, *trailing_columns(protocol_of(study)), *LINKS]
    rows = [
        trial_row(study, loss, trial, searched)
        for loss, folder in study.losses.items()
        for trial in folder.trials
    ]
    path = study.path / TRIALS_FILE
    handle, temporary = tempfile.mkstemp(dir=study.path, prefix=".tmp-", suffix=".csv")
    with os.fdopen(handle, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)
    return path


def trial_row(
    study: StudyFolder, loss: str, trial: TrialFolder, searched: Sequence[str]
) -> dict[str, Any]:
    """One row of the table (see the module)."""
    own = set(searched_parameters(study.settings, loss))
    last = trial.steps[-1].metrics if trial.steps else {}
    best = trial.best_steps(study.metric, study.mode, of_failed=True)
    at_best = best[-1] if best else None  # the latest of equal values, as the study keeps
    failed = trial.failed_by_configuration or trial.status is TrialStatus.FAILED
    return {
        "loss": loss,
        "trial": trial.number,
        **{name: trial.params.get(name) if name in own else None for name in searched},
        "status": "failed" if failed else trial.status.value,
        "iterations": last.get(ITERATION, 0 if not trial.steps else None),
        "best_iteration": at_best.iteration if at_best else None,
        **{
            name: at_best.metrics.get(name) if at_best else None
            for name in validation_metrics(protocol_of(study))
        },
        "seconds": last.get("time_total_s"),
        "failure": trial.failure or "",
        "trial_dir": trial.path.relative_to(study.path).as_posix(),
    }


def protocol_of(study: StudyFolder) -> str:
    """The study's protocol (a study made before protocols existed is closed-set)."""
    return str(study.fixed.get("protocol", CLOSED_SET))
