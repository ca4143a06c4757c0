"""The Ray Tune trainable driven without Tune: metrics, checkpoints, TensorBoard output (the real
Tune run that pauses and resumes trials is ``tests/e2e/test_trainable_in_tune.py``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from outside_tune import make_trainable

from repmet.data import LabeledDataset
from repmet.study_folder import layout
from repmet.study_folder.layout import CHECKPOINT_FILE
from trainables import metric_learning

SMALL = {"loss": "repmet-v2", "m": 4, "d": 4, "k": 2, "iterations": 20, "eval_every": 5}


class _ForbiddenSplit(LabeledDataset):
    """Stands in for the test split: any access fails the test."""

    def __getattribute__(self, name: str):
        if name.startswith("__"):
            return object.__getattribute__(self, name)
        raise AssertionError(f"the trainable read the test split ({name})")

    def __len__(self) -> int:
        raise AssertionError("the trainable read the test split (len)")


@pytest.fixture
def no_test_split(monkeypatch, digits):
    guarded = dataclasses.replace(digits, test=_ForbiddenSplit())
    monkeypatch.setattr(metric_learning, "load_splits", lambda config, cached: guarded)


def test_step_reports_every_metric_and_never_reads_test(no_test_split, tmp_path) -> None:
    trainable = make_trainable(SMALL, tmp_path)
    result = trainable.train()
    assert set(layout.all_step_metrics()) <= set(result)
    assert result[layout.ITERATION] == 5
    assert not result["done"]
    for rule in ("simple", "magnet", "repmet", "unsupervised"):
        tag = f"val/error_{rule}"
        assert 0.0 <= result[tag] <= 1.0
    while not result["done"]:
        result = trainable.train()
    assert result[layout.ITERATION] == 20
    trainable.stop()


def test_checkpoint_restores_identical_continuation(tmp_path) -> None:
    first = make_trainable(SMALL, tmp_path / "a")
    first.train()
    checkpoint = first.save(str(tmp_path / "ckpt"))
    expected = [first.train()[layout.TRAIN_LOSS] for _ in range(2)]

    second = make_trainable(SMALL, tmp_path / "b")
    second.restore(checkpoint)
    assert second.run.iteration == 5
    assert [second.train()[layout.TRAIN_LOSS] for _ in range(2)] == expected
    saved = torch.load(tmp_path / "ckpt" / CHECKPOINT_FILE, weights_only=True)
    assert saved["iteration"] == 5
    assert saved["config"]["loss"] == "repmet-v2"
    first.stop()
    second.stop()


def test_unknown_config_key_is_rejected(tmp_path) -> None:
    from repmet.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown configuration fields: alhpa"):
        make_trainable({**SMALL, "alhpa": 1.0}, tmp_path)
