"""Unseen classes end to end in the core: a class-disjoint run never reads a validation or test
image while it trains (cluster refreshes included), the search never reads test, every trial and
repeat draws the study's recorded episodes, and the oracles of exact class codes and of random
embeddings hold for the metrics themselves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from repmet.config import TrainingConfig
from repmet.data import LabeledDataset
from repmet.episodes import Episodes
from repmet.errors import ConfigError
from repmet.measures import FewShotSettings, SplitData, write_episodes
from repmet.metrics import metric, metrics_of
from repmet.protocols import CLASS_DISJOINT
from repmet.training import TrainingRun, load_splits

DISJOINT = {"dataset": "glyphs", "protocol": CLASS_DISJOINT, "m": 6, "d": 4, "k": 2}


class _ForbiddenSplit(LabeledDataset):
    """Stands in for a split of unseen classes: its labels can be read, its images cannot."""

    def __init__(self, labels: torch.Tensor, name: str) -> None:
        self.labels = labels
        self.name = name

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        raise AssertionError(f"an image of the {self.name} split was read")

    def evaluation_view(self) -> LabeledDataset:
        return self

    def for_run(self, device: torch.device, *, threads: int = 1) -> LabeledDataset:
        return self


@pytest.mark.parametrize("loss", ["magnet", "repmet-v2", "softmax"])
def test_training_and_refreshes_never_read_an_unseen_class(loss: str) -> None:
    config = TrainingConfig(loss=loss, refresh_every=2, iterations=6, **DISJOINT)
    splits = load_splits(config)
    guarded = dataclasses.replace(
        splits,
        val=_ForbiddenSplit(splits.val.labels, "validation"),
        test=_ForbiddenSplit(splits.test.labels, "test"),
    )
    run = TrainingRun(config, splits=guarded)
    run.train(6)  # three refreshes of the index, on training images only
    assert run.index.num_classes == splits.num_classes == len(splits.split_classes["train"])
    search = TrainingRun(config, splits=dataclasses.replace(guarded, val=splits.val))
    search.train(2)
    values = search.measure("val").metrics["val"]  # what a search measures: never test
    assert "map_at_r" in values and "error_simple" not in values
    assert {m.name for m in metrics_of("few-shot")} <= set(values)


def test_class_disjoint_runs_select_by_map_at_r_and_refuse_a_closed_set_error() -> None:
    assert TrainingConfig(**DISJOINT).select == "map_at_r"
    assert TrainingConfig(dataset="glyphs").select == "error_simple"
    with pytest.raises(ConfigError, match="select = 'error_simple' is not measured on the valid"):
        TrainingConfig(select="error_simple", **DISJOINT)
    with pytest.raises(ConfigError, match="select = 'fewshot_5shot_simple' is not measured"):
        TrainingConfig(dataset="digits", select="fewshot_5shot_simple")


def test_every_loss_trial_and_repeat_draws_the_episodes_the_study_recorded(tmp_path: Path) -> None:
    base = TrainingConfig(few_shot_ways=3, few_shot_queries=5, few_shot_val_episodes=50, **DISJOINT)
    splits = load_splits(base)
    labels = {"val": splits.val.labels, "test": splits.test.labels}
    written = write_episodes(base, labels, tmp_path)
    assert sorted(p.name for p in written) == [
        "test_1shot.pt", "test_5shot.pt", "val_1shot.pt", "val_5shot.pt",
    ]  # fmt: skip
    for loss, seed in (("magnet", 1), ("repmet-v2", 7), ("softmax", 3)):
        run = TrainingRun(base.replace(loss=loss, seed=seed), splits=splits)
        for split, split_labels in labels.items():
            for shots in (1, 5):
                drawn = run.few_shot_settings(split, variance=1.0).draw(split_labels, shots)
                assert drawn == Episodes.load(tmp_path / f"{split}_{shots}shot.pt")
    assert Episodes.load(tmp_path / "test_5shot.pt").count == base.few_shot_episodes == 1000
    assert Episodes.load(tmp_path / "val_5shot.pt").count == 50


def _unseen_split(embeddings: torch.Tensor, labels: torch.Tensor) -> SplitData:
    settings = FewShotSettings(
        ways=5, queries=5, episodes=400, seed=0, modes=3, variance=0.5, l_nearest=128
    )
    return SplitData(embeddings, labels, reference=None, seed=0, few_shot=settings)


def test_exact_class_codes_give_accuracy_one_and_map_at_r_one() -> None:
    labels = torch.arange(12).repeat_interleave(10)
    split = _unseen_split(torch.eye(12)[labels] * 3.0, labels)
    wanted = [*metrics_of("few-shot"), metric("map_at_r"), metric("p_at_1")]
    assert split.measure(wanted) == dict.fromkeys((m.name for m in wanted), 1.0)


def test_random_embeddings_give_about_one_in_n() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(12).repeat_interleave(10)
    split = _unseen_split(torch.randn(120, 16, generator=generator), labels)
    values = split.measure(metrics_of("few-shot"))
    intervals = split.intervals(metrics_of("few-shot"))
    for name, value in values.items():
        # 1 / N within 4 of the episodes' own 95% half-widths (about 2 standard errors each)
        assert abs(value - 1 / 5) < 4 * intervals[name], name


