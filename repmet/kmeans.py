"""Per-group k-means (k-means++ seeding, Lloyd iterations), vectorised over groups.

The cluster index (spec: "The cluster index and the batch sampler") runs k-means with K clusters on
every class's training embeddings; the unsupervised accuracy (spec: "Evaluation", item 5) runs it
with C clusters on a whole split. Both are one call here: ``groups`` says which group each point
belongs to, and group g owns the centroid rows ``g*k .. g*k + k - 1`` (class-major layout).

Nothing loops over groups or clusters: distances are computed from each point to the k centroids
of its own group only (a gather of ``[B, k, E]`` per chunk of B points), so the cost is O(N k E)
per iteration whatever the number of groups, and memory is bounded by the chunk size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from repmet import geometry
from repmet.errors import ArgumentError
from repmet.geometry import squared_norms


@dataclass
class KMeansResult:
    """Output of :func:`kmeans`.

    Attributes:
        centroids: ``[G*k, E]``; rows ``g*k .. g*k + k - 1`` belong to group g (class-major).
        assignments: LongTensor ``[N]``, the global centroid index ``g*k + i`` of each point; it is
            always the nearest centroid of the point's own group among the returned centroids.
        inertia: ``[G]`` float64, each group's sum of squared distances to its centroids.
    """

    centroids: Tensor
    assignments: Tensor
    inertia: Tensor


def squared_distances_to_group(
    points: Tensor,
    groups: Tensor,
    centroids: Tensor,
    k: int,
    *,
    point_sq_norms: Tensor | None = None,
) -> Tensor:
    """Squared Euclidean distances from every point to the k centroids of its own group.

    Args:
        points: ``[N, E]``.
        groups: LongTensor ``[N]``, the group of each point.
        centroids: ``[G*k, E]`` in class-major layout.
        k: centroids per group.
        point_sq_norms: ``squared_norms(points)`` when the caller already has it.

    Returns:
        ``[N, k]``: entry ``(n, i)`` is ``d(points[n], centroids[groups[n]*k + i])``.
    """
    num_points, dim = points.shape
    if point_sq_norms is None:
        point_sq_norms = squared_norms(points)
    per_group = centroids.reshape(-1, k, dim)
    centroid_sq_norms = squared_norms(per_group)  # [G, k]
    out = points.new_empty(num_points, k)
    single_group = per_group.shape[0] == 1
    # The single-group case is a plain matrix product; the gather would copy [B, k, E] for nothing.
    rows = geometry.rows_per_block(k if single_group else k * dim, geometry.GATHER_BLOCK_ELEMENTS)
    for part in geometry.row_blocks(num_points, rows):
        x = points[part]
        g = groups[part]
        if single_group:
            cross = x @ per_group[0].T
        else:
            cross = torch.einsum("be,bke->bk", x, per_group[g])
        # |x|^2 - 2 x.c + |c|^2 can come out a rounding error below zero. The caller centres
        # the points (see kmeans), which keeps the cancellation error of the expansion small.
        out[part] = (point_sq_norms[part, None] - 2 * cross + centroid_sq_norms[g]).clamp_min_(0)
    return out


def nearest_in_group(
    points: Tensor,
    groups: Tensor,
    centroids: Tensor,
    k: int,
    *,
    point_sq_norms: Tensor | None = None,
) -> Tensor:
    """Global index ``g*k + i`` of each point's nearest own-group centroid (LongTensor [N])."""
    distances = squared_distances_to_group(
        points, groups, centroids, k, point_sq_norms=point_sq_norms
    )
    return groups * k + distances.argmin(dim=1)


def _sample_per_group(
    weights: Tensor, groups: Tensor, num_groups: int, draws: int, generator: torch.Generator
) -> Tensor:
    """``[G, draws]`` point indices: independent draws per group, each with probability
    proportional to ``weights`` within the group.

    Exponential race over ``[draws, N]`` at once: with E_n ~ Exp(1) independent, the point with
    the largest ``w_n / E_n`` in its group is a draw from that group's normalised weights.
    A group whose weights are all 0 (fewer distinct points than k) yields its first point.
    """
    num_points = weights.shape[0]
    race = torch.empty(draws, num_points, dtype=torch.float64).exponential_(generator=generator)
    keys = weights.to(torch.float64) / race.clamp_min_(torch.finfo(torch.float64).tiny)
    segments = groups.expand(draws, -1)
    best = torch.full((draws, num_groups), -torch.inf, dtype=torch.float64)
    best.scatter_reduce_(1, segments, keys, reduce="amax")
    is_best = keys == best.gather(1, segments)
    positions = torch.arange(num_points).expand(draws, -1)
    chosen = torch.full((draws, num_groups), num_points, dtype=torch.long)
    chosen.scatter_reduce_(1, segments, positions.masked_fill(~is_best, num_points), reduce="amin")
    return chosen.T


