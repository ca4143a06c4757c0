"""Per-group k-means: blob recovery, group confinement, Lloyd fixed point, determinism, errors."""

from __future__ import annotations

import pytest
import torch

from repmet import geometry
from repmet import kmeans as kmeans_module
from repmet.errors import ArgumentError
from repmet.kmeans import kmeans, nearest_in_group


def _blobs(num_groups: int, per_group: int, size: int, dim: int, seed: int):
    """Well-separated Gaussian blobs; blob b belongs to group b // per_group."""
    gen = torch.Generator().manual_seed(seed)
    num_blobs = num_groups * per_group
    centers = torch.randn(num_blobs, dim, generator=gen, dtype=torch.float64) * 20
    blob = torch.arange(num_blobs).repeat_interleave(size)
    noise = torch.randn(blob.numel(), dim, generator=gen, dtype=torch.float64)
    points = centers[blob] + 0.05 * noise
    return points, blob, blob // per_group, centers


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recovers_blobs_in_every_group(dtype: torch.dtype) -> None:
    points, blob, groups, _ = _blobs(num_groups=5, per_group=3, size=20, dim=6, seed=0)
    points = points.to(dtype)
    result = kmeans(points, 3, groups=groups, generator=torch.Generator().manual_seed(1))
    assert result.centroids.shape == (15, 6) and result.centroids.dtype == dtype
    # Each blob is exactly one cluster, and distinct blobs get distinct clusters.
    per_blob = result.assignments.reshape(15, 20)
    assert torch.equal(per_blob, per_blob[:, :1].expand(-1, 20))
    assert per_blob[:, 0].unique().numel() == 15
    assert torch.equal(result.assignments // 3, groups)
    # Centroids are the blob means (computed independently).
    blob_means = points.reshape(15, 20, 6).mean(1)
    torch.testing.assert_close(result.centroids[per_blob[:, 0]], blob_means)


def test_assignments_stay_in_own_group_and_are_a_lloyd_fixed_point() -> None:
    gen = torch.Generator().manual_seed(3)
    points = torch.randn(300, 4, generator=gen, dtype=torch.float64)  # groups overlap in space
    groups = torch.randint(0, 4, (300,), generator=gen)
    result = kmeans(
        points, 5, groups=groups, num_groups=4, generator=gen, iterations=300, tolerance=0.0
    )
    assert torch.equal(result.assignments // 5, groups)
    # Brute force: nearest centroid among the point's own group.
    distances = torch.cdist(points, result.centroids) ** 2
    other_group = (torch.arange(20) // 5)[None, :] != groups[:, None]
    expected = distances.masked_fill(other_group, torch.inf).argmin(1)
    assert torch.equal(result.assignments, expected)
    counts = torch.bincount(result.assignments, minlength=20)
    assert bool((counts > 0).all())
    means = torch.zeros(20, 4, dtype=torch.float64).index_add_(0, result.assignments, points)
    torch.testing.assert_close(result.centroids, means / counts[:, None])


def test_single_group_and_k_equal_one() -> None:
    points, *_ = _blobs(num_groups=1, per_group=1, size=50, dim=3, seed=4)
    result = kmeans(points, 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.assignments, torch.zeros(50, dtype=torch.long))
    torch.testing.assert_close(result.centroids, points.mean(0, keepdim=True))


def test_deterministic_given_the_generator() -> None:
    gen = torch.Generator().manual_seed(5)
    points = torch.randn(400, 3, generator=gen)
    groups = torch.randint(0, 3, (400,), generator=gen)
    first = kmeans(points, 4, groups=groups, generator=torch.Generator().manual_seed(9))
    second = kmeans(points, 4, groups=groups, generator=torch.Generator().manual_seed(9))
    assert torch.equal(first.centroids, second.centroids)
    assert torch.equal(first.assignments, second.assignments)


def test_chunked_distances_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(6)
    points = torch.randn(97, 5, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 3, (97,), generator=gen)
    whole = kmeans(points, 2, groups=groups, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(geometry, "GATHER_BLOCK_ELEMENTS", 7)
    chunked = kmeans(points, 2, groups=groups, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(chunked.centroids, whole.centroids)
    assert torch.equal(chunked.assignments, whole.assignments)


def test_seeding_draws_in_proportion_to_weights() -> None:
    weights = torch.tensor([0.0, 1.0, 3.0, 2.0, 2.0, 0.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    gen = torch.Generator().manual_seed(0)
    draws = kmeans_module._sample_per_group(weights, groups, 2, 4000, gen)
    assert draws.shape == (2, 4000)
    draws = draws.T
    assert bool((draws[:, 0] != 0).all()) and bool((draws[:, 1] != 5).all())  # zero weight
    assert abs(float((draws[:, 0] == 2).double().mean()) - 0.75) < 0.03
    assert abs(float((draws[:, 1] == 3).double().mean()) - 0.5) < 0.03


def test_duplicate_points_leave_an_empty_cluster_at_its_old_centroid() -> None:
    points = torch.tensor([[1.0, 1.0]] * 3 + [[0.0, 0.0], [5.0, 5.0]])
    groups = torch.tensor([0, 0, 0, 1, 1])
    result = kmeans(points, 2, groups=groups, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.assignments // 2, groups)
    torch.testing.assert_close(result.centroids[:2], torch.ones(2, 2))
    assert sorted(result.centroids[2:].tolist()) == [[0.0, 0.0], [5.0, 5.0]]


def test_nearest_in_group_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(8)
    points = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    centroids = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 4, (50,), generator=gen)
    distances = torch.cdist(points, centroids) ** 2
    mask = (torch.arange(12) // 3)[None, :] != groups[:, None]
    expected = distances.masked_fill(mask, torch.inf).argmin(1)
    assert torch.equal(nearest_in_group(points, groups, centroids, 3), expected)


def test_k_larger_than_a_group_names_the_group() -> None:
    points = torch.randn(10, 2)
    groups = torch.tensor([0] * 6 + [1] * 2 + [2] * 2)
    with pytest.raises(ArgumentError, match=r"k = 3 exceeds the size of group 1 \(2 points\)"):
        kmeans(points, 3, groups=groups, generator=torch.Generator())
    with pytest.raises(ArgumentError, match="group 3"):
        kmeans(points, 1, groups=groups, num_groups=4, generator=torch.Generator())
    with pytest.raises(ArgumentError, match="k = 0"):
        kmeans(points, 0, generator=torch.Generator())


def test_restarts_keep_each_groups_run_of_lowest_inertia(monkeypatch: pytest.MonkeyPatch) -> None:
    points = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    groups = torch.tensor([0, 0, 1, 1])
    runs = iter(
        [
            kmeans_module.KMeansResult(
                torch.tensor([[0.0], [9.0]]), torch.tensor([0, 0, 1, 1]), torch.tensor([1.0, 5.0])
            ),
            kmeans_module.KMeansResult(
                torch.tensor([[7.0], [10.0]]), torch.tensor([0, 0, 1, 1]), torch.tensor([3.0, 2.0])
            ),
            kmeans_module.KMeansResult(
                torch.tensor([[8.0], [8.0]]), torch.tensor([0, 0, 1, 1]), torch.tensor([1.0, 2.0])
            ),
        ]
    )
    monkeypatch.setattr(kmeans_module, "_lloyd", lambda *args: next(runs))
    result = kmeans(points, 1, groups=groups, generator=torch.Generator(), restarts=3)
    # Group 0 keeps run 1 (ties keep the earlier run), group 1 run 2; the group means (0.5 and
    # 10.5) around which the runs clustered are added back.
    torch.testing.assert_close(result.inertia, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(result.centroids, torch.tensor([[0.5], [20.5]]))


def test_far_from_the_origin_is_clustered_like_near_it() -> None:
    # In float32, |x|^2 - 2 x.c + |c|^2 at offset 10,000 loses the spread of 0.5 to rounding;
    # each group is clustered around its own mean, so the offset changes nothing.
    gen = torch.Generator().manual_seed(3)
    points = torch.randn(300, 4, generator=gen) * 0.5
    points[150:] += 3.0
    groups = torch.zeros(300, dtype=torch.long)
    near = kmeans(points, 2, groups=groups, generator=torch.Generator().manual_seed(1))
    far = kmeans(points + 1e4, 2, groups=groups, generator=torch.Generator().manual_seed(1))
    assert torch.equal(near.assignments, far.assignments)
    torch.testing.assert_close(far.centroids - 1e4, near.centroids, atol=2e-3, rtol=0)


def test_candidate_search_finds_the_nearest_centroid_as_centroids_move() -> None:
    # The candidate lists and their bound must give the nearest of all centroids after every
    # move, whether a point keeps its answer from its candidates or is searched again in full.
    gen = torch.Generator().manual_seed(12)
    points = torch.randn(700, 5, generator=gen, dtype=torch.float64)
    centroids = torch.randn(60, 5, generator=gen, dtype=torch.float64)
    search = kmeans_module._CandidateSearch(points, geometry.squared_norms(points), 60)
    full_searches = 0
    original = search._full_search

    def counting(rows: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        nonlocal full_searches
        full_searches += rows.numel()
        return original(rows, centres)

    search._full_search = counting  # type: ignore[method-assign]
    assert torch.equal(search.assign(centroids), torch.cdist(points, centroids).argmin(1))
    for step in range(8):
        moves = torch.randn(60, 5, generator=gen, dtype=torch.float64) * 0.05 * (8 - step)
        centroids = centroids + moves
        expected = torch.cdist(points, centroids).argmin(1)
        assert torch.equal(search.assign(centroids), expected), step
    # The bound saves work: far fewer than the 700 x 8 full searches of plain Lloyd steps.
    assert 700 <= full_searches < 700 + 0.6 * 700 * 8


def test_many_clusters_are_seeded_in_rounds_and_reach_a_lloyd_fixed_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kmeans_module, "MANY_CLUSTERS", 8)
    # 3 slots per round among 48 blobs, as about 90 slots among 11,316 classes at the default.
    monkeypatch.setattr(kmeans_module, "SEEDING_ROUNDS", 16)
    monkeypatch.setattr(kmeans_module, "CANDIDATES", 3)
    points, blob, _, _ = _blobs(num_groups=1, per_group=48, size=8, dim=6, seed=13)
    points = points.float()

    def run() -> kmeans_module.KMeansResult:
        return kmeans(
            points, 48, generator=torch.Generator().manual_seed(2), iterations=300, tolerance=0.0
        )

    result = run()
    again = run()
    assert torch.equal(result.assignments, again.assignments)
    assert torch.equal(result.centroids, again.centroids)
    distances = torch.cdist(points.double(), result.centroids.double())
    assert torch.equal(result.assignments, distances.argmin(1))
    counts = torch.bincount(result.assignments, minlength=48)
    means = torch.zeros(48, 6).index_add_(0, result.assignments, points)
    filled = counts > 0
    torch.testing.assert_close(result.centroids[filled], (means / counts[:, None])[filled])
    # Greedy seeding finds nearly every one of the 48 well-separated blobs on its own.
    from repmet.evaluation import assignment_accuracy

    assert assignment_accuracy(result.assignments, blob) >= 0.9
