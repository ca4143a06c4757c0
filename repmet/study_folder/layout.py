"""The names of a study folder: its files and folders, the format version, the metrics a trial
reports at each step (they double as TensorBoard tags), and the trial folders' names, built and
parsed here alone. The layout itself is drawn in :mod:`repmet.study_folder`."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from repmet.errors import RepmetError
from repmet.metrics import VALIDATION_PREFIX, metric, metrics_for
from repmet.protocols import CLOSED_SET

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

# -------------------------------------------------------------------------- metric names
# The names double as TensorBoard tags, so they read as ``<group>/<what>``.

ITERATION = "iteration"
TRAIN_LOSS = "train/loss"
TRAIN_BATCH_ACCURACY = "train/batch_accuracy"
SECONDS_PER_ITERATION = "time/seconds_per_iteration"
EXAMPLES_PER_SECOND = "time/examples_per_second"


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
#: Tune's mark of a trial's final result: set both when the trainable ends and when the scheduler
#: stops it.
DONE = "done"


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


# ------------------------------------------------------------------------- trial folders

TRIAL_PREFIX = "trial_"
#: A trial folder's name: ``<loss>-trial_<NNN>_<id>`` (format 3) or ``trial_<NNN>_<id>`` (inside
#: a loss's folder, formats 1 and 2).
_TRIAL_NAME = re.compile(rf"^(?:(?P<loss>.+)-)?{TRIAL_PREFIX}(?P<number>\d+)_(?P<id>.+)$")


def experiment_trial_name(loss: str, number: int, trial_id: str) -> str:
    """``<loss>-trial_<NNN>_<trial id>``: a trial's folder in the study's experiment folder, NNN
    its creation number within the loss (1: the loss's baseline)."""
    return f"{loss}-{TRIAL_PREFIX}{number:03d}_{trial_id}"


def trial_number(folder_name: str) -> int | None:
    """The creation number NNN of a trial folder's name within its loss (1: the loss's
    baseline), in either layout; None for a folder named neither way."""
    match = _TRIAL_NAME.match(folder_name)
    return int(match["number"]) if match else None


def trial_loss(folder_name: str) -> str | None:
    """The loss that leads a format-3 trial folder's name; None for any other name."""
    match = _TRIAL_NAME.match(folder_name)
    return match["loss"] if match else None


# ------------------------------------------------------------------------------- errors


class StudyFolderError(RepmetError):
    """A study folder that is missing a file its reader needs, or holds an unreadable one."""


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
