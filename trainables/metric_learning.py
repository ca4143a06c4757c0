"""The Ray Tune trainable of the suite.

One parameterised class serves every loss: all losses share the same pipeline
(:class:`repmet.training.TrainingRun` builds the network, the loss module, the optimisers, the
cluster index and the sampler from ``config["loss"]``), so separate classes per loss family would
only repeat it.

- ``setup`` turns the flat Tune config into a :class:`~repmet.config.TrainingConfig` (unknown keys
  are an error) and builds the run; data sets are cached per worker process, so with
  ``reuse_actors=True`` consecutive trials on a worker share one copy of the arrays.
- ``step`` is one step of :mod:`repmet.schedule` (train ``eval_every`` iterations, measure on the
  validation split) and returns the metrics of :mod:`repmet.study_folder.layout`. It never reads the
  test split.
- A trial that fails because of its own configuration (:class:`repmet.errors.TrialFailed`: its
  loss diverged) ends at once with a final result that says why (``layout.TRIAL_FAILED``)
  instead of raising: Tune would retry it ``max_failures`` times in vain and then stop the study.
  That result carries the worst possible value of the selection metric, so that neither the search,
  ASHA nor Tune's checkpoint ranking can prefer it. Every other exception is a failure of the
  study (missing data, a bug, a lost node) and is raised as before.
- ``save_checkpoint`` / ``load_checkpoint`` write and read the full trial state
  (``trial.pt``, written atomically and read with ``weights_only=True``).
- Each trial writes its TensorBoard records (:mod:`trainables.records`): clean tags
  (``train/loss``, ``val/error_simple``, ...) against the iteration count, its HParams session (the
  loss, the fields its loss searches, the final metrics) and a projector snapshot of its best step
  so far. They live in the trial's working directory, written and flushed within each step; the
  study syncs them to storage with each checkpoint (``SyncConfig(sync_artifacts=True)``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray import tune

from repmet.config import TrainingConfig
from repmet.data import DatasetSplits
from repmet.errors import TrainingDiverged, TrialFailed
from repmet.metrics import metric
from repmet.schedule import ScheduledStep, next_step
from repmet.study_folder import layout
from repmet.training import TrainingRun, load_splits, read_state, use_threads
from trainables.records import ProjectorSnapshot, TrialRecords

#: Fault injection for resume tests: with both set, ``step`` raises once when the trial reaches
#: ``REPMET_FAIL_AT_ITERATION`` iterations, after creating the file named by
#: ``REPMET_FAIL_ONCE_FILE`` so that the retried or resumed trial goes through.
FAIL_AT_ITERATION_ENV = "REPMET_FAIL_AT_ITERATION"
FAIL_ONCE_FILE_ENV = "REPMET_FAIL_ONCE_FILE"
#: Fault injection for tests of trial-level failures: the trials whose folder numbers
#: (``<loss>-trial_<NNN>_...``, of any loss) are listed here (comma-separated) diverge in their
#: first step, every time.
DIVERGE_TRIALS_ENV = "REPMET_DIVERGE_TRIALS"

#: A data set and the key of the configuration fields that decide it (``TrainingConfig.data_key``).
SharedData = tuple[tuple[Any, ...], DatasetSplits]


class InjectedFailure(RuntimeError):
    """Raised by the fault injection hook; never raised in normal runs."""


def _absolute_data_root(config: dict[str, Any]) -> dict[str, Any]:
    """Tune changes the worker's directory to the trial folder: a relative data root given on the
    driver's command line is resolved against the driver's original directory."""
    root = config.get("data_root")
    if root and not os.path.isabs(root):
        base = os.environ.get("TUNE_ORIG_WORKING_DIR", os.getcwd())
        config = {**config, "data_root": os.path.join(base, root)}
    return config


class MetricLearningTrainable(tune.Trainable):
    """Trains one metric-learning configuration per Tune trial (any loss of ``repmet.losses``)."""

    def setup(self, config: dict[str, Any], data: SharedData | None = None) -> None:
        """``data``: the study driver's copy of the data set, ``(data key, splits)``, shipped
        through Ray's object store (``tune.with_parameters``), so that a worker neither reads the
        files again nor imports what reading them needs; used when its key is the trial's."""
        self.training_config = TrainingConfig.from_dict(_absolute_data_root(dict(config)))
        use_threads(self.training_config)
        if data is not None and data[0] == self.training_config.data_key():
            splits = data[1]
        else:
            splits = load_splits(self.training_config, cached=True)
        self.run = TrainingRun(self.training_config, splits=splits)
        # Tune may start an actor that runs setup() and is stopped without training: the records
        # open their writer at the first step, so such an actor leaves no empty run.
        self.records = TrialRecords(self.logdir, self.training_config)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.cleanup()
        self.setup(new_config)  # tune.with_parameters passes the data again
        return True

    def step(self) -> dict[str, Any]:
        config = self.training_config
        self._maybe_inject_failure(min(config.eval_every, config.iterations - self.run.iteration))
        try:
            self._maybe_inject_divergence()
            scheduled = next_step(self.run)
        except TrialFailed as error:
            return self._failed_result(str(error))
        stats = scheduled.stats
        result: dict[str, Any] = {
            layout.ITERATION: self.run.iteration,
            layout.TRAIN_LOSS: stats.loss,
            layout.TRAIN_BATCH_ACCURACY: stats.batch_accuracy,
            layout.SECONDS_PER_ITERATION: stats.seconds_per_iteration,
            layout.EXAMPLES_PER_SECOND: stats.examples_per_second,
            metric(config.select).best_key: scheduled.best_value,
        }
        for name, value in scheduled.validation.items():
            result[metric(name).validation_key] = value
        # Written now, not when the trial ends: a trial the scheduler stops gets no later hook.
        snapshot = self._projector_snapshot(scheduled) if scheduled.is_best else None
        self.records.log_step(result, iteration=self.run.iteration, snapshot=snapshot)
        result["done"] = self.run.iteration >= config.iterations
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        directory = Path(checkpoint_dir)
        self.run.save(directory / layout.CHECKPOINT_FILE)

    def load_checkpoint(self, checkpoint: str | dict[str, Any]) -> None:
        if isinstance(checkpoint, dict):
            raise TypeError("MetricLearningTrainable checkpoints are directories, not dicts")
        self.run.load_state_dict(read_state(Path(checkpoint) / layout.CHECKPOINT_FILE))

    def cleanup(self) -> None:
        records = getattr(self, "records", None)
        if records is not None:
            records.close()

    # ----------------------------------------------------------------- internals

    def _failed_result(self, reason: str) -> dict[str, Any]:
        """The final result of a trial that failed for its own configuration."""
        selection = metric(self.training_config.select)
        return {
            layout.ITERATION: self.run.iteration,
            selection.best_key: selection.worst,
            selection.validation_key: selection.worst,
            layout.TRIAL_FAILED: " ".join(reason.split()) or "failed",
            "done": True,
        }

    def _projector_snapshot(self, scheduled: ScheduledStep) -> ProjectorSnapshot:
        """The validation embeddings of the step and the centroids it was measured against."""
        measurement = scheduled.measurement
        if measurement is None:  # a step measured elsewhere: measure again
            measurement = self.run.measure("val")
        embeddings, labels = measurement.embedded["val"]
        learned = self.training_config.loss_entry.learns_representatives
        return ProjectorSnapshot(
            iteration=scheduled.iteration,
            embeddings=embeddings,
            labels=labels,
            centroids=measurement.centroids,
            centroid_classes=measurement.centroid_classes,
            class_names=self.run.splits.class_names,
            centroid_kind="representative" if learned else "centroid",
        )

    def _maybe_inject_divergence(self) -> None:
        listed = os.environ.get(DIVERGE_TRIALS_ENV)
        if not listed:
            return
        number = layout.trial_number(Path(self.logdir).name)
        if number in {int(n) for n in listed.split(",") if n.strip().isdigit()}:
            raise TrainingDiverged(
                f"training diverged at iteration {self.run.iteration + 1}: injected by "
                f"{DIVERGE_TRIALS_ENV}"
            )

    def _maybe_inject_failure(self, chunk: int) -> None:
        at = os.environ.get(FAIL_AT_ITERATION_ENV)
        marker = os.environ.get(FAIL_ONCE_FILE_ENV)
        if not at or not marker or Path(marker).exists():
            return
        if self.run.iteration < int(at) <= self.run.iteration + chunk:
            Path(marker).touch()
            raise InjectedFailure(f"injected failure before iteration {at}")
