"""The numbers of the report: which trial and checkpoint represent each loss, their errors on the
whole train and test splits, the baselines, and re-training the best configurations with new seeds.

The numbers come from :meth:`repmet.training.TrainingRun.measure` (every metric of
:mod:`repmet.metrics`, in [0, 1]) and are reported in percent.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from analysis.tables import SplitStats, Stat
from repmet.config import TrainingConfig
from repmet.data import DatasetSplits, LabeledDataset
from repmet.errors import CheckpointError
from repmet.measures import FewShotSettings, SplitData
from repmet.metrics import metric, metrics_of
from repmet.schedule import train_and_select
from repmet.study_folder.layout import CHECKPOINT_FILE, StudyFolderError
from repmet.study_folder.trials import LossFolder, ReportedStep, TrialFolder
from repmet.training import TrainingRun, load_splits, read_state, use_threads

#: Rows per forward pass when flattening raw inputs for the nearest-neighbour baseline.
RAW_BATCH = 1024

Values = Mapping[str, Mapping[str, float]]  # {split: {metric name: value in [0, 1]}}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Selection:
    """The trial and checkpoint that stand for one loss in the table."""

    loss: str
    trial: TrialFolder
    best: ReportedStep  # the trial's step with the best validation error
    checkpoint_iteration: int  # the iteration at which the evaluated checkpoint was saved
    checkpoint_dir: Path
    metric: str  # the validation metric the selection used
    note: str | None = None  # set when the best step has no checkpoint and a later one is used

    @property
    def checkpoint_file(self) -> Path:
        return self.checkpoint_dir / CHECKPOINT_FILE

    @property
    def best_value(self) -> float:
        return float(self.best.metrics[self.metric])


def select_best(record: LossFolder, *, metric: str, mode: str) -> Selection | None:
    """The trial with the best validation ``metric`` over its reported steps, and its checkpoint at
    that step (the latest checkpoint, with a note, when that step has none). Ties go to the first
    trial, and within it to the earliest step with a checkpoint.

    Returns None while no trial of the loss has reported the metric.

    Raises:
        StudyFolderError: when the best trial has no checkpoint on disk.
    """
    sign = 1.0 if mode == "min" else -1.0
    candidates = [
        (trial, steps) for trial in record.trials if (steps := trial.best_steps(metric, mode))
    ]
    if not candidates:
        return None
    trial, steps = min(candidates, key=lambda pair: sign * float(pair[1][0].metrics[metric]))
    checkpoints = trial.checkpoints
    if not checkpoints:
        raise StudyFolderError(
            f"no checkpoint in trial {trial.name} (the best trial of loss {record.loss}) "
            f"at {trial.path}"
        )
    saved = [step for step in steps if step.iteration in checkpoints]
    if saved:
        best = saved[0]
        return Selection(
            loss=record.loss,
            trial=trial,
            best=best,
            checkpoint_iteration=best.iteration,
            checkpoint_dir=checkpoints[best.iteration],
            metric=metric,
        )
    best = steps[0]
    latest = max(checkpoints)
    note = (
        f"{record.loss}: the best step (iteration {best.iteration}) of trial {trial.name} has no "
        f"checkpoint; its latest checkpoint (iteration {latest}) is evaluated instead"
    )
    return Selection(
        loss=record.loss,
        trial=trial,
        best=best,
        checkpoint_iteration=latest,
        checkpoint_dir=checkpoints[latest],
        metric=metric,
        note=note,
    )


class CheckpointLoader:
    """Loads checkpoints and builds runs with run-time overrides (device, data root), keeping one
    copy of the data set across losses.

    A checkpoint's stored configuration is the one source of truth for the run it holds: the
    report measures, labels and re-trains from it, never from defaults.

    Args:
        overrides: TrainingConfig fields to replace in every loaded configuration (run-time fields
            such as ``device`` and ``data_root``, never hyperparameters).
        progress: receives one line per step of work.
    """

    def __init__(self, *, overrides: Mapping[str, Any], progress: Progress) -> None:
        self.overrides = dict(overrides)
        self.progress = progress

    def load(self, selection: Selection) -> TrainingRun:
        """The run as saved in the selected checkpoint."""
        path = selection.checkpoint_file
        try:
            state = read_state(path)
            config = TrainingConfig.from_dict({**state["config"], **self.overrides})
        except (CheckpointError, KeyError, TypeError) as error:
            raise StudyFolderError(f"unreadable checkpoint {path}: {error}") from None
        use_threads(config)
        return TrainingRun(config, splits=load_splits(config, cached=True), state=state)

    def build(self, config: TrainingConfig) -> TrainingRun:
        """A fresh, untrained run of a configuration."""
        return TrainingRun(config, splits=load_splits(config, cached=True))

    def retrain(self, config: TrainingConfig, *, seeds: Sequence[int]) -> list[Scores]:
        """Trains the configuration once per seed by the same schedule and selection rule as the
        study (the data split stays fixed: it depends on ``split_seed`` only) and measures the
        best validation step of each run."""
        runs = []
        for seed in seeds:
            self.progress(f"re-training {config.loss} with seed {seed}")
            run = self.build(config.replace(seed=seed))
            train_and_select(run)
            measurement = run.measure("train", "test")
            runs.append(Scores(metrics=measurement.metrics))
        return runs


@dataclass(frozen=True)
class Scores:
    """What one run measured on the train and test splits: ``{split: {metric name: value}}``,
    each in [0, 1]."""

    metrics: Values

    def test_value(self, metric: str) -> float:
        """A metric (``error_simple``, ``map_at_r``, ...) of the run on the test split."""
        return self.metrics["test"][metric]


def percent_cells(values: Values, kinds: Sequence[str]) -> dict[str, SplitStats]:
    """``{split: {metric name: value}}`` of the train and test splits as table cells in
    percent; a metric a split does not have (a supervised error on unseen classes) is None."""

    def cell(split: str, kind: str) -> Stat | None:
        value = values[split].get(kind)
        return None if value is None else Stat(100.0 * value)

    return {kind: (cell("train", kind), cell("test", kind)) for kind in kinds}


def mean_std_cells(runs: Sequence[Values], kinds: Sequence[str]) -> dict[str, SplitStats]:
    """Mean and sample standard deviation (0 for a single run) over repeated runs, in percent."""

    def stat(split: str, kind: str) -> Stat | None:
        values = [100.0 * run[split][kind] for run in runs if kind in run[split]]
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return Stat(statistics.fmean(values), std)

    return {kind: (stat("train", kind), stat("test", kind)) for kind in kinds}


def flattened(dataset: LabeledDataset) -> np.ndarray:
    """All inputs of a split as float32 rows of raw (transformed, deterministic) pixels."""
    view = dataset.evaluation_view()
    indices = torch.arange(len(view))
    chunks = [
        view.get_batch(chunk).reshape(len(chunk), -1).float().numpy()
        for chunk in indices.split(RAW_BATCH)
    ]
    return np.concatenate(chunks)


def raw_nearest_neighbour_errors(splits: DatasetSplits) -> tuple[float, float]:
    """1-nearest-neighbour on flattened raw inputs (train error by leave-one-out), in [0, 1].

    It shows how much of the task needs no learned embedding at all.
    """
    train_x, train_y = flattened(splits.train), splits.train.labels.numpy()
    test_x, test_y = flattened(splits.test), splits.test.labels.numpy()
    classifier = KNeighborsClassifier(n_neighbors=1).fit(train_x, train_y)
    # kneighbors without query points leaves each training point out of its own neighbours
    _, neighbours = classifier.kneighbors(n_neighbors=1)
    train_error = float(np.mean(train_y[neighbours[:, 0]] != train_y))
    test_error = float(np.mean(classifier.predict(test_x) != test_y))
    return train_error, test_error


def raw_pixel_unseen(
    splits: DatasetSplits, settings: FewShotSettings, *, seed: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Raw pixels on the unseen test classes of a class-disjoint split: the few-shot simple
    rule (prototypes of raw pixels) on the given episodes, and retrieval from raw pixels; the
    metrics and the few-shot intervals. The Magnet and RepMet rules are left out: their variance
    belongs to a learned embedding."""
    data = SplitData(
        torch.from_numpy(flattened(splits.test)), splits.test.labels, reference=None,
        seed=seed, few_shot=settings,
    )  # fmt: skip
    wanted = [m for m in metrics_of("few-shot") if m.name.endswith("_simple")]
    wanted += [metric(name) for name in ("p_at_1", "r_precision", "map_at_r")]
    return data.measure(wanted), data.intervals(wanted)
