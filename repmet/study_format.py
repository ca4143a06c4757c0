"""The study-folder contract: how a study is laid out on disk, what its trials report, and the
schema of its manifest. The study driver writes it, the trainable reports into it, and the analysis
reads it; none of them spells a file or metric name of its own.

This module imports neither torch nor Ray, so that reading a study folder needs neither.

Study folder layout (``FORMAT_VERSION`` 3)::

    <storage>/<name>/
        study.json                  the manifest (:class:`Manifest`), rewritten atomically; its
                                    per-loss ``status`` is set from the trials of each loss
        episodes/                   a class-disjoint study's few-shot episodes,
                                    ``<split>_<S>shot.pt`` (``EPISODES_DIR``)
        study.lock                  held (``flock``) by the run using the study (``study.lock``);
                                    the file stays, an unlocked file means nothing
        optuna.db                   SQLite, one Optuna study per loss, study_name = the loss name
                                    (its metric named after the objective; a trial's user
                                    attribute ``trial_dir`` names its folder,
                                    ``trials/<loss>-trial_...``)
        trials.csv                  one row per trial of every loss (``study.trials_table``)
        trials/                     the one Ray Tune experiment of the study (``EXPERIMENT_DIR``):
                                    every loss's trials run side by side in it, each loss with
                                    its own Optuna study, its own ASHA bracket and its own budget
                                    of ``num_samples`` trials
            tuner.pkl, experiment_state-*.json, searcher-state-*.pkl, search_gen_state-*.json
                                    Tune's own state, used by ``--resume``
            <loss>-trial_<NNN>_<trial id>/
                                    one folder per trial (Tune allows no '/' in a trial's
                                    folder name, so the loss leads it); NNN = creation order
                                    within the loss (001 = the loss's baseline)
                params.json         the whole TrainingConfig of the trial (defaults included)
                result.json         one JSON object per step (every ``eval_every`` iterations)
                                    with the metrics below, Tune's ``training_iteration``, ``done``
                progress.csv        the same rows as CSV
                events.out.tfevents.*   TensorBoard events of the trial, from the trainable
                                    alone (``trainables.records``): ``tensorboard --logdir
                                    <study>`` shows one run per trial,
                                    ``trials/<loss>-trial_<NNN>_<id>``
                projector_config.pbtxt, projector/   its embedding projector snapshot
                checkpoint_<NNNNNN>/trial.pt
                                    the best checkpoint by the selection metric and the latest
                error.txt, error.pkl   only if the trial failed

Format 2 had one Tune experiment per loss, run one after another: ``<loss>/trial_<NNN>_<id>/``
(the same files in each). The analysis finds the trial folders of a loss in either layout
(``analysis.study_files.loss_trial_folders``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from repmet.errors import ConfigError
from repmet.metrics import VALIDATION_PREFIX, Metric, metric, metrics_for
from repmet.protocols import CLOSED_SET
from repmet.study_options import settings_problem

#: The version of this layout. Version 1 had no ``val/best/...`` metric, partial ``params.json``
#: files (the sampled fields and the study's fixed settings only) and checkpoints of run-state
#: format 1; versions 1 and 2 had one Tune experiment (and folder) per loss. The analysis reads
#: every version; only the current one can be resumed.
FORMAT_VERSION = 3

# ----------------------------------------------------------------------------- file names

MANIFEST_FILE = "study.json"
OPTUNA_FILE = "optuna.db"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
CHECKPOINT_PREFIX = "checkpoint_"
CHECKPOINT_FILE = "trial.pt"
#: Where a trial's TensorBoard events go, relative to its folder: the folder itself, so that the
#: run is named after the trial (format 2 studies made before this had ``tensorboard/``).
TENSORBOARD_DIR = "."
PROJECTOR_DIR = "projector"
TRIALS_FILE = "trials.csv"
LOCK_FILE = "study.lock"
#: A class-disjoint study's few-shot episodes, ``<split>_<S>shot.pt`` (``repmet.episodes``): the
#: record of the episodes every trial and repeat draws from the same seed.
EPISODES_DIR = "episodes"
ERROR_FILES = ("error.txt", "error.pkl")
#: The study's one Tune experiment folder, holding the trial folders of every loss (format 3).
EXPERIMENT_DIR = "trials"

#: A trial folder's name: ``<loss>-trial_<NNN>_<id>`` (format 3) or ``trial_<NNN>_<id>`` (inside
#: a loss's folder, formats 1 and 2).
_TRIAL_NAME = re.compile(r"^(?:(?P<loss>.+)-)?trial_(?P<number>\d+)_(?P<id>.+)$")


def experiment_trial_name(loss: str, number: int, trial_id: str) -> str:
    """``<loss>-trial_<NNN>_<trial id>``: a trial's folder in the study's experiment folder."""
    return f"{loss}-trial_{number:03d}_{trial_id}"


def trial_number(name: str) -> int | None:
    """The creation number NNN of a trial folder's name within its loss (1 = the baseline), in
    either layout; None for a name of neither form."""
    match = _TRIAL_NAME.match(name)
    return int(match["number"]) if match else None


def trial_loss(name: str) -> str | None:
    """The loss that leads a format-3 trial folder's name; None for any other name."""
    match = _TRIAL_NAME.match(name)
    return match["loss"] if match else None

