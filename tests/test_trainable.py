"""The Ray Tune trainable: metrics, checkpoints, TensorBoard output, and a real Tune run in which a
scheduler pauses trials and resumes them from their checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from repmet.data import LabeledDataset, load_dataset
from trainables import CHECKPOINT_FILE, MetricLearningTrainable, metric_learning, metrics

SMALL = {"loss": "repmet-v2", "m": 4, "d": 4, "k": 2, "iterations": 20, "eval_every": 5}


class _ForbiddenSplit(LabeledDataset):
    """Stands in for the test split: any access fails the test."""

    def __getattribute__(self, name: str):
        if name.startswith("__"):
            return object.__getattribute__(self, name)
        raise AssertionError(f"the trainable read the test split ({name})")

    def __len__(self) -> int:
        raise AssertionError("the trainable read the test split (len)")


@pytest.fixture(scope="module")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, log_to_driver=False, configure_logging=False)
    yield


@pytest.fixture
def no_test_split(monkeypatch):
    splits = load_dataset("digits")
    guarded = dataclasses.replace(splits, test=_ForbiddenSplit())
    monkeypatch.setattr(metric_learning, "cached_splits", lambda config: guarded)


def _trainable(config: dict, tmp_path: Path) -> MetricLearningTrainable:
    from ray.tune.logger import NoopLogger

    return MetricLearningTrainable(
        config=config, logger_creator=lambda cfg: NoopLogger(cfg, str(tmp_path))
    )


def test_step_reports_every_metric_and_never_reads_test(no_test_split, tmp_path) -> None:
    trainable = _trainable(SMALL, tmp_path)
    result = trainable.train()
    assert set(metrics.ALL) <= set(result)
    assert result[metrics.ITERATION] == 5
    assert not result["done"]
    for tag in metrics.VAL_ERRORS.values():
        assert 0.0 <= result[tag] <= 1.0
    while not result["done"]:
        result = trainable.train()
    assert result[metrics.ITERATION] == 20
    trainable.stop()


def test_checkpoint_restores_identical_continuation(tmp_path) -> None:
    first = _trainable(SMALL, tmp_path / "a")
    first.train()
    checkpoint = first.save(str(tmp_path / "ckpt"))
    expected = [first.train()[metrics.TRAIN_LOSS] for _ in range(2)]

    second = _trainable(SMALL, tmp_path / "b")
    second.restore(checkpoint)
    assert second.trial.iteration == 5
    assert [second.train()[metrics.TRAIN_LOSS] for _ in range(2)] == expected
    saved = torch.load(tmp_path / "ckpt" / CHECKPOINT_FILE, weights_only=True)
    assert saved["iteration"] == 5
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["loss"] == "repmet-v2"
    first.stop()
    second.stop()


def test_unknown_config_key_is_rejected(tmp_path) -> None:
    from repmet.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown configuration fields: alhpa"):
        _trainable({**SMALL, "alhpa": 1.0}, tmp_path)


def _event_tags(directory: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in directory.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


@pytest.mark.slow
def test_tune_run_pauses_and_resumes_trials_through_checkpoints(ray_session, tmp_path) -> None:
    from ray import tune
    from ray.tune.schedulers import HyperBandScheduler

    # Synchronous HyperBand pauses every trial at each milestone and resumes the survivors from
    # their checkpoints, which exercises save_checkpoint/load_checkpoint inside Tune.
    scheduler = HyperBandScheduler(
        time_attr="training_iteration",
        metric=metrics.SELECTION_METRIC,
        mode=metrics.SELECTION_MODE,
        max_t=4,
        reduction_factor=2,
    )
    tuner = tune.Tuner(
        tune.with_resources(MetricLearningTrainable, {"cpu": 1}),
        param_space={
            **SMALL,
            "iterations": 8,
            "eval_every": 2,
            "seed": tune.grid_search([0, 1, 2]),
        },
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=False),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path),
            name="pause-resume",
            verbose=0,
            sync_config=tune.SyncConfig(sync_artifacts=True),
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
        ),
    )
    results = tuner.fit()
    assert not results.errors
    assert len(results) == 3
    restored = [
        r
        for r in results
        if r.metrics_dataframe["iterations_since_restore"].iloc[-1]
        < r.metrics_dataframe["training_iteration"].iloc[-1]
    ]
    assert restored, "no trial was paused and resumed from a checkpoint"
    best = results.get_best_result(metric=metrics.SELECTION_METRIC, mode=metrics.SELECTION_MODE)
    assert best.metrics[metrics.ITERATION] == 8
    assert (Path(best.checkpoint.path) / CHECKPOINT_FILE).exists()
    tags = _event_tags(tmp_path / "pause-resume")
    assert {metrics.TRAIN_LOSS, metrics.VAL_ERROR_SIMPLE, metrics.TRAIN_BATCH_ACCURACY} <= tags
