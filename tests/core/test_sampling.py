"""The cluster batch sampler: block structure, impostors, loss-proportional seeding, replacement."""

from __future__ import annotations

import pytest
import torch

from repmet.clusters import ClusterIndex, LossTable, _cluster_sums
from repmet.errors import ArgumentError
from repmet.sampling import ClusterBatchSampler, UniformBatchSampler

# 4 classes x k = 2 clusters; cluster 5 is empty, clusters 1 and 7 are smaller than D = 3.
SIZES = [5, 1, 6, 3, 8, 0, 4, 2]
M, D = 3, 3


def _index(seed: int = 0) -> ClusterIndex:
    gen = torch.Generator().manual_seed(seed)
    assignments = torch.arange(8).repeat_interleave(torch.tensor(SIZES))
    assignments = assignments[torch.randperm(assignments.numel(), generator=gen)]
    centroids = torch.randn(8, 2, generator=gen)
    return ClusterIndex(centroids, assignments, num_classes=4, k=2)


def _sampler(seed: int = 0, m: int = M) -> ClusterBatchSampler:
    return ClusterBatchSampler(m=m, d=D, generator=torch.Generator().manual_seed(seed))


def _expected_impostors(
    index: ClusterIndex, seed: int, centers: torch.Tensor, count: int = M - 1
) -> list[int]:
    """Brute force: non-empty clusters of other classes, nearest to the seed's center first,
    taken again in order when fewer than ``count`` exist."""
    sizes = index.cluster_sizes().tolist()
    candidates = [j for j in range(8) if j // 2 != seed // 2 and sizes[j] > 0]
    candidates.sort(key=lambda j: float(((centers[j] - centers[seed]) ** 2).sum()))
    return [candidates[i % len(candidates)] for i in range(count)]


@pytest.mark.parametrize("use_custom_centers", [False, True])
def test_blocks_come_from_one_cluster_and_impostors_are_nearest(use_custom_centers: bool) -> None:
    index, sampler, table = _index(), _sampler(), LossTable(sum(SIZES))
    centers = torch.randn(8, 2, generator=torch.Generator().manual_seed(42))
    seen_seeds = set()
    for _ in range(200):
        batch = sampler.sample(index, table, centers if use_custom_centers else None)
        assert batch.indices.shape == (M * D,) and batch.cluster_ids.shape == (M * D,)
        blocks = batch.cluster_ids.reshape(M, D)
        assert torch.equal(blocks, blocks[:, :1].expand(-1, D))
        assert torch.equal(index.assignments[batch.indices], batch.cluster_ids)
        seed = int(blocks[0, 0])
        seen_seeds.add(seed)
        expected = _expected_impostors(
            index, seed, centers if use_custom_centers else index.centroids
        )
        assert blocks[1:, 0].tolist() == expected
    assert seen_seeds == {0, 1, 2, 3, 4, 6, 7}  # never the empty cluster 5, every other one


def test_without_replacement_when_the_cluster_is_large_enough() -> None:
    index, sampler, table = _index(), _sampler(), LossTable(sum(SIZES))
    small_rows = {1: set(), 7: set()}
    for _ in range(200):
        batch = sampler.sample(index, table)
        for block, cluster in zip(batch.indices.reshape(M, D), batch.cluster_ids[::D], strict=True):
            if SIZES[int(cluster)] >= D:
                assert block.unique().numel() == D
            else:
                small_rows[int(cluster)].add(tuple(block.tolist()))
    assert small_rows[1] == {(int(torch.nonzero(index.assignments == 1)),) * D}
    # a 2-member cluster sampled with replacement repeats a member in some blocks
    assert any(len(set(rows)) < D for rows in small_rows[7])


def test_seed_frequencies_follow_the_cluster_losses() -> None:
    index = _index()
    table = LossTable(sum(SIZES))
    members = {j: torch.nonzero(index.assignments == j).flatten() for j in range(8)}
    # cluster losses: 0 -> 1, 1 -> 4, 2 -> 0 (measured zero), 3 -> 3, 4 -> 2, 6 unmeasured
    # (gets the mean of the measured clusters, 2), 7 -> 2; 5 is empty.
    for cluster, loss in {0: 1.0, 1: 4.0, 2: 0.0, 3: 3.0, 4: 2.0, 7: 2.0}.items():
        table.update(members[cluster], torch.full((members[cluster].numel(),), loss))
    weights = torch.tensor([1.0, 4.0, 0.0, 3.0, 2.0, 0.0, 2.0, 2.0])
    expected = weights / weights.sum()
    sampler = _sampler(seed=1, m=2)
    draws = 6_000  # 4-sigma band: about +-0.02 around each probability
    seeds = torch.tensor([int(sampler.sample(index, table).cluster_ids[0]) for _ in range(draws)])
    frequencies = torch.bincount(seeds, minlength=8).double() / draws
    tolerance = 4 * torch.sqrt(expected * (1 - expected) / draws) + 1e-12
    assert bool(((frequencies - expected).abs() <= tolerance).all()), frequencies
    assert frequencies[2] == 0 and frequencies[5] == 0


def test_all_zero_losses_fall_back_to_uniform_over_non_empty_clusters() -> None:
    index = _index()
    table = LossTable(sum(SIZES))
    table.update(torch.arange(sum(SIZES)), torch.zeros(sum(SIZES)))
    sampler = _sampler(m=2)
    seeds = {int(sampler.sample(index, table).cluster_ids[0]) for _ in range(300)}
    assert seeds == {0, 1, 2, 3, 4, 6, 7}


def test_fixed_seed_gives_the_same_batches_and_state_restores_the_stream() -> None:
    index, table = _index(), LossTable(sum(SIZES))
    first, second = _sampler(seed=7), _sampler(seed=7)
    for _ in range(20):
        a, b = first.sample(index, table), second.sample(index, table)
        assert torch.equal(a.indices, b.indices) and torch.equal(a.cluster_ids, b.cluster_ids)
    state = first.state_dict()
    expected = [first.sample(index, table).indices for _ in range(5)]
    resumed = _sampler(seed=123)
    resumed.load_state_dict(state)
    for batch in expected:
        assert torch.equal(resumed.sample(index, table).indices, batch)


def test_configuration_errors() -> None:
    with pytest.raises(ArgumentError, match="m = 1"):
        ClusterBatchSampler(m=1, d=2, generator=torch.Generator())
    with pytest.raises(ArgumentError, match="d = 0"):
        ClusterBatchSampler(m=2, d=0, generator=torch.Generator())


def test_too_few_non_empty_impostors_are_taken_again_nearest_first() -> None:
    # Other classes hold at most 6 non-empty clusters (5 when the seed's class holds two): with
    # m = 9 the nearest impostors repeat in order and the batch keeps its M x D shape.
    index, sampler, table = _index(), _sampler(m=9), LossTable(sum(SIZES))
    for _ in range(50):
        batch = sampler.sample(index, table)
        assert batch.indices.shape == (9 * D,)
        blocks = batch.cluster_ids.reshape(9, D)
        assert torch.equal(index.assignments[batch.indices], batch.cluster_ids)
        expected = _expected_impostors(index, int(blocks[0, 0]), index.centroids, count=8)
        assert blocks[1:, 0].tolist() == expected


def test_uniform_batches_are_distinct_examples_drawn_evenly() -> None:
    index = _index()
    sampler = UniformBatchSampler(m=3, d=2, generator=torch.Generator().manual_seed(0))
    counts = torch.zeros(sum(SIZES))
    for _ in range(3000):
        batch = sampler.sample(index, LossTable(sum(SIZES)))
        assert batch.indices.shape == (6,) and batch.indices.unique().numel() == 6
        assert torch.equal(batch.cluster_ids, index.assignments[batch.indices])
        counts += torch.bincount(batch.indices, minlength=sum(SIZES))
    expected = 3000 * 6 / sum(SIZES)
    assert float((counts - expected).abs().max()) < 0.15 * expected


class _FullRecomputationSampler(ClusterBatchSampler):
    """The sampler as it was before running sums and the top-k impostor search: every cluster's
    loss recomputed from the whole table, and a stable sort of all cluster distances."""

    def _seed_cluster(
        self, index: ClusterIndex, loss_table: LossTable, non_empty: torch.Tensor
    ) -> torch.Tensor:
        weights = loss_table.cluster_losses(index.assignments, index.num_clusters)
        weights = torch.where(non_empty, weights, 0.0)
        if not bool(weights.sum() > 0):
            weights = non_empty.to(torch.float32)
        return torch.multinomial(weights, 1, generator=self.generator)

    def _impostor_clusters(
        self,
        index: ClusterIndex,
        seed: torch.Tensor,
        centers: torch.Tensor,
        non_empty: torch.Tensor,
    ) -> torch.Tensor:
        distances = (centers - centers[seed]).pow(2).sum(-1)
        eligible = (index.centroid_classes != index.centroid_classes[seed]) & non_empty
        order = torch.argsort(distances.masked_fill(~eligible, torch.inf), stable=True)
        return order[torch.arange(self.m - 1) % int(eligible.sum())]


def _wide_index(gen: torch.Generator, num_classes: int = 60, k: int = 3) -> ClusterIndex:
    """Clusters of 0 to 9 members; centroids on a coarse grid, so that many distances tie."""
    sizes = torch.randint(0, 10, (num_classes * k,), generator=gen)
    assignments = torch.arange(num_classes * k).repeat_interleave(sizes)
    assignments = assignments[torch.randperm(assignments.numel(), generator=gen)]
    centroids = torch.randint(-2, 3, (num_classes * k, 4), generator=gen).float()
    return ClusterIndex(centroids, assignments, num_classes=num_classes, k=k)


@pytest.mark.parametrize("m", [4, 12])
def test_running_sums_and_top_k_give_the_full_recomputations_batches(m: int) -> None:
    gen = torch.Generator().manual_seed(3)
    index = _wide_index(gen)
    count = index.assignments.numel()
    new, old = LossTable(count), LossTable(count)
    sampler = ClusterBatchSampler(m=m, d=D, generator=torch.Generator().manual_seed(5))
    reference = _FullRecomputationSampler(m=m, d=D, generator=torch.Generator().manual_seed(5))
    for step in range(300):
        if step % 75 == 74:  # a refresh: the same examples in new clusters of their class
            classes = index.centroid_classes[index.assignments]
            index = ClusterIndex(
                torch.randint(-2, 3, (index.num_clusters, 4), generator=gen).float(),
                classes * index.k + torch.randint(0, index.k, (count,), generator=gen),
                num_classes=index.num_classes,
                k=index.k,
            )
        if step == 200:  # a resumed run: the index and the loss table restored from state
            index.load_state_dict(index.state_dict())
            new.load_state_dict(new.state_dict())
        batch = sampler.sample(index, new)
        expected = reference.sample(index, old)
        assert torch.equal(batch.indices, expected.indices)
        assert torch.equal(batch.cluster_ids, expected.cluster_ids)
        # Losses over 30 orders of magnitude: a running sum adjusted by differences would round
        # differently from the full recomputation.
        losses = torch.exp(torch.randn(batch.indices.shape[0], generator=gen) * 15)
        losses[torch.rand(losses.shape[0], generator=gen) < 0.2] = 0.0
        new.update(batch.indices, losses)
        old.update(expected.indices, losses)
        full = new.cluster_losses(index.assignments, index.num_clusters)
        assert torch.equal(new.cluster_losses_of(index), full)
        # The float64 sums too: most rounding differences would vanish in the float32 weights.
        assert new._running is not None
        sums, counts = _cluster_sums(new.losses, index.assignments, index.num_clusters)
        assert torch.equal(new._running.sums, sums) and torch.equal(new._running.counts, counts)
    assert torch.equal(new.losses.isnan(), old.losses.isnan())
    assert torch.equal(new.losses.nan_to_num(), old.losses.nan_to_num())
