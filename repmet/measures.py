"""Measuring one embedded split by the metrics of :mod:`repmet.metrics`.

:class:`SplitData` holds a split's embeddings and labels with what its metrics are measured
against, and computes each piece that several metrics share once, on first use: the three
supervised rules' predictions (one distance pass), the retrieval metrics (one nearest-neighbour
pass), the k-means clusters (which the unsupervised error, NMI and AMI all read), the few-shot
episodes of each shot count (which the three rules' accuracies all read). A metric that is not
asked for costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from torch import Tensor

from repmet.config import TrainingConfig
from repmet.episodes import EpisodeAccuracy, Episodes, draw_episodes, episode_accuracies
from repmet.errors import ArgumentError
from repmet.evaluation import (
    UNSUPERVISED_RESTARTS,
    assignment_accuracy,
    supervised_error_rates,
    unsupervised_clusters,
)
from repmet.metrics import Metric, metrics_of
from repmet.retrieval import clustering_metrics, retrieval_metrics


@dataclass(frozen=True, kw_only=True)
class Reference:
    """What the supervised rules measure a split against (spec: "Centroids for evaluation").

    Attributes:
        centroids: ``[J, E]`` centroids or representatives.
        classes: ``[J]`` class of each.
        variance: sigma^2 of the Magnet and RepMet rules.
        l_nearest: L of the Magnet rule.
    """

    centroids: Tensor
    classes: Tensor
    variance: float
    l_nearest: int


@dataclass(frozen=True, kw_only=True)
class FewShotSettings:
    """How a split's few-shot episodes are drawn and scored (spec: "Unseen classes").

    Attributes:
        ways: N classes per episode.
        queries: Q query examples per class.
        episodes: how many episodes of each shot count.
        seed: seeds the episode draw: the same split and seed give the same episodes in every
            trial, loss and repeat.
        modes: K, the representatives per class of the run (min(K, S) modes per class).
        variance: sigma^2 of the Magnet and RepMet rules.
        l_nearest: L of the Magnet rule.
    """

    ways: int
    queries: int
    episodes: int
    seed: int
    modes: int
    variance: float
    l_nearest: int

    @classmethod
    def of(cls, config: TrainingConfig, split: str, *, variance: float) -> FewShotSettings:
        """A run's settings for an unseen-class split: the test split gets
        ``few_shot_episodes``, validation ``few_shot_val_episodes``; the draw is seeded by the
        data split's seed, so every loss, trial and repeat of a study gets the same episodes."""
        return cls(
            ways=config.few_shot_ways,
            queries=config.few_shot_queries,
            episodes=config.few_shot_episodes if split == "test" else config.few_shot_val_episodes,
            seed=config.split_seed,
            modes=config.k,
            variance=variance,
            l_nearest=config.l_nearest,
        )

    def draw(self, labels: Tensor, shots: int) -> Episodes:
        """The episodes of S = ``shots`` on a split with ``labels``."""
        return draw_episodes(
            labels, ways=self.ways, shots=shots, queries=self.queries, count=self.episodes,
            seed=self.seed,
        )  # fmt: skip


class SplitData:
    """One embedded split, measured lazily.

    Args:
        embeddings: ``[N, E]``.
        labels: ``[N]``.
        reference: what the supervised errors are measured against; None where the split's
            classes have no centroids (asking for a supervised error is then an error).
        seed: seeds the k-means of the unsupervised clusters.
        restarts: k-means restarts of the unsupervised clusters (the best inertia is kept).
        few_shot: how few-shot episodes are drawn and scored; None where the split has none
            (asking for a few-shot accuracy is then an error).
    """

    def __init__(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        reference: Reference | None,
        seed: int,
        restarts: int = UNSUPERVISED_RESTARTS,
        few_shot: FewShotSettings | None = None,
    ) -> None:
        self.embeddings = embeddings
        self.labels = labels
        self.reference = reference
        self.seed = seed
        self.restarts = restarts
        self.few_shot_settings = few_shot
        self._few_shot: dict[int, dict[str, EpisodeAccuracy]] = {}

    @cached_property
    def supervised_errors(self) -> dict[str, float]:
        """``{"simple": e, "magnet": e, "repmet": e}``: the three rules of the spec."""
        if self.reference is None:
            raise ArgumentError("this split has no centroids to measure supervised errors against")
        reference = self.reference
        return supervised_error_rates(
            self.embeddings,
            self.labels,
            reference.centroids,
            reference.classes,
            variance=reference.variance,
            L=reference.l_nearest,
        )

    @cached_property
    def clusters(self) -> Tensor:
        """``[N]`` k-means clusters with C = the split's number of classes."""
        return unsupervised_clusters(
            self.embeddings, self.labels, seed=self.seed, restarts=self.restarts
        )

    @cached_property
    def unsupervised_error(self) -> float:
        return 1.0 - assignment_accuracy(self.clusters, self.labels)

    @cached_property
    def retrieval(self) -> dict[str, float]:
        """P@1, R-precision and MAP@R (:func:`repmet.retrieval.retrieval_metrics`)."""
        return retrieval_metrics(self.embeddings, self.labels)

    @cached_property
    def clustering(self) -> dict[str, float]:
        """NMI and AMI of :attr:`clusters` (:func:`repmet.retrieval.clustering_metrics`)."""
        return clustering_metrics(self.clusters, self.labels)

    def episodes(self, shots: int) -> Episodes:
        """The split's S-shot episodes."""
        if self.few_shot_settings is None:
            raise ArgumentError("this split has no few-shot settings to draw episodes with")
        return self.few_shot_settings.draw(self.labels, shots)

    def few_shot(self, shots: int) -> dict[str, EpisodeAccuracy]:
        """Per rule (``simple``, ``magnet``, ``repmet``), the accuracy over the split's S-shot
        episodes (:func:`repmet.episodes.episode_accuracies`), computed once per shot count."""
        if shots not in self._few_shot:
            settings = self.few_shot_settings
            assert settings is not None  # episodes() has refused otherwise
            self._few_shot[shots] = episode_accuracies(
                self.embeddings, self.episodes(shots), modes=settings.modes,
                variance=settings.variance, l_nearest=settings.l_nearest, seed=self.seed,
            )  # fmt: skip
        return self._few_shot[shots]

    def measure(self, metrics: Iterable[Metric]) -> dict[str, float]:
        """``{name: value}`` of each metric, in the order given."""
        return {m.name: float(m.compute(self)) for m in metrics}

    def intervals(self, metrics: Iterable[Metric]) -> dict[str, float]:
        """``{name: half-width}`` of the 95% interval of each metric that has one."""
        return {m.name: float(m.interval(self)) for m in metrics if m.interval is not None}


def write_episodes(
    config: TrainingConfig, splits: dict[str, Tensor], folder: Path
) -> list[Path]:
    """Writes the few-shot episodes of each unseen-class split (``{split: labels}``) and shot
    count of the metric catalogue to ``folder`` as ``<split>_<S>shot.pt``: the record of the
    episodes every trial of a study draws (the same, from the same seed); returns the paths."""
    shots = sorted({m.shots for m in metrics_of("few-shot") if m.shots is not None})
    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for split, labels in splits.items():
        settings = FewShotSettings.of(config, split, variance=1.0)
        for count in shots:
            path = folder / f"{split}_{count}shot.pt"
            settings.draw(labels, count).save(path)
            written.append(path)
    return written
