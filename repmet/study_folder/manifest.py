"""``study.json``: what a study runs (:class:`StudySettings`) and what happened to it
(:class:`Manifest`), with the one reader, :func:`read_manifest`, that the study (``--resume``) and
the report both use. It upgrades a manifest of an older format to today's model, so that no reader
fills in missing fields with defaults of its own."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repmet.errors import ConfigError
from repmet.metrics import VALIDATION_PREFIX, Metric, metric
from repmet.study_folder.layout import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    StudyFolderError,
    best_metric,
    now,
)
from repmet.study_options import TPE, settings_problem

PENDING = "pending"
RUNNING = "running"
FINISHED = "finished"
INTERRUPTED = "interrupted"


@dataclass(frozen=True, kw_only=True)
class StudySettings:
    """What a study runs: the losses of a space, the shared trial settings and the Tune setup.

    Args:
        space: search space name.
        losses: the losses searched, each by its own Optuna study and ASHA bracket, side by side
            in the study's one Tune experiment.
        fixed: the trial config every trial shares (TrainingConfig fields), merged under the sampled
            hyperparameters.
        num_samples: trials per loss.
        metric: the validation metric searched on and used by ASHA.
        mode: "min" or "max".
        seed: seed of the Optuna sampler (the trial seed is in ``fixed``).
        scheduler: ``SCHEDULERS`` of :mod:`repmet.study_options` (ASHA or none).
        sampler: the Optuna sampler, ``SAMPLERS`` of :mod:`repmet.study_options` (TPE or random).
        cpus_per_trial: CPUs reserved per trial (fractions allowed).
        gpus_per_trial: GPUs reserved per trial (fractions allowed).
        max_concurrent: the most trials of one loss running at once (None: as resources allow).
        max_failures: retries of a failed trial before it counts as errored.
        batch_budget: the largest M * D a trial may use.
        baseline: per loss, the 2018 seed point evaluated first.
        baseline_notes: per loss, how the baseline was clipped to the data.
    """

    space: str
    losses: tuple[str, ...]
    fixed: Mapping[str, Any]
    num_samples: int
    metric: str
    mode: str
    seed: int
    scheduler: str
    sampler: str
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int | None
    max_failures: int
    batch_budget: int
    baseline: Mapping[str, Mapping[str, Any]]
    baseline_notes: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        # The ranges and choices of the command line's options (repmet.study_options).
        problem = settings_problem(self)
        if problem is not None:
            raise ConfigError(problem)

    @property
    def select(self) -> str:
        """The name of the validation metric (:mod:`repmet.metrics`) whose best step stands for a
        trial."""
        return self.metric.removeprefix(VALIDATION_PREFIX)

    @property
    def selection(self) -> Metric:
        """The selection metric itself: its direction, labels and keys."""
        return metric(self.select)

    @property
    def objective(self) -> str:
        """What the search, early stopping and Tune's best result judge a trial by: the best value
        of the selection metric over its steps so far."""
        return best_metric(self.select)

    @property
    def iterations(self) -> int:
        return int(self.fixed["iterations"])

    @property
    def eval_every(self) -> int:
        return int(self.fixed["eval_every"])

    @property
    def steps_per_trial(self) -> int:
        """Tune steps (``training_iteration``) of a trial that runs to the end."""
        return -(-self.iterations // self.eval_every)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["losses"] = list(self.losses)
        values["fixed"] = dict(self.fixed)
        values["baseline"] = {loss: dict(point) for loss, point in self.baseline.items()}
        values["baseline_notes"] = {
            loss: list(notes) for loss, notes in self.baseline_notes.items()
        }
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StudySettings:
        """The settings of a manifest of today's format (:func:`upgraded` makes one of an older
        manifest)."""
        names = {field.name for field in dataclasses.fields(cls)}
        missing = sorted(names - set(values))
        if missing:
            raise StudyFolderError(f"the study manifest lacks the fields: {', '.join(missing)}")
        kwargs = {name: values[name] for name in names}
        kwargs["losses"] = tuple(values["losses"])
        kwargs["baseline_notes"] = {
            loss: tuple(notes) for loss, notes in values["baseline_notes"].items()
        }
        return cls(**kwargs)


@dataclass
class Manifest:
    """``study.json``: the settings plus what happened. Written atomically after every change."""

    path: Path
    settings: StudySettings
    command: str
    started: str
    finished: str | None
    status: dict[str, str]
    version: int = FORMAT_VERSION
    #: Where the latest run ran (host, platform, CPUs, GPUs, Ray cluster, versions).
    hardware: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Seconds the study's runs took, added up over ``--resume``.
    elapsed_s: float = 0.0

    @classmethod
    def create(cls, folder: Path, settings: StudySettings, *, command: str) -> Manifest:
        return cls(
            path=folder / MANIFEST_FILE,
            settings=settings,
            command=command,
            started=now(),
            finished=None,
            status=dict.fromkeys(settings.losses, PENDING),
        )

    @classmethod
    def from_dict(cls, path: Path, values: Mapping[str, Any]) -> Manifest:
        """The manifest at ``path`` from its JSON object, upgraded to today's model."""
        values = upgraded(values)
        return cls(
            path=path,
            settings=StudySettings.from_dict(values),
            command=str(values.get("command", "")),
            started=str(values.get("started", "")),
            finished=values.get("finished"),
            status={loss: str(values["status"].get(loss, PENDING)) for loss in values["losses"]},
            version=int(values["version"]),
            hardware=dict(values.get("hardware") or {}),
            elapsed_s=float(values.get("elapsed_s") or 0.0),
        )

    def add_elapsed(self, seconds: float) -> None:
        """Adds the duration of a run of the study and writes the manifest."""
        self.elapsed_s += seconds
        self.write()

    def set_status(self, loss: str, status: str) -> None:
        self.status[loss] = status
        if all(value == FINISHED for value in self.status.values()):
            self.finished = now()
        self.write()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            **self.settings.to_dict(),
            "status": dict(self.status),
            "started": self.started,
            "finished": self.finished,
            "command": self.command,
            "hardware": self.hardware,
            "elapsed_s": round(self.elapsed_s, 1),
        }

    def write(self) -> None:
        # Atomic replace: the report may read the manifest while the study runs.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(handle, "w") as stream:
            json.dump(self.to_dict(), stream, indent=2)
            stream.write("\n")
        os.replace(temporary, self.path)


