"""A study's trials, read from its files alone (no Ray cluster, no Ray or torch import): the
manifest (:func:`~repmet.study_folder.manifest.read_manifest`), the trial folders of each loss
(in either layout, :func:`loss_trial_folders`), each trial's reported steps and checkpoints, and
how each trial ended (:func:`trial_outcome`, which the study's searcher and its per-loss outcome
use too).

Anything missing or unreadable raises :class:`~repmet.study_folder.layout.StudyFolderError` naming
the file, so that the report prints one line instead of a traceback.
"""

from __future__ import annotations

import enum
import json
import math
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from repmet.config import TrainingConfig
from repmet.study_folder.layout import (
    CHECKPOINT_FILE,
    CHECKPOINT_PREFIX,
    DONE,
    ERROR_FILES,
    EXPERIMENT_DIR,
    ITERATION,
    MANIFEST_FILE,
    OPTUNA_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    TRIAL_FAILED,
    StudyFolderError,
    trial_loss,
    trial_number,
)
from repmet.study_folder.manifest import FINISHED, Manifest, StudySettings, read_json, read_manifest

#: Terminal colour codes, which Ray writes into error.txt.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class TrialStatus(enum.Enum):
    """Where a trial stands, as far as its files tell."""

    COMPLETED = "completed"  # ran all its configured iterations
    STOPPED = "stopped early"  # ended by the scheduler (ASHA) before its configured iterations
    FAILED = "failed"  # failed for its configuration, or errored without a final result
    RUNNING = "running"  # no final result yet (still running, pending, or interrupted)

    @property
    def finished(self) -> bool:
        return self is not TrialStatus.RUNNING


def trial_outcome(last: Mapping[str, Any], *, iterations: float) -> TrialStatus:
    """How a trial that has ended ended, from its last result: FAILED when that result says the
    trial failed for its own configuration (``layout.TRIAL_FAILED``), COMPLETED when it reached
    the ``iterations`` the trial was configured with, STOPPED (by the scheduler) before that.

    The one rule for the trial table of the report and ``trials.csv``, the Optuna state the
    study's searcher records and the per-loss outcome of the study driver. A result without an
    iteration has not shown that it trained to the end.
    """
    if last.get(TRIAL_FAILED):
        return TrialStatus.FAILED
    reached = last.get(ITERATION, 0)
    if isinstance(reached, (int, float)) and reached >= iterations:
        return TrialStatus.COMPLETED
    return TrialStatus.STOPPED


@dataclass(frozen=True)
class ReportedStep:
    """One reported step of a trial."""

    iteration: int
    metrics: Mapping[str, Any]


@dataclass(frozen=True)
class TrialFolder:
    """One Tune trial of one loss, as read from its folder.

    A trial that failed for its own configuration (its last result carries
    ``layout.TRIAL_FAILED``) has that reason in ``failure`` and ``failed_by_configuration``
    set; its final result is a marker, not a measurement, and is not among its ``steps``. Such a
    trial never stands for its loss (:meth:`best_steps` is empty), as Optuna records it as FAIL. A
    trial that errored has the last line of its ``error.txt`` in ``failure``.
    """

    name: str
    path: Path
    params: Mapping[str, Any]
    steps: tuple[ReportedStep, ...]
    status: TrialStatus
    checkpoint_dirs: tuple[Path, ...] = field(default=())
    failure: str | None = None
    failed_by_configuration: bool = False

    def curve(self, metric: str) -> tuple[list[int], list[float]]:
        """Iterations and values of ``metric`` over the steps that report it."""
        pairs = [(s.iteration, _number(s.metrics.get(metric))) for s in self.steps]
        kept = [(i, v) for i, v in pairs if v is not None]
        return [i for i, _ in kept], [v for _, v in kept]

    def best_steps(
        self, metric: str, mode: str, *, of_failed: bool = False
    ) -> tuple[ReportedStep, ...]:
        """The steps that share the best value of ``metric`` (several on ties), oldest first;
        empty when no step reports it, or when the trial failed for its configuration (unless
        ``of_failed``: what it measured before it failed)."""
        if self.failed_by_configuration and not of_failed:
            return ()
        scored = [(v, s) for s in self.steps if (v := _number(s.metrics.get(metric))) is not None]
        if not scored:
            return ()
        best = (min if mode == "min" else max)(v for v, _ in scored)
        return tuple(s for v, s in scored if v == best)

    @property
    def number(self) -> int | None:
        """The creation number NNN of ``trial_<NNN>_<id>`` (1: the loss's baseline)."""
        return trial_number(self.name)

    @cached_property
    def checkpoints(self) -> dict[int, Path]:
        """The checkpoints on disk by the iteration they were saved at, oldest first.

        Tune's function API names the checkpoint of a step in ``result.json``
        (``checkpoint_dir_name``); class trainables do not, so the other checkpoints are dated by
        the iteration counter stored in their state.
        """
        named = {
            str(step.metrics.get("checkpoint_dir_name")): step.iteration for step in self.steps
        }
        found = {
            named[d.name] if d.name in named else saved_iteration(d / CHECKPOINT_FILE): d
            for d in self.checkpoint_dirs
        }
        return dict(sorted(found.items()))


