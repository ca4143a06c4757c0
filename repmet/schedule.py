"""When a run trains and when it is measured: the one schedule shared by the single-run command,
the Ray Tune trainable and the report's repeats.

A run trains ``eval_every`` iterations, is measured on the validation split, and so on until it has
trained ``iterations``. The selection rule is the same everywhere: the step with the best value of
the configuration's ``select`` metric on validation stands for the run (the latest on ties, as a
study keeps the latest of equal checkpoints), and that step's state is the one measured on the test
split.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from repmet.errors import ArgumentError
from repmet.metrics import Metric, all_metrics
from repmet.training import Measurement, TrainingRun, TrainStats


def validation_metrics(run: TrainingRun) -> list[Metric]:
    """What the run's next validation measures: every metric of :mod:`repmet.metrics`, except
    that the k-means-based ones are measured only at every ``kmeans_every``-th validation and at
    the last; the selection metric is measured at every one, whatever it costs."""
    config = run.config
    validation = -(-(run.iteration) // config.eval_every)  # 1 for the first validation
    last = run.iteration >= config.iterations
    every = last or validation % config.kmeans_every == 0
    return [
        m for m in all_metrics() if m.cost == "cheap" or every or m.name == config.select
    ]


@dataclass(frozen=True)
class ScheduledStep:
    """One step of the schedule: what the run trained, its validation metrics (by their names in
    :mod:`repmet.metrics`; see :func:`validation_metrics` for which), and its best step so far
    under the selection rule."""

    iteration: int
    stats: TrainStats
    validation: dict[str, float]
    best_iteration: int
    best_value: float
    #: The validation measurement itself (embeddings and centroids), for callers that also draw
    #: the step, such as the trainable's TensorBoard projector: no second embedding pass.
    measurement: Measurement | None = field(default=None, repr=False, compare=False)

    @property
    def is_best(self) -> bool:
        return self.iteration == self.best_iteration


def next_step(run: TrainingRun) -> ScheduledStep:
    """Trains the run's next ``eval_every`` iterations (fewer at the end) and measures it on the
    validation split."""
    config = run.config
    stats = run.train(min(config.eval_every, config.iterations - run.iteration))
    measurement = run.measure("val", metrics=validation_metrics(run))
    validation = measurement.metrics["val"]
    best = run.record_validation(validation[config.select])
    return ScheduledStep(
        iteration=run.iteration,
        stats=stats,
        validation=validation,
        best_iteration=best.iteration,
        best_value=best.value,
        measurement=measurement,
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
