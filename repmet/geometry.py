"""Squared Euclidean distances, the one distance of every loss, index and accuracy (spec,
Notation), and the block sizes that bound the memory of computing them.

Every distance matrix here uses the expansion |a|^2 - 2 a.b + |b|^2, one matrix product. In
float32 that expansion cancels catastrophically when the points sit far from the origin compared
with their spread (centroids at offset 1,000 with spread 0.5 mislabel a quarter of nearest-centroid
queries), so both sides are first shifted to a common origin near them. Distances do not depend on
the origin; only the rounding error does.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

#: Elements of one temporary ``[B, J]`` distance block in evaluation (~64 MB in float32): large
#: blocks amortise the matrix product, and memory stays bounded whatever the split's size.
DISTANCE_BLOCK_ELEMENTS = 16 * 2**20
#: Elements of one gathered ``[B, k, E]`` block in per-group k-means (~8 MB in float32): small
#: enough to stay in cache, which is several times faster than streaming a large block.
GATHER_BLOCK_ELEMENTS = 2**21


def rows_per_block(elements_per_row: int, budget: int) -> int:
    """How many rows of ``elements_per_row`` elements fit in a block of ``budget`` elements."""
    return max(1, budget // max(1, elements_per_row))


def row_blocks(total: int, rows: int) -> Iterator[slice]:
    """Consecutive slices of at most ``rows`` rows covering ``range(total)``."""
    for start in range(0, total, rows):
        yield slice(start, min(start + rows, total))


def squared_norms(points: Tensor) -> Tensor:
    """``|x|^2`` of every row, without materialising a squared copy of the points."""
    return torch.linalg.vector_norm(points, dim=-1).pow_(2)


def expanded_squared_distances(
    points: Tensor,
    centres: Tensor,
    *,
    point_norms: Tensor | None = None,
    centre_norms: Tensor | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """``[..., N, J]`` d(a, b) = |a|^2 - 2 a.b + |b|^2 for points ``[..., N, E]`` and centres
    ``[..., J, E]`` already near the origin (leading dimensions: a batch of independent sets).

    Rounding can leave tiny negative values, hence the clamp. Callers that reuse the norms across
    blocks pass them in. ``out`` (no autograd) is an ``[N, J]`` buffer that receives the result
    in place: the same operations in the same order, so the same bits, without allocating four
    ``[N, J]`` temporaries per block, whose page faults cost as much as the product on large
    blocks.
    """
    if point_norms is None:
        point_norms = points.pow(2).sum(dim=-1)
    if centre_norms is None:
        centre_norms = centres.pow(2).sum(dim=-1)
    if out is not None:
        torch.mm(points, centres.T, out=out)
        return out.mul_(-2.0).add_(point_norms.unsqueeze(1)).add_(centre_norms).clamp_min_(0.0)
    squared = point_norms.unsqueeze(-1) - 2.0 * points @ centres.mT + centre_norms.unsqueeze(-2)
    return squared.clamp_min(0.0)


def pairwise_squared_distances(points: Tensor, centres: Tensor) -> Tensor:
    """d(a, b) = sum((a - b)^2) between every row of ``points`` [..., N, E] and ``centres``
    [..., J, E] (leading dimensions: a batch of independent sets, each with its own origin).

    Both sides are shifted by the detached mean centre first (see the module), which leaves the
    distances and their gradients unchanged.
    """
    origin = centres.detach().mean(dim=-2, keepdim=True)
    return expanded_squared_distances(points - origin, centres - origin)


def smallest_in_order(distances: Tensor, count: int) -> Tensor:
    """``[B, count]`` column indices of each row's ``count`` smallest entries, in the order of a
    stable sort of the row (ties broken by column index, a reproducible choice).

    A top-k selection of ``count + 1`` entries costs O(row) instead of the sort's O(row log row);
    the entries come back ordered by (distance, index). Only a row whose ``count``-th and
    ``count + 1``-th smallest distances are equal could keep a different tied entry than the sort
    would: such rows (duplicate points, in practice) are sorted whole.
    """
    width = distances.shape[1]
    taken = min(count + 1, width)
    values, indices = distances.topk(taken, dim=1, largest=False, sorted=True)
    indices, by_index = indices.sort(dim=1)
    values = values.gather(1, by_index)
    values, by_value = values.sort(dim=1, stable=True)
    indices = indices.gather(1, by_value)
    if taken > count:
        tied = (values[:, count - 1] == values[:, count]).nonzero().squeeze(1)
        if tied.numel():
            indices[tied] = torch.sort(distances[tied], dim=1, stable=True).indices[:, :taken]
    return indices[:, :count]
