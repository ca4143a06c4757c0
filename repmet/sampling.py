"""The loss-driven cluster batch sampler (spec: "The cluster index and the batch sampler";
Magnet paper section 3.3, "neighbourhood sampling"), and the uniform and class-balanced batches of
the softmax baseline and the field's losses.

A neighbourhood batch is M blocks of D rows: a seed cluster drawn in proportion to its loss, the
M - 1 nearest clusters of other classes (its impostors), and D examples from each. A
class-balanced batch is M blocks of D rows of M different classes. Everything is drawn from the
generator given to the sampler, so a fixed seed gives the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from repmet.clusters import ClusterIndex, LossTable
from repmet.errors import ArgumentError
from repmet.geometry import smallest_in_order


@dataclass(frozen=True)
class ClusterBatch:
    """One batch of training example indices.

    Attributes:
        indices: ``[M*D]`` long, training example indices, rows as M blocks of D.
        cluster_ids: ``[M*D]`` long, the global cluster j of each row's block; block 0 is the seed.
    """

    indices: Tensor
    cluster_ids: Tensor


def member_positions(sizes: Tensor, d: int, generator: torch.Generator) -> Tensor:
    """``[G, D]`` positions inside each of G member lists of ``sizes``: without replacement for
    lists of at least D members, with replacement for smaller ones (spec, batch step (3))."""
    uniform = torch.rand(sizes.shape[0], d, generator=generator)
    positions = torch.minimum((uniform * sizes[:, None]).long(), sizes[:, None] - 1)
    largest = int(sizes.max())
    if largest >= d:
        # The D smallest of i.i.d. uniform keys over a list's members are a uniformly random
        # D-subset; positions past a list's size get keys that never win.
        keys = torch.rand(sizes.shape[0], largest, generator=generator)
        keys.masked_fill_(torch.arange(largest) >= sizes[:, None], 2.0)
        distinct = keys.topk(d, dim=1, largest=False).indices
        positions = torch.where(sizes[:, None] >= d, distinct, positions)
    return positions


class ClusterBatchSampler:
    """Draws :class:`ClusterBatch` es of ``m`` clusters with ``d`` examples each.

    Args:
        m: clusters per batch (M >= 2: the seed and at least one impostor cluster).
        d: examples per cluster (D >= 1).
        generator: the only source of randomness.
    """

    def __init__(self, *, m: int, d: int, generator: torch.Generator) -> None:
        if m < 2:
            raise ArgumentError(f"m = {m} is invalid; m (clusters per batch) must be at least 2.")
        if d < 1:
            raise ArgumentError(f"d = {d} is invalid; d (examples per cluster) must be at least 1.")
        self.m = m
        self.d = d
        self.generator = generator

    def _seed_cluster(
        self, index: ClusterIndex, loss_table: LossTable, non_empty: Tensor
    ) -> Tensor:
        """Step (1): a cluster drawn with probability proportional to its loss (``[1]`` long)."""
        weights = loss_table.cluster_losses_of(index)
        weights = torch.where(non_empty, weights, 0.0)
        if not bool(weights.sum() > 0):
            # Every measured loss is 0 (all clusters solved): fall back to uniform seeding.
            weights = non_empty.to(torch.float32)
        return torch.multinomial(weights, 1, generator=self.generator)

    def _impostor_clusters(
        self, index: ClusterIndex, seed: Tensor, centers: Tensor, non_empty: Tensor
    ) -> Tensor:
        """Step (2): the M - 1 non-empty clusters of other classes nearest to the seed's center.

        A learned representative that no example is nearest to leaves its cluster empty, so a
        RepMet-style index can hold fewer non-empty impostor clusters than M - 1. The nearest ones
        are then taken again, in order, so that the batch keeps its M x D shape; a repeated block
        draws its D examples afresh.
        """
        distances = (centers - centers[seed]).pow(2).sum(-1)
        eligible = (index.centroid_classes != index.centroid_classes[seed]) & non_empty
        available = int(eligible.sum())
        if available == 0:
            raise ArgumentError(
                "the batch needs a non-empty cluster of another class than the "
                "seed's, but the index has none."
            )
        # Ties are broken by cluster index (a stable sort's order), so the choice is reproducible;
        # a top-k selection finds them without sorting all J distances.
        nearest = smallest_in_order(
            distances.masked_fill(~eligible, torch.inf)[None], min(self.m - 1, available)
        )[0]
        return nearest[torch.arange(self.m - 1) % available]

    def sample(
        self, index: ClusterIndex, loss_table: LossTable, centers: Tensor | None = None
    ) -> ClusterBatch:
        """Draws one batch.

        Args:
            index: the current cluster index.
            loss_table: per-example losses, giving the cluster losses that drive seeding.
            centers: ``[J, E]`` positions used to find impostors (the learned representatives
                for RepMet-style losses); default ``index.centroids``.
        """
        if centers is None:
            centers = index.centroids
        if centers.shape[0] != index.num_clusters:
            raise ArgumentError(
                f"centers has {centers.shape[0]} rows; the index has {index.num_clusters} clusters."
            )
        centers = centers.detach().cpu()
        sizes = index.cluster_sizes()
        non_empty = sizes > 0
        seed = self._seed_cluster(index, loss_table, non_empty)
        clusters = torch.cat([seed, self._impostor_clusters(index, seed, centers, non_empty)])
        positions = member_positions(sizes[clusters], self.d, self.generator)
        rows = index.member_order[index.member_offsets[clusters][:, None] + positions]
        return ClusterBatch(
            indices=rows.reshape(-1), cluster_ids=clusters.repeat_interleave(self.d)
        )

    def state_dict(self) -> dict[str, Any]:
        return {"m": self.m, "d": self.d, "generator_state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["m"], state["d"]) != (self.m, self.d):
            raise ArgumentError(
                f"sampler state was saved with m = {state['m']}, d = {state['d']}; "
                f"this sampler has m = {self.m}, d = {self.d}."
            )
        self.generator.set_state(state["generator_state"])


class UniformBatchSampler:
    """Draws M * D training examples uniformly without replacement (the whole split when it is
    smaller): the batches of a classification loss, which needs no cluster neighbourhoods.

    Args:
        m, d: the batch holds ``m * d`` examples, as a neighbourhood batch would.
        generator: the only source of randomness.
    """

    def __init__(self, *, m: int, d: int, generator: torch.Generator) -> None:
        if m < 1 or d < 1:
            raise ArgumentError(f"m = {m} and d = {d} must be at least 1.")
        self.batch_size = m * d
        self.generator = generator

    def sample(
        self, index: ClusterIndex, loss_table: LossTable, centers: Tensor | None = None
    ) -> ClusterBatch:
        """Draws one batch; ``cluster_ids`` are the rows' clusters in ``index``."""
        count = index.assignments.shape[0]
        rows = torch.randperm(count, generator=self.generator)[: self.batch_size]
        return ClusterBatch(indices=rows, cluster_ids=index.assignments[rows])


