"""When a run trains and when it is measured: the one schedule shared by the single-run command,
the Ray Tune trainable and the report's repeats.

A run trains ``eval_every`` iterations, is measured on the validation split, and so on until it has
trained ``iterations``. The selection rule is the same everywhere: the step with the lowest
validation error of :data:`SELECTION_ERROR` stands for the run (the earliest on ties), and that
step's state is the one evaluated on the test split.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from repmet.errors import ArgumentError
from repmet.training import TrainingRun, TrainStats

#: The validation error that selects a run's best step (a key of ``TrainingRun.errors``).
SELECTION_ERROR = "simple"


@dataclass(frozen=True)
class ScheduledStep:
    """One step of the schedule: what the run trained, its validation errors, and its best step
    so far under the selection rule."""

    iteration: int
    stats: TrainStats
    validation: dict[str, float]
    best_iteration: int
    best_error: float

    @property
    def is_best(self) -> bool:
        return self.iteration == self.best_iteration


def next_step(run: TrainingRun) -> ScheduledStep:
    """Trains the run's next ``eval_every`` iterations (fewer at the end) and measures it on the
    validation split."""
    config = run.config
    stats = run.train(min(config.eval_every, config.iterations - run.iteration))
    validation = run.errors("val")["val"]
    best = run.record_validation(validation[SELECTION_ERROR])
    return ScheduledStep(
        iteration=run.iteration,
        stats=stats,
        validation=validation,
        best_iteration=best.iteration,
        best_error=best.error,
    )


def steps(run: TrainingRun) -> Iterator[ScheduledStep]:
    """The remaining steps of the run, one per validation."""
    while run.iteration < run.config.iterations:
        yield next_step(run)


def train_and_select(
    run: TrainingRun, *, on_step: Callable[[ScheduledStep], None] | None = None
) -> ScheduledStep:
    """Trains the run to the end and leaves it in the state of its best step; returns that step.

    The state of the best step is kept in memory (:meth:`TrainingRun.measured_state`: what a
    measurement reads), as a study keeps the best checkpoint of a trial on disk.
    """
    best_state: dict[str, Any] | None = None
    best: ScheduledStep | None = None
    for step in steps(run):
        if on_step is not None:
            on_step(step)
        if step.is_best:
            best, best_state = step, copy.deepcopy(run.measured_state())
    if best is None or best_state is None:
        raise ArgumentError("the run had no iterations left to train")
    run.load_measured_state(best_state)
    return best
