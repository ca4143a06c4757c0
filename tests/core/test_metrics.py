"""The metric catalogue (``repmet.metrics``): every entry is checked through the same tests (the
plugin metric that reaches every place a metric is shown is ``tests/e2e/test_plugins.py``)."""

from __future__ import annotations

import math

import pytest
import torch

from repmet.measures import FewShotSettings, Reference, SplitData
from repmet.metrics import (
    METRICS,
    all_metrics,
    metric,
    metric_of_key,
    metrics_for,
    metrics_of,
)


def _toy_split(separated: bool) -> SplitData:
    """Three classes of 12 points in 4-d: well apart, or all at one blob."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(12)
    centres = torch.eye(3, 4) * (10.0 if separated else 0.0)
    embeddings = centres[labels] + 0.1 * torch.randn(36, 4, generator=generator)
    reference = Reference(
        centroids=torch.eye(3, 4) * 10.0, classes=torch.arange(3), variance=0.5, l_nearest=3
    )
    few_shot = FewShotSettings(
        ways=2, queries=3, episodes=20, seed=0, modes=2, variance=0.5, l_nearest=128
    )
    return SplitData(embeddings, labels, reference=reference, seed=0, few_shot=few_shot)


def test_the_catalogue_lists_the_metrics_in_table_order() -> None:
    few_shot = [f"fewshot_{s}shot_{r}" for s in (1, 5) for r in ("simple", "magnet", "repmet")]
    assert [m.name for m in all_metrics()] == [
        "error_simple", "error_magnet", "error_repmet", "error_unsupervised",
        "p_at_1", "r_precision", "map_at_r", "nmi", "ami", *few_shot,
    ]  # fmt: skip
    assert [m.name for m in metrics_for(seen=True)] == [m.name for m in all_metrics()][:9]
    unseen = [m.name for m in metrics_for(seen=False)]
    assert unseen == ["error_unsupervised", "p_at_1", "r_precision", "map_at_r", "nmi", "ami"] + (
        few_shot
    )
    assert [m.name for m in metrics_of("error")] == [m.name for m in all_metrics()][:4]
    assert metric_of_key("val/best/map_at_r") is metric("map_at_r")
    assert metric_of_key("val/nmi") is metric("nmi")
    assert metric_of_key("train/loss") is None


@pytest.mark.parametrize("name", METRICS.in_order())
def test_every_metric_is_perfect_on_separated_classes_and_no_worse_than_its_worst(name) -> None:
    entry = metric(name)
    assert entry.validation_key == f"val/{name}" and entry.best_key == f"val/best/{name}"
    perfect = entry.compute(_toy_split(separated=True))
    blob = entry.compute(_toy_split(separated=False))
    best = 0.0 if entry.lower_is_better else 1.0
    assert perfect == pytest.approx(best, abs=1e-9)
    for value in (perfect, blob):
        assert math.isfinite(value) and entry.at_least_as_good(value, entry.worst)
    assert entry.at_least_as_good(perfect, blob) and not entry.at_least_as_good(entry.worst, blob)
    assert entry.best_of([perfect, blob, entry.worst]) == perfect


def test_a_split_computes_what_its_metrics_share_once(monkeypatch) -> None:
    from repmet import measures

    calls = []
    original = measures.unsupervised_clusters

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(measures, "unsupervised_clusters", counting)
    split = _toy_split(separated=True)
    values = split.measure(all_metrics())
    assert list(values) == METRICS.in_order() and len(calls) == 1
    intervals = split.intervals(all_metrics())
    assert set(intervals) == {m.name for m in metrics_of("few-shot")}
    assert all(value == 0.0 for value in intervals.values())  # every episode is solved
    assert _toy_split(separated=True).measure([metric("map_at_r")]) == {"map_at_r": 1.0}
    assert len(calls) == 1  # a metric not asked for costs nothing


def test_k_means_metrics_are_measured_every_kmeans_every_validations_and_at_the_last(digits):
    from repmet.config import TrainingConfig
    from repmet.schedule import steps
    from repmet.training import TrainingRun

    expensive = {m.name for m in all_metrics() if m.cost == "k-means"}
    assert expensive == {"error_unsupervised", "nmi", "ami"}
    config = TrainingConfig(loss="repmet-v2", iterations=25, eval_every=5, kmeans_every=2)
    measured = [set(step.validation) for step in steps(TrainingRun(config, splits=digits))]
    every = {m.name for m in metrics_for(seen=True)}
    assert measured == [every - expensive, every, every - expensive, every, every]
    selected = config.replace(select="ami")
    measured = [set(step.validation) for step in steps(TrainingRun(selected, splits=digits))]
    assert measured[0] == (every - expensive) | {"ami"} and measured[-1] == every