def _kmeans_plus_plus(
    points: Tensor,
    point_sq_norms: Tensor,
    groups: Tensor,
    num_groups: int,
    k: int,
    generator: torch.Generator,
) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007) for all groups at once.

    The first centroid of every group is a uniformly drawn point; each later one is the best of
    ``2 + floor(log k)`` candidates (as in scikit-learn), each candidate drawn with probability
    proportional to its squared distance to the nearest centroid already chosen in its group,
    the best being the one that most lowers the group's sum of those distances. Plain k-means++
    (one candidate) now and then seeds two centroids in one well-separated blob, a local optimum
    that Lloyd iterations cannot leave.
    """
    centroids = points.new_empty(num_groups, k, points.shape[1])
    nearest = torch.ones(points.shape[0], dtype=points.dtype)
    for i in range(k):  # k rounds are inherent to the seeding; each round covers all groups
        trials = 1 if i == 0 else 2 + int(math.log(k))
        candidates = _sample_per_group(nearest, groups, num_groups, trials, generator)
        # All candidates of a round in one pass over the points: [N, trials].
        distances = squared_distances_to_group(
            points, groups, points[candidates.reshape(-1)], trials, point_sq_norms=point_sq_norms
        )
        if i > 0:
            distances = torch.minimum(distances, nearest[:, None])
        potentials = torch.zeros(num_groups, trials, dtype=torch.float64).index_add_(
            0, groups, distances.to(torch.float64)
        )
        best = potentials.argmin(dim=1)  # [G]
        centroids[:, i] = points[candidates.gather(1, best[:, None]).squeeze(1)]
        nearest = distances.gather(1, best[groups][:, None]).squeeze(1)
    return centroids.reshape(num_groups * k, -1)


def _validate(points: Tensor, k: int, groups: Tensor, num_groups: int, iterations: int) -> None:
    if points.dim() != 2 or points.shape[0] == 0:
        raise ArgumentError(
            f"k-means needs a non-empty [N, E] tensor of points, got shape {tuple(points.shape)}."
        )
    if k < 1:
        raise ArgumentError(f"k = {k} is invalid; k-means needs at least 1 cluster per group.")
    if iterations < 0:
        raise ArgumentError(f"iterations = {iterations} is invalid; it must be at least 0.")
    if groups.shape != (points.shape[0],):
        raise ArgumentError(
            f"groups has shape {tuple(groups.shape)}; it must be "
            f"[{points.shape[0]}], one group per point."
        )
    if int(groups.min()) < 0 or int(groups.max()) >= num_groups:
        raise ArgumentError(
            f"group ids must lie in 0..{num_groups - 1} (num_groups = {num_groups}), "
            f"got values from {int(groups.min())} to {int(groups.max())}."
        )
    sizes = torch.bincount(groups, minlength=num_groups)
    smallest = int(sizes.argmin())
    if int(sizes[smallest]) < k:
        raise ArgumentError(
            f"k = {k} exceeds the size of group {smallest} ({int(sizes[smallest])} "
            "points); k must be at most the size of the smallest group."
        )


def kmeans(
    points: Tensor,
    k: int,
    *,
    groups: Tensor | None = None,
    num_groups: int | None = None,
    generator: torch.Generator,
    iterations: int = 50,
    tolerance: float = 1e-6,
    restarts: int = 1,
) -> KMeansResult:
    """k-means with k clusters inside every group: greedy k-means++ seeding, then Lloyd iterations.

    Minimises sum_n d(x_n, c_{a(n)}) with a(n) restricted to the centroids of x_n's group
    (d = squared Euclidean distance, the spec's distance everywhere). Each group is clustered
    around its own mean (k-means does not depend on the origin; the rounding of the distance
    expansion does, see :mod:`repmet.geometry`).

    Args:
        points: ``[N, E]`` float tensor (float32 or float64; other dtypes are cast to float32).
        k: clusters per group; at most the size of the smallest group.
        groups: LongTensor ``[N]`` of group ids in ``0..num_groups - 1``; None = a single group.
        num_groups: number of groups (default ``groups.max() + 1``); a group with no point is an
            error, since it cannot hold k clusters.
        generator: the only source of randomness (seeding), so a fixed generator state gives
            the same result.
        iterations: maximum Lloyd iterations.
        tolerance: stop once the largest squared centroid shift is at most ``tolerance`` times
            the mean per-dimension variance of the points (scale-free, as in scikit-learn), or
            when the assignments no longer change.
        restarts: independent runs (as scikit-learn's ``n_init``); each group keeps the run of
            lowest inertia within it, since one seeding can put two centroids in one blob.

    Returns:
        :class:`KMeansResult`. An empty cluster (possible only when a group holds duplicate
        points) keeps its previous centroid rather than being re-seeded.

    Raises:
        ArgumentError: k larger than a group (naming the group and its size), or malformed input.
    """
    if not points.is_floating_point():
        points = points.float()
    points = points.detach()
    if groups is None:
        groups = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
        num_groups = 1
    groups = groups.to(device=points.device, dtype=torch.long)
    if num_groups is None:
        num_groups = int(groups.max()) + 1 if groups.numel() else 1
    _validate(points, k, groups, num_groups, iterations)
    if restarts < 1:
        raise ArgumentError(f"restarts = {restarts} is invalid; k-means needs at least 1 run.")

    sizes = torch.bincount(groups, minlength=num_groups).to(points.dtype)
    group_means = torch.zeros(num_groups, points.shape[1], dtype=points.dtype)
    group_means = group_means.index_add_(0, groups, points) / sizes[:, None]
    centred = points - group_means[groups]
    point_sq_norms = squared_norms(centred)
    # Mean per-dimension variance around the group means (the centred points' mean is 0).
    threshold = tolerance * float(point_sq_norms.double().mean()) / points.shape[1]

    best: KMeansResult | None = None
    for _ in range(restarts):
        run = _lloyd(
            centred, point_sq_norms, groups, num_groups, k, generator, iterations, threshold
        )
        if best is None:
            best = run
            continue
        better = run.inertia < best.inertia  # [G]; ties keep the earlier run
        rows = better.repeat_interleave(k)
        best = KMeansResult(
            centroids=torch.where(rows[:, None], run.centroids, best.centroids),
            assignments=torch.where(better[groups], run.assignments, best.assignments),
            inertia=torch.where(better, run.inertia, best.inertia),
        )
    assert best is not None
    return KMeansResult(
        centroids=best.centroids + group_means.repeat_interleave(k, dim=0),
        assignments=best.assignments,
        inertia=best.inertia,
    )


def _lloyd(
    points: Tensor,
    point_sq_norms: Tensor,
    groups: Tensor,
    num_groups: int,
    k: int,
    generator: torch.Generator,
    iterations: int,
    threshold: float,
) -> KMeansResult:
    """One k-means run on centred points: seeding, then Lloyd iterations until the assignments
    stop changing or the largest squared centroid shift is at most ``threshold``."""
    centroids = _kmeans_plus_plus(points, point_sq_norms, groups, num_groups, k, generator)
    assignments = nearest_in_group(points, groups, centroids, k, point_sq_norms=point_sq_norms)
    num_centroids = num_groups * k
    for _ in range(iterations):
        sums = torch.zeros_like(centroids).index_add_(0, assignments, points)
        counts = torch.bincount(assignments, minlength=num_centroids)
        filled = counts > 0
        updated = torch.where(filled[:, None], sums / counts.clamp_min(1)[:, None], centroids)
        shift = float((updated - centroids).pow(2).sum(-1).max())
        centroids = updated
        new_assignments = nearest_in_group(
            points, groups, centroids, k, point_sq_norms=point_sq_norms
        )
        unchanged = torch.equal(new_assignments, assignments)
        assignments = new_assignments
        if unchanged or shift <= threshold:
            break
    residuals = (points - centroids[assignments]).pow(2).sum(dim=1).double()
    inertia = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, groups, residuals)
    return KMeansResult(centroids=centroids, assignments=assignments, inertia=inertia)