@dataclass(frozen=True)
class LossFolder:
    """The trials of one loss (``path``: the folder holding them, shared by every loss in format
    3)."""

    loss: str
    path: Path
    trials: tuple[TrialFolder, ...]
    planned: int  # trials the study asked for (num_samples)

    def count(self, status: TrialStatus) -> int:
        return sum(trial.status is status for trial in self.trials)

    @property
    def finished(self) -> int:
        return sum(trial.status.finished for trial in self.trials)


@dataclass(frozen=True)
class StudyFolder:
    """A whole study: its manifest and the trials of every loss that has started."""

    path: Path
    manifest: Manifest
    losses: Mapping[str, LossFolder]
    not_started: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def settings(self) -> StudySettings:
        return self.manifest.settings

    @property
    def metric(self) -> str:
        """The validation metric the study selects on (``val/<select>``)."""
        return self.settings.metric

    @property
    def mode(self) -> str:
        """``min`` or ``max``."""
        return self.settings.mode

    @property
    def select(self) -> str:
        """The selection metric's name in :mod:`repmet.metrics`."""
        return self.settings.select

    @property
    def optuna_path(self) -> Path:
        return self.path / OPTUNA_FILE

    @property
    def fixed(self) -> Mapping[str, Any]:
        """The trial settings every trial of the study shares (not searched)."""
        return self.settings.fixed


def find_latest_study(storage: Path) -> Path:
    """The most recently modified study folder (one holding ``study.json``) under ``storage``."""
    if storage.exists() and not storage.is_dir():
        raise StudyFolderError(f"no study folder given and the storage folder {storage} is a file")
    if not storage.is_dir():
        raise StudyFolderError(
            f"no study folder given and the storage folder {storage} does not exist"
        )
    manifests = list(storage.glob(f"*/{MANIFEST_FILE}"))
    if not manifests:
        raise StudyFolderError(f"no study folder (one holding {MANIFEST_FILE}) under {storage}")
    latest = max(manifests, key=lambda p: max(p.stat().st_mtime, p.parent.stat().st_mtime))
    return latest.parent


def read_study(path: Path) -> StudyFolder:
    """Reads the manifest and every loss folder of a study.

    A loss without any trial folder is an error when the study says it has finished; while the study
    is still running it is listed as not started.
    """
    if path.exists() and not path.is_dir():
        raise StudyFolderError(f"study folder {path} is a file, not a folder")
    if not path.is_dir():
        raise StudyFolderError(f"study folder {path} does not exist")
    manifest = read_manifest(path)
    settings = manifest.settings
    losses: dict[str, LossFolder] = {}
    not_started: list[str] = []
    for loss in settings.losses:
        loss_path, trial_paths = loss_trial_folders(path, loss)
        if not trial_paths:
            if manifest.status.get(loss) == FINISHED:
                raise StudyFolderError(f"no trials for loss {loss} in {loss_path}")
            not_started.append(loss)
            continue
        trials = tuple(read_trial(p) for p in trial_paths)
        losses[loss] = LossFolder(
            loss=loss, path=loss_path, trials=trials, planned=settings.num_samples
        )
    if not losses:
        raise StudyFolderError(f"no trials for any loss in {path}")
    return StudyFolder(path=path, manifest=manifest, losses=losses, not_started=tuple(not_started))


