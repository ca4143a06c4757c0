"""Reads a study folder from its files alone (no Ray cluster, no Ray import): the manifest, the
trial folders of each loss, each trial's reported steps and checkpoints.

Layout (written by ``study/run.py``; :mod:`repmet.study_format` has the whole of it)::

    <study>/study.json                  manifest: space, losses, data set, num_samples, status, ...
    <study>/optuna.db                   one Optuna study per loss (study_name = loss name)
    <study>/trials/<loss>-<trial>/      format 3: one Tune experiment for every loss
    <study>/<loss>/<trial>/             formats 1 and 2: one Tune experiment per loss
    <trial>/params.json                 the trial's Tune config (a TrainingConfig dict)
    <trial>/result.json                 one JSON object per reported step
    <trial>/checkpoint_00000N/trial.pt

Anything missing or unreadable raises :class:`StudyFolderError` naming the file, so that the report
prints one line instead of a traceback.
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

from repmet.catalogue import LOSSES
from repmet.config import TrainingConfig
from repmet.errors import RepmetError
from repmet.metrics import VALIDATION_PREFIX, lower_is_better
from repmet.study_format import (
    CHECKPOINT_FILE,
    CHECKPOINT_PREFIX,
    ERROR_FILES,
    EXPERIMENT_DIR,
    FINISHED,
    ITERATION,
    MANIFEST_FILE,
    OPTUNA_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    SELECTION_METRIC,
    TRIAL_FAILED,
    trial_loss,
)

#: Terminal colour codes, which Ray writes into error.txt.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class StudyFolderError(RepmetError):
    """A study folder that is missing a file the report needs, or holds an unreadable one."""


class TrialStatus(enum.Enum):
    """Where a trial stands, as far as its files tell."""

    COMPLETED = "completed"  # ran all its configured iterations
    STOPPED = "stopped early"  # ended by the scheduler (ASHA) before its configured iterations
    FAILED = "failed"  # failed for its configuration, or errored without a final result
    RUNNING = "running"  # no final result yet (still running, pending, or interrupted)

    @property
    def finished(self) -> bool:
        return self is not TrialStatus.RUNNING


@dataclass(frozen=True)
class ReportedStep:
    """One reported step of a trial."""

    iteration: int
    metrics: Mapping[str, Any]


@dataclass(frozen=True)
class TrialFolder:
    """One Tune trial of one loss, as read from its folder.

    A trial that failed for its own configuration (its last result carries
    ``study_format.TRIAL_FAILED``) has that reason in ``failure`` and ``failed_by_configuration``
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
    planned: int  # trials the study asked for (num_samples), or the trials found if unknown

    def count(self, status: TrialStatus) -> int:
        return sum(trial.status is status for trial in self.trials)

    @property
    def finished(self) -> int:
        return sum(trial.status.finished for trial in self.trials)


@dataclass(frozen=True)
class StudyFolder:
    """A whole study: its manifest and the trials of every loss that has started."""

    path: Path
    manifest: Mapping[str, Any]
    losses: Mapping[str, LossFolder]
    not_started: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metric(self) -> str:
        return str(self.manifest.get("metric", SELECTION_METRIC))

    @property
    def mode(self) -> str:
        """``min`` or ``max``: as the manifest says (a study made before the manifest said it
        selected by the simple error, lower is better)."""
        return str(self.manifest.get("mode", "min" if lower_is_better(self.select) else "max"))

    @property
    def select(self) -> str:
        """The selection metric's name in :mod:`repmet.metrics`."""
        return self.metric.removeprefix(VALIDATION_PREFIX)

    @property
    def optuna_path(self) -> Path:
        return self.path / OPTUNA_FILE

    @property
    def fixed(self) -> Mapping[str, Any]:
        """The trial settings every trial of the study shares (not searched)."""
        fixed = self.manifest.get("fixed", {})
        return fixed if isinstance(fixed, Mapping) else {}


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
    manifest = read_json(path / MANIFEST_FILE, what="study manifest")
    if not isinstance(manifest, Mapping):
        raise StudyFolderError(f"study manifest {path / MANIFEST_FILE} is not a JSON object")
    planned = _planned_trials(manifest)
    losses: dict[str, LossFolder] = {}
    not_started: list[str] = []
    for loss in _study_losses(path, manifest):
        loss_path, trial_paths = loss_trial_folders(path, loss)
        if not trial_paths:
            if _loss_finished(manifest, loss):
                raise StudyFolderError(f"no trials for loss {loss} in {loss_path}")
            not_started.append(loss)
            continue
        trials = tuple(read_trial(p) for p in trial_paths)
        losses[loss] = LossFolder(
            loss=loss, path=loss_path, trials=trials, planned=planned.get(loss, len(trials))
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


def read_json(path: Path, *, what: str) -> Any:
    """One JSON document; a missing or malformed file is a :class:`StudyFolderError`."""
    if not path.is_file():
        raise StudyFolderError(f"no {path.name} ({what}) at {path}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StudyFolderError(f"unreadable {path.name} ({what}) at {path}: {error}") from None


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
    if rows and rows[-1].get(TRIAL_FAILED):
        return TrialStatus.FAILED
    if rows and rows[-1].get("done"):
        last = int(rows[-1].get(ITERATION, iterations))
        return TrialStatus.COMPLETED if last >= iterations else TrialStatus.STOPPED
    if any((path / name).exists() for name in ERROR_FILES):
        return TrialStatus.FAILED
    return TrialStatus.RUNNING


def _study_losses(path: Path, manifest: Mapping[str, Any]) -> list[str]:
    """The manifest's losses; without a list, every sub-folder holding trial folders, in the
    table's order."""
    losses = manifest.get("losses")
    if isinstance(losses, Sequence) and not isinstance(losses, str) and losses:
        return [str(loss) for loss in losses]
    found = {p.name for p in path.iterdir() if p.is_dir() and _trial_folders(p)}
    found.discard(EXPERIMENT_DIR)
    found |= {trial_loss(p.name) for p in _trial_folders(path / EXPERIMENT_DIR)} - {None}
    return order_losses(sorted(found))


def order_losses(losses: Sequence[str]) -> list[str]:
    """Known losses in the table's order, then any others alphabetically."""
    rank = {name: i for i, name in enumerate(LOSSES.in_order())}
    return sorted(losses, key=lambda loss: (rank.get(loss, len(rank)), loss))


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


def _planned_trials(manifest: Mapping[str, Any]) -> dict[str, int]:
    samples = manifest.get("num_samples")
    if not isinstance(samples, int):
        return {}
    return {str(loss): samples for loss in manifest.get("losses") or []}


def _loss_finished(manifest: Mapping[str, Any], loss: str) -> bool:
    """True when the manifest's per-loss status (see :mod:`study`) says the loss finished."""
    status = manifest.get("status")
    return isinstance(status, Mapping) and status.get(loss) == FINISHED


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
