"""The per-class cluster index and the per-example loss table (spec: "The cluster index and the
batch sampler").

Layout everywhere: cluster (or representative) j belongs to class ``j // k``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from repmet.errors import ArgumentError
from repmet.geometry import pairwise_squared_distances
from repmet.kmeans import kmeans, nearest_in_group


class ClusterIndex:
    """Per-class cluster index (spec: "The cluster index"): cluster j belongs to class j // k.

    Attributes:
        num_classes: C.
        k: clusters per class; J = C * k.
        centroids: ``[J, E]`` float32.
        centroid_classes: ``[J]`` long, ``arange(J) // k``.
        assignments: ``[N]`` long, the cluster of each training example (always one of its class).
        member_order: ``[N]`` long, example indices sorted by cluster (stable), so cluster j's
            members are ``member_order[member_offsets[j] : member_offsets[j] + sizes[j]]``.
        member_offsets: ``[J]`` long, where each cluster's members start in ``member_order``.
    """

    def __init__(self, centroids: Tensor, assignments: Tensor, *, num_classes: int, k: int) -> None:
        expected_rows = num_classes * k
        if k < 1 or num_classes < 1 or centroids.dim() != 2 or centroids.shape[0] != expected_rows:
            raise ArgumentError(
                f"a cluster index needs [num_classes * k, E] centroids; got shape "
                f"{tuple(centroids.shape)} for num_classes = {num_classes}, k = {k}."
            )
        self.num_classes = num_classes
        self.k = k
        self.centroids = centroids.detach().to(torch.float32).clone()
        self.centroid_classes = torch.arange(num_classes * k) // k
        self.assignments = assignments.detach().to(torch.long).clone()
        if (
            self.assignments.numel()
            and not 0
            <= int(self.assignments.min())
            <= int(self.assignments.max())
            < self.num_clusters
        ):
            raise ArgumentError(f"cluster assignments must lie in 0..{self.num_clusters - 1}.")
        self.member_order = torch.argsort(self.assignments, stable=True)
        self._sizes = torch.bincount(self.assignments, minlength=self.num_clusters)
        self.member_offsets = torch.cumsum(self._sizes, 0) - self._sizes
        #: sum_n d(x_n, c_{a(n)}) when the index was fitted by k-means, else None.
        self.inertia: float | None = None

    @property
    def num_clusters(self) -> int:
        """J = C * k."""
        return self.num_classes * self.k

    @classmethod
    def fit(
        cls,
        embeddings: Tensor,
        labels: Tensor,
        *,
        num_classes: int,
        k: int,
        generator: torch.Generator,
        restarts: int = 1,
    ) -> ClusterIndex:
        """Magnet-style index: k-means with k clusters on every class's embeddings (each class
        keeping its best of ``restarts`` runs). ``inertia`` holds the sum of squared distances."""
        result = kmeans(
            embeddings,
            k,
            groups=labels,
            num_groups=num_classes,
            generator=generator,
            restarts=restarts,
        )
        index = cls(result.centroids, result.assignments, num_classes=num_classes, k=k)
        index.inertia = float(result.inertia.sum())
        return index

    @classmethod
    def from_representatives(
        cls, embeddings: Tensor, labels: Tensor, representatives: Tensor, *, k: int
    ) -> ClusterIndex:
        """RepMet-style index: each example joins its nearest own-class representative; the
        centroids are a detached copy of the representatives (never written back to them)."""
        if k < 1 or representatives.shape[0] % k:
            raise ArgumentError(
                f"k = {k} does not divide the number of representatives "
                f"({representatives.shape[0]})."
            )
        reps = representatives.detach().to(embeddings.dtype)
        labels = labels.long()
        # Centred on each class's mean representative: only the rounding depends on the origin.
        origins = reps.reshape(-1, k, reps.shape[1]).mean(dim=1)
        assignments = nearest_in_group(
            embeddings.detach() - origins[labels], labels, reps - origins.repeat_interleave(k, 0), k
        )
        return cls(reps, assignments, num_classes=representatives.shape[0] // k, k=k)

    def cluster_sizes(self) -> Tensor:
        """``[J]`` long: number of training examples in each cluster."""
        return self._sizes.clone()

    def state_dict(self) -> dict[str, Tensor | int]:
        return {
            "num_classes": self.num_classes,
            "k": self.k,
            "centroids": self.centroids.clone(),
            "assignments": self.assignments.clone(),
        }

    def load_state_dict(self, state: dict[str, Tensor | int]) -> None:
        restored = type(self).from_state_dict(state)
        self.__dict__.update(restored.__dict__)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor | int]) -> ClusterIndex:
        return cls(
            torch.as_tensor(state["centroids"]),
            torch.as_tensor(state["assignments"]),
            num_classes=int(state["num_classes"]),
            k=int(state["k"]),
        )


class LossTable:
    """Per-example loss table (spec): NaN = never measured; 0 is a measured loss.

    Attributes:
        losses: ``[N]`` float32, the last stored l_n of every training example (NaN if never seen).
    """

    def __init__(self, num_examples: int) -> None:
        if num_examples < 1:
            raise ArgumentError(
                f"num_examples = {num_examples} is invalid; a loss table needs at least 1 example."
            )
        self.losses = torch.full((num_examples,), torch.nan, dtype=torch.float32)
        self._running: _RunningClusterSums | None = None

    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Stores the per-example losses l_n of one batch.

        An index that occurs several times in the batch (a cluster smaller than D is sampled with
        replacement) stores the mean of its rows' losses, so the result does not depend on the
        order of the rows.

        Raises:
            ValueError: a negative or non-finite loss (the losses are hinges, so >= 0).
        """
        values = losses.detach().reshape(-1).to(torch.float32).cpu()
        indices = indices.reshape(-1).long().cpu()
        if values.shape != indices.shape:
            raise ValueError(f"got {indices.numel()} indices but {values.numel()} losses.")
        if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
            raise ValueError("per-example losses must be finite and non-negative.")
        unique, inverse = torch.unique(indices, return_inverse=True)
        sums = torch.zeros(unique.shape[0], dtype=torch.float64).index_add_(
            0, inverse, values.double()
        )
        counts = torch.bincount(inverse, minlength=unique.shape[0])
        self.losses[unique] = (sums / counts).float()
        if self._running is not None:
            self._running.refresh(self.losses, unique)

    def cluster_losses(self, assignments: Tensor, num_clusters: int) -> Tensor:
        """``[J]`` float32: each cluster's loss, the mean of its members' measured losses.

        A cluster with no measured member (including an empty cluster) gets the mean of the
        clusters that have one, or 1 while no cluster has one (uniform seeding); the sampler
        gives empty clusters zero weight itself.
        """
        return _cluster_means(*_cluster_sums(self.losses, assignments, num_clusters))

    def cluster_losses_of(self, index: ClusterIndex) -> Tensor:
        """:meth:`cluster_losses` of ``index``'s clusters, bit for bit, from per-cluster sums that
        :meth:`update` keeps current: a batch costs the members of the clusters it touched, not
        the whole table (the sampler reads this at every batch)."""
        running = self._running
        if running is None or not running.follows(index):
            running = self._running = _RunningClusterSums(self.losses, index)
        return _cluster_means(running.sums, running.counts)

    def state_dict(self) -> dict[str, Tensor]:
        return {"losses": self.losses.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        losses = state["losses"]
        if losses.shape != self.losses.shape:
            raise ValueError(
                f"loss table state has {losses.numel()} examples, expected {self.losses.numel()}."
            )
        self.losses = losses.to(torch.float32).clone()
        self._running = None


def _cluster_sums(losses: Tensor, assignments: Tensor, num_clusters: int) -> tuple[Tensor, Tensor]:
    """``[num_clusters]`` float64 sums and long counts of the measured ``losses`` of each
    cluster. ``index_add_`` adds a cluster's members in the order of ``losses``, so a cluster's
    sum depends on its own members only and is the same whichever other entries are passed."""
    measured = ~torch.isnan(losses)
    clusters = assignments[measured]
    sums = torch.zeros(num_clusters, dtype=torch.float64).index_add_(
        0, clusters, losses[measured].double()
    )
    return sums, torch.bincount(clusters, minlength=num_clusters)


def _cluster_means(sums: Tensor, counts: Tensor) -> Tensor:
    """:meth:`LossTable.cluster_losses` from the clusters' float64 sums and counts."""
    has_loss = counts > 0
    cluster_mean = sums / counts.clamp_min(1)
    fill = cluster_mean[has_loss].mean() if bool(has_loss.any()) else torch.tensor(1.0)
    return torch.where(has_loss, cluster_mean, fill).float()


class _RunningClusterSums:
    """The per-cluster loss sums and counts of one :class:`ClusterIndex`, kept current batch by
    batch. A touched cluster's sum is recomputed from its members in example order (the order
    of :func:`_cluster_sums`), not adjusted by the difference of the old and new loss: the result
    is then exactly the full recomputation's, so the seeds drawn and resume stay bit-exact."""

    def __init__(self, losses: Tensor, index: ClusterIndex) -> None:
        self.index = index
        self.assignments = index.assignments
        self.sums, self.counts = _cluster_sums(losses, index.assignments, index.num_clusters)

    def follows(self, index: ClusterIndex) -> bool:
        """Whether these sums are ``index``'s (a refresh builds a new index; a restored index
        gets new assignments)."""
        return index is self.index and index.assignments is self.assignments

    def refresh(self, losses: Tensor, examples: Tensor) -> None:
        """Recomputes the clusters of ``examples`` (whose losses changed) from their members."""
        index = self.index
        clusters = torch.unique(index.assignments[examples])
        sizes = index.cluster_sizes()[clusters]
        # Members of the touched clusters, cluster after cluster, each in example order
        # (``member_order`` is a stable sort by cluster).
        shifts = index.member_offsets[clusters] - (torch.cumsum(sizes, 0) - sizes)
        members = index.member_order[
            torch.arange(int(sizes.sum())) + shifts.repeat_interleave(sizes)
        ]
        slots = torch.arange(clusters.shape[0]).repeat_interleave(sizes)
        self.sums[clusters], self.counts[clusters] = _cluster_sums(
            losses[members], slots, clusters.shape[0]
        )


#: k-means runs per class for evaluation centroids; each class keeps its run of lowest inertia, so
#: that an evaluation does not depend on one seeding.
EVALUATION_RESTARTS = 10


@dataclass(frozen=True)
class EvaluationCentroids:
    """What evaluation measures a split against (spec: "Centroids for evaluation").

    Attributes:
        centroids: ``[J, E]``.
        classes: ``[J]`` class of each centroid.
        fitted_variance: sigma^2 = sum_n d(x_n, c_{a(n)}) / (N - 1) of the training embeddings
            around k-means centroids (the Magnet paper's eq. 5 over the whole split), for losses
            without a variance of their own; None for learned representatives.
    """

    centroids: Tensor
    classes: Tensor
    fitted_variance: float | None = None


def learned_centre_reference(
    embeddings: Tensor, labels: Tensor, centres: Tensor, classes: Tensor
) -> EvaluationCentroids:
    """A loss's learned centres (proxies, class weights) as evaluation centroids, with the variance
    fitted around them as around k-means centroids: sigma^2 = sum_n min_{j of y_n} d(x_n, c_j) /
    (N - 1) over the training embeddings (each example's nearest own-class centre)."""
    distances = pairwise_squared_distances(embeddings, centres)
    own = classes[None, :] == labels.long()[:, None]
    nearest_own = distances.masked_fill(~own, torch.inf).min(dim=1).values
    variance = float(nearest_own.double().sum()) / max(embeddings.shape[0] - 1, 1)
    return EvaluationCentroids(centres, classes, variance)


class ClusterSource(ABC):
    """Where a loss's clusters come from (the ``clusters`` field of its catalogue entry)."""

    #: Whether :meth:`evaluation_centroids` needs the training split's embeddings.
    needs_training_embeddings: bool

    @abstractmethod
    def index(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        loss: nn.Module,
        num_classes: int,
        k: int,
        generator: torch.Generator,
        initial: bool,
    ) -> ClusterIndex:
        """The cluster index of the current training embeddings (``initial``: at the start)."""

    @abstractmethod
    def centres(self, index: ClusterIndex, loss: nn.Module) -> Tensor:
        """``[J, E]`` positions by which the batch sampler finds impostor clusters."""

    @abstractmethod
    def evaluation_centroids(
        self,
        embeddings: Tensor | None,
        labels: Tensor,
        *,
        loss: nn.Module,
        num_classes: int,
        k: int,
        generator: torch.Generator,
    ) -> EvaluationCentroids:
        """What evaluation measures against."""


class KMeansClusters(ClusterSource):
    """Per-class k-means of the current training embeddings, at every refresh and for evaluation
    (Magnet; spec: "Centroids for evaluation")."""

    needs_training_embeddings = True

    def index(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        loss: nn.Module,
        num_classes: int,
        k: int,
        generator: torch.Generator,
        initial: bool,
    ) -> ClusterIndex:
        return ClusterIndex.fit(
            embeddings, labels, num_classes=num_classes, k=k, generator=generator
        )

    def centres(self, index: ClusterIndex, loss: nn.Module) -> Tensor:
        return index.centroids

    def evaluation_centroids(
        self,
        embeddings: Tensor | None,
        labels: Tensor,
        *,
        loss: nn.Module,
        num_classes: int,
        k: int,
        generator: torch.Generator,
    ) -> EvaluationCentroids:
        if embeddings is None:
            raise ArgumentError("k-means evaluation centroids need the training embeddings")
        index = ClusterIndex.fit(
            embeddings,
            labels,
            num_classes=num_classes,
            k=k,
            generator=generator,
            restarts=EVALUATION_RESTARTS,
        )
        assert index.inertia is not None
        variance = index.inertia / max(embeddings.shape[0] - 1, 1)
        return EvaluationCentroids(index.centroids, index.centroid_classes, variance)


class LearnedRepresentatives(ClusterSource):
    """Learned representatives: initialised from per-class k-means, then each example joins its
    nearest own-class representative; a refresh never overwrites them (spec: "Representatives")."""

    needs_training_embeddings = False

    def index(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        loss: nn.Module,
        num_classes: int,
        k: int,
        generator: torch.Generator,
        initial: bool,
    ) -> ClusterIndex:
        if initial:
            fitted = ClusterIndex.fit(
                embeddings, labels, num_classes=num_classes, k=k, generator=generator
            )
            loss.init_representatives(fitted.centroids.to(loss.representatives.device))
        return ClusterIndex.from_representatives(
            embeddings, labels, loss.representatives.detach().cpu(), k=k
        )

    def centres(self, index: ClusterIndex, loss: nn.Module) -> Tensor:
        return loss.representatives.detach().cpu()

    def evaluation_centroids(
        self,
        embeddings: Tensor | None,
        labels: Tensor,
        *,
        loss: nn.Module,
        num_classes: int,
        k: int,
        generator: torch.Generator,
    ) -> EvaluationCentroids:
        return EvaluationCentroids(
            loss.representatives.detach().float().cpu(), loss.representative_classes.cpu()
        )


#: The cluster source of each value of a catalogue entry's ``clusters``.
CLUSTER_SOURCES: dict[str, ClusterSource] = {
    "k-means": KMeansClusters(),
    "representatives": LearnedRepresentatives(),
}