def read_trial(path: Path) -> TrialFolder:
    """Reads one trial folder: its config, its reported steps and which checkpoints exist."""
    params = read_json(path / PARAMS_FILE, what=f"config of trial {path.name}")
    if not isinstance(params, Mapping):
        raise StudyFolderError(f"config {path / PARAMS_FILE} is not a JSON object")
    rows = read_result_lines(path / RESULT_FILE, trial=path.name)
    reason = rows[-1].get(TRIAL_FAILED) if rows else None
    measured = rows[:-1] if reason else rows
    steps = tuple(
        ReportedStep(
            iteration=int(row.get(ITERATION, row.get("training_iteration", 0))), metrics=row
        )
        for row in measured
    )
    status = _status(path, rows, int(params.get("iterations", TrainingConfig().iterations)))
    failure = str(reason) if reason else None
    if failure is None and status is TrialStatus.FAILED:
        failure = error_summary(path)
    return TrialFolder(
        name=path.name,
        path=path,
        params=params,
        steps=steps,
        status=status,
        checkpoint_dirs=tuple(
            sorted(p for p in path.glob(f"{CHECKPOINT_PREFIX}*") if (p / CHECKPOINT_FILE).is_file())
        ),
        failure=failure,
        failed_by_configuration=bool(reason),
    )


def error_summary(path: Path) -> str | None:
    """The last line of a trial's ``error.txt`` (the exception that stopped it), if readable."""
    try:
        text = (path / "error.txt").read_text(errors="replace")
    except OSError:
        return None
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else None


def saved_iteration(path: Path) -> int:
    """The iteration counter of a saved trial state, read without loading its tensors (mmap)."""
    import torch  # here: reading a study folder's other files needs no torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["iteration"])
    except (OSError, EOFError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
        # torch.load reports a truncated or foreign file as one of these
        raise StudyFolderError(f"unreadable checkpoint {path}: {error}") from None


def read_result_lines(path: Path, *, trial: str) -> list[dict[str, Any]]:
    """Tune's ``result.json``: one JSON object per line. A trial that has not reported yet may
    not have the file."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise StudyFolderError(
            f"unreadable result.json of trial {trial} at {path}: {error}"
        ) from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            raise StudyFolderError(
                f"unreadable result.json of trial {trial}: line {number} of {path} is not a JSON "
                "object"
            )
        rows.append(row)
    return rows


def _status(path: Path, rows: Sequence[Mapping[str, Any]], iterations: int) -> TrialStatus:
    # Tune marks the last result done=True both when the trainable finishes and when the
    # scheduler stops it; an error file without such a result is a failure (a trial retried
    # after an error and then finished has both). A trial that failed for its configuration ends
    # with a done=True result that says so.
    if rows and (rows[-1].get(DONE) or rows[-1].get(TRIAL_FAILED)):
        return trial_outcome(rows[-1], iterations=iterations)
    if any((path / name).exists() for name in ERROR_FILES):
        return TrialStatus.FAILED
    return TrialStatus.RUNNING


def loss_trial_folders(study: Path, loss: str) -> tuple[Path, list[Path]]:
    """Where the trial folders of ``loss`` are, and which they are (oldest first): in the study's
    one experiment folder, ``trials/<loss>-trial_<NNN>_<id>`` (format 3), else in the loss's own
    folder, ``<loss>/trial_<NNN>_<id>`` (formats 1 and 2)."""
    experiment = study / EXPERIMENT_DIR
    if experiment.is_dir():
        return experiment, [p for p in _trial_folders(experiment) if trial_loss(p.name) == loss]
    return study / loss, _trial_folders(study / loss)


def _trial_folders(loss_path: Path) -> list[Path]:
    if not loss_path.is_dir():
        return []
    return sorted(p for p in loss_path.iterdir() if p.is_dir() and (p / PARAMS_FILE).is_file())


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
