"""Measuring one embedded split by the metrics of :mod:`repmet.metrics`.

:class:`SplitData` holds a split's embeddings and labels with what its metrics are measured
against, and computes each piece that several metrics share once, on first use: the three
supervised rules' predictions (one distance pass), the retrieval metrics (one nearest-neighbour
pass), the k-means clusters (which the unsupervised error, NMI and AMI all read). A metric that is
not asked for costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from torch import Tensor

from repmet.errors import ArgumentError
from repmet.evaluation import (
    UNSUPERVISED_RESTARTS,
    assignment_accuracy,
    supervised_error_rates,
    unsupervised_clusters,
)
from repmet.metrics import Metric
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


class SplitData:
    """One embedded split, measured lazily.

    Args:
        embeddings: ``[N, E]``.
        labels: ``[N]``.
        reference: what the supervised errors are measured against; None where the split's
            classes have no centroids (asking for a supervised error is then an error).
        seed: seeds the k-means of the unsupervised clusters.
        restarts: k-means restarts of the unsupervised clusters (the best inertia is kept).
    """

    def __init__(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        reference: Reference | None,
        seed: int,
        restarts: int = UNSUPERVISED_RESTARTS,
    ) -> None:
        self.embeddings = embeddings
        self.labels = labels
        self.reference = reference
        self.seed = seed
        self.restarts = restarts

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

    def measure(self, metrics: Iterable[Metric]) -> dict[str, float]:
        """``{name: value}`` of each metric, in the order given."""
        return {m.name: float(m.compute(self)) for m in metrics}
