"""Cluster index, loss table and the sampler's configuration checks."""

from __future__ import annotations

import math

import pytest
import torch

from repmet.clusters import ClusterIndex, LossTable


def _labelled_points(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0] * 12 + [1] * 7 + [2] * 9)[torch.randperm(28, generator=gen)]
    embeddings = torch.randn(28, 3, generator=gen) + 4 * labels[:, None].float()
    return embeddings, labels


def test_fit_builds_a_class_major_index() -> None:
    embeddings, labels = _labelled_points()
    index = ClusterIndex.fit(
        embeddings, labels, num_classes=3, k=2, generator=torch.Generator().manual_seed(0)
    )
    assert index.centroids.shape == (6, 3) and index.centroids.dtype == torch.float32
    assert torch.equal(index.centroid_classes, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.equal(index.centroid_classes[index.assignments], labels)
    sizes = index.cluster_sizes()
    assert torch.equal(sizes, torch.bincount(index.assignments, minlength=6))
    for j in range(6):  # the member lists cover exactly the cluster's examples
        start = int(index.member_offsets[j])
        members = index.member_order[start : start + int(sizes[j])]
        assert torch.equal(members, torch.nonzero(index.assignments == j).flatten())


def test_from_representatives_joins_nearest_own_class_representative() -> None:
    embeddings, labels = _labelled_points(1)
    representatives = torch.randn(9, 3, generator=torch.Generator().manual_seed(2)) * 3
    representatives.requires_grad_(True)
    index = ClusterIndex.from_representatives(embeddings, labels, representatives, k=3)
    distances = torch.cdist(embeddings, representatives.detach()) ** 2
    other_class = (torch.arange(9) // 3)[None, :] != labels[:, None]
    assert torch.equal(index.assignments, distances.masked_fill(other_class, torch.inf).argmin(1))
    assert index.num_classes == 3 and not index.centroids.requires_grad
    with torch.no_grad():
        representatives.add_(1.0)  # the index holds a copy, not a view
    torch.testing.assert_close(index.centroids, representatives.detach() - 1.0)


def test_state_dict_round_trip() -> None:
    embeddings, labels = _labelled_points(2)
    index = ClusterIndex.fit(
        embeddings, labels, num_classes=3, k=2, generator=torch.Generator().manual_seed(0)
    )
    restored = ClusterIndex.from_state_dict(index.state_dict())
    other = ClusterIndex(torch.zeros(3, 3), torch.zeros(28, dtype=torch.long), num_classes=3, k=1)
    other.load_state_dict(index.state_dict())
    for copy in (restored, other):
        assert (copy.num_classes, copy.k) == (3, 2)
        assert torch.equal(copy.centroids, index.centroids)
        assert torch.equal(copy.assignments, index.assignments)
        assert torch.equal(copy.member_order, index.member_order)


def test_loss_table_cluster_losses_on_a_hand_made_case() -> None:
    table = LossTable(7)
    assert bool(torch.isnan(table.losses).all())
    assert torch.equal(
        table.cluster_losses(torch.tensor([0, 0, 1, 1, 2, 3, 3]), 5), torch.ones(5)
    )  # nothing measured yet: uniform
    table.update(torch.tensor([0, 2, 3, 6, 6]), torch.tensor([2.0, 0.0, 1.0, 1.0, 4.0]))
    expected_losses = [2.0, math.nan, 0.0, 1.0, math.nan, math.nan, 2.5]  # 6: mean of duplicates
    torch.testing.assert_close(table.losses, torch.tensor(expected_losses), equal_nan=True)
    # clusters: 0 = {0, 1} -> 2; 1 = {2, 3} -> 0.5; 2 = {4} unmeasured; 3 = {5, 6} -> 2.5;
    # 4 empty. Unmeasured and empty clusters get the mean of the measured clusters.
    losses = table.cluster_losses(torch.tensor([0, 0, 1, 1, 2, 3, 3]), 5)
    torch.testing.assert_close(losses, torch.tensor([2.0, 0.5, 5 / 3, 2.5, 5 / 3]))


def test_loss_table_zero_is_a_measured_loss() -> None:
    table = LossTable(4)
    table.update(torch.tensor([0, 1]), torch.tensor([0.0, 0.0]))
    table.update(torch.tensor([2]), torch.tensor([3.0]))
    losses = table.cluster_losses(torch.tensor([0, 0, 1, 2]), 3)
    torch.testing.assert_close(losses, torch.tensor([0.0, 3.0, 1.5]))


def test_loss_table_rejects_bad_losses_and_restores_state() -> None:
    table = LossTable(3)
    with pytest.raises(ValueError, match="non-negative"):
        table.update(torch.tensor([0]), torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="finite"):
        table.update(torch.tensor([0]), torch.tensor([math.nan]))
    table.update(torch.tensor([1]), torch.tensor([0.25]))
    restored = LossTable(3)
    restored.load_state_dict(table.state_dict())
    torch.testing.assert_close(restored.losses, table.losses, equal_nan=True)
