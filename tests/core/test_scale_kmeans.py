"""k-means of many clusters: the candidate search's bounds when few centroids move, the seeding."""

from __future__ import annotations

import pytest
import torch

from repmet import geometry
from repmet import kmeans as kmeans_module


def _search_with_count(points: torch.Tensor, centroids: torch.Tensor):
    search = kmeans_module._CandidateSearch(points, geometry.squared_norms(points), len(centroids))
    searched = []
    original = search._full_search

    def counting(rows: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        searched.append(rows.numel())
        return original(rows, centres)

    search._full_search = counting  # type: ignore[method-assign]
    return search, searched


def test_a_centroid_that_moves_far_costs_no_full_search_where_it_cannot_win() -> None:
    # 400 centroids; one of them jumps by 50 units (the old bound, b_n minus the largest shift,
    # failed for every point then). Only the points it lands among are searched again.
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(3_000, 4, generator=gen, dtype=torch.float64) * 3
    centroids = torch.randn(400, 4, generator=gen, dtype=torch.float64) * 3
    search, searched = _search_with_count(points, centroids)
    assert torch.equal(search.assign(centroids), torch.cdist(points, centroids).argmin(1))
    for target in (torch.full((4,), 40.0), points[7]):
        centroids = centroids.clone()
        centroids[123] = target  # far from every point, then onto point 7
        searched.clear()
        assert torch.equal(search.assign(centroids), torch.cdist(points, centroids).argmin(1))
        near = int((torch.cdist(points, centroids[123:124])[:, 0] < 1.0).sum())
        assert sum(searched) <= 3 * near + 30
    # Nothing moved: nothing is searched, and the answer stands.
    searched.clear()
    assert torch.equal(search.assign(centroids.clone()), torch.cdist(points, centroids).argmin(1))
    assert searched == []


def test_seeding_on_the_farthest_points_finds_well_separated_blobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 64 blobs of 6 points (SOP's classes hold about 5 images) in 16 rounds of 4 slots: with the
    # gains over the farthest tenth of the points, greedy seeding puts a centroid in every blob
    # (plain D^2 sampling, one candidate per slot, misses 4 or 5 of them here).
    monkeypatch.setattr(kmeans_module, "SEEDING_ROUNDS", 16)
    assert kmeans_module.SEEDING_SHARE == 0.1
    gen = torch.Generator().manual_seed(3)
    centres = torch.randn(64, 16, generator=gen) * 10
    blob = torch.arange(64).repeat_interleave(6)
    points = centres[blob] + 0.3 * torch.randn(384, 16, generator=gen)
    points = points - points.mean(dim=0)
    seeds = kmeans_module._seed_in_rounds(
        points, geometry.squared_norms(points), 64, torch.Generator().manual_seed(1)
    )
    assert blob[torch.cdist(seeds, points).argmin(dim=1)].unique().numel() == 64