#: What a manifest of format 1 may lack, with the value every study of that time had: ``--sampler``
#: came during format 1, and before it every study sampled with TPE.
FORMAT_1_DEFAULTS: Mapping[str, Any] = {"sampler": TPE}


def upgraded(values: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest's values in today's model, its ``version`` kept as written (only the current
    version can be resumed; the report reads every one).

    Format 1 (no ``version`` field, or 1) has every field of format 2, except that its earliest
    studies lack those of :data:`FORMAT_1_DEFAULTS`; what changed from format 1 to 2 is in the
    trials' files (``layout.FORMAT_VERSION``), not in the manifest. ``hardware`` and
    ``elapsed_s``, which came during format 2, are empty and 0 where not recorded
    (:class:`Manifest`)."""
    version = values.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise StudyFolderError(f"the study manifest's version {version!r} is not a format number")
    if version > FORMAT_VERSION:
        raise StudyFolderError(
            f"the study manifest is of format {version}, written by a later release (this one "
            f"reads formats 1 to {FORMAT_VERSION})"
        )
    older = FORMAT_1_DEFAULTS if version == 1 else {}
    return {**older, **values, "version": version}


def read_json(path: Path, *, what: str) -> Any:
    """One JSON document of a study folder; a missing or malformed file is a
    :class:`~repmet.study_folder.layout.StudyFolderError` naming it."""
    if not path.is_file():
        raise StudyFolderError(f"no {path.name} ({what}) at {path}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StudyFolderError(f"unreadable {path.name} ({what}) at {path}: {error}") from None


def read_manifest(folder: Path) -> Manifest:
    """The manifest of the study at ``folder``, of any format this release reads, as today's
    model.

    Raises:
        StudyFolderError: the manifest is missing, unreadable, of a later format, lacks a field or
            holds a value of the wrong kind.
        ConfigError: a setting is outside the range of its option (``repmet.study_options``).
    """
    path = folder / MANIFEST_FILE
    values = read_json(path, what="study manifest")
    if not isinstance(values, Mapping):
        raise StudyFolderError(f"study manifest {path} is not a JSON object")
    try:
        return Manifest.from_dict(path, values)
    except StudyFolderError as error:
        raise StudyFolderError(f"{error} ({path})") from None
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StudyFolderError(
            f"the study manifest {path} is damaged ({type(error).__name__}: {error})"
        ) from None
