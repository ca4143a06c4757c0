"""The trainable driven by a test directly, without Tune."""

from __future__ import annotations

from pathlib import Path

from trainables import MetricLearningTrainable


def make_trainable(config: dict, tmp_path: Path) -> MetricLearningTrainable:
    """A trainable outside Tune; its log folder goes under ``tmp_path``, not the home folder."""
    from ray.tune.trainable import trainable as trainable_module

    tmp_path.mkdir(parents=True, exist_ok=True)
    previous = trainable_module.DEFAULT_STORAGE_PATH
    trainable_module.DEFAULT_STORAGE_PATH = str(tmp_path)
    try:
        return MetricLearningTrainable(config=dict(config))
    finally:
        trainable_module.DEFAULT_STORAGE_PATH = previous
