"""The options of a study (``study/run.py``), stated once.

Each :class:`StudyOption` is one flag: its default, help text, type or choices, range, and the
manifest field it feeds, either a :class:`repmet.config.TrainingConfig` field of the fixed trial
settings (``fixed``) or a :class:`repmet.study_folder.manifest.StudySettings` field
(``setting``). The command line's parser, its range checks, the settings of a new study, the
comparison of a resumed study with its manifest, and the checks of a manifest's settings are all
derived from :data:`STUDY_OPTIONS`. A new option is one entry here (plus its ``StudySettings``
field, if it feeds one).

This module imports neither torch nor Ray: the study-folder contract imports it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repmet.config import FIELD_HELP, MAX_INT, MAX_SEED, TrainingConfig
from repmet.metrics import METRICS
from repmet.protocols import PROTOCOLS

# The names of the schedulers and samplers, as the command line, the manifest, the study driver
# and the report spell them.
ASHA = "asha"
NO_SCHEDULER = "none"
SCHEDULERS = (ASHA, NO_SCHEDULER)
TPE = "tpe"
RANDOM_SAMPLER = "random"
SAMPLERS = (TPE, RANDOM_SAMPLER)

#: The most CPUs or GPUs one trial may ask for (no node has more).
MAX_RESOURCES = 1_000_000.0
DEFAULT_MAX_FAILURES = 2


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``float`` alone accepts nan and inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def loss_names(text: str) -> tuple[str, ...]:
    """``--losses a,b``: the names, stripped, empty ones dropped."""
    return tuple(loss.strip() for loss in text.split(",") if loss.strip())


def absolute_path(text: str) -> str:
    """A folder as trials see it: Tune runs each trial in its own folder, so the path must not
    depend on the directory the study started in."""
    return str(Path(text).resolve())


@dataclass(frozen=True)
class Bounds:
    """The range of a number: ``low <= value <= high`` (``low < value`` with ``open_low``)."""

    low: float
    high: float
    open_low: bool = False

    def problem(self, flag: str, value: float) -> str | None:
        """The one-line complaint about ``value``, or None if it lies in the range."""
        above = self.low < value if self.open_low else self.low <= value
        if above and value <= self.high:
            return None
        if isinstance(self.low, int):
            return f"{flag} {value} must be between {self.low} and {self.high}"
        relation = ">" if self.open_low else ">="
        return f"{flag} {value:g} must be {relation} {self.low:g} and at most {self.high:g}"


COUNT = Bounds(1, MAX_INT)
RESOURCES = Bounds(0.0, MAX_RESOURCES)


@dataclass(frozen=True, kw_only=True)
class StudyOption:
    """One option of ``study/run.py``.

    Args:
        flag: the command-line flag; its argparse destination is the flag in snake case.
        help: the help text. ``{default}`` stands for the search spaces' default of
            ``space_default``, ``{choices}`` for the choices, ``{spaces}`` for the spaces.
        default: the value when the option is not given; None leaves it to the space, the stored
            study or ``TrainingConfig``.
        type: the argparse type (None: the text itself).
        choices: the allowed values, or a function that lists them (a catalogue, read late so
            that plugins are not imported while this module loads).
        metavar: the placeholder of the value in ``--help``.
        switch: a flag without a value. One that feeds the manifest is True when given, None
            otherwise (so that it never overrides a stored or default value).
        bounds: the range of a number.
        fixed: the ``TrainingConfig`` field of the study's fixed trial settings it sets.
        setting: the ``StudySettings`` field it sets.
        to_stored: turns the parsed value into the stored one.
        unordered: a collection whose order does not matter when compared with the stored one.
        grows: a resumed study may raise the stored value (never lower it); the reason shown when
            a command line asks for less.
        smoke: the value ``--smoke`` gives it (an explicit value still wins).
        space_default: the search space's attribute (``setting``) or fixed setting (``fixed``)
            that stands for an unset value.
    """

    flag: str
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    metavar: str | None = None
    switch: bool = False
    bounds: Bounds | None = None
    fixed: str | None = None
    setting: str | None = None
    to_stored: Callable[[Any], Any] | None = None
    unordered: bool = False
    grows: str | None = None
    smoke: Any = None
    space_default: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def stored(self) -> bool:
        """Whether the option feeds the manifest."""
        return self.fixed is not None or self.setting is not None

    def allowed(self) -> tuple[str, ...] | None:
        choices = self.choices() if callable(self.choices) else self.choices
        return None if choices is None else tuple(choices)

    def stored_value(self, value: Any) -> Any:
        """The parsed value as the manifest holds it (None stays None)."""
        return value if value is None or self.to_stored is None else self.to_stored(value)

    def problem(self, value: Any) -> str | None:
        """The one-line complaint about a value of the option, or None if it is fine (None, an
        unset value, always is)."""
        if value is None:
            return None
        allowed = self.allowed()
        if allowed is not None and value not in allowed:
            return f"{self.flag} {value!r} is not one of: {', '.join(allowed)}"
        return None if self.bounds is None else self.bounds.problem(self.flag, value)

    def same(self, wanted: Any, stored: Any) -> bool:
        """Whether a value asked for on the command line is the stored one."""
        if self.unordered:
            return sorted(wanted) == sorted(stored)
        return wanted == stored


#: The trial fields of the class-disjoint protocol and its few-shot episodes, each a flag of the
#: same name.
PROTOCOL_FIELDS = (
    "protocol", "fold", "few_shot_ways", "few_shot_queries", "few_shot_episodes",
    "few_shot_val_episodes",
)  # fmt: skip


def _protocol_option(field: str) -> StudyOption:
    """A trial field of the class-disjoint protocol and its few-shot episodes, as in a single
    run (``python -m repmet.train``)."""
    default = getattr(TrainingConfig(), field)
    return StudyOption(
        flag="--" + field.replace("_", "-"),
        help=f"{FIELD_HELP[field]} (default: {default})",
        type=type(default),
        choices=PROTOCOLS if field == "protocol" else None,
        fixed=field,
    )


def _trial_switch(field: str) -> StudyOption:
    """A trial setting a study can switch on for every trial (off by default, as in a single
    run)."""
    return StudyOption(
        flag="--" + field.replace("_", "-"),
        help=f"every trial: {FIELD_HELP[field]}",
        switch=True,
        fixed=field,
    )


#: Every option of ``study/run.py``, in the order ``--help`` lists them.
STUDY_OPTIONS: tuple[StudyOption, ...] = (
    StudyOption(flag="--space", default="repmet", help="search space: {spaces}", setting="space"),
    StudyOption(
        flag="--losses",
        help="comma-separated subset of the space's losses to search",
        setting="losses",
        to_stored=loss_names,
        unordered=True,
    ),
    StudyOption(
        flag="--dataset",
        help="data set (default: {default})",
        fixed="dataset",
        space_default="dataset",
    ),
    StudyOption(
        flag="--data-root",
        help="data folder (default: $REPMET_DATA_ROOT or ./data)",
        fixed="data_root",
        to_stored=absolute_path,
    ),
    StudyOption(
        flag="--model",
        help="embedding network (default: {default})",
        fixed="model",
        space_default="model",
    ),
    *(_protocol_option(field) for field in PROTOCOL_FIELDS),
    StudyOption(
        flag="--num-samples",
        help="trials per loss (default: {default}); with --resume, a larger number adds trials "
        "to the study",
        type=int,
        bounds=COUNT,
        setting="num_samples",
        grows="a study can get more trials, not fewer",
        smoke=2,
        space_default="num_samples",
    ),
    StudyOption(
        flag="--max-iterations",
        help="training iterations of a full trial (default: {default})",
        type=int,
        bounds=COUNT,
        fixed="iterations",
        smoke=20,
        space_default="iterations",
    ),
    StudyOption(
        flag="--eval-every",
        help="iterations between validation evaluations (default: {default})",
        type=int,
        bounds=COUNT,
        fixed="eval_every",
        smoke=10,
        space_default="eval_every",
    ),
    StudyOption(
        flag="--kmeans-every",
        help="measure the k-means-based validation metrics (unsupervised error, NMI, AMI) at "
        "every this many validations and at the last; the selection metric is measured at every "
        "one (default: 1, every validation)",
        type=int,
        bounds=COUNT,
        fixed="kmeans_every",
    ),
    StudyOption(
        flag="--cpus-per-trial",
        help="CPUs reserved per trial",
        default=1.0,
        type=finite_float,
        bounds=Bounds(0.0, MAX_RESOURCES, open_low=True),
        setting="cpus_per_trial",
    ),
    StudyOption(
        flag="--gpus-per-trial",
        help="GPUs per trial (fractions share a GPU)",
        default=0.0,
        type=finite_float,
        bounds=RESOURCES,
        setting="gpus_per_trial",
    ),
    StudyOption(
        flag="--max-concurrent",
        help="most trials of one loss at once (default: all fit)",
        type=int,
        bounds=COUNT,
        setting="max_concurrent",
    ),
    StudyOption(
        flag="--max-failures",
        help="retries of a trial that raised an error (a trial that fails for its own "
        "configuration, e.g. a diverging loss, is not retried)",
        default=DEFAULT_MAX_FAILURES,
        type=int,
        bounds=Bounds(0, MAX_INT),
        setting="max_failures",
    ),
    StudyOption(
        flag="--scheduler",
        help=f"early stopping: {ASHA}, or {NO_SCHEDULER} (every trial runs out)",
        default=ASHA,
        choices=SCHEDULERS,
        setting="scheduler",
    ),
    StudyOption(
        flag="--sampler",
        help=f"Optuna sampler: {TPE}, or {RANDOM_SAMPLER} (a baseline for TPE)",
        default=TPE,
        choices=SAMPLERS,
        setting="sampler",
    ),
    StudyOption(
        flag="--select",
        help="validation metric that selects each trial's best step and the best trial "
        "(default: error_simple; map_at_r under --protocol class-disjoint): {choices}",
        choices=METRICS.in_order,
        metavar="METRIC",
        fixed="select",
    ),
    StudyOption(
        flag="--seed",
        help=f"seed of the TPE sampler and of every trial (0..{MAX_SEED})",
        default=0,
        type=int,
        bounds=Bounds(0, MAX_SEED),
        setting="seed",
    ),
    StudyOption(flag="--storage", default="results", help="folder holding study folders"),
    StudyOption(
        flag="--name",
        help="study folder name under --storage, one plain folder name (default: the space)",
    ),
    StudyOption(
        flag="--address", help="join a running Ray cluster: auto, HOST:PORT or ray://HOST:PORT"
    ),
    StudyOption(
        flag="--resume",
        help="continue a study with its stored settings (options given with it must agree with "
        "them, except a larger --num-samples)",
        switch=True,
    ),
    StudyOption(
        flag="--overwrite",
        help="delete an existing study folder (only one holding a study of this suite) and start "
        "anew",
        switch=True,
    ),
    *(_trial_switch(field) for field in ("augment", "amp")),
    StudyOption(
        flag="--smoke", help="a quick check: 2 trials per loss, 20 iterations", switch=True
    ),
    StudyOption(flag="--verbose", help="show Ray's and Tune's own output", switch=True),
)


def settings_problem(settings: Any) -> str | None:
    """The first value of a :class:`repmet.study_folder.manifest.StudySettings` outside its
    option's range or choices, as one line; None when every value is fine."""
    for option in STUDY_OPTIONS:
        if option.setting is not None:
            problem = option.problem(getattr(settings, option.setting))
            if problem is not None:
                return problem
    return None