# -------------------------------------------------------------------------- metric names
# The names double as TensorBoard tags, so they read as ``<group>/<what>``.

ITERATION = "iteration"
TRAIN_LOSS = "train/loss"
TRAIN_BATCH_ACCURACY = "train/batch_accuracy"
SECONDS_PER_ITERATION = "time/seconds_per_iteration"
EXAMPLES_PER_SECOND = "time/examples_per_second"


def validation_metric(name: str) -> str:
    """``val/<name>``: the value of a metric of :mod:`repmet.metrics` at one step."""
    return metric(name).validation_key


def best_metric(name: str) -> str:
    """``val/best/<name>``: the best value of the metric over a trial's steps so far; the
    objective of the search, of early stopping and of Tune's best result, so that all of them
    judge a trial by the step the report evaluates."""
    return metric(name).best_key


def validation_metrics(protocol: str = CLOSED_SET) -> tuple[str, ...]:
    """Every validation metric a trial of the protocol reports (``val/<name>`` of every metric
    its validation split has, in catalogue order; the k-means-based ones at the steps
    ``kmeans_every`` says)."""
    return tuple(m.validation_key for m in metrics_for(seen=protocol == CLOSED_SET))


#: What a study selects on unless told otherwise. The test split is never used while searching:
#: the report evaluates it once, from the best checkpoint.
DEFAULT_SELECT = "error_simple"
SELECTION_METRIC = f"{VALIDATION_PREFIX}{DEFAULT_SELECT}"

#: Set (to the reason, one line) in the last result of a trial that failed because of its own
#: configuration (``repmet.errors.TrialFailed``: its loss diverged, ...): the trial ends at once,
#: without retries, is recorded as failed (in Tune's results, as FAIL in Optuna, in the report's
#: trial table), and the study goes on with the next trial.
TRIAL_FAILED = "trial_failed"

def all_step_metrics() -> tuple[str, ...]:
    """Every metric a trial reports at a step, besides ``best_metric`` of its selection metric."""
    return (
        ITERATION,
        TRAIN_LOSS,
        TRAIN_BATCH_ACCURACY,
        *validation_metrics(),
        SECONDS_PER_ITERATION,
        EXAMPLES_PER_SECOND,
    )


# ------------------------------------------------------------------------------ manifest

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
        names = {field.name for field in dataclasses.fields(cls)}
        missing = sorted(names - set(values))
        if missing:
            raise ConfigError(f"the study manifest lacks the fields: {', '.join(missing)}")
        kwargs = {name: values[name] for name in names}
        kwargs["losses"] = tuple(values["losses"])
        kwargs["baseline_notes"] = {
            loss: tuple(notes) for loss, notes in values["baseline_notes"].items()
        }
        return cls(**kwargs)


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST_FILE
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(
                f"cannot resume: unreadable study manifest {path} ({error})"
            ) from None
        return cls(
            path=path,
            settings=StudySettings.from_dict(values),
            command=str(values.get("command", "")),
            started=str(values.get("started", "")),
            finished=values.get("finished"),
            status={loss: str(values["status"].get(loss, PENDING)) for loss in values["losses"]},
            version=int(values.get("version", 1)),
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