class ClassBalancedBatchSampler:
    """Draws D examples of each of M different classes, the classes uniformly without
    replacement and the examples as a neighbourhood batch draws a cluster's (without replacement
    when the class has at least D): pytorch-metric-learning's ``MPerClassSampler`` with m = D and
    a batch of M * D, drawn from the run's generator. Rows come out as M blocks of D, one class
    each; the loss table is not read.

    Args:
        m: classes per batch (at most the number of classes; the configuration checks it).
        d: examples per class.
        generator: the only source of randomness.
    """

    def __init__(self, *, m: int, d: int, generator: torch.Generator) -> None:
        if m < 2 or d < 1:
            raise ArgumentError(f"m = {m} must be at least 2 and d = {d} at least 1.")
        self.m = m
        self.d = d
        self.generator = generator

    def sample(
        self, index: ClusterIndex, loss_table: LossTable, centers: Tensor | None = None
    ) -> ClusterBatch:
        """Draws one batch; ``cluster_ids`` are the rows' clusters in ``index``."""
        if self.m > index.num_classes:
            raise ArgumentError(
                f"m = {self.m} classes per batch, but the index has {index.num_classes} classes."
            )
        # The index orders examples by cluster and its clusters by class, so each class's
        # members are one contiguous run of ``member_order``.
        class_sizes = index.cluster_sizes().reshape(index.num_classes, index.k).sum(dim=1)
        class_offsets = index.member_offsets[:: index.k]
        classes = torch.randperm(index.num_classes, generator=self.generator)[: self.m]
        positions = member_positions(class_sizes[classes], self.d, self.generator)
        rows = index.member_order[class_offsets[classes][:, None] + positions].reshape(-1)
        return ClusterBatch(indices=rows, cluster_ids=index.assignments[rows])


Sampler = ClusterBatchSampler | UniformBatchSampler | ClassBalancedBatchSampler

#: The batch sampler of each value of a catalogue entry's ``batches``.
BATCH_SAMPLERS: dict[str, type[Sampler]] = {
    "neighbourhood": ClusterBatchSampler,
    "uniform": UniformBatchSampler,
    "class-balanced": ClassBalancedBatchSampler,
}
