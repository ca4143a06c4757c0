"""The Ray Tune trainable of the suite.

One parameterised class serves every loss: all losses share the same pipeline
(:class:`repmet.trial.Trial` builds the network, the loss module, the optimisers, the cluster index
and the sampler from ``config["loss"]``), so separate classes per loss family would only repeat it.

- ``setup`` turns the flat Tune config into a :class:`~repmet.config.TrialConfig` (unknown keys are
  an error) and builds the trial; data sets are cached per worker process, so with
  ``reuse_actors=True`` consecutive trials on a worker share one copy of the arrays.
- ``step`` trains ``eval_every`` iterations, evaluates on the validation split and returns the
  metrics of :mod:`repmet.study_format`. It never reads the test split.
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
from repmet.config import TrialConfig
from repmet.data import DatasetSplits
from repmet.trial import Trial, load_splits, read_state

#: Fault injection for resume tests: with both set, ``step`` raises once when the trial reaches
#: ``REPMET_FAIL_AT_ITERATION`` iterations, after creating the file named by
#: ``REPMET_FAIL_ONCE_FILE`` so that the retried or resumed trial goes through.
FAIL_AT_ITERATION_ENV = "REPMET_FAIL_AT_ITERATION"
FAIL_ONCE_FILE_ENV = "REPMET_FAIL_ONCE_FILE"

_data_cache: dict[tuple[Any, ...], DatasetSplits] = {}


class InjectedFailure(RuntimeError):
    """Raised by the fault injection hook; never raised in normal runs."""


def cached_splits(config: TrialConfig) -> DatasetSplits:
    """The data set of ``config``, loaded once per worker process."""
    key = config.data_key()
    if key not in _data_cache:
        _data_cache.clear()  # one data set at a time per worker is enough
        _data_cache[key] = load_splits(config)
    return _data_cache[key]


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
        self.trial_config = TrialConfig.from_dict(_absolute_data_root(dict(config)))
        self.trial = Trial(self.trial_config, splits=cached_splits(self.trial_config))
        self._open_writer()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.cleanup()
        self.setup(new_config)
        return True

    def step(self) -> dict[str, Any]:
        config = self.trial_config
        chunk = min(config.eval_every, config.iterations - self.trial.iteration)
        self._maybe_inject_failure(chunk)
        stats = self.trial.train(chunk)
        val_errors = self.trial.evaluate("val")["val"]
        result: dict[str, Any] = {
            layout.ITERATION: self.trial.iteration,
            layout.TRAIN_LOSS: stats.loss,
            layout.TRAIN_BATCH_ACCURACY: stats.batch_accuracy,
            layout.SECONDS_PER_ITERATION: stats.seconds_per_iteration,
            layout.EXAMPLES_PER_SECOND: stats.examples_per_second,
        }
        result.update({layout.VAL_ERRORS[kind]: error for kind, error in val_errors.items()})
        for tag in layout.ALL_METRICS:
            if tag == layout.ITERATION:  # the x axis of every curve, not a curve of its own
                continue
            self.writer.add_scalar(tag, result[tag], global_step=self.trial.iteration)
        done = self.trial.iteration >= config.iterations
        if done:
            self._write_projector()
        self.writer.flush()
        result["done"] = done
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        directory = Path(checkpoint_dir)
        self.trial.save(directory / layout.CHECKPOINT_FILE)

    def load_checkpoint(self, checkpoint: str | dict[str, Any]) -> None:
        if isinstance(checkpoint, dict):
            raise TypeError("MetricLearningTrainable checkpoints are directories, not dicts")
        self.trial.load_state_dict(read_state(Path(checkpoint) / layout.CHECKPOINT_FILE))

    def cleanup(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
            self.writer = None

    # ----------------------------------------------------------------- internals

    def _open_writer(self) -> None:
        self.writer = SummaryWriter(log_dir=os.path.join(self.logdir, layout.TENSORBOARD_DIR))
        hparam_values = {
            name: value if isinstance(value, (int, float, str, bool)) else str(value)
            for name, value in self.trial_config.to_dict().items()
        }
        placeholders = {tag: 0.0 for tag in layout.VAL_ERRORS.values()}
        for summary in hparams(hparam_values, placeholders):
            self.writer.file_writer.add_summary(summary)

    def _write_projector(self) -> None:
        embeddings, labels = self.trial.embed("val")
        names = self.trial.splits.class_names
        metadata = [names[i] if names else str(i) for i in labels.tolist()]
        self.writer.add_embedding(
            embeddings, metadata=metadata, global_step=self.trial.iteration, tag="val/embedding"
        )

    def _maybe_inject_failure(self, chunk: int) -> None:
        at = os.environ.get(FAIL_AT_ITERATION_ENV)
        marker = os.environ.get(FAIL_ONCE_FILE_ENV)
        if not at or not marker or Path(marker).exists():
            return
        if self.trial.iteration < int(at) <= self.trial.iteration + chunk:
            Path(marker).touch()
            raise InjectedFailure(f"injected failure before iteration {at}")
