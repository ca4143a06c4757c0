"""Per-group k-means (k-means++ seeding, Lloyd iterations), vectorised over groups.

The cluster index (spec: "The cluster index and the batch sampler") runs k-means with K clusters on
every class's training embeddings; the unsupervised accuracy (spec: "Evaluation", item 5) runs it
with C clusters on a whole split. Both are one call here: ``groups`` says which group each point
belongs to, and group g owns the centroid rows ``g*k .. g*k + k - 1`` (class-major layout).

Nothing loops over groups or clusters: distances are computed from each point to the k centroids
of its own group only (a gather of ``[B, k, E]`` per chunk of B points), so the cost is O(N k E)
per iteration whatever the number of groups, and memory is bounded by the chunk size.

One group of thousands of clusters (the unsupervised error on a split of thousands of classes)
would make both halves quadratic: greedy k-means++ takes k rounds over all N points, and every
Lloyd iteration compares every point with every centroid. Above ``MANY_CLUSTERS`` clusters the
seeding draws its centroids in ``SEEDING_ROUNDS`` rounds of D^2 sampling (k-means||, Bahmani et
al., VLDB 2012, with its oversampling set so that the rounds draw exactly k) and scores the
candidates of a round on the ``SEEDING_SHARE`` of the points farthest from the centroids chosen
so far, and the assignment keeps each point's ``CANDIDATES`` nearest centroids with a bound on
all the others (see :class:`_CandidateSearch`): the result is still each point's nearest
centroid. At most ``MANY_CLUSTERS`` clusters per group (every per-class index of training, and
the unsupervised error of a split of at most 256 classes) take neither path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from repmet import geometry
from repmet.errors import ArgumentError
from repmet.geometry import squared_norms

#: Clusters in one group above which seeding runs in rounds and assignment uses candidate lists.
MANY_CLUSTERS = 256
#: Rounds of D^2 sampling that seed a group of more than ``MANY_CLUSTERS`` clusters.
SEEDING_ROUNDS = 128
#: Candidates per centroid in a round of that seeding (scikit-learn's greedy k-means++ draws
#: 2 + log k per centroid; a few are almost as good, see :func:`_seed_in_rounds`).
SEEDING_TRIALS = 6
#: Share of the points, those farthest from the centroids chosen so far, over which a round of
#: that seeding sums each candidate's gain (see :func:`_seed_in_rounds`).
SEEDING_SHARE = 0.1
#: Nearest centroids each point keeps as candidates between full searches.
CANDIDATES = 16


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


def _seed_in_rounds(
    points: Tensor, point_sq_norms: Tensor, k: int, generator: torch.Generator
) -> Tensor:
    """Greedy D^2 seeding of one group in ``SEEDING_ROUNDS`` rounds (k-means||, Bahmani et al.
    2012, with the greedy choice of scikit-learn's k-means++).

    A uniformly drawn first centroid; then each round fills its share of the remaining k - 1
    slots at once: it draws ``SEEDING_TRIALS`` candidates per slot, without replacement, with
    probability proportional to the squared distance to the nearest centroid chosen so far (the
    top of w_n / E_n with E_n ~ Exp(1), Efraimidis and Spirakis 2006), and each slot keeps its
    candidate that most lowers the sum of those distances. Plain D^2 sampling (one candidate)
    leaves a sixth of the classes of an SOP-like split without a centroid, as one-candidate
    k-means++ does. A candidate's gain is summed over the ``SEEDING_SHARE`` of the points with
    the largest distances: the points near the centroids already chosen can give any candidate
    at most their own small distance, and the ones that decide between the candidates of a
    still uncovered region are far from every chosen centroid (1,496 clusters of 8,000 SOP-like
    points, one restart: unsupervised accuracy 0.940 against 0.944 with the gains over every
    point, 0.927 against 0.924 with more noise). The cost is about ``SEEDING_TRIALS *
    SEEDING_SHARE + 1`` passes of N x k distances, against k passes over all points for greedy
    k-means++.
    """
    num_points = points.shape[0]
    first = torch.randint(num_points, (1,), generator=generator)
    chosen = [first]
    nearest = geometry.expanded_squared_distances(
        points, points[first], point_norms=point_sq_norms
    ).squeeze(1)
    # [x, nearest - |x|^2, 1] against [2c, 1, -|c|^2]: nearest_n - d(x_n, c), the part of
    # x_n's distance that candidate c would remove, from one matrix product per round (the
    # expansion of repmet.geometry on the centred points, with no pass to add the norms).
    lifted = torch.cat([points, points.new_zeros(num_points, 2)], dim=1)
    lifted[:, -1] = 1.0
    per_round = -(-(k - 1) // SEEDING_ROUNDS)
    for start in range(1, k, per_round):  # a few rounds; each covers all points
        slots = min(per_round, k - start)
        trials = min(SEEDING_TRIALS, num_points // slots)
        race = torch.empty(num_points, dtype=torch.float64).exponential_(generator=generator)
        keys = nearest.to(torch.float64) / race.clamp_min_(torch.finfo(torch.float64).tiny)
        candidates = keys.topk(slots * trials).indices  # [slots * trials]
        centres = points[candidates]
        lifted[:, -2] = nearest - point_sq_norms
        weights = torch.cat(
            [
                2.0 * centres,
                centres.new_ones(centres.shape[0], 1),
                -squared_norms(centres)[:, None],
            ],
            dim=1,
        )
        farthest = nearest.topk(max(1, math.ceil(SEEDING_SHARE * num_points))).indices
        gains = (lifted[farthest] @ weights.T).clamp_min_(0).sum(dim=0, dtype=torch.float64)
        positions = _pick_apart(centres, nearest[candidates], gains, trials)
        picked = candidates[positions]
        chosen.append(picked)
        if start + slots < k:
            lowered = (lifted @ weights[positions].T).clamp_min_(0)  # [N, slots]
            nearest = nearest.sub_(lowered.amax(dim=1)).clamp_min_(0)
            # Not a rounding error above 0: a chosen point is never drawn again.
            nearest[picked] = 0.0
    return points[torch.cat(chosen)]


def _pick_apart(candidates: Tensor, weights: Tensor, gains: Tensor, trials: int) -> Tensor:
    """Positions of one candidate per slot (slot s owns candidates ``s*trials .. s*trials +
    trials - 1``): the one of highest gain that does not lie in the region of a candidate picked
    earlier in the round, i.e. nearer to it than half its distance to the nearest centroid chosen
    before the round (squared: ``weights / 4``). Gains are measured against the centroids before
    the round, so the slots of a round would otherwise all pick the same few regions of highest
    gain (seen on well-separated blobs: fewer blobs found than with one candidate per slot).
    A slot whose candidates are all in such regions takes its best one anyway."""
    slots = gains.shape[0] // trials
    apart = geometry.expanded_squared_distances(candidates, candidates)
    crowded = apart < weights[None, :] / 4  # [i, j]: candidate j lies in i's region
    ranked = gains.reshape(slots, trials).argsort(dim=1, descending=True, stable=True)
    ranked = ranked + torch.arange(slots)[:, None] * trials
    blocked = torch.zeros(gains.shape[0], dtype=torch.bool)
    picks = torch.empty(slots, dtype=torch.long)
    for slot in range(slots):  # sequential by nature; each step touches one row of [M, M]
        order = ranked[slot]
        free = order[~blocked[order]]
        pick = free[0] if free.numel() else order[0]
        picks[slot] = pick
        blocked |= crowded[pick]
    return picks


class _CandidateSearch:
    """Exact nearest-centroid assignment of one group of many clusters, mostly from candidate lists.

    A full search (all k centroids) records each point's ``CANDIDATES`` nearest centroids and
    b_n, the Euclidean distance to the next one: no centroid outside the list is nearer to x_n.
    When the centroids then move, b_n stays a lower bound on the distance from x_n to every
    centroid outside its list that did not move, and each call lowers it to the exact distance
    of every one that did (after the first Lloyd steps only a few percent of the centroids move
    at all: the others' clusters kept their points). A point whose nearest candidate is closer
    than b_n keeps an exact answer from its candidates; only the others are searched in full.
    """

    def __init__(self, points: Tensor, point_sq_norms: Tensor, num_centroids: int) -> None:
        self.points = points
        self.point_sq_norms = point_sq_norms
        # [x, 1] against [-2c, |c|^2]: |c|^2 - 2 x.c, a distance less its row's |x|^2, in one
        # product (the expansion of repmet.geometry on centred points, no pass to add norms).
        self.lifted = torch.cat([points, points.new_ones(points.shape[0], 1)], dim=1)
        self.count = min(CANDIDATES, num_centroids - 1)
        num_points = points.shape[0]
        self.candidates = torch.empty(num_points, self.count, dtype=torch.long)
        self.bound = torch.empty(num_points, dtype=points.dtype)
        self.then: Tensor | None = None  # the centroids of the last call

    def _distances(self, rows: Tensor | slice, partial: Tensor) -> Tensor:
        """Euclidean distances of the points ``rows`` from their ``partial`` entries."""
        return (partial + self.point_sq_norms[rows, None]).clamp_min_(0).sqrt_()

    def _full_search(self, rows: Tensor, centroids: Tensor) -> Tensor:
        """Refreshes the lists of the points ``rows``; returns their nearest centroids."""
        lifted = _lifted_centres(centroids)
        nearest = torch.empty(rows.numel(), dtype=torch.long)
        block = geometry.rows_per_block(centroids.shape[0], geometry.DISTANCE_BLOCK_ELEMENTS)
        buffer = centroids.new_empty(min(block, rows.numel()), centroids.shape[0])
        for part in geometry.row_blocks(rows.numel(), block):
            index = rows[part]
            partial = torch.mm(self.lifted[index], lifted.T, out=buffer[: index.numel()])
            order = geometry.smallest_in_order(partial, self.count + 1)
            self.candidates[index] = order[:, :-1]
            self.bound[index] = self._distances(index, partial.gather(1, order[:, -1:]))[:, 0]
            nearest[part] = order[:, 0]
        return nearest

    def _lower_bounds(self, moved: Tensor, centroids: Tensor) -> None:
        """Lowers every b_n to the distance of the nearest ``moved`` centroid outside x_n's list."""
        lifted = _lifted_centres(centroids[moved])
        # Column of each moved centroid; every other centroid points at a last column of +inf.
        column = torch.full((centroids.shape[0],), moved.numel(), dtype=torch.long)
        column[moved] = torch.arange(moved.numel())
        num_points = self.points.shape[0]
        block = geometry.rows_per_block(moved.numel() + 1, geometry.DISTANCE_BLOCK_ELEMENTS)
        buffer = centroids.new_full((min(block, num_points), moved.numel() + 1), torch.inf)
        for part in geometry.row_blocks(num_points, block):
            partial = buffer[: part.stop - part.start]
            torch.mm(self.lifted[part], lifted.T, out=partial[:, :-1])
            partial.scatter_(1, column[self.candidates[part]], torch.inf)  # the lists' own
            least = self._distances(part, partial[:, :-1].amin(dim=1, keepdim=True))[:, 0]
            self.bound[part] = torch.minimum(self.bound[part], least)

    def assign(self, centroids: Tensor) -> Tensor:
        """Nearest centroid of every point (the first call: a full search of every point)."""
        then, self.then = self.then, centroids.clone()
        everyone = torch.arange(self.points.shape[0])
        if then is None:
            return self._full_search(everyone, centroids)
        moved = (centroids != then).any(dim=1).nonzero().squeeze(1)
        if moved.numel():
            self._lower_bounds(moved, centroids)
        centroid_sq_norms = squared_norms(centroids)
        assignments = torch.empty(self.points.shape[0], dtype=torch.long)
        closest = torch.empty(self.points.shape[0], dtype=self.points.dtype)
        rows = geometry.rows_per_block(
            self.count * self.points.shape[1], geometry.GATHER_BLOCK_ELEMENTS
        )
        for part in geometry.row_blocks(self.points.shape[0], rows):
            candidates = self.candidates[part]
            cross = torch.einsum("be,ble->bl", self.points[part], centroids[candidates])
            distances = (
                self.point_sq_norms[part, None] - 2 * cross + centroid_sq_norms[candidates]
            ).clamp_min_(0)
            least = distances.amin(dim=1, keepdim=True)
            # Ties go to the lowest centroid index, as a full argmin would choose.
            tied = torch.where(distances == least, candidates, centroids.shape[0])
            assignments[part] = tied.amin(dim=1)
            closest[part] = least.squeeze(1)
        unsure = (closest.sqrt() >= self.bound).nonzero().squeeze(1)
        if unsure.numel():
            assignments[unsure] = self._full_search(unsure, centroids)
        return assignments


def _lifted_centres(centres: Tensor) -> Tensor:
    """``[-2c, |c|^2]``, the centres' side of :class:`_CandidateSearch`'s one product."""
    return torch.cat([centres * -2.0, squared_norms(centres)[:, None]], dim=1)


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
    many = num_groups == 1 and k > MANY_CLUSTERS
    if many:
        centroids = _seed_in_rounds(points, point_sq_norms, k, generator)
        search = _CandidateSearch(points, point_sq_norms, k)
        assignments = search.assign(centroids)
    else:
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
        if many:
            new_assignments = search.assign(centroids)
        else:
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
