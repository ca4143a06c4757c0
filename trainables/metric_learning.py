"""The Ray Tune trainable of the suite.

One parameterised class serves every loss: all losses share the same pipeline
(:class:`repmet.training.TrainingRun` builds the network, the loss module, the optimisers, the
cluster index and the sampler from ``config["loss"]``), so separate classes per loss family would
only repeat it.

- ``setup`` turns the flat Tune config into a :class:`~repmet.config.TrainingConfig` (unknown keys
  are an error) and builds the run; data sets are cached per worker process, so with
  ``reuse_actors=True`` consecutive trials on a worker share one copy of the arrays.
- ``step`` is one step of :mod:`repmet.schedule` (train ``eval_every`` iterations, measure on the
  validation split) and returns the metrics of :mod:`repmet.study_format`. It never reads the
  test split.
- A trial that fails because of its own configuration (:class:`repmet.errors.TrialFailed`: its
  loss diverged) ends at once with a final result that says why (``study_format.TRIAL_FAILED``)
  instead of raising: Tune would retry it ``max_failures`` times in vain and then stop the study.
  That result carries the worst possible value of the selection metric, so that neither the search,
  ASHA nor Tune's checkpoint ranking can prefer it. Every other exception is a failure of the
  study (missing data, a bug, a lost node) and is raised as before.
- ``save_checkpoint`` / ``load_checkpoint`` write and read the full trial state
  (``trial.pt``, written atomically and read with ``weights_only=True``).
- Each trial writes clean TensorBoard tags (``train/loss``, ``val/error_simple``, ...) against the
  iteration count, its hyperparameters for the HParams plugin, and at the end a projector snapshot
  of the validation embeddings. They live in the trial's working directory; the study syncs them
  to storage (``SyncConfig(sync_artifacts=True)``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray import tune
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from repmet import study_format as layout
from repmet.config import SELECTABLE_METRICS, TrainingConfig
from repmet.errors import TrainingDiverged, TrialFailed
from repmet.schedule import next_step
from repmet.training import TrainingRun, load_splits, read_state, use_threads

#: Fault injection for resume tests: with both set, ``step`` raises once when the trial reaches
#: ``REPMET_FAIL_AT_ITERATION`` iterations, after creating the file named by
#: ``REPMET_FAIL_ONCE_FILE`` so that the retried or resumed trial goes through.
FAIL_AT_ITERATION_ENV = "REPMET_FAIL_AT_ITERATION"
FAIL_ONCE_FILE_ENV = "REPMET_FAIL_ONCE_FILE"
#: Fault injection for tests of trial-level failures: the trials whose folder numbers
#: (``trial_<NNN>_...``) are listed here (comma-separated) diverge in their first step, every time.
DIVERGE_TRIALS_ENV = "REPMET_DIVERGE_TRIALS"

#: The value a failed trial reports for its selection metric: no real measurement is worse (errors
#: lie in [0, 1]; AMI, the one metric that can be negative, in [-1, 1]).
WORST_VALUE = {"min": 1.0, "max": 0.0}
WORST_VALUE_OF = {"ami": -1.0}


def failed_value(select: str) -> float:
    """The worst possible value of the selection metric ``select``."""
    return WORST_VALUE_OF.get(select, WORST_VALUE[SELECTABLE_METRICS[select]])


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

    def setup(self, config: dict[str, Any]) -> None:
        self.training_config = TrainingConfig.from_dict(_absolute_data_root(dict(config)))
        use_threads(self.training_config)
        splits = load_splits(self.training_config, cached=True)
        self.run = TrainingRun(self.training_config, splits=splits)
        self._open_writer()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.cleanup()
        self.setup(new_config)
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
            layout.best_metric(config.select): scheduled.best_value,
        }
        for name, value in scheduled.validation.items():
            result[layout.validation_metric(name)] = value
        for tag, value in result.items():
            if tag != layout.ITERATION:  # the x axis of every curve, not a curve of its own
                self.writer.add_scalar(tag, value, global_step=self.run.iteration)
        done = self.run.iteration >= config.iterations
        if done:
            self._write_projector()
        self.writer.flush()
        result["done"] = done
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        directory = Path(checkpoint_dir)
        self.run.save(directory / layout.CHECKPOINT_FILE)

    def load_checkpoint(self, checkpoint: str | dict[str, Any]) -> None:
        if isinstance(checkpoint, dict):
            raise TypeError("MetricLearningTrainable checkpoints are directories, not dicts")
        self.run.load_state_dict(read_state(Path(checkpoint) / layout.CHECKPOINT_FILE))

    def cleanup(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
            self.writer = None

    # ----------------------------------------------------------------- internals

    def _failed_result(self, reason: str) -> dict[str, Any]:
        """The final result of a trial that failed for its own configuration."""
        select = self.training_config.select
        worst = failed_value(select)
        return {
            layout.ITERATION: self.run.iteration,
            layout.best_metric(select): worst,
            layout.validation_metric(select): worst,
            layout.TRIAL_FAILED: " ".join(reason.split()) or "failed",
            "done": True,
        }

    def _open_writer(self) -> None:
        self.writer = SummaryWriter(log_dir=os.path.join(self.logdir, layout.TENSORBOARD_DIR))
        hparam_values = {
            name: value if isinstance(value, (int, float, str, bool)) else str(value)
            for name, value in self.training_config.to_dict().items()
        }
        placeholders = {tag: 0.0 for tag in layout.VALIDATION_METRICS}
        for summary in hparams(hparam_values, placeholders):
            self.writer.file_writer.add_summary(summary)

    def _write_projector(self) -> None:
        embeddings, labels = self.run.embed("val")
        names = self.run.splits.class_names
        metadata = [names[i] if names else str(i) for i in labels.tolist()]
        self.writer.add_embedding(
            embeddings, metadata=metadata, global_step=self.run.iteration, tag="val/embedding"
        )

    def _maybe_inject_divergence(self) -> None:
        listed = os.environ.get(DIVERGE_TRIALS_ENV)
        if not listed:
            return
        parts = Path(self.logdir).name.split("_")
        number = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
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
